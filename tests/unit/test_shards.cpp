// Sharded saves: every rank writes its own file without the catalog, rank 0
// commits them as one checkpoint. The commit is all or nothing, a crash of
// rank 0 inside it is resolved by the next open, a live rank's temp file is
// never taken for an orphan, and resume treats the files as one.
#include <doctest/doctest.h>

#include <sstream>

#include "ckptdb.h"
#include "support.hpp"

namespace {

struct Cat {
    ckptdb_catalog *db = nullptr;
    explicit Cat(const std::string &dir, const ckptdb_retention *policy = nullptr) {
        REQUIRE(ckptdb_open(&db, dir.c_str(), nullptr) == CKPTDB_OK);
        if (policy) REQUIRE(ckptdb_set_retention(db, policy) == CKPTDB_OK);
    }
    ~Cat() { ckptdb_close(db); }
};

// One shard written in this process; the strings stay valid while it lives.
struct Shard {
    ckptdb_shard *sh = nullptr;
    ckptdb_shard_info info = CKPTDB_SHARD_INFO_INIT;
    std::string bytes;
    Shard(const std::string &dir, const std::string &name, size_t n, unsigned seed, bool via_fd = false) {
        bytes = t::pattern(n, seed);
        REQUIRE(ckptdb_shard_begin(&sh, dir.c_str(), name.c_str()) == CKPTDB_OK);
        if (via_fd) {
            int fd = -1;
            REQUIRE(ckptdb_shard_fd(&fd, sh) == CKPTDB_OK);
            REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
        } else {
            REQUIRE(ckptdb_shard_write(sh, bytes.data(), bytes.size()) == CKPTDB_OK);
        }
        REQUIRE(ckptdb_shard_finish(sh, &info) == CKPTDB_OK);
    }
    ~Shard() { ckptdb_shard_free(sh); }
    ckptdb_shard_file file() const { return {info.name, info.temp_name, info.size, info.checksum}; }
};

int commit(Cat &c, const std::vector<ckptdb_shard_file> &fs, int64_t epoch, ckptdb_entry *out = nullptr,
           const char *kind = "epoch") {
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    return ckptdb_commit_shards(out ? out : &e, c.db, kind, epoch, epoch * 10, nullptr, fs.data(), fs.size());
}

std::vector<std::pair<int64_t, std::string>> files_of(Cat &c, int64_t id) {
    std::vector<std::pair<int64_t, std::string>> out;
    REQUIRE(ckptdb_files(c.db, id,
                         [](const ckptdb_file *f, void *p) {
                             static_cast<std::vector<std::pair<int64_t, std::string>> *>(p)->push_back(
                                 {f->rank, f->name});
                             return 0;
                         },
                         &out) == CKPTDB_OK);
    return out;
}

std::string read_rank(Cat &c, int64_t id, int64_t rank, int *rc) {
    ckptdb_reader *r = nullptr;
    *rc = ckptdb_reader_open_rank(&r, c.db, id, rank);
    if (*rc != CKPTDB_OK) return "";
    std::string out;
    char buf[65536];
    for (;;) {
        size_t n = 0;
        *rc = ckptdb_reader_read(r, buf, sizeof buf, &n);
        if (*rc != CKPTDB_OK || n == 0) break;
        out.append(buf, n);
    }
    ckptdb_reader_close(r);
    return out;
}

// The bytes shard_helper writes for a seed.
std::string helper_pattern(size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 131 + seed * 7 + i / 4096) & 0xff);
    return s;
}

struct HeldShard {
    t::Child child;
    std::string name, temp, sum;
    long long size = 0;
    HeldShard(const std::string &dir, const std::string &n, size_t bytes, unsigned seed)
        : child({"shard", dir, n, std::to_string(bytes), "--seed", std::to_string(seed), "--hold"},
                "CKPTDB_SHARD_HELPER") {
        std::istringstream in(child.line());
        std::string tag;
        in >> tag >> name >> temp >> size >> sum;
        REQUIRE(tag == "SHARD");
    }
    std::string arg() const { return name + ":" + temp + ":" + std::to_string(size) + ":" + sum; }
};

}  // namespace

TEST_CASE("a sharded save commits every rank's file as one checkpoint") {
    t::TempDir d;
    Cat c(d.path);
    Shard r0(d.path, "epoch_001.rank0.pt", 100000, 1), r1(d.path, "epoch_001.rank1.pt", 3000, 2, true),
        r2(d.path, "epoch_001.rank2.pt", 0, 3);
    CHECK(t::temp_files(d.path).size() == 3);
    CHECK(r1.info.size == 3000);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(commit(c, {r0.file(), r1.file(), r2.file()}, 1, &e) == CKPTDB_OK);
    CHECK(e.status == CKPTDB_STATUS_COMPLETE);
    CHECK(e.file_count == 3);
    CHECK(e.size == 103000);
    CHECK(std::string(e.name) == "epoch_001.rank0.pt");
    CHECK(t::temp_files(d.path).empty());
    CHECK(t::read_file(d / "epoch_001.rank1.pt") == r1.bytes);

    auto fs = files_of(c, e.id);
    REQUIRE(fs.size() == 3);
    CHECK(fs[2] == std::make_pair(int64_t(2), std::string("epoch_001.rank2.pt")));
    int rc = 0;
    CHECK(read_rank(c, e.id, 0, &rc) == r0.bytes);
    CHECK(rc == CKPTDB_OK);
    CHECK(read_rank(c, e.id, 1, &rc) == r1.bytes);
    CHECK(rc == CKPTDB_OK);
    read_rank(c, e.id, 3, &rc);
    CHECK(rc == CKPTDB_ENOTFOUND);

    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(l.id == e.id);
    // As seen from the sqlite3 prompt: one checkpoint, three sealed files.
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM files WHERE checkpoint_id = " + std::to_string(e.id) +
                                            " AND length(checksum) = 32 AND temp_name IS NULL") == "3");
    CHECK(t::query1(t::catalog_path(d), "SELECT sum(size) FROM files WHERE checkpoint_id = " + std::to_string(e.id)) ==
          "103000");
}

TEST_CASE("bad input to a sharded commit fails clearly and changes nothing") {
    t::TempDir d;
    Cat c(d.path);
    {
        Shard a(d.path, "epoch_001.rank0.pt", 1000, 1), b(d.path, "epoch_001.rank1.pt", 1000, 2);
        REQUIRE(commit(c, {a.file(), b.file()}, 1) == CKPTDB_OK);
    }
    Shard a(d.path, "epoch_002.rank0.pt", 2000, 3), b(d.path, "epoch_002.rank1.pt", 2000, 4);
    std::string before = t::snapshot(d);
    ckptdb_shard_file fa = a.file(), fb = b.file();

    struct Bad {
        const char *what;
        std::vector<ckptdb_shard_file> files;
        int code;
    };
    ckptdb_shard_file taken = fb, dup = fb, missing = fb, wrong_size = fb, bad_sum = fb, outside = fb, foreign = fb;
    taken.name = "epoch_001.rank1.pt";
    dup.name = fa.name;
    missing.temp_name = ".ckptdb-tmp-00000000000000000000000000000000";
    wrong_size.size = fb.size + 1;
    bad_sum.checksum = "not-a-checksum";
    outside.name = "../escape.pt";
    foreign.temp_name = "../.ckptdb-tmp-00000000000000000000000000000000";
    for (const Bad &bad : std::vector<Bad>{{"a name of a live checkpoint", {fa, taken}, CKPTDB_EEXISTS},
                                           {"two ranks with one name", {fa, dup}, CKPTDB_EINVAL},
                                           {"a temp file that does not exist", {fa, missing}, 0},
                                           {"a size other than the file's", {fa, wrong_size}, CKPTDB_EINVAL},
                                           {"a malformed checksum", {fa, bad_sum}, CKPTDB_EINVAL},
                                           {"a name outside the directory", {fa, outside}, CKPTDB_EINVAL},
                                           {"a temp name outside the directory", {fa, foreign}, CKPTDB_EINVAL},
                                           {"no files", {}, CKPTDB_EINVAL}}) {
        CAPTURE(bad.what);
        int rc = commit(c, bad.files, 2);
        CHECK(rc != CKPTDB_OK);
        if (bad.code) CHECK(rc == bad.code);
        CHECK(std::string(ckptdb_last_error()).size() > 10);
        CHECK(t::snapshot(d) == before);
    }
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.name = "explicit.pt";
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    std::vector<ckptdb_shard_file> good{fa, fb};
    CHECK(ckptdb_commit_shards(&e, c.db, "epoch", 2, 20, &o, good.data(), 2) == CKPTDB_EINVAL);
    CHECK(ckptdb_commit_shards(&e, c.db, "bad kind!", 2, 20, nullptr, good.data(), 2) == CKPTDB_EINVAL);
    CHECK(t::snapshot(d) == before);
    // The same shards still commit once the input is right.
    CHECK(commit(c, good, 2, &e) == CKPTDB_OK);
    CHECK(e.file_count == 2);
}

TEST_CASE("one bad file makes resume fall back past the whole sharded checkpoint") {
    t::TempDir d;
    Cat c(d.path);
    ckptdb_entry first = CKPTDB_ENTRY_INIT, second = CKPTDB_ENTRY_INIT;
    {
        Shard a(d.path, "e1.r0.pt", 5000, 1), b(d.path, "e1.r1.pt", 5000, 2);
        REQUIRE(commit(c, {a.file(), b.file()}, 1, &first) == CKPTDB_OK);
    }
    {
        Shard a(d.path, "e2.r0.pt", 5000, 3), b(d.path, "e2.r1.pt", 5000, 4);
        REQUIRE(commit(c, {a.file(), b.file()}, 2, &second) == CKPTDB_OK);
    }
    std::string p = d / "e2.r1.pt";
    std::string bytes = t::read_file(p);
    bytes[4000] = static_cast<char>(bytes[4000] ^ 0x10);
    t::write_file(p, bytes);
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(l.id == first.id);
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(second.id)) ==
          "corrupt");
    CHECK(t::exists(d / "e2.r0.pt"));  // marked, never deleted by resume
}

TEST_CASE("rotation removes every file of a sharded checkpoint it lets go") {
    t::TempDir d;
    ckptdb_retention pol;
    REQUIRE(ckptdb_retention_init(&pol, CKPTDB_RETENTION_VERSION) == CKPTDB_OK);
    ckptdb_keep_kind keep{"epoch", 1};
    pol.keep_last = &keep;
    pol.keep_last_count = 1;
    Cat c(d.path, &pol);
    ckptdb_entry first = CKPTDB_ENTRY_INIT;
    {
        Shard a(d.path, "e1.r0.pt", 3000, 1), b(d.path, "e1.r1.pt", 3000, 2), x(d.path, "e1.r2.pt", 3000, 3);
        REQUIRE(commit(c, {a.file(), b.file(), x.file()}, 1, &first) == CKPTDB_OK);
    }
    {
        Shard a(d.path, "e2.r0.pt", 3000, 4), b(d.path, "e2.r1.pt", 3000, 5), x(d.path, "e2.r2.pt", 3000, 6);
        REQUIRE(commit(c, {a.file(), b.file(), x.file()}, 2) == CKPTDB_OK);
    }
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(first.id)) ==
          "pruned");
    for (const char *n : {"e1.r0.pt", "e1.r1.pt", "e1.r2.pt"}) CHECK_FALSE(t::exists(d / n));
    for (const char *n : {"e2.r0.pt", "e2.r1.pt", "e2.r2.pt"}) CHECK(t::exists(d / n));
}

TEST_CASE("a live shard's temp file survives other processes' recovery; a dead one's is removed") {
    t::TempDir d;
    { Cat c(d.path); }
    HeldShard s(d.path, "e1.r1.pt", 200000, 5);
    REQUIRE(t::exists(d / s.temp));
    CHECK(t::run_helper({"open", d.path}) == "OK");  // recovery in another process
    CHECK(t::exists(d / s.temp));
    {
        Cat c(d.path);  // and in this one
        CHECK(t::exists(d / s.temp));
        int64_t in_flight = 0;
        ckptdb_fsck(c.db, 0,
                    [](const ckptdb_fsck_item *it, void *p) {
                        if (std::string(it->kind) == "writing") ++*static_cast<int64_t *>(p);
                        return 0;
                    },
                    &in_flight, nullptr);
        CHECK(in_flight == 1);
    }
    s.child.kill9();
    CHECK(t::exists(d / s.temp));
    Cat c(d.path);
    CHECK_FALSE(t::exists(d / s.temp));
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints") == "0");
}

TEST_CASE("a shard writer killed mid-write leaves nothing behind after the next open") {
    t::TempDir d;
    { Cat c(d.path); }
    t::Child w({"shard", d.path, "e1.r0.pt", "1000000", "--pause-at", "shard_wrote"}, "CKPTDB_SHARD_HELPER");
    REQUIRE(w.line() == "PAUSED shard_wrote");
    CHECK(t::temp_files(d.path).size() == 1);
    w.kill9();
    Cat c(d.path);
    CHECK(t::temp_files(d.path).empty());
    CHECK_FALSE(t::exists(d / "e1.r0.pt"));
}

TEST_CASE("rank 0 killed inside the commit: the next open finishes it once every file was recorded") {
    for (const char *point : {"sealed", "renamed", "dir_synced"}) {
        CAPTURE(point);
        t::TempDir d;
        { Cat c(d.path); }
        HeldShard r0(d.path, "e1.r0.pt", 300000, 1), r1(d.path, "e1.r1.pt", 200000, 2),
            r2(d.path, "e1.r2.pt", 100000, 3);
        t::Child rank0({"commit", d.path, "epoch", "1", "10", "--pause-at", point, r0.arg(), r1.arg(), r2.arg()},
                       "CKPTDB_SHARD_HELPER");
        REQUIRE(rank0.line() == std::string("PAUSED ") + point);
        rank0.kill9();
        // The job is torn down: every rank dies.
        r0.child.kill9();
        r1.child.kill9();
        r2.child.kill9();
        Cat c(d.path);
        ckptdb_entry l = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
        CHECK(l.file_count == 3);
        CHECK(t::temp_files(d.path).empty());
        CHECK(t::read_file(d / "e1.r0.pt") == helper_pattern(300000, 1));
        CHECK(t::read_file(d / "e1.r2.pt") == helper_pattern(100000, 3));
        CHECK(t::query1(t::catalog_path(d), "SELECT event FROM events WHERE checkpoint_id = " + std::to_string(l.id) +
                                                " ORDER BY id DESC LIMIT 1") == "recovered");
    }
}

TEST_CASE("rank 0 killed inside the commit with a file lost: aborted as a whole, its files removed") {
    t::TempDir d;
    ckptdb_entry prev = CKPTDB_ENTRY_INIT;
    {
        Cat c(d.path);
        Shard a(d.path, "e0.r0.pt", 1000, 9), b(d.path, "e0.r1.pt", 1000, 8), x(d.path, "e0.r2.pt", 1000, 7);
        REQUIRE(commit(c, {a.file(), b.file(), x.file()}, 0, &prev) == CKPTDB_OK);
    }
    HeldShard r0(d.path, "e1.r0.pt", 30000, 1), r1(d.path, "e1.r1.pt", 20000, 2), r2(d.path, "e1.r2.pt", 10000, 3);
    t::Child rank0({"commit", d.path, "epoch", "1", "10", "--pause-at", "renamed", r0.arg(), r1.arg(), r2.arg()},
                   "CKPTDB_SHARD_HELPER");
    REQUIRE(rank0.line() == "PAUSED renamed");  // rank 0's file renamed, the others not yet
    rank0.kill9();
    r0.child.kill9();
    r1.child.kill9();
    r2.child.kill9();
    CHECK(t::exists(d / "e1.r0.pt"));
    std::string lost = d / r2.temp;
    t::write_file(lost, t::read_file(lost).substr(0, 4096));  // torn: the disk lost its tail
    Cat c(d.path);
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(l.id == prev.id);
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE name = 'e1.r0.pt'") == "aborted");
    CHECK_FALSE(t::exists(d / "e1.r0.pt"));
    CHECK_FALSE(t::exists(d / "e1.r1.pt"));
    CHECK(t::temp_files(d.path).empty());
}

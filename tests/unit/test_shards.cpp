// Sharded saves: every rank writes its own file without the catalog, rank 0
// commits them as one checkpoint. The commit is all or nothing, a crash of
// rank 0 inside it is resolved by the next open, a live rank's temp file is
// never taken for an orphan, and resume treats the files as one. Each temp
// file carries its writer's seal (name, size, checksum, inode): a commit
// that reports anything else for a rank is refused.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "ckptdb.h"
#include "ckptdb.hpp"
#include "support.hpp"

namespace {

using t::Cat;

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
        REQUIRE(ckptdb_shard_finish(&info, sh) == CKPTDB_OK);
    }
    ~Shard() { ckptdb_shard_free(sh); }
    ckptdb_shard_file file() const {
        return {CKPTDB_SHARD_FILE_VERSION, info.name, info.temp_name, info.size, info.checksum};
    }
};

int commit(Cat &c, const std::vector<ckptdb_shard_file> &fs, int64_t epoch, ckptdb_entry *out = nullptr,
           const char *kind = "epoch") {
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    return ckptdb_commit_shards(out ? out : &e, c.db, kind, epoch, epoch * 10, nullptr, fs.data(), fs.size());
}

std::vector<std::pair<int64_t, std::string>> files_of(Cat &c, int64_t id) {
    std::vector<std::pair<int64_t, std::string>> out;
    REQUIRE(ckptdb_files(
                c.db, id,
                [](const ckptdb_file *f, void *p) {
                    static_cast<std::vector<std::pair<int64_t, std::string>> *>(p)->push_back({f->rank, f->name});
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
        *rc = ckptdb_reader_read(&n, r, buf, sizeof buf);
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

// Seals go to sidecar files while it lives, in this process and in the
// helpers it starts, as where the file system refuses user attributes.
struct SidecarSeals {
    explicit SidecarSeals(bool on = true) {
        if (on) ::setenv("CKPTDB_TEST_SEAL_SIDECAR", "1", 1);
    }
    ~SidecarSeals() { ::unsetenv("CKPTDB_TEST_SEAL_SIDECAR"); }
};

const char *const kSealAttr = "user.ckptdb.seal";

std::string sidecar(const std::string &temp) { return temp + ".seal"; }

// The seal attribute of a file ("" when it has none).
std::string seal_attr(const std::string &path) {
    char buf[2048];
    ssize_t n = ::getxattr(path.c_str(), kSealAttr, buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

bool contains(const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; }

// What a refused commit must leave: the same directory and catalog, no
// checkpoint row, every temp file still there, no final name.
void unchanged(const t::TempDir &d, const std::string &before, const std::vector<const Shard *> &shards) {
    CHECK(t::snapshot(d) == before);
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints WHERE status != 'complete'") == "0");
    for (const Shard *s : shards) {
        CHECK(t::exists(d / s->info.temp_name));
        CHECK_FALSE(t::exists(d / s->info.name));
    }
}

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
    // A shard begun under the name of a live checkpoint (begin never reads the catalog).
    Shard again(d.path, "epoch_001.rank1.pt", 2000, 5);
    std::string before = t::snapshot(d);
    ckptdb_shard_file fa = a.file(), fb = b.file();

    struct Bad {
        const char *what;
        std::vector<ckptdb_shard_file> files;
        int code;
    };
    ckptdb_shard_file taken = again.file(), dup = fb, missing = fb, wrong_size = fb, bad_sum = fb, outside = fb,
                      foreign = fb;
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
    ckptdb_keep_kind keep = CKPTDB_KEEP_KIND("epoch", 1);
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
        ckptdb_fsck(
            nullptr, c.db, 0,
            [](const ckptdb_fsck_item *it, void *p) {
                if (std::string(it->kind) == "writing") ++*static_cast<int64_t *>(p);
                return 0;
            },
            &in_flight);
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
    for (bool side : {false, true})
        for (const char *point : {"sealed", "renamed", "dir_synced"}) {
            CAPTURE(side);
            CAPTURE(point);
            SidecarSeals seals(side);
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
            CHECK(t::query1(t::catalog_path(d), "SELECT event FROM events WHERE checkpoint_id = " +
                                                    std::to_string(l.id) + " ORDER BY id DESC LIMIT 1") == "recovered");
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

TEST_CASE("two ranks' temp names swapped: the commit is refused naming the rank, and nothing changes") {
    // Same sizes (a size check alone passes them) and different sizes.
    for (auto sizes : {std::make_pair(4096, 4096), std::make_pair(4096, 9000)}) {
        CAPTURE(sizes.second);
        t::TempDir d;
        Cat c(d.path);
        Shard r0(d.path, "step_10.rank0-of-2.pt", static_cast<size_t>(sizes.first), 1),
            r1(d.path, "step_10.rank1-of-2.pt", static_cast<size_t>(sizes.second), 2);
        ckptdb_shard_file f0 = r0.file(), f1 = r1.file();
        std::swap(f0.temp_name, f1.temp_name);
        std::string before = t::snapshot(d);
        CHECK(commit(c, {f0, f1}, 1) == CKPTDB_EINVAL);
        std::string msg = ckptdb_last_error();
        CAPTURE(msg);
        CHECK(contains(msg, std::string("rank 0's temp file '") + r1.info.temp_name +
                                "' was sealed for 'step_10.rank1-of-2.pt', not 'step_10.rank0-of-2.pt'"));
        unchanged(d, before, {&r0, &r1});
        CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints") == "0");

        // The right pairing commits, and resume verifies every file.
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        REQUIRE(commit(c, {r0.file(), r1.file()}, 1, &e) == CKPTDB_OK);
        ckptdb_entry l = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
        CHECK(l.id == e.id);
        int rc = 0;
        CHECK(read_rank(c, e.id, 0, &rc) == r0.bytes);
        CHECK(read_rank(c, e.id, 1, &rc) == r1.bytes);
        CHECK(t::temp_files(d.path).empty());
    }
}

TEST_CASE("checksums swapped between two ranks, temp names right: refused") {
    t::TempDir d;
    Cat c(d.path);
    Shard r0(d.path, "e1.r0.pt", 5000, 1), r1(d.path, "e1.r1.pt", 5000, 2);
    ckptdb_shard_file f0 = r0.file(), f1 = r1.file();
    std::swap(f0.checksum, f1.checksum);
    std::string before = t::snapshot(d);
    CHECK(commit(c, {f0, f1}, 1) == CKPTDB_EINVAL);
    std::string msg = ckptdb_last_error();
    CAPTURE(msg);
    CHECK(contains(msg, std::string("rank 0's temp file '") + r0.info.temp_name + "' was sealed with checksum " +
                            r0.info.checksum + ", the commit reports " + r1.info.checksum));
    unchanged(d, before, {&r0, &r1});
    CHECK(commit(c, {r0.file(), r1.file()}, 1) == CKPTDB_OK);
}

TEST_CASE("a temp file without its seal, or with another file's, is refused") {
    for (bool side : {false, true}) {
        CAPTURE(side);
        SidecarSeals seals(side);
        t::TempDir d;
        Cat c(d.path);
        Shard r0(d.path, "e1.r0.pt", 3000, 1), r1(d.path, "e1.r1.pt", 3000, 2);
        std::string temp1 = d / r1.info.temp_name;
        if (side) {
            REQUIRE(t::exists(d / sidecar(r1.info.temp_name)));
            REQUIRE(::unlink((d / sidecar(r1.info.temp_name)).c_str()) == 0);
        } else {
            REQUIRE(::removexattr(temp1.c_str(), kSealAttr) == 0);
        }
        std::string before = t::snapshot(d);
        CHECK(commit(c, {r0.file(), r1.file()}, 1) == CKPTDB_EINVAL);
        std::string msg = ckptdb_last_error();
        CAPTURE(msg);
        CHECK(contains(msg, std::string("rank 1's temp file '") + r1.info.temp_name + "' has no seal"));
        unchanged(d, before, {&r0, &r1});
    }

    // A file made by hand under a temp name, with the right bytes and even a
    // copy of a shard's seal: the seal names another inode.
    t::TempDir d;
    Cat c(d.path);
    Shard r0(d.path, "e1.r0.pt", 3000, 1), r1(d.path, "e1.r1.pt", 3000, 2);
    const std::string forged = ".ckptdb-tmp-0123456789abcdef0123456789abcdef";
    t::write_file(d / forged, r1.bytes);
    ckptdb_shard_file f1 = r1.file();
    f1.temp_name = forged.c_str();
    std::string before = t::snapshot(d);
    CHECK(commit(c, {r0.file(), f1}, 1) == CKPTDB_EINVAL);
    CHECK(contains(ckptdb_last_error(), "rank 1's temp file '" + forged + "' has no seal"));
    CHECK(t::snapshot(d) == before);
    std::string seal = seal_attr(d / r1.info.temp_name);
    REQUIRE(seal.size() > 40);
    REQUIRE(::setxattr((d / forged).c_str(), kSealAttr, seal.data(), seal.size(), 0) == 0);
    CHECK(commit(c, {r0.file(), f1}, 1) == CKPTDB_EINVAL);
    CHECK(contains(ckptdb_last_error(), "rank 1's temp file '" + forged + "' carries the seal of another file"));
    CHECK(t::snapshot(d) == before);
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints") == "0");
}

TEST_CASE("sidecar seals: held while the shard lives, removed by the commit, by free and by recovery") {
    SidecarSeals seals;
    t::TempDir d;
    Cat c(d.path);
    {
        Shard r0(d.path, "e1.r0.pt", 70000, 1), r1(d.path, "e1.r1.pt", 3000, 2);
        for (const Shard *s : {&r0, &r1}) {
            CHECK(t::exists(d / sidecar(s->info.temp_name)));
            CHECK(seal_attr(d / s->info.temp_name).empty());
        }
        CHECK(t::temp_files(d.path).size() == 4);
        // Recovery in another process and in this one leaves held sidecars alone.
        CHECK(t::run_helper({"open", d.path}) == "OK");
        { Cat other(d.path); }
        CHECK(t::temp_files(d.path).size() == 4);
        // A sidecar binds to its temp file's inode: rank 1's file moved
        // under rank 0's temp name is not rank 0's file.
        t::TempDir d2;
        Cat c2(d2.path);
        {
            Shard a(d2.path, "x.r0.pt", 3000, 3), b(d2.path, "x.r1.pt", 3000, 4);
            REQUIRE(::rename((d2 / b.info.temp_name).c_str(), (d2 / a.info.temp_name).c_str()) == 0);
            ckptdb_shard_file fa = a.file();
            fa.checksum = b.info.checksum;
            CHECK(commit(c2, {fa}, 1) == CKPTDB_EINVAL);
            CHECK(contains(ckptdb_last_error(), std::string("rank 0's temp file '") + a.info.temp_name +
                                                    "' carries the seal of another file"));
            CHECK(t::query1(t::catalog_path(d2), "SELECT count(*) FROM checkpoints") == "0");
        }

        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        REQUIRE(commit(c, {r0.file(), r1.file()}, 1, &e) == CKPTDB_OK);
        CHECK(t::temp_files(d.path).empty());  // the shards still live: the commit removed their sidecars
        ckptdb_entry l = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
        CHECK(l.id == e.id);
        int rc = 0;
        CHECK(read_rank(c, e.id, 0, &rc) == r0.bytes);
        CHECK(read_rank(c, e.id, 1, &rc) == r1.bytes);
    }
    CHECK(t::temp_files(d.path).empty());
    {
        Shard dropped(d.path, "e2.r0.pt", 1000, 5);
        CHECK(t::exists(d / sidecar(dropped.info.temp_name)));
    }
    CHECK(t::temp_files(d.path).empty());  // freed without a commit: temp file and sidecar gone

    // A shard writer killed while holding its file: the next open removes both.
    HeldShard h(d.path, "e3.r0.pt", 5000, 7);
    CHECK(t::exists(d / sidecar(h.temp)));
    CHECK(t::run_helper({"open", d.path}) == "OK");
    CHECK(t::exists(d / sidecar(h.temp)));
    h.child.kill9();
    { Cat after(d.path); }
    CHECK(t::temp_files(d.path).empty());
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints") == "1");
}

TEST_CASE("sync seals its copies and commits them, with either kind of seal") {
    for (bool side : {false, true}) {
        CAPTURE(side);
        SidecarSeals seals(side);
        t::TempDir src, dst;
        {
            Cat c(src.path);
            Shard r0(src.path, "e1.r0.pt", 6000, 1), r1(src.path, "e1.r1.pt", 7000, 2);
            REQUIRE(commit(c, {r0.file(), r1.file()}, 1) == CKPTDB_OK);
        }
        {
            ckptdbxx::catalog c(src.path);
            c.save_bytes("epoch", 2, 20, t::pattern(9000, 3));
        }
        ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
        REQUIRE(ckptdb_sync(nullptr, nullptr, src.path.c_str(), dst.path.c_str(), &o) == CKPTDB_OK);
        CHECK(t::temp_files(dst.path).empty());
        CHECK(t::read_file(dst / "e1.r1.pt") == t::read_file(src / "e1.r1.pt"));
        if (!side) {
            // The copy was sealed for its name (the attribute stays with the file).
            std::string seal = seal_attr(dst / "e1.r1.pt");
            CAPTURE(seal);
            CHECK(seal.rfind("v1 7000 ", 0) == 0);
            CHECK(seal.size() > 9);
            CHECK(seal.substr(seal.size() - 9) == " e1.r1.pt");
        }
        Cat c(dst.path);
        ckptdb_entry l = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
        CHECK(l.epoch == 2);
        CHECK(t::query1(t::catalog_path(dst), "SELECT count(*) FROM checkpoints WHERE status = 'complete'") == "2");
        CHECK(t::query1(t::catalog_path(dst), "SELECT count(*) FROM files") == "3");
    }
}

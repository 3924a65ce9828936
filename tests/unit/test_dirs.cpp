// Directory checkpoints through the C ABI: a checkpoint that is a directory
// of files, written by several processes into the save's temp directory and
// committed by its coordinator without a byte read back. The commit is all
// or nothing; bad input changes nothing; latest, verify, the reader and
// prune treat the directory as one checkpoint; a prune removes only what
// the catalog wrote; a coordinator or writer killed at any point leaves
// either no checkpoint or a whole one, and no temp directory, after the next
// open.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <memory>
#include <sstream>

#include "ckptdb.h"
#include "support.hpp"

namespace {

using t::Cat;

struct DirSave {
    ckptdb_dir_save *s = nullptr;
    ckptdb_dir_info info = CKPTDB_DIR_INFO_INIT;
    DirSave(Cat &c, int64_t epoch, const char *name = nullptr) {
        ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
        o.name = name;
        REQUIRE(ckptdb_dir_begin(&s, c.db, "epoch", epoch, epoch * 10, &o) == CKPTDB_OK);
        REQUIRE(ckptdb_dir_get_info(&info, s) == CKPTDB_OK);
    }
    ~DirSave() { ckptdb_dir_free(s); }
};

// One file written in this process; the strings stay valid while it lives.
struct File {
    ckptdb_shard *sh = nullptr;
    ckptdb_shard_info info = CKPTDB_SHARD_INFO_INIT;
    int64_t rank;
    File(const std::string &dir, const DirSave &s, const std::string &name, int64_t r, size_t n, unsigned seed)
        : rank(r) {
        std::string bytes = t::pattern(n, seed);
        REQUIRE(ckptdb_dir_file_begin(&sh, dir.c_str(), s.info.temp_name, name.c_str(), r) == CKPTDB_OK);
        REQUIRE(ckptdb_shard_write(sh, bytes.data(), bytes.size()) == CKPTDB_OK);
        REQUIRE(ckptdb_shard_finish(&info, sh) == CKPTDB_OK);
    }
    ~File() { ckptdb_shard_free(sh); }
    ckptdb_dir_file file() const { return {CKPTDB_DIR_FILE_VERSION, info.name, rank, info.size, info.checksum}; }
};

int commit(DirSave &s, const std::vector<ckptdb_dir_file> &fs, ckptdb_entry *out = nullptr) {
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    return ckptdb_dir_commit(out ? out : &e, s.s, fs.data(), fs.size());
}

// A committed directory checkpoint of three files (ranks 0, 0 and 1).
int64_t save_dir(const std::string &dir, Cat &c, int64_t epoch, const char *name = nullptr) {
    DirSave s(c, epoch, name);
    unsigned seed = static_cast<unsigned>(epoch) * 3;
    File a(dir, s, "__0_0.distcp", 0, 3000, seed), b(dir, s, ".metadata", 0, 100, seed + 1),
        x(dir, s, "__1_0.distcp", 1, 2000, seed + 2);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(commit(s, {a.file(), b.file(), x.file()}, &e) == CKPTDB_OK);
    return e.id;
}

std::string read_named(Cat &c, int64_t id, const char *name, int *rc) {
    ckptdb_reader *r = nullptr;
    *rc = ckptdb_reader_open_file(&r, c.db, id, name);
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

bool is_dir(const std::string &p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string helper_pattern(size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 131 + seed * 7 + i / 4096) & 0xff);
    return s;
}

}  // namespace

TEST_CASE("a directory checkpoint commits as one: layout, files, size, and the bytes read back") {
    t::TempDir d;
    Cat c(d.path);
    DirSave s(c, 3);
    CHECK(std::string(s.info.name) == "epoch_003");
    CHECK(is_dir(d / s.info.temp_name));
    File a(d.path, s, "__0_0.distcp", 0, 70000, 1), m(d.path, s, ".metadata", 0, 300, 2),
        b(d.path, s, "__1_0.distcp", 1, 50000, 3);
    CHECK(std::string(a.info.name) == "__0_0.distcp");
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(commit(s, {a.file(), m.file(), b.file()}, &e) == CKPTDB_OK);
    CHECK(e.layout == CKPTDB_LAYOUT_DIR);
    CHECK(std::string(e.name) == "epoch_003");
    CHECK(std::string(e.path) == d / "epoch_003");
    CHECK(e.size == 70000 + 300 + 50000);
    CHECK(e.file_count == 3);
    CHECK(e.status == CKPTDB_STATUS_COMPLETE);
    // The temp directory became the checkpoint; nothing else is left.
    CHECK(is_dir(d / "epoch_003"));
    CHECK(t::temp_files(d.path).empty());
    CHECK(t::names(d / "epoch_003") == std::set<std::string>{"__0_0.distcp", ".metadata", "__1_0.distcp"});
    CHECK(t::read_file(d / "epoch_003/__1_0.distcp") == t::pattern(50000, 3));
    // The catalog: one file row per file, with its writing rank.
    CHECK(
        t::query1(t::catalog_path(d), "SELECT layout || ':' || coalesce(temp_name, '-') FROM checkpoints WHERE id = " +
                                          std::to_string(e.id)) == "dir:-");
    CHECK(t::query(t::catalog_path(d), "SELECT rank || ':' || name || ':' || size FROM files WHERE checkpoint_id = " +
                                           std::to_string(e.id) + " ORDER BY rank, name") ==
          std::vector<std::string>{"0:.metadata:300", "0:__0_0.distcp:70000", "1:__1_0.distcp:50000"});
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(l.id == e.id);
    CHECK(l.layout == CKPTDB_LAYOUT_DIR);
    CHECK(ckptdb_verify(c.db, e.id) == CKPTDB_OK);
    int rc = 0;
    CHECK(read_named(c, e.id, "__0_0.distcp", &rc) == t::pattern(70000, 1));
    CHECK(rc == CKPTDB_OK);
    read_named(c, e.id, "nope", &rc);
    CHECK(rc == CKPTDB_ENOTFOUND);
    // A name taken by the directory cannot be saved again.
    ckptdb_dir_save *again = nullptr;
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.name = "epoch_003";
    CHECK(ckptdb_dir_begin(&again, c.db, "epoch", 3, 30, &o) == CKPTDB_EEXISTS);
    CHECK(again == nullptr);
}

TEST_CASE("bad commits are refused before anything changes, and the save stays open") {
    t::TempDir d;
    Cat c(d.path);
    DirSave s(c, 1);
    File a(d.path, s, "a.bin", 0, 1000, 1), b(d.path, s, "b.bin", 1, 1000, 2);
    std::string before = t::snapshot(d);
    auto wrong_sum = b.file();
    wrong_sum.checksum = a.info.checksum;
    auto wrong_size = b.file();
    wrong_size.size = 999;
    auto missing = b.file();
    missing.name = "c.bin";
    auto bad_name = b.file();
    bad_name.name = "../b.bin";
    auto bad_version = b.file();
    bad_version.version = 99;
    for (const auto &fs : std::vector<std::vector<ckptdb_dir_file>>{{a.file(), wrong_sum},
                                                                    {a.file(), wrong_size},
                                                                    {a.file(), missing},
                                                                    {a.file(), bad_name},
                                                                    {a.file(), a.file()},
                                                                    {a.file(), bad_version},
                                                                    {a.file()},  // b.bin is there, unreported
                                                                    {}}) {
        CAPTURE(fs.size());
        CHECK(commit(s, fs) == CKPTDB_EINVAL);
        CHECK(std::string(ckptdb_last_error()).size() > 0);
        CHECK(t::snapshot(d) == before);
    }
    // A file nobody reported, put into the temp directory by hand.
    t::write_file(d / s.info.temp_name + "/stray", "x");
    CHECK(commit(s, {a.file(), b.file()}) == CKPTDB_EINVAL);
    CHECK(std::string(ckptdb_last_error()).find("stray") != std::string::npos);
    REQUIRE(::unlink((d / s.info.temp_name + "/stray").c_str()) == 0);
    // Then the right files commit.
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(commit(s, {a.file(), b.file()}, &e) == CKPTDB_OK);
    CHECK(ckptdb_dir_abort(s.s) == CKPTDB_EMISUSE);
    CHECK(commit(s, {a.file(), b.file()}) == CKPTDB_EMISUSE);
}

TEST_CASE("an abort, a release without a commit and an unfinished file leave nothing behind") {
    t::TempDir d;
    Cat c(d.path);
    {
        DirSave s(c, 1);
        File a(d.path, s, "a.bin", 0, 1000, 1);
        REQUIRE(ckptdb_dir_abort(s.s) == CKPTDB_OK);
        CHECK_FALSE(t::exists(d / s.info.temp_name));
        // Writing into an aborted save: its temp directory is gone.
        ckptdb_shard *late = nullptr;
        CHECK(ckptdb_dir_file_begin(&late, d.path.c_str(), s.info.temp_name, "b.bin", 0) == CKPTDB_ENOTFOUND);
    }
    std::string temp;
    {
        DirSave s(c, 2);
        temp = s.info.temp_name;
        ckptdb_shard *half = nullptr;
        REQUIRE(ckptdb_dir_file_begin(&half, d.path.c_str(), s.info.temp_name, "half.bin", 0) == CKPTDB_OK);
        REQUIRE(ckptdb_shard_write(half, "abc", 3) == CKPTDB_OK);
        CHECK(t::exists(d / temp + "/half.bin"));
        ckptdb_shard_free(half);  // never finished: removed
        CHECK_FALSE(t::exists(d / temp + "/half.bin"));
        // Two writers cannot take one name.
        File a(d.path, s, "a.bin", 0, 10, 1);
        ckptdb_shard *dup = nullptr;
        CHECK(ckptdb_dir_file_begin(&dup, d.path.c_str(), s.info.temp_name, "a.bin", 1) == CKPTDB_EEXISTS);
        CHECK(ckptdb_dir_file_begin(&dup, d.path.c_str(), s.info.temp_name, "x/y", 1) == CKPTDB_EINVAL);
        CHECK(ckptdb_dir_file_begin(&dup, d.path.c_str(), s.info.temp_name, "ok", -1) == CKPTDB_EINVAL);
        CHECK(ckptdb_dir_file_begin(&dup, d.path.c_str(), "../elsewhere", "ok", 0) == CKPTDB_EINVAL);
    }  // released without a commit: aborted
    CHECK_FALSE(t::exists(d / temp));
    CHECK(t::temp_files(d.path).empty());
    CHECK(t::query1(t::catalog_path(d), "SELECT group_concat(status) FROM checkpoints") == "aborted,aborted");
}

TEST_CASE("a flipped byte in one file: latest skips the directory as a whole and marks it corrupt") {
    t::TempDir d;
    Cat c(d.path);
    int64_t old = save_dir(d.path, c, 1);
    int64_t bad = save_dir(d.path, c, 2);
    std::string p = d / "epoch_002/__1_0.distcp";
    std::string bytes = t::read_file(p);
    bytes[1000] ^= 1;
    t::write_file(p, bytes);
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(l.id == old);
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(bad)) ==
          "corrupt");
    // A missing directory is caught by the size check alone.
    REQUIRE(std::system(("rm -r '" + d / "epoch_001" + "'").c_str()) == 0);
    CHECK(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_SIZE) == CKPTDB_ENOTFOUND);
    // A link in place of a directory is never followed.
    int64_t third = save_dir(d.path, c, 3);
    REQUIRE(std::system(("mv '" + d / "epoch_003" + "' '" + d / "moved" + "' && ln -s moved '" + d / "epoch_003" + "'")
                            .c_str()) == 0);
    CHECK(ckptdb_verify(c.db, third) == CKPTDB_ECORRUPT);
    CHECK(std::string(ckptdb_last_error()).find("not a directory") != std::string::npos);
}

TEST_CASE("rotation removes old directories whole; files the catalog did not write stay, with a warning") {
    t::TempDir d;
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", 2)};
    r.keep_last = keep;
    r.keep_last_count = 1;
    Cat c(d.path, &r);
    save_dir(d.path, c, 1);
    save_dir(d.path, c, 2);
    t::write_file(d / "epoch_002/notes.txt", "mine");
    save_dir(d.path, c, 3);
    CHECK_FALSE(t::exists(d / "epoch_001"));  // removed whole
    CHECK(is_dir(d / "epoch_002"));
    save_dir(d.path, c, 4);
    // epoch_002 went too, except the file it did not write.
    CHECK(t::names(d / "epoch_002") == std::set<std::string>{"notes.txt"});
    CHECK(t::read_file(d / "epoch_002/notes.txt") == "mine");
    CHECK(is_dir(d / "epoch_003"));
    CHECK(is_dir(d / "epoch_004"));
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT count(*) FROM events WHERE event = 'prune_kept_unknown' AND detail "
                    "LIKE '%notes.txt%'") == "1");
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT group_concat(status) FROM (SELECT status FROM checkpoints ORDER BY "
                    "id)") == "pruned,pruned,complete,complete");
}

TEST_CASE("a directory checkpoint removed at the user's word goes whole, except files the catalog did not write") {
    t::TempDir d;
    Cat c(d.path);
    int64_t first = save_dir(d.path, c, 1);
    int64_t second = save_dir(d.path, c, 2);
    t::write_file(d / "epoch_001/notes.txt", "mine");
    REQUIRE(ckptdb_remove(c.db, first) == CKPTDB_OK);
    CHECK(t::names(d / "epoch_001") == std::set<std::string>{"notes.txt"});
    CHECK(t::query1(t::catalog_path(d), "SELECT status || ' ' || prune_rule FROM checkpoints WHERE id = " +
                                            std::to_string(first)) == "pruned removed");
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT count(*) FROM events WHERE event = 'prune_kept_unknown' AND detail LIKE '%notes.txt%'") ==
          "1");
    // By name; then the last link follows the newest that is left.
    REQUIRE(ckptdb_remove_by_name(c.db, "epoch_002") == CKPTDB_OK);
    CHECK_FALSE(t::exists(d / "epoch_002"));
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(second)) ==
          "pruned");
    // Removed already, or unknown: refused, nothing changes.
    std::string before = t::snapshot(d);
    CHECK(ckptdb_remove(c.db, second) == CKPTDB_EINVAL);
    CHECK(std::string(ckptdb_last_error()).find("is pruned") != std::string::npos);
    CHECK(ckptdb_remove(c.db, 999) == CKPTDB_ENOTFOUND);
    CHECK(ckptdb_remove_by_name(c.db, "epoch_009") == CKPTDB_ENOTFOUND);
    CHECK(t::snapshot(d) == before);
}

TEST_CASE("C ABI: three processes write one directory checkpoint, the coordinator commits it") {
    t::TempDir d;
    Cat c(d.path);
    DirSave s(c, 7);
    std::vector<ckptdb_dir_file> fs;
    std::vector<std::string> names, sums;
    std::vector<std::unique_ptr<t::Child>> writers;
    for (int rank = 0; rank < 3; rank++)
        writers.push_back(std::make_unique<t::Child>(
            std::vector<std::string>{"dirfile", d.path, s.info.temp_name, "__" + std::to_string(rank) + "_0.distcp",
                                     std::to_string(rank), std::to_string(10000 * (rank + 1)), "--seed",
                                     std::to_string(rank + 1)},
            "CKPTDB_SHARD_HELPER"));
    for (auto &w : writers) {
        std::istringstream in(w->line());
        std::string tag, name, sum;
        long long rank = 0, size = 0;
        in >> tag >> name >> rank >> size >> sum;
        REQUIRE(tag == "FILE");
        CHECK(w->exit_code() == 0);
        names.push_back(name);
        sums.push_back(sum);
        fs.push_back({CKPTDB_DIR_FILE_VERSION, nullptr, rank, size, nullptr});
    }
    for (size_t i = 0; i < fs.size(); i++) fs[i].name = names[i].c_str(), fs[i].checksum = sums[i].c_str();
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(commit(s, fs, &e) == CKPTDB_OK);
    CHECK(e.file_count == 3);
    CHECK(e.size == 60000);
    CHECK(ckptdb_verify(c.db, e.id) == CKPTDB_OK);
    for (int rank = 0; rank < 3; rank++)
        CHECK(t::read_file(d / "epoch_007/__" + std::to_string(rank) + "_0.distcp") ==
              helper_pattern(10000 * (rank + 1), rank + 1));
}

TEST_CASE("the coordinator killed at each point of its commit: no checkpoint, or a whole one, and no temp left") {
    for (bool side : {false, true})
        for (const std::string point : {"begun", "dir_created", "sealed", "renamed", "dir_synced", "committed"}) {
            CAPTURE(side);
            CAPTURE(point);
            // Seals in sidecar files, as where the file system refuses user attributes.
            if (side) ::setenv("CKPTDB_TEST_SEAL_SIDECAR", "1", 1);
            struct Unset {
                ~Unset() { ::unsetenv("CKPTDB_TEST_SEAL_SIDECAR"); }
            } unset;
            // Before these two the save has not printed its name yet.
            const bool in_begin = point == "begun" || point == "dir_created";
            t::TempDir d;
            int64_t prev = 0;
            {
                Cat c(d.path);
                prev = save_dir(d.path, c, 1);
            }
            t::Child coord({"dirsave", d.path, "epoch", "2", "20", "--pause-at", point, "__0_0.distcp:0:30000:1",
                            ".metadata:0:100:2", "__1_0.distcp:1:20000:3"},
                           "CKPTDB_SHARD_HELPER");
            std::string first = coord.line();
            if (!in_begin) {
                REQUIRE(first.rfind("BEGUN ", 0) == 0);
                first = coord.line();
            }
            REQUIRE(first == "PAUSED " + point);
            coord.kill9();
            Cat c(d.path);
            ckptdb_entry l = CKPTDB_ENTRY_INIT;
            REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
            const bool rolled_forward = !in_begin;
            CHECK(l.id == (rolled_forward ? prev + 1 : prev));
            if (rolled_forward) {
                CHECK(std::string(l.name) == "epoch_002");
                CHECK(l.file_count == 3);
                CHECK(t::read_file(d / "epoch_002/__1_0.distcp") == helper_pattern(20000, 3));
                CHECK(t::names(d / "epoch_002") == std::set<std::string>{"__0_0.distcp", ".metadata", "__1_0.distcp"});
            } else {
                CHECK_FALSE(t::exists(d / "epoch_002"));
                CHECK(t::query1(t::catalog_path(d),
                                "SELECT status FROM checkpoints WHERE id = " + std::to_string(prev + 1)) == "aborted");
            }
            CHECK(t::temp_files(d.path).empty());
            CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints WHERE status = 'writing'") == "0");
        }
}

TEST_CASE("a writer killed mid-write: its coordinator's save is aborted, and the temp directory removed") {
    t::TempDir d;
    { Cat c(d.path); }
    std::string temp;
    {
        Cat c(d.path);
        DirSave s(c, 1);
        temp = s.info.temp_name;
        File done(d.path, s, "__0_0.distcp", 0, 1000, 1);
        t::Child w({"dirfile", d.path, temp, "__1_0.distcp", "1", "1000000", "--pause-at", "shard_wrote"},
                   "CKPTDB_SHARD_HELPER");
        REQUIRE(w.line() == "PAUSED shard_wrote");
        // While the writer lives and holds its file, another open leaves it alone.
        {
            Cat other(d.path);
            CHECK(t::exists(d / temp + "/__1_0.distcp"));
        }
        w.kill9();
        // The coordinator gives up (as DCP's would after a failed rank).
        REQUIRE(ckptdb_dir_abort(s.s) == CKPTDB_OK);
    }
    CHECK_FALSE(t::exists(d / temp));
    Cat c(d.path);
    CHECK(t::temp_files(d.path).empty());
}

TEST_CASE("a temp directory no save owns is removed by the next open, except a file a live writer holds") {
    t::TempDir d;
    { Cat c(d.path); }
    const std::string temp = ".ckptdb-tmp-0123456789abcdef0123456789abcdef.d";
    REQUIRE(::mkdir((d / temp).c_str(), 0755) == 0);
    t::write_file(d / temp + "/left.bin", "x");
    t::Child w({"dirfile", d.path, temp, "held.bin", "0", "1000000", "--pause-at", "shard_wrote"},
               "CKPTDB_SHARD_HELPER");
    REQUIRE(w.line() == "PAUSED shard_wrote");
    { Cat c(d.path); }
    CHECK(t::names(d / temp) == std::set<std::string>{"held.bin"});
    w.kill9();
    { Cat c(d.path); }
    CHECK_FALSE(t::exists(d / temp));
}

TEST_CASE("a lost catalog beside directory checkpoints: no empty catalog is started, the directory is named") {
    t::TempDir d;
    {
        Cat c(d.path);
        save_dir(d.path, c, 1);
    }
    for (const char *f : {"ckptdb.sqlite", "ckptdb.sqlite-wal", "ckptdb.sqlite-shm"}) ::unlink((d / f).c_str());
    ckptdb_catalog *db = nullptr;
    CHECK(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_ENOTCATALOG);
    CHECK(db == nullptr);
    CHECK(std::string(ckptdb_last_error()).find("epoch_001/") != std::string::npos);
    CHECK_FALSE(t::exists(d / "ckptdb.sqlite"));
    CHECK(t::names(d / "epoch_001").size() == 3);
    // A directory of other files does not stop a new catalog.
    t::TempDir e;
    REQUIRE(::mkdir((e / "data").c_str(), 0755) == 0);
    t::write_file(e / "data/notes.txt", "x");
    Cat fresh(e.path);
}

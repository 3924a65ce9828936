// ckptdb_sync of directory checkpoints: each is copied into a directory save
// in the destination file by file (hashed while copied, fsynced, read back),
// committed with the destination's directory commit, and verifies there with
// the same files rows as the source's; a second sync finds it present. A
// source file whose bytes fail their checksum fails that checkpoint alone and
// leaves no temp directory; a directory of that name the destination's
// catalog does not own is left alone; a save in flight in the destination
// refuses the sync; a sync killed inside a directory's copy leaves, once the
// destination is opened again, no temp directory and no torn complete row;
// with delete, a directory the source pruned by a rule goes from the
// destination; a link in a source directory is never followed.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>

#include "ckptdb.h"
#include "ckptdb.hpp"
#include "support.hpp"

namespace {

using t::Cat;

// One file of a directory save, written in this process (as test_dirs.cpp).
struct File {
    ckptdb_shard *sh = nullptr;
    ckptdb_shard_info info = CKPTDB_SHARD_INFO_INIT;
    int64_t rank;
    File(const std::string &dir, const char *temp, const std::string &name, int64_t r, size_t n, unsigned seed)
        : rank(r) {
        std::string bytes = t::pattern(n, seed);
        REQUIRE(ckptdb_dir_file_begin(&sh, dir.c_str(), temp, name.c_str(), r) == CKPTDB_OK);
        REQUIRE(ckptdb_shard_write(sh, bytes.data(), bytes.size()) == CKPTDB_OK);
        REQUIRE(ckptdb_shard_finish(&info, sh) == CKPTDB_OK);
    }
    ~File() { ckptdb_shard_free(sh); }
    ckptdb_dir_file file() const { return {CKPTDB_DIR_FILE_VERSION, info.name, rank, info.size, info.checksum}; }
};

// A committed directory checkpoint "epoch_<epoch>" of three files (ranks 0, 0 and 1).
int64_t save_dir(const std::string &dir, Cat &c, int64_t epoch) {
    ckptdb_dir_save *s = nullptr;
    REQUIRE(ckptdb_dir_begin(&s, c.db, "epoch", epoch, epoch * 10, nullptr) == CKPTDB_OK);
    ckptdb_dir_info info = CKPTDB_DIR_INFO_INIT;
    REQUIRE(ckptdb_dir_get_info(&info, s) == CKPTDB_OK);
    unsigned seed = static_cast<unsigned>(epoch) * 3;
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    {
        File a(dir, info.temp_name, "__0_0.distcp", 0, 30000, seed),
            b(dir, info.temp_name, ".metadata", 0, 100, seed + 1),
            x(dir, info.temp_name, "__1_0.distcp", 1, 20000, seed + 2);
        std::vector<ckptdb_dir_file> fs{a.file(), b.file(), x.file()};
        REQUIRE(ckptdb_dir_commit(&e, s, fs.data(), fs.size()) == CKPTDB_OK);
    }
    ckptdb_dir_free(s);
    return e.id;
}

std::string stem(int64_t epoch) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "epoch_%03lld", static_cast<long long>(epoch));
    return buf;
}

// The files rows of the checkpoint named name: rank, name, size, checksum.
std::vector<std::string> file_rows(const t::TempDir &d, const std::string &name) {
    return t::query(t::catalog_path(d),
                    "SELECT f.rank || ':' || f.name || ':' || f.size || ':' || f.checksum FROM files f JOIN "
                    "checkpoints c ON c.id = f.checkpoint_id WHERE c.name = '" +
                        name + "' AND c.status = 'complete' ORDER BY f.rank, f.name");
}

struct Items {
    std::vector<std::string> lines;  // "kind name: detail"
    static int cb(const ckptdb_sync_item *it, void *p) {
        static_cast<Items *>(p)->lines.push_back(std::string(it->kind) + " " + it->name + ": " + it->detail);
        return 0;
    }
    // The one item of name, "" when none.
    std::string of(const std::string &name) const {
        std::string out;
        for (const std::string &l : lines)
            if (l.find(" " + name + ": ") != std::string::npos) out += l;
        return out;
    }
};

int sync(const t::TempDir &src, const t::TempDir &dst, Items &items, int64_t *copied = nullptr) {
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    o.on_item = Items::cb;
    o.item_payload = &items;
    return ckptdb_sync(copied, nullptr, src.path.c_str(), dst.path.c_str(), &o);
}

void flip_byte(const std::string &path, size_t at) {
    std::string b = t::read_file(path);
    REQUIRE(b.size() > at);
    b[at] = static_cast<char>(b[at] ^ 0xff);
    t::write_file(path, b);
}

bool is_dir(const std::string &p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

TEST_CASE("a directory checkpoint syncs, verifies in the destination with the same files, and is present after") {
    for (bool sidecar : {false, true}) {
        CAPTURE(sidecar);
        // The seal as an attribute, or as a sidecar file that the commit removes.
        if (sidecar)
            ::setenv("CKPTDB_TEST_SEAL_SIDECAR", "1", 1);
        else
            ::unsetenv("CKPTDB_TEST_SEAL_SIDECAR");
        t::TempDir src, dst;
        {
            Cat c(src.path);
            save_dir(src.path, c, 3);
        }
        {
            ckptdbxx::catalog c(src.path);
            c.save_bytes("epoch", 4, 40, t::pattern(5000, 4));
        }
        Items items;
        int64_t copied = 0;
        REQUIRE(sync(src, dst, items, &copied) == CKPTDB_OK);
        CHECK(copied == 2);
        CHECK(items.of("epoch_003").rfind("copied epoch_003: ", 0) == 0);
        CHECK(items.of("epoch_004.pt").rfind("copied ", 0) == 0);
        // The destination's row: a directory, with the source's files rows.
        CHECK(t::query1(t::catalog_path(dst),
                        "SELECT layout || ':' || status || ':' || size FROM checkpoints WHERE "
                        "name = 'epoch_003'") == "dir:complete:50100");
        CHECK(file_rows(dst, "epoch_003") == file_rows(src, "epoch_003"));
        CHECK(file_rows(dst, "epoch_003").size() == 3);
        // Only the files, with the source's bytes; no temp directory, no seal left.
        CHECK(t::names(dst / "epoch_003") == std::set<std::string>{"__0_0.distcp", ".metadata", "__1_0.distcp"});
        for (const char *n : {"__0_0.distcp", ".metadata", "__1_0.distcp"})
            CHECK(t::read_file(dst / "epoch_003/" + n) == t::read_file(src / "epoch_003/" + n));
        CHECK(t::temp_files(dst.path).empty());
        {
            Cat m(dst.path);
            ckptdb_entry e = CKPTDB_ENTRY_INIT;
            REQUIRE(ckptdb_get_by_name(&e, m.db, "epoch_003") == CKPTDB_OK);
            CHECK(e.layout == CKPTDB_LAYOUT_DIR);
            CHECK(e.file_count == 3);
            CHECK(ckptdb_verify(m.db, e.id) == CKPTDB_OK);
            int64_t checked = 0, bad = 0;
            CHECK(ckptdb_verify_all(&checked, &bad, m.db, nullptr, nullptr) == CKPTDB_OK);
            CHECK(checked == 2);
            CHECK(bad == 0);
        }
        // Kept in the source's commit order, attributed to the source's run.
        CHECK(t::query(t::catalog_path(dst), "SELECT name FROM checkpoints ORDER BY commit_seq") ==
              std::vector<std::string>{"epoch_003", "epoch_004.pt"});
        CHECK(t::query1(t::catalog_path(dst), "SELECT created_at FROM checkpoints WHERE name = 'epoch_003'") ==
              t::query1(t::catalog_path(src), "SELECT created_at FROM checkpoints WHERE name = 'epoch_003'"));
        // Again: present, nothing copied, no checkpoint or file row changed.
        auto rows = [&] {
            std::vector<std::string> r = t::query(t::catalog_path(dst), "SELECT * FROM checkpoints ORDER BY id");
            for (const std::string &f :
                 t::query(t::catalog_path(dst), "SELECT * FROM files ORDER BY checkpoint_id, name"))
                r.push_back(f);
            return r;
        };
        std::vector<std::string> before = rows();
        std::set<std::string> names = t::names(dst.path);
        Items again;
        REQUIRE(sync(src, dst, again, &copied) == CKPTDB_OK);
        CHECK(copied == 0);
        CHECK(again.of("epoch_003") == "present epoch_003: already in the destination");
        CHECK(rows() == before);
        CHECK(t::names(dst.path) == names);
    }
    ::unsetenv("CKPTDB_TEST_SEAL_SIDECAR");
}

TEST_CASE("a source file that fails its checksum fails its directory alone; no temp directory stays") {
    t::TempDir src, dst;
    {
        Cat c(src.path);
        for (int64_t e = 1; e <= 3; e++) save_dir(src.path, c, e);
    }
    // The last file copied (rank 1): the two before it are in the temp directory when it fails.
    flip_byte(src / "epoch_002/__1_0.distcp", 1000);
    Items items;
    int64_t copied = 0;
    CHECK(sync(src, dst, items, &copied) == CKPTDB_ECORRUPT);
    CHECK(copied == 2);
    INFO(items.lines.size());
    CHECK(items.of("epoch_002").rfind("failed epoch_002: ", 0) == 0);
    CHECK(items.of("epoch_002").find("__1_0.distcp") != std::string::npos);
    CHECK(items.of("epoch_002").find("does not match its checksum") != std::string::npos);
    CHECK(items.of("epoch_001").rfind("copied ", 0) == 0);
    CHECK(items.of("epoch_003").rfind("copied ", 0) == 0);
    CHECK(t::temp_files(dst.path).empty());
    CHECK_FALSE(t::exists(dst / "epoch_002"));
    // No row but an aborted one names it.
    CHECK(t::query1(t::catalog_path(dst),
                    "SELECT count(*) FROM checkpoints WHERE name = 'epoch_002' AND status != 'aborted'") == "0");
    Cat m(dst.path);
    int64_t checked = 0, bad = 0;
    CHECK(ckptdb_verify_all(&checked, &bad, m.db, nullptr, nullptr) == CKPTDB_OK);
    CHECK(checked == 2);
    CHECK(bad == 0);
}

TEST_CASE("a directory of that name the destination's catalog does not own is left alone") {
    t::TempDir src, dst;
    {
        Cat c(src.path);
        save_dir(src.path, c, 1);
        save_dir(src.path, c, 2);
    }
    REQUIRE(::mkdir((dst / "epoch_001").c_str(), 0755) == 0);
    t::write_file(dst / "epoch_001/mine", "the user's own");
    Items items;
    int64_t copied = 0;
    CHECK(sync(src, dst, items, &copied) == CKPTDB_OK);
    CHECK(copied == 1);
    CHECK(items.of("epoch_001").rfind("failed epoch_001: ", 0) == 0);
    CHECK(items.of("epoch_001").find("does not own") != std::string::npos);
    CHECK(items.of("epoch_001").find("left alone") != std::string::npos);
    CHECK(items.of("epoch_002").rfind("copied ", 0) == 0);
    CHECK(t::names(dst / "epoch_001") == std::set<std::string>{"mine"});
    CHECK(t::read_file(dst / "epoch_001/mine") == "the user's own");
    CHECK(t::query1(t::catalog_path(dst), "SELECT count(*) FROM checkpoints WHERE name = 'epoch_001'") == "0");
    CHECK(t::temp_files(dst.path).empty());
}

TEST_CASE("a directory save in flight: in the destination the sync refuses; in the source it is not copied") {
    t::TempDir src, dst;
    Cat c(src.path);
    save_dir(src.path, c, 1);
    // In flight in the source (this process is alive): not copied, no temp directory made for it.
    ckptdb_dir_save *s = nullptr;
    REQUIRE(ckptdb_dir_begin(&s, c.db, "epoch", 2, 20, nullptr) == CKPTDB_OK);
    Items items;
    int64_t copied = 0;
    REQUIRE(sync(src, dst, items, &copied) == CKPTDB_OK);
    CHECK(copied == 1);
    CHECK(items.lines.size() == 1);
    CHECK_FALSE(t::exists(dst / "epoch_002"));
    CHECK(t::temp_files(dst.path).empty());
    ckptdb_dir_free(s);  // aborted

    // In flight in the destination, before any of its files has a row.
    Cat d(dst.path);
    ckptdb_dir_save *busy = nullptr;
    REQUIRE(ckptdb_dir_begin(&busy, d.db, "epoch", 7, 70, nullptr) == CKPTDB_OK);
    save_dir(src.path, c, 3);
    std::string before = t::snapshot(dst);
    Items refused;
    CHECK(sync(src, dst, refused, &copied) == CKPTDB_EBUSY);
    CHECK(std::string(ckptdb_last_error()).find("in flight") != std::string::npos);
    CHECK(t::snapshot(dst) == before);
    ckptdb_dir_free(busy);
    CHECK(sync(src, dst, refused, &copied) == CKPTDB_OK);
    CHECK(copied == 1);
}

TEST_CASE("a sync killed inside a directory's copy: the next open leaves no temp directory and no torn row") {
    for (const char *point : {"dir_created", "sync_dir_file_copied", "sealed", "renamed", "dir_synced"}) {
        CAPTURE(point);
        t::TempDir src, dst;
        {
            Cat c(src.path);
            for (int64_t e = 1; e <= 2; e++) save_dir(src.path, c, e);
        }
        t::Child child({"sync", src.path, dst.path, "--pause-at", point});
        REQUIRE(child.line() == std::string("PAUSED ") + point);
        child.kill9();
        // Killed before the rename: the copy's temp directory is there.
        if (std::string(point) != "renamed" && std::string(point) != "dir_synced")
            CHECK(t::temp_files(dst.path).size() == 1);
        {
            Cat m(dst.path);  // recovery
            CHECK(t::temp_files(dst.path).empty());
            CHECK(t::query1(t::catalog_path(dst), "SELECT count(*) FROM checkpoints WHERE status = 'writing'") == "0");
            // Every complete row is a whole directory.
            int64_t checked = 0, bad = 0;
            CHECK(ckptdb_verify_all(&checked, &bad, m.db, nullptr, nullptr) == CKPTDB_OK);
            CHECK(bad == 0);
            for (const std::string &n :
                 t::query(t::catalog_path(dst), "SELECT name FROM checkpoints WHERE status = 'complete'"))
                CHECK(file_rows(dst, n) == file_rows(src, n));
            // Aborted: nothing of it stays.
            for (const std::string &n :
                 t::query(t::catalog_path(dst), "SELECT name FROM checkpoints WHERE status = 'aborted'"))
                CHECK_FALSE(t::exists(dst / n));
        }
        // The next sync finishes.
        Items items;
        REQUIRE(sync(src, dst, items) == CKPTDB_OK);
        Cat m(dst.path);
        int64_t checked = 0, bad = 0;
        CHECK(ckptdb_verify_all(&checked, &bad, m.db, nullptr, nullptr) == CKPTDB_OK);
        CHECK(checked == 2);
        CHECK(bad == 0);
        for (int64_t e = 1; e <= 2; e++) {
            CHECK(is_dir(dst / stem(e)));
            CHECK(file_rows(dst, stem(e)) == file_rows(src, stem(e)));
        }
        CHECK(t::temp_files(dst.path).empty());
    }
}

TEST_CASE("with delete, a directory the source pruned by a rule goes from the destination, files and directory") {
    t::TempDir src, dst;
    Cat c(src.path);
    for (int64_t e = 1; e <= 3; e++) save_dir(src.path, c, e);
    Items first;
    REQUIRE(sync(src, dst, first) == CKPTDB_OK);
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", 1)};
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = keep;
    r.keep_last_count = 1;
    REQUIRE(ckptdb_prune(nullptr, nullptr, c.db, &r, 0, nullptr, nullptr) == CKPTDB_OK);
    REQUIRE_FALSE(t::exists(src / "epoch_001"));
    Items items;
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    o.delete_pruned = 1;
    o.on_item = Items::cb;
    o.item_payload = &items;
    REQUIRE(ckptdb_sync(nullptr, nullptr, src.path.c_str(), dst.path.c_str(), &o) == CKPTDB_OK);
    CHECK(items.of("epoch_001").rfind("deleted epoch_001: ", 0) == 0);
    CHECK(items.of("epoch_002").rfind("deleted epoch_002: ", 0) == 0);
    CHECK(items.of("epoch_003") == "present epoch_003: already in the destination");
    CHECK_FALSE(t::exists(dst / "epoch_001"));
    CHECK_FALSE(t::exists(dst / "epoch_002"));
    CHECK(is_dir(dst / "epoch_003"));
    CHECK(t::query(t::catalog_path(dst), "SELECT status FROM checkpoints ORDER BY id") ==
          std::vector<std::string>{"pruned", "pruned", "complete"});
}

TEST_CASE("a link in a source directory is never followed: that checkpoint fails, the others are copied") {
    t::TempDir src, dst, outside;
    {
        Cat c(src.path);
        for (int64_t e = 1; e <= 2; e++) save_dir(src.path, c, e);
    }
    // The same bytes outside, behind a link under the recorded name.
    t::write_file(outside / "x", t::read_file(src / "epoch_001/.metadata"));
    REQUIRE(::unlink((src / "epoch_001/.metadata").c_str()) == 0);
    REQUIRE(::symlink((outside / "x").c_str(), (src / "epoch_001/.metadata").c_str()) == 0);
    Items items;
    CHECK(sync(src, dst, items) != CKPTDB_OK);
    CHECK(std::string(ckptdb_last_error()).find("the other checkpoints were copied") != std::string::npos);
    CHECK(items.of("epoch_001").rfind("failed epoch_001: ", 0) == 0);
    CHECK(items.of("epoch_001").find(".metadata") != std::string::npos);
    CHECK(items.of("epoch_002").rfind("copied ", 0) == 0);
    CHECK_FALSE(t::exists(dst / "epoch_001"));
    CHECK(t::temp_files(dst.path).empty());
}

// The verification rule (Catalog::verify_entry) through every path that
// verifies: ckptdb_verify, ckptdb_verify_progress, ckptdb_verify_all,
// ckptdb_latest and a prune of corrupt checkpoints. A read error (EIO from
// open or read, injected through the engine's I/O table) is reported and
// marks nothing; a flipped byte marks the checkpoint corrupt; a corrupt one
// whose bytes come back is complete again. Recovery's file check follows the
// same rule: a read error decides nothing. The C ABI is compiled into this
// binary over the static engine, so that the injected faults reach it.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "ckptdb.h"
#include "common.hpp"
#include "faultio.hpp"
#include "support.hpp"

namespace {

struct Dir {
    common::Scratch root;
    ckptdb_catalog *db = nullptr;
    Dir() {
        faultio::install();
        REQUIRE(ckptdb_open(&db, (root.path + "/ck").c_str(), nullptr) == CKPTDB_OK);
    }
    ~Dir() { ckptdb_close(db); }
    Dir(const Dir &) = delete;
    Dir &operator=(const Dir &) = delete;

    // A checkpoint of kind epoch with 6000 bytes; returns its id.
    int64_t save(int epoch) {
        ckptdb_save *s = nullptr;
        REQUIRE(ckptdb_save_begin(&s, db, "epoch", epoch, epoch * 100, nullptr) == CKPTDB_OK);
        std::string bytes(6000, static_cast<char>('a' + epoch));
        REQUIRE(ckptdb_save_write(s, bytes.data(), bytes.size()) == CKPTDB_OK);
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_save_commit(&e, s) == CKPTDB_OK);
        int64_t id = e.id;
        ckptdb_save_free(s);
        return id;
    }
    int status(int64_t id) {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_get(&e, db, id) == CKPTDB_OK);
        return e.status;
    }
    std::string path(int64_t id) {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_get(&e, db, id) == CKPTDB_OK);
        return e.path;
    }
    // Replaces the byte at offset 100 of the checkpoint's file with c.
    void poke(int64_t id, char c) {
        int fd = ::open(path(id).c_str(), O_WRONLY);
        REQUIRE(fd >= 0);
        REQUIRE(::pwrite(fd, &c, 1, 100) == 1);
        ::close(fd);
    }
    void flip(int64_t id) { poke(id, 'X'); }
    void put_back(int64_t id, int epoch) { poke(id, static_cast<char>('a' + epoch)); }
};

// Fails the first ("once") or every ("always") operation of kind op
// ("open" or "pread") from the next call on.
void arm(const char *op, bool always) {
    faultio::Fault f;
    f.mode = always ? faultio::Mode::errno_always : faultio::Mode::errno_once;
    f.k = 1;
    f.err = EIO;
    f.only = op;
    faultio::arm(f);
}

int no_progress(int64_t, int64_t, void *) { return 0; }

struct Seen {
    std::vector<int64_t> ids;
    std::vector<int> results, statuses;
};

int collect(const ckptdb_entry *e, int result, void *payload) {
    auto *s = static_cast<Seen *>(payload);
    s->ids.push_back(e->id);
    s->results.push_back(result);
    s->statuses.push_back(e->status);
    return 0;
}

// ckptdb_verify or ckptdb_verify_progress of one checkpoint.
int verify_one(Dir &d, int64_t id, bool progress) {
    return progress ? ckptdb_verify_progress(d.db, id, no_progress, nullptr) : ckptdb_verify(d.db, id);
}

}  // namespace

TEST_CASE("a read error while verifying one checkpoint reports CKPTDB_EIO and marks nothing") {
    for (bool progress : {false, true}) {
        for (const char *op : {"open", "pread"}) {
            CAPTURE(progress);
            CAPTURE(op);
            Dir d;
            int64_t id = d.save(1);
            arm(op, false);
            int rc = verify_one(d, id, progress);
            faultio::disarm();
            CHECK(rc == CKPTDB_EIO);
            CHECK(std::string(ckptdb_last_error()).find("could not be read") != std::string::npos);
            CHECK(d.status(id) == CKPTDB_STATUS_COMPLETE);
            // Without the fault the same call passes.
            CHECK(verify_one(d, id, progress) == CKPTDB_OK);
            CHECK(d.status(id) == CKPTDB_STATUS_COMPLETE);
        }
    }
}

TEST_CASE("a read error in ckptdb_verify_all is reported for that checkpoint and marks nothing") {
    for (const char *op : {"open", "pread"}) {
        CAPTURE(op);
        Dir d;
        int64_t a = d.save(1), b = d.save(2);
        Seen seen;
        int64_t checked = -1, corrupt = -1;
        arm(op, false);  // the first checkpoint (oldest id first) cannot be read
        int rc = ckptdb_verify_all(&checked, &corrupt, d.db, collect, &seen);
        faultio::disarm();
        CHECK(rc == CKPTDB_OK);  // nothing failed verification
        CHECK(checked == 2);
        CHECK(corrupt == 0);
        REQUIRE(seen.ids == std::vector<int64_t>{a, b});
        CHECK(seen.results == std::vector<int>{CKPTDB_EIO, CKPTDB_OK});
        CHECK(seen.statuses == std::vector<int>{CKPTDB_STATUS_COMPLETE, CKPTDB_STATUS_COMPLETE});
        CHECK(d.status(a) == CKPTDB_STATUS_COMPLETE);
        Seen again;
        CHECK(ckptdb_verify_all(&checked, &corrupt, d.db, collect, &again) == CKPTDB_OK);
        CHECK(again.results == std::vector<int>{CKPTDB_OK, CKPTDB_OK});
    }
}

TEST_CASE("a read error in ckptdb_latest skips the checkpoint for that call and marks nothing") {
    for (const char *op : {"open", "pread"}) {
        CAPTURE(op);
        Dir d;
        int64_t a = d.save(1), b = d.save(2);
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        arm(op, false);  // the newest cannot be read: the one before it is returned
        int rc = ckptdb_latest(&e, d.db, nullptr, CKPTDB_VERIFY_FULL);
        faultio::disarm();
        CHECK(rc == CKPTDB_OK);
        CHECK(e.id == a);
        CHECK(d.status(b) == CKPTDB_STATUS_COMPLETE);
        arm(op, true);  // nothing can be read: an I/O error, not "nothing found"
        rc = ckptdb_latest(&e, d.db, nullptr, CKPTDB_VERIFY_FULL);
        faultio::disarm();
        CHECK(rc == CKPTDB_EIO);
        CHECK(d.status(a) == CKPTDB_STATUS_COMPLETE);
        CHECK(d.status(b) == CKPTDB_STATUS_COMPLETE);
        REQUIRE(ckptdb_latest(&e, d.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
        CHECK(e.id == b);
    }
}

TEST_CASE("a flipped byte marks the checkpoint corrupt in every path that verifies") {
    SUBCASE("ckptdb_verify and ckptdb_verify_progress") {
        for (bool progress : {false, true}) {
            CAPTURE(progress);
            Dir d;
            int64_t id = d.save(1);
            d.flip(id);
            CHECK(verify_one(d, id, progress) == CKPTDB_ECORRUPT);
            CHECK(std::string(ckptdb_last_error()).find("XXH3-128") != std::string::npos);
            CHECK(d.status(id) == CKPTDB_STATUS_CORRUPT);
        }
    }
    SUBCASE("ckptdb_verify_all") {
        Dir d;
        int64_t a = d.save(1), b = d.save(2);
        d.flip(b);
        Seen seen;
        int64_t checked = -1, corrupt = -1;
        CHECK(ckptdb_verify_all(&checked, &corrupt, d.db, collect, &seen) == CKPTDB_ECORRUPT);
        CHECK(checked == 2);
        CHECK(corrupt == 1);
        CHECK(seen.results == std::vector<int>{CKPTDB_OK, CKPTDB_ECORRUPT});
        CHECK(seen.statuses == std::vector<int>{CKPTDB_STATUS_COMPLETE, CKPTDB_STATUS_CORRUPT});
        CHECK(d.status(a) == CKPTDB_STATUS_COMPLETE);
        CHECK(d.status(b) == CKPTDB_STATUS_CORRUPT);
    }
    SUBCASE("ckptdb_latest") {
        Dir d;
        int64_t a = d.save(1), b = d.save(2);
        d.flip(b);
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        REQUIRE(ckptdb_latest(&e, d.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
        CHECK(e.id == a);
        CHECK(d.status(b) == CKPTDB_STATUS_CORRUPT);
    }
}

TEST_CASE("a corrupt checkpoint whose bytes come back is complete again") {
    for (bool progress : {false, true}) {
        CAPTURE(progress);
        Dir d;
        int64_t id = d.save(1);
        d.flip(id);
        REQUIRE(verify_one(d, id, progress) == CKPTDB_ECORRUPT);
        REQUIRE(d.status(id) == CKPTDB_STATUS_CORRUPT);
        // Still unreadable: stays corrupt, nothing decided.
        d.put_back(id, 1);
        arm("pread", false);
        CHECK(verify_one(d, id, progress) == CKPTDB_EIO);
        faultio::disarm();
        CHECK(d.status(id) == CKPTDB_STATUS_CORRUPT);
        CHECK(verify_one(d, id, progress) == CKPTDB_OK);
        CHECK(d.status(id) == CKPTDB_STATUS_COMPLETE);
    }
}

TEST_CASE("a prune of corrupt checkpoints deletes only a confirmed mismatch, never an unreadable one") {
    Dir d;
    int64_t a = d.save(1), b = d.save(2), c = d.save(3), newest = d.save(4);
    for (int64_t id : {a, b, c}) {
        d.flip(id);
        REQUIRE(ckptdb_verify(d.db, id) == CKPTDB_ECORRUPT);
    }
    d.put_back(b, 2);  // b's bytes came back: complete again, kept
    ckptdb_retention r;
    REQUIRE(ckptdb_retention_init(&r, CKPTDB_RETENTION_VERSION) == CKPTDB_OK);
    r.keep_last_default = 100;
    r.prune_corrupt = 1;
    // The first open of the prune's hashing (a's file) fails: a is kept.
    arm("open", false);
    int64_t count = -1, bytes = -1;
    int rc = ckptdb_prune(&count, &bytes, d.db, &r, 0, nullptr, nullptr);
    faultio::disarm();
    REQUIRE(rc == CKPTDB_OK);
    CHECK(count == 1);
    CHECK(d.status(a) == CKPTDB_STATUS_CORRUPT);
    CHECK(::access(d.path(a).c_str(), F_OK) == 0);
    CHECK(d.status(b) == CKPTDB_STATUS_COMPLETE);
    CHECK(d.status(c) == CKPTDB_STATUS_PRUNED);
    CHECK(d.status(newest) == CKPTDB_STATUS_COMPLETE);
}

namespace {

// openat through the faulting table, but EIO for any read-only open of a
// library temp file.
int temp_open_fails(int dirfd, const char *name, int flags, mode_t mode) {
    if (!(flags & O_CREAT) && std::strncmp(name, ".ckptdb-tmp-", 12) == 0) {
        errno = EIO;
        return -1;
    }
    return faultio::f_openat(dirfd, name, flags, mode);
}

}  // namespace

TEST_CASE("recovery decides nothing on a read error: the save stays writing and its sealed temp file is kept") {
    faultio::install();
    t::TempDir d;
    {
        // A writer killed after sealing its temp file, before the rename.
        t::Child c({"save", d.path, "65536", "--pause-at", "sealed", "--epoch", "1"});
        REQUIRE(c.line() == "PAUSED sealed");
        c.kill9();
    }
    std::set<std::string> temps = t::temp_files(d.path);
    REQUIRE(temps.size() == 1);
    const ckptdb::io::Ops faulting = ckptdb::io::g_ops;
    ckptdb::io::g_ops.openat = temp_open_fails;
    ckptdb_catalog *db = nullptr;
    int rc = ckptdb_open(&db, d.path.c_str(), nullptr);
    ckptdb::io::g_ops = faulting;
    CHECK(rc == CKPTDB_EIO);
    CHECK(db == nullptr);
    CHECK(t::temp_files(d.path) == temps);
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints") == "writing");
    // Readable again: the next open finishes the commit.
    REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints") == "complete");
    CHECK(t::temp_files(d.path).empty());
    ckptdb_close(db);
}

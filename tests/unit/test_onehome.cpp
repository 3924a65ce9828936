// Rules of issue 16 with one home, checked from both sides so that two
// callers can never drift apart: the catalog's own files (a save may take
// a name exactly when adopt would count a file of that name) and the
// per-file verdict (a reader and verify give the same reason).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "ckptdb.h"
#include "support.hpp"

namespace {

const std::string kData = t::pattern(4096);

int64_t save_named(ckptdb_catalog *db, const char *name, const std::string &bytes) {
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.name = name;
    ckptdb_save *s = nullptr;
    int rc = ckptdb_save_begin(&s, db, "manual", 0, 0, &o);
    if (rc != CKPTDB_OK) return -rc;
    REQUIRE(ckptdb_save_write(s, bytes.data(), bytes.size()) == CKPTDB_OK);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_save_commit(&e, s) == CKPTDB_OK);
    int64_t id = e.id;
    ckptdb_save_free(s);
    return id;
}

// Reads checkpoint id whole through a reader: CKPTDB_OK or the failing code,
// with the library's message in *msg.
int read_back(ckptdb_catalog *db, int64_t id, std::string *msg) {
    ckptdb_reader *r = nullptr;
    int rc = ckptdb_reader_open(&r, db, id);
    std::vector<char> buf(1 << 16);
    size_t got = 1;
    while (rc == CKPTDB_OK && got > 0) rc = ckptdb_reader_read(&got, r, buf.data(), buf.size());
    if (rc != CKPTDB_OK) *msg = ckptdb_last_error();
    ckptdb_reader_close(r);
    return rc;
}

}  // namespace

TEST_CASE("a save may take a name exactly when adopt would count a file of that name") {
    // Names beside the catalog ckptdb.sqlite: some are its own (a copy kept
    // aside, a catalog being built), some are only alike.
    const std::vector<std::string> candidates = {
        "ckptdb.sqlite.pt",
        "ckptdb.sqlite-x.pt",
        "ckptdb.sqlitex.pt",
        "ckptdb.sqlite.broken-20260101T000000Z.pt",
        "ckptdb.sqlite.new-0123456789abcdef0123456789abcdef.pt",
        "model.pt",
    };

    t::TempDir saved;
    std::set<std::string> accepted;
    ckptdb_catalog *db = nullptr;
    REQUIRE(ckptdb_open(&db, saved.path.c_str(), nullptr) == CKPTDB_OK);
    for (const std::string &n : candidates) {
        int64_t id = save_named(db, n.c_str(), "bytes");
        if (id > 0) {
            accepted.insert(n);
        } else {
            CHECK(-id == CKPTDB_EINVAL);
            CHECK(std::string(ckptdb_last_error()).find("'" + n + "' is the catalog's own file") != std::string::npos);
            CHECK_FALSE(t::exists(saved / n));  // refused: nothing written
        }
    }
    // The catalog and its companions are never a checkpoint's name.
    for (const char *n : {"ckptdb.sqlite", "ckptdb.sqlite-wal", "ckptdb.sqlite-shm", "ckptdb.sqlite-journal"}) {
        CHECK(save_named(db, n, "bytes") == -CKPTDB_EINVAL);
    }
    ckptdb_close(db);

    t::TempDir found;
    for (const std::string &n : candidates) t::write_file(found / n, "bytes");
    std::set<std::string> adopted;
    int64_t rows = 0;
    REQUIRE(ckptdb_adopt(
                &rows, found.path.c_str(), nullptr,
                [](const ckptdb_rebuild_item *it, void *p) {
                    if (std::string(it->kind) == "adopted") static_cast<std::set<std::string> *>(p)->insert(it->name);
                    return 0;
                },
                &adopted) == CKPTDB_OK);

    CHECK(accepted == adopted);
    CHECK(accepted == std::set<std::string>{"ckptdb.sqlite.pt", "ckptdb.sqlite-x.pt", "ckptdb.sqlitex.pt", "model.pt"});
    // What adopt did not count is still there, untouched.
    for (const std::string &n : candidates) CHECK(t::read_file(found / n) == "bytes");
}

TEST_CASE("a reader and verify judge a damaged file by one rule, with one reason") {
    struct Damage {
        const char *what;
        void (*apply)(const std::string &path);
    };
    const Damage damages[] = {
        {"a flipped byte",
         [](const std::string &p) {
             std::string b = t::read_file(p);
             b[100] ^= 0x01;
             t::write_file(p, b);
         }},
        {"a truncated file", [](const std::string &p) { REQUIRE(::truncate(p.c_str(), 1000) == 0); }},
        {"a longer file", [](const std::string &p) { t::write_file(p, kData + "more"); }},
    };
    for (const Damage &d : damages) {
        CAPTURE(d.what);
        t::TempDir dir;
        ckptdb_catalog *db = nullptr;
        REQUIRE(ckptdb_open(&db, dir.path.c_str(), nullptr) == CKPTDB_OK);
        int64_t id = save_named(db, "a.pt", kData);
        REQUIRE(id > 0);
        d.apply(dir / "a.pt");

        std::string read_msg;
        CHECK(read_back(db, id, &read_msg) == CKPTDB_ECORRUPT);
        CHECK(t::query1(t::catalog_path(dir), "SELECT status FROM checkpoints WHERE id = " + std::to_string(id)) ==
              "corrupt");

        REQUIRE(ckptdb_verify(db, id) == CKPTDB_ECORRUPT);
        const std::string verify_msg = ckptdb_last_error();
        const std::string marker = "is corrupt: ";
        size_t at = verify_msg.find(marker);
        REQUIRE(at != std::string::npos);
        const std::string reason = verify_msg.substr(at + marker.size());
        CHECK(reason.find("'" + (dir / "a.pt") + "' has ") == 0);
        CHECK(read_msg.find(reason) != std::string::npos);
        // The reason the reader recorded with the corrupt mark is the same.
        CHECK(t::query1(t::catalog_path(dir), "SELECT detail FROM events WHERE event = 'corrupt' AND checkpoint_id = " +
                                                  std::to_string(id)) == reason);
        ckptdb_close(db);
    }
}

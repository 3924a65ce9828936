// Schema and migrations: what a new catalog looks like, and which files are
// refused (and left byte-for-byte untouched).
#include <doctest/doctest.h>

#include "ckptdb.hpp"
#include "support.hpp"

static int open_code(const std::string &dir, unsigned flags = 0) {
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = flags;
    ckptdb_catalog *db = nullptr;
    int rc = ckptdb_open(&db, dir.c_str(), &o);
    if (rc != CKPTDB_OK) CHECK(db == nullptr);
    ckptdb_close(db);
    return rc;
}

static void exec_sqlite(const std::string &path, const std::string &sql) {
    sqlite3 *db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    char *err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    if (err) MESSAGE(err);
    sqlite3_free(err);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
}

TEST_CASE("a new catalog has the current schema version, WAL, and ckptdb's application id") {
    t::TempDir d;
    { ckptdbxx::catalog c(d.path); }
    auto cat = t::catalog_path(d);
    CHECK(t::query1(cat, "PRAGMA user_version") == std::to_string(ckptdb_schema_version()));
    CHECK(t::query1(cat, "PRAGMA application_id") == std::to_string(0x636b7064));
    CHECK(t::query1(cat, "PRAGMA journal_mode") == "wal");
    auto tables = t::query(cat, "SELECT name FROM sqlite_master WHERE type IN ('table','view') ORDER BY name");
    std::set<std::string> have(tables.begin(), tables.end());
    for (const char *n :
         {"checkpoints", "files", "runs", "events", "latest_complete", "history", "disk_usage", "run_history"})
        CHECK_MESSAGE(have.count(n) == 1, n);
}

TEST_CASE("latest() and rotation queries use the partial indexes, not a table scan") {
    t::TempDir d;
    { ckptdbxx::catalog c(d.path); }
    auto plan = t::query(t::catalog_path(d),
                         "EXPLAIN QUERY PLAN SELECT id FROM checkpoints WHERE status = 'complete' AND commit_seq < 5 "
                         "ORDER BY commit_seq DESC LIMIT 1");
    REQUIRE(!plan.empty());
    CHECK(plan[0].find("checkpoints_complete_seq") != std::string::npos);
    auto plan_kind = t::query(t::catalog_path(d),
                              "EXPLAIN QUERY PLAN SELECT id FROM checkpoints WHERE status = 'complete' AND kind = 'x' "
                              "AND commit_seq < 5 ORDER BY commit_seq DESC LIMIT 1");
    CHECK(plan_kind[0].find("checkpoints_complete_kind_seq") != std::string::npos);
}

TEST_CASE("a catalog from a newer schema version is refused and left untouched") {
    t::TempDir d;
    { ckptdbxx::catalog c(d.path); }
    auto cat = t::catalog_path(d);
    exec_sqlite(cat, "PRAGMA journal_mode=DELETE; PRAGMA user_version=99;");
    std::string before = t::read_file(cat);
    CHECK(open_code(d.path) == CKPTDB_EVERSION);
    CHECK(std::string(ckptdb_last_error()).find("newer") != std::string::npos);
    CHECK(t::read_file(cat) == before);
    CHECK_FALSE(t::exists(cat + "-wal"));
    CHECK(open_code(d.path, CKPTDB_OPEN_READONLY) == CKPTDB_EVERSION);
}

TEST_CASE("a file that is not an SQLite database is refused and left untouched") {
    t::TempDir d;
    std::string junk;
    for (int i = 0; i < 200; i++) junk += "this is not a database ";
    t::write_file(t::catalog_path(d), junk);
    CHECK(open_code(d.path) == CKPTDB_ENOTCATALOG);
    CHECK(std::string(ckptdb_last_error()).find(t::catalog_path(d)) != std::string::npos);
    CHECK(t::read_file(t::catalog_path(d)) == junk);
    CHECK(t::names(d.path) == std::set<std::string>{"ckptdb.sqlite"});
}

TEST_CASE("an SQLite database of another application is refused and left untouched") {
    t::TempDir d;
    exec_sqlite(t::catalog_path(d), "PRAGMA journal_mode=DELETE; CREATE TABLE mine(x); INSERT INTO mine VALUES (1);");
    std::string before = t::read_file(t::catalog_path(d));
    CHECK(open_code(d.path) == CKPTDB_ENOTCATALOG);
    CHECK(std::string(ckptdb_last_error()).find("not a ckptdb catalog") != std::string::npos);
    CHECK(t::read_file(t::catalog_path(d)) == before);
}

TEST_CASE("an empty catalog file is a lost catalog: refused, left untouched, never given a fresh schema") {
    t::TempDir d;
    t::write_file(t::catalog_path(d), "");
    CHECK(open_code(d.path) == CKPTDB_ENOTCATALOG);
    CHECK(std::string(ckptdb_last_error()).find("fsck --repair") != std::string::npos);
    CHECK(t::read_file(t::catalog_path(d)).empty());
    ckptdb_open_options ro = CKPTDB_OPEN_OPTIONS_INIT;
    ro.flags = CKPTDB_OPEN_READONLY | CKPTDB_OPEN_NO_CREATE;
    ckptdb_catalog *db = nullptr;
    CHECK(ckptdb_open(&db, d.path.c_str(), &ro) == CKPTDB_ENOTCATALOG);
    CHECK(std::string(ckptdb_last_error()).find("read-write") == std::string::npos);
    CHECK(t::read_file(t::catalog_path(d)).empty());
}

TEST_CASE("a catalog behind a symbolic link is refused, not followed") {
    t::TempDir d, other;
    { ckptdbxx::catalog c(other.path); }
    REQUIRE(::symlink(t::catalog_path(other).c_str(), t::catalog_path(d).c_str()) == 0);
    CHECK(open_code(d.path) == CKPTDB_ENOTCATALOG);
    CHECK(std::string(ckptdb_last_error()).find("symbolic link") != std::string::npos);
}

TEST_CASE("the views answer at the sqlite3 prompt") {
    t::TempDir d;
    {
        ckptdbxx::catalog c(d.path);
        c.save_bytes("epoch", 1, 10, "one");
        c.save_bytes("time", 1, 15, "two");
        c.save_bytes("epoch", 2, 20, "three", std::nullopt, std::string("{\"loss\": 0.5}"));
    }
    auto cat = t::catalog_path(d);
    CHECK(t::query1(cat, "SELECT name, epoch, step FROM latest_complete") == "epoch_002.pt|2|20");
    CHECK(t::query1(cat, "SELECT json_extract(metadata, '$.loss') FROM latest_complete") == "0.5");
    CHECK(t::query(cat, "SELECT kind, checkpoints, bytes FROM disk_usage ORDER BY kind") ==
          std::vector<std::string>{"epoch|2|8", "time|1|3"});
    CHECK(t::query1(cat, "SELECT count(*) FROM history") == "3");
    CHECK(t::query1(cat, "SELECT saves FROM run_history") == "3");
}

// Every bad input gets a clear error (a code and a message that names the
// thing) and changes nothing on disk: no file, no catalog row.
#include <doctest/doctest.h>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

struct Fixture {
    t::TempDir d;
    ckptdb_catalog *db = nullptr;
    Fixture() {
        REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
        ckptdb_save *s = nullptr;  // one good checkpoint, so there is something to disturb
        REQUIRE(ckptdb_save_begin(&s, db, "epoch", 1, 1, nullptr) == CKPTDB_OK);
        REQUIRE(ckptdb_save_write(s, "ok", 2) == CKPTDB_OK);
        REQUIRE(ckptdb_save_commit(nullptr, s) == CKPTDB_OK);
        ckptdb_save_free(s);
    }
    ~Fixture() { ckptdb_close(db); }

    // begin with the given input must fail with code, mention `mention`, and
    // leave the directory and the catalog exactly as they were.
    void refused(const char *kind, int64_t epoch, int64_t step, const char *name, const char *meta, int code,
                 const std::string &mention) {
        std::string before = t::snapshot(d);
        ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
        o.name = name;
        o.metadata = meta;
        ckptdb_save *s = reinterpret_cast<ckptdb_save *>(0x1);
        int rc = ckptdb_save_begin(&s, db, kind, epoch, step, &o);
        CHECK(rc == code);
        CHECK(s == nullptr);
        std::string msg = ckptdb_last_error();
        CHECK_MESSAGE(msg.find(mention) != std::string::npos, msg);
        CHECK(ckptdb_last_error_code() == code);
        CHECK(t::snapshot(d) == before);
    }
};

}  // namespace

TEST_CASE("bad checkpoint names are refused and change nothing") {
    Fixture f;
    f.refused("epoch", 2, 2, "a/b.pt", nullptr, CKPTDB_EINVAL, "contains '/'");
    f.refused("epoch", 2, 2, "../escape.pt", nullptr, CKPTDB_EINVAL, "contains '/'");
    f.refused("epoch", 2, 2, "/abs.pt", nullptr, CKPTDB_EINVAL, "contains '/'");
    f.refused("epoch", 2, 2, "..", nullptr, CKPTDB_EINVAL, "'.' or '..'");
    f.refused("epoch", 2, 2, ".", nullptr, CKPTDB_EINVAL, "'.' or '..'");
    f.refused("epoch", 2, 2, "", nullptr, CKPTDB_EINVAL, "is empty");
    f.refused("epoch", 2, 2, "tab\there.pt", nullptr, CKPTDB_EINVAL, "control character");
    f.refused("epoch", 2, 2, "new\nline.pt", nullptr, CKPTDB_EINVAL, "control character");
    f.refused("epoch", 2, 2, std::string(256, 'n').c_str(), nullptr, CKPTDB_EINVAL, "longer than 255");
    f.refused("epoch", 2, 2, ".ckptdb-tmp-0123", nullptr, CKPTDB_EINVAL, "reserved");
    f.refused("epoch", 2, 2, "ckptdb.sqlite", nullptr, CKPTDB_EINVAL, "catalog's own file");
    f.refused("epoch", 2, 2, "ckptdb.sqlite-wal", nullptr, CKPTDB_EINVAL, "catalog's own file");
    // 255 bytes is still a valid name.
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    std::string longest(255, 'n');
    o.name = longest.c_str();
    ckptdb_save *s = nullptr;
    CHECK(ckptdb_save_begin(&s, f.db, "epoch", 2, 2, &o) == CKPTDB_OK);
    ckptdb_save_free(s);
}

TEST_CASE("bad kinds, negative epochs and steps are refused and change nothing") {
    Fixture f;
    f.refused("", 2, 2, nullptr, nullptr, CKPTDB_EINVAL, "kind");
    f.refused("has space", 2, 2, nullptr, nullptr, CKPTDB_EINVAL, "kind 'has space'");
    f.refused("a/b", 2, 2, nullptr, nullptr, CKPTDB_EINVAL, "kind");
    f.refused(std::string(65, 'k').c_str(), 2, 2, nullptr, nullptr, CKPTDB_EINVAL, "longer than 64");
    f.refused("epoch", -1, 2, nullptr, nullptr, CKPTDB_EINVAL, "epoch must be >= 0, got -1");
    f.refused("epoch", 2, -5, nullptr, nullptr, CKPTDB_EINVAL, "step must be >= 0, got -5");
}

TEST_CASE("metadata that is not a JSON object is refused and changes nothing") {
    Fixture f;
    f.refused("epoch", 2, 2, nullptr, "not json", CKPTDB_EINVAL, "not valid JSON");
    f.refused("epoch", 2, 2, nullptr, "{\"a\": }", CKPTDB_EINVAL, "not valid JSON");
    f.refused("epoch", 2, 2, nullptr, "", CKPTDB_EINVAL, "not valid JSON");
    f.refused("epoch", 2, 2, nullptr, "[1, 2]", CKPTDB_EINVAL, "must be a JSON object, got array");
    f.refused("epoch", 2, 2, nullptr, "3.5", CKPTDB_EINVAL, "must be a JSON object");
}

TEST_CASE("NULL handles and out-parameters are a misuse code, never a crash") {
    Fixture f;
    std::string before = t::snapshot(f.d);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    ckptdb_save *s = nullptr;
    CHECK(ckptdb_open(nullptr, f.d.path.c_str(), nullptr) == CKPTDB_EMISUSE);
    ckptdb_catalog *db2 = nullptr;
    CHECK(ckptdb_open(&db2, nullptr, nullptr) == CKPTDB_EMISUSE);
    CHECK(std::string(ckptdb_last_error()) == "dir is NULL");
    CHECK(ckptdb_save_begin(nullptr, f.db, "epoch", 1, 1, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_begin(&s, nullptr, "epoch", 1, 1, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_begin(&s, f.db, nullptr, 1, 1, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_write(nullptr, "x", 1) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_commit(&e, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_abort(nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_temp_path(nullptr, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_fd(nullptr, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_latest(&e, nullptr, nullptr, 0) == CKPTDB_EMISUSE);
    CHECK(ckptdb_get(nullptr, f.db, 1) == CKPTDB_EMISUSE);
    CHECK(ckptdb_get(&e, nullptr, 1) == CKPTDB_EMISUSE);
    CHECK(ckptdb_get_by_name(&e, f.db, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_list(nullptr, nullptr, nullptr, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_list(f.db, nullptr, nullptr, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_cursor_open(nullptr, f.db, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_cursor_next(&e, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_verify(nullptr, 1) == CKPTDB_EMISUSE);
    CHECK(ckptdb_verify_all(nullptr, nullptr, nullptr, nullptr, nullptr) == CKPTDB_EMISUSE);
    CHECK(ckptdb_reader_open(nullptr, f.db, 1) == CKPTDB_EMISUSE);
    CHECK(ckptdb_reader_read(nullptr, nullptr, nullptr, 0) == CKPTDB_EMISUSE);
    CHECK(ckptdb_mark_resumed(nullptr, 1) == CKPTDB_EMISUSE);
    CHECK(ckptdb_open_options_init(nullptr, CKPTDB_OPEN_OPTIONS_VERSION) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_options_init(nullptr, CKPTDB_SAVE_OPTIONS_VERSION) == CKPTDB_EMISUSE);
    // Releasing NULL is always fine.
    CHECK(ckptdb_close(nullptr) == CKPTDB_OK);
    ckptdb_save_free(nullptr);
    ckptdb_reader_close(nullptr);
    ckptdb_cursor_free(nullptr);
    CHECK(std::string(ckptdb_dir(nullptr)).empty());
    // An entry whose struct_size was never set.
    ckptdb_entry zero{};
    CHECK(ckptdb_get(&zero, f.db, 1) == CKPTDB_EMISUSE);
    CHECK(std::string(ckptdb_last_error()).find("struct_size") != std::string::npos);
    CHECK(t::snapshot(f.d) == before);
}

TEST_CASE("unknown option versions and flags are refused") {
    Fixture f;
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.version = 99;
    ckptdb_catalog *db = nullptr;
    CHECK(ckptdb_open(&db, f.d.path.c_str(), &o) == CKPTDB_EINVAL);
    CHECK(std::string(ckptdb_last_error()).find("unknown version 99") != std::string::npos);
    o.version = CKPTDB_OPEN_OPTIONS_VERSION;
    o.flags = 0x100;
    CHECK(ckptdb_open(&db, f.d.path.c_str(), &o) == CKPTDB_EINVAL);
    CHECK(ckptdb_open_options_init(&o, 42) == CKPTDB_EINVAL);
    CHECK(ckptdb_open_options_init(&o, CKPTDB_OPEN_OPTIONS_VERSION) == CKPTDB_OK);
    CHECK(o.flags == 0);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    CHECK(ckptdb_latest(&e, f.db, nullptr, 0x80) == CKPTDB_EINVAL);
    ckptdb_filter flt = CKPTDB_FILTER_INIT;
    flt.status_mask = 1u << 20;
    ckptdb_cursor *c = nullptr;
    CHECK(ckptdb_cursor_open(&c, f.db, &flt) == CKPTDB_EINVAL);
    // A kind no save can have is refused, not an empty listing (an empty
    // string once made `ckptdb ls` print no rows at all).
    flt.status_mask = 0;
    for (const char *bad : {"", "a/b", "two words"}) {
        CAPTURE(bad);
        flt.kind = bad;
        CHECK(ckptdb_cursor_open(&c, f.db, &flt) == CKPTDB_EINVAL);
        CHECK(c == nullptr);
        CHECK(ckptdb_list(
                  f.db, &flt, [](const ckptdb_entry *, void *) { return 0; }, nullptr) == CKPTDB_EINVAL);
        CHECK(std::string(ckptdb_last_error()).find("ckptdb_filter.kind") != std::string::npos);
    }
    flt.kind = "epoch";
    CHECK(ckptdb_list(
              f.db, &flt, [](const ckptdb_entry *, void *) { return 0; }, nullptr) == CKPTDB_OK);
    flt.kind = nullptr;
    ckptdb_save_options so = CKPTDB_SAVE_OPTIONS_INIT;
    so.version = 0;
    ckptdb_save *s = nullptr;
    CHECK(ckptdb_save_begin(&s, f.db, "epoch", 1, 1, &so) == CKPTDB_EINVAL);
}

TEST_CASE("a missing directory with create off is refused, named, and not created") {
    t::TempDir d;
    std::string missing = d / "nope";
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = CKPTDB_OPEN_NO_CREATE;
    ckptdb_catalog *db = nullptr;
    CHECK(ckptdb_open(&db, missing.c_str(), &o) == CKPTDB_ENOTFOUND);
    CHECK(db == nullptr);
    CHECK(std::string(ckptdb_last_error()).find(missing) != std::string::npos);
    CHECK_FALSE(t::exists(missing));
    // An existing directory without a catalog, create off: the catalog is not made.
    CHECK(ckptdb_open(&db, d.path.c_str(), &o) == CKPTDB_ENOTFOUND);
    CHECK(t::names(d.path).empty());
    // A path that is a file, not a directory.
    t::write_file(d / "file", "x");
    CHECK(ckptdb_open(&db, (d / "file").c_str(), nullptr) == CKPTDB_ENOTFOUND);
    CHECK(std::string(ckptdb_last_error()).find("Not a directory") != std::string::npos);
}

TEST_CASE("a directory that is not writable is refused with its path and the errno text") {
    t::TempDir d;
    REQUIRE(::chmod(d.path.c_str(), 0755) == 0);
    std::string ro = d / "ro";
    REQUIRE(::mkdir(ro.c_str(), 0555) == 0);
    // Run as an unprivileged user in a child (root may write anywhere).
    int code = 0;
    std::string line =
        ::geteuid() == 0 ? t::run_helper({"open", ro, "--drop-privs"}, &code) : t::run_helper({"open", ro}, &code);
    CHECK(code == CKPTDB_EPERM);
    CHECK(line.find(ro) != std::string::npos);
    CHECK(line.find("Permission denied") != std::string::npos);
    CHECK(t::names(ro).empty());
}

TEST_CASE("status codes have names and a static description") {
    for (int c : {CKPTDB_OK, CKPTDB_ERROR, CKPTDB_EMISUSE, CKPTDB_EINVAL, CKPTDB_ENOTFOUND, CKPTDB_EEXISTS, CKPTDB_EIO,
                  CKPTDB_ENOSPC, CKPTDB_ECORRUPT, CKPTDB_EBUSY, CKPTDB_EVERSION, CKPTDB_ENOTCATALOG, CKPTDB_EPERM,
                  CKPTDB_EREADONLY, CKPTDB_ENOMEM, CKPTDB_EDB, CKPTDB_DONE})
        CHECK(std::string(ckptdb_strerror(c)) != "unknown status code");
    CHECK(std::string(ckptdb_strerror(-7)) == "unknown status code");
    CHECK(std::string(ckptdb_status_name(CKPTDB_STATUS_PRUNED)) == "pruned");
    CHECK(std::string(ckptdb_status_name(77)) == "unknown");
    CHECK(std::string(ckptdb_version()) == CKPTDB_VERSION_STRING);
    CHECK(ckptdb_version_number() == CKPTDB_VERSION_NUMBER);
}

TEST_CASE("metadata beyond its size or nesting limit is refused by name, never a crash or a wrong code") {
    Fixture f;
    for (size_t depth : {65u, 20000u, 100000u}) {
        std::string deep = "{\"a\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
        f.refused("epoch", 2, 2, nullptr, deep.c_str(), CKPTDB_EINVAL, "nests deeper than the limit of 64");
    }
    std::string ok64 = "{\"a\":" + std::string(63, '[') + std::string(63, ']') + "}";
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.metadata = ok64.c_str();
    ckptdb_save *s = nullptr;
    CHECK(ckptdb_save_begin(&s, f.db, "epoch", 2, 2, &o) == CKPTDB_OK);  // 64 levels: within the limit
    ckptdb_save_free(s);
    std::string brackets_in_strings = "{\"a\":\"" + std::string(200, '[') + "\"}";
    o.metadata = brackets_in_strings.c_str();
    s = nullptr;
    CHECK(ckptdb_save_begin(&s, f.db, "epoch", 3, 3, &o) == CKPTDB_OK);  // brackets inside a string do not nest
    ckptdb_save_free(s);
    std::string big = "{\"a\":\"" + std::string((1u << 20), 'x') + "\"}";
    f.refused("epoch", 4, 4, nullptr, big.c_str(), CKPTDB_EINVAL, "limit of 1048576");
}

TEST_CASE("a catalog name follows the rules of a checkpoint name, the library's own prefix included") {
    t::TempDir d, outside;
    for (const char *bad : {".ckptdb/../../x.sqlite", ".ckptdb-tmp-catalog.sqlite", "../x.sqlite", "a/b.sqlite", ""}) {
        std::string before = t::snapshot(d);
        ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
        o.catalog_name = bad;
        ckptdb_catalog *db = nullptr;
        CHECK_MESSAGE(ckptdb_open(&db, d.path.c_str(), &o) == CKPTDB_EINVAL, bad);
        CHECK(std::string(ckptdb_last_error()).find("invalid catalog file name") != std::string::npos);
        CHECK(t::snapshot(d) == before);
        CHECK(db == nullptr);
    }
    CHECK(t::names(outside.path).empty());
}

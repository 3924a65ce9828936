// Verified latest with fallback, verify, the checked reader, listing.
#include <doctest/doctest.h>

#include "ckptdb.hpp"
#include "support.hpp"

static void flip_byte(const std::string &path, size_t at) {
    std::string b = t::read_file(path);
    REQUIRE(at < b.size());
    b[at] = static_cast<char>(b[at] ^ 0x40);
    t::write_file(path, b);
}

static void truncate_to(const std::string &path, off_t n) { REQUIRE(::truncate(path.c_str(), n) == 0); }

static std::string status_of(const t::TempDir &d, int64_t id) {
    return t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(id));
}

TEST_CASE("latest is the most recently committed complete checkpoint, optionally of one kind") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    CHECK_FALSE(c.latest().has_value());
    CHECK(ckptdb_latest(nullptr, c.handle(), nullptr, 0) == CKPTDB_EMISUSE);
    auto a = c.save_bytes("epoch", 1, 100, "a");
    auto b = c.save_bytes("time", 1, 150, "b");
    CHECK(c.latest()->id == b.id);
    CHECK(c.latest(std::string("epoch"))->id == a.id);
    CHECK_FALSE(c.latest(std::string("preempt")).has_value());
    // An older save committed later is newer: newest means last committed.
    auto s1 = c.begin("epoch", 2, 200);
    auto s2 = c.begin("epoch", 3, 300);
    auto e2 = s2.commit();
    auto e1 = s1.commit();
    CHECK(c.latest()->id == e1.id);
    CHECK(e2.id != e1.id);
}

TEST_CASE("a flipped byte in the newest checkpoint falls back to the previous one and marks it corrupt") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto good = c.save_bytes("epoch", 1, 1, t::pattern(100000, 1));
    auto bad = c.save_bytes("epoch", 2, 2, t::pattern(100000, 2));
    flip_byte(bad.path, 54321);
    // A size-only check cannot see a flipped byte; the full check can.
    CHECK(c.latest(std::nullopt, CKPTDB_VERIFY_SIZE)->id == bad.id);
    CHECK(c.latest(std::nullopt, CKPTDB_VERIFY_NONE)->id == bad.id);
    auto l = c.latest();
    REQUIRE(l.has_value());
    CHECK(l->id == good.id);
    CHECK(status_of(d, bad.id) == "corrupt");
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event = 'corrupt' AND checkpoint_id = " +
                                            std::to_string(bad.id)) == "1");
    CHECK(t::query1(t::catalog_path(d), "SELECT detail FROM events WHERE event = 'corrupt'").find("XXH3-128") !=
          std::string::npos);
    CHECK(t::exists(bad.path));  // corruption is recorded, the file is kept for inspection
}

TEST_CASE("a truncated newest checkpoint falls back, even with the size-only check") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto good = c.save_bytes("epoch", 1, 1, t::pattern(5000, 1));
    auto bad = c.save_bytes("epoch", 2, 2, t::pattern(5000, 2));
    truncate_to(bad.path, 4096);
    CHECK(c.latest(std::nullopt, CKPTDB_VERIFY_SIZE)->id == good.id);
    CHECK(status_of(d, bad.id) == "corrupt");
}

TEST_CASE("missing files and symlinks in place of a checkpoint are corrupt; links are not followed") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto a = c.save_bytes("epoch", 1, 1, "aaaa");
    auto b = c.save_bytes("epoch", 2, 2, "bbbb");
    auto cc = c.save_bytes("epoch", 3, 3, "cccc");
    // Replace the newest with a symlink to a byte-identical copy: still refused.
    t::write_file(d / "copy", "cccc");
    REQUIRE(::unlink(cc.path.c_str()) == 0);
    REQUIRE(::symlink((d / "copy").c_str(), cc.path.c_str()) == 0);
    REQUIRE(::unlink(b.path.c_str()) == 0);
    CHECK(c.latest()->id == a.id);
    CHECK(status_of(d, b.id) == "corrupt");
    CHECK(status_of(d, cc.id) == "corrupt");
    REQUIRE(::unlink(a.path.c_str()) == 0);
    CHECK_FALSE(c.latest().has_value());
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    CHECK(ckptdb_latest(&e, c.handle(), nullptr, 0) == CKPTDB_ENOTFOUND);
    CHECK(std::string(ckptdb_last_error()).find("no complete checkpoint") != std::string::npos);
}

TEST_CASE("verify marks a damaged checkpoint corrupt and restores it once its bytes are back") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto e = c.save_bytes("epoch", 1, 1, t::pattern(4096));
    CHECK(c.verify(e.id));
    std::string original = t::read_file(e.path);
    flip_byte(e.path, 10);
    CHECK_FALSE(c.verify(e.id));
    CHECK(ckptdb_verify(c.handle(), e.id) == CKPTDB_ECORRUPT);
    CHECK(std::string(ckptdb_last_error()).find("corrupt") != std::string::npos);
    CHECK(status_of(d, e.id) == "corrupt");
    t::write_file(e.path, original);
    CHECK(c.verify(e.id));
    CHECK(status_of(d, e.id) == "complete");
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event = 'restored'") == "1");
    CHECK(c.latest()->id == e.id);
}

TEST_CASE("verify_all checks every complete checkpoint and counts the corrupt ones") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    std::vector<ckptdbxx::entry> es;
    for (int i = 0; i < 5; i++) es.push_back(c.save_bytes("epoch", i, i, t::pattern(1000, i)));
    flip_byte(es[1].path, 3);
    truncate_to(es[3].path, 10);
    int64_t checked = 0, corrupt = 0;
    std::vector<std::pair<int64_t, int>> seen;
    int rc = ckptdb_verify_all(
        &checked, &corrupt, c.handle(),
        [](const ckptdb_entry *e, int result, void *p) {
            static_cast<std::vector<std::pair<int64_t, int>> *>(p)->push_back({e->id, result});
            return 0;
        },
        &seen);
    CHECK(rc == CKPTDB_ECORRUPT);
    CHECK(checked == 5);
    CHECK(corrupt == 2);
    REQUIRE(seen.size() == 5);
    CHECK(seen[1].second == CKPTDB_ECORRUPT);
    CHECK(seen[3].second == CKPTDB_ECORRUPT);
    CHECK(seen[4].second == CKPTDB_OK);
    CHECK(ckptdb_verify_all(&checked, &corrupt, c.handle(), nullptr, nullptr) == CKPTDB_OK);
    CHECK(checked == 3);
    CHECK(corrupt == 0);
}

TEST_CASE("the reader returns the bytes and fails with ECORRUPT at the end when they do not match") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    std::string data = t::pattern(300000, 9);
    auto e = c.save_bytes("epoch", 1, 1, data);
    CHECK(c.read(e.id) == data);
    flip_byte(e.path, 299999);
    ckptdb_reader *r = nullptr;
    REQUIRE(ckptdb_reader_open(&r, c.handle(), e.id) == CKPTDB_OK);
    std::string got;
    char buf[8192];
    int rc;
    size_t n = 0;
    while ((rc = ckptdb_reader_read(&n, r, buf, sizeof buf)) == CKPTDB_OK && n > 0) got.append(buf, n);
    CHECK(rc == CKPTDB_ECORRUPT);
    CHECK(got.size() == data.size());
    ckptdb_reader_close(r);
    CHECK(status_of(d, e.id) == "corrupt");
    CHECK(ckptdb_reader_open(&r, c.handle(), e.id) == CKPTDB_EINVAL);  // no longer complete
    CHECK(r == nullptr);
}

TEST_CASE("list and the cursor filter by status and kind, oldest first") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    for (int i = 0; i < 300; i++) c.save_bytes(i % 3 == 0 ? "time" : "epoch", i, i, "x");
    c.begin("epoch", 999, 999).abort();
    CHECK(c.list().size() == 301);
    CHECK(c.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_ABORTED)).size() == 1);
    CHECK(c.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE), std::string("time")).size() == 100);

    ckptdb_filter f = CKPTDB_FILTER_INIT;
    f.kind = "epoch";
    f.status_mask = CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE);
    ckptdb_cursor *cur = nullptr;
    REQUIRE(ckptdb_cursor_open(&cur, c.handle(), &f) == CKPTDB_OK);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    int64_t last = 0, count = 0;
    int rc;
    while ((rc = ckptdb_cursor_next(&e, cur)) == CKPTDB_OK) {
        CHECK(e.id > last);
        CHECK(std::string(e.kind) == "epoch");
        last = e.id;
        count++;
    }
    CHECK(rc == CKPTDB_DONE);
    CHECK(count == 200);
    ckptdb_cursor_free(cur);

    int calls = 0;
    CHECK(ckptdb_list(
              c.handle(), nullptr, [](const ckptdb_entry *, void *p) { return ++*static_cast<int *>(p) == 5 ? 42 : 0; },
              &calls) == CKPTDB_ECALLBACK);
    CHECK(ckptdb_last_callback_value() == 42);
    CHECK(calls == 5);
}

TEST_CASE("get by id and by name") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto e = c.save_bytes("epoch", 4, 40, "x", std::string("named.pt"), std::string("{\"k\":1}"));
    auto g = c.get(e.id);
    CHECK(g.name == "named.pt");
    CHECK(g.epoch == 4);
    CHECK(g.step == 40);
    CHECK(g.file_count == 1);
    CHECK(g.metadata == "{\"k\":1}");
    CHECK(c.get(std::string("named.pt")).id == e.id);
    ckptdb_entry out = CKPTDB_ENTRY_INIT;
    CHECK(ckptdb_get(&out, c.handle(), 12345) == CKPTDB_ENOTFOUND);
    CHECK(ckptdb_get_by_name(&out, c.handle(), "nope.pt") == CKPTDB_ENOTFOUND);
    CHECK(std::string(ckptdb_last_error()).find("nope.pt") != std::string::npos);
}

TEST_CASE("an older, smaller entry struct is filled only as far as it reaches") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto e = c.save_bytes("epoch", 4, 40, "x");
    struct small {
        size_t struct_size;
        int64_t id;
        const char *name;
    } s{};
    s.struct_size = sizeof s;
    REQUIRE(ckptdb_get(reinterpret_cast<ckptdb_entry *>(&s), c.handle(), e.id) == CKPTDB_OK);
    CHECK(s.struct_size == sizeof s);
    CHECK(s.id == e.id);
    CHECK(std::string(s.name) == "epoch_004.pt");
}

TEST_CASE("a tampered row naming a path outside the directory is never opened") {
    t::TempDir d, outside;
    t::write_file(outside / "victim", "abc");
    int64_t id;
    {
        ckptdbxx::catalog c(d.path);
        id = c.save_bytes("epoch", 1, 1, "abc").id;
    }
    sqlite3 *db = nullptr;
    REQUIRE(sqlite3_open(t::catalog_path(d).c_str(), &db) == SQLITE_OK);
    std::string evil = "../" + outside.path.substr(outside.path.rfind('/') + 1) + "/victim";
    std::string sql = "UPDATE checkpoints SET name = '" + evil + "'; UPDATE files SET name = '" + evil + "';";
    REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    ckptdbxx::catalog c(d.path);
    CHECK(c.get(id).path.empty());
    CHECK_FALSE(c.latest().has_value());  // the outside file has the right bytes, but is not even opened
    CHECK(status_of(d, id) == "corrupt");
    CHECK(t::query1(t::catalog_path(d), "SELECT detail FROM events WHERE event = 'corrupt'").find("invalid") !=
          std::string::npos);
    CHECK(t::read_file(outside / "victim") == "abc");
}

TEST_CASE("a read-only catalog skips a corrupt checkpoint without recording anything, and refuses saves") {
    t::TempDir d;
    int64_t good_id, bad_id;
    {
        ckptdbxx::catalog c(d.path);
        good_id = c.save_bytes("epoch", 1, 1, "good").id;
        auto bad = c.save_bytes("epoch", 2, 2, "bad!");
        bad_id = bad.id;
        flip_byte(bad.path, 0);
    }
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = CKPTDB_OPEN_READONLY;
    ckptdbxx::catalog c(d.path, &o);
    CHECK(c.latest()->id == good_id);
    CHECK(status_of(d, bad_id) == "complete");
    ckptdb_save *s = nullptr;
    CHECK(ckptdb_save_begin(&s, c.handle(), "epoch", 3, 3, nullptr) == CKPTDB_EREADONLY);
    CHECK(ckptdb_mark_resumed(c.handle(), good_id) == CKPTDB_EREADONLY);
}

TEST_CASE("mark_resumed records the run's resume point and an event") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto e = c.save_bytes("epoch", 1, 1, "x");
    c.mark_resumed(e.id);
    CHECK(t::query1(t::catalog_path(d), "SELECT resumed_from FROM runs") == std::to_string(e.id));
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event = 'resumed'") == "1");
    CHECK(ckptdb_mark_resumed(c.handle(), 999) == CKPTDB_ENOTFOUND);
}

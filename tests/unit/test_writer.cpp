// The durable writer: bytes on disk are exactly the caller's, the checksum
// is XXH3-128 as xxh128sum prints it, temp files never outlive a save, and
// names are chosen or refused as documented.
#include <doctest/doctest.h>

#include <ctime>

#include "ckptdb.hpp"
#include "support.hpp"

static int64_t count_events(const t::TempDir &d, const std::string &event) {
    return std::stoll(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event = '" + event + "'"));
}

TEST_CASE("a streamed save writes exactly the caller's bytes and records size and XXH3-128") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto s = c.begin("epoch", 3, 300);
    std::string data = t::pattern(3 * 1024 * 1024 + 17);
    for (size_t off = 0; off < data.size(); off += 1000003) s.write(data.substr(off, 1000003));
    ckptdbxx::entry e = s.commit();
    CHECK(e.name == "epoch_003.pt");
    CHECK(e.path == d / "epoch_003.pt");
    CHECK(e.status == CKPTDB_STATUS_COMPLETE);
    CHECK(e.size == static_cast<int64_t>(data.size()));
    CHECK(e.checksum.size() == 32);
    CHECK(t::read_file(e.path) == data);
    CHECK(t::temp_files(d.path).empty());
    CHECK(!e.committed_at.empty());
    CHECK(e.committed_at.back() == 'Z');
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT status, size, checksum FROM checkpoints WHERE id = " + std::to_string(e.id)) ==
          "complete|" + std::to_string(data.size()) + "|" + e.checksum);
    CHECK(t::query1(t::catalog_path(d), "SELECT size, checksum, temp_name FROM files") ==
          std::to_string(data.size()) + "|" + e.checksum + "|NULL");
    CHECK(count_events(d, "begun") == 1);
    CHECK(count_events(d, "committed") == 1);
}

TEST_CASE("the checksum is the canonical XXH3-128 that xxh128sum prints") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    // Reference values printed by `printf abc | xxh128sum` and `xxh128sum < /dev/null`.
    CHECK(c.save_bytes("manual", 0, 1, "abc").checksum == "06b05ab6733a618578af5f94892f3950");
    CHECK(c.save_bytes("manual", 0, 2, "").checksum == "99aa06d3014798d86001c324468d497f");
}

TEST_CASE("a caller may write the temp file itself through its path") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto s = c.begin("epoch", 1, 10);
    std::string tmp = s.temp_path();
    CHECK(tmp.rfind(d.path + "/.ckptdb-tmp-", 0) == 0);
    CHECK(t::exists(tmp));
    t::write_file(tmp, "written by the caller");
    auto e = s.commit();
    CHECK(t::read_file(e.path) == "written by the caller");
    CHECK(e.size == 21);
    CHECK_FALSE(t::exists(tmp));
    CHECK(c.verify(e.id));
}

TEST_CASE("a caller that replaces the temp file by rename gets the new file committed") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto s = c.begin("epoch", 1, 10);
    std::string tmp = s.temp_path();
    t::write_file(d / "staging", "atomic writer output");
    REQUIRE(::rename((d / "staging").c_str(), tmp.c_str()) == 0);
    auto e = s.commit();
    CHECK(t::read_file(e.path) == "atomic writer output");
    CHECK(e.size == 20);
    CHECK(c.verify(e.id));
}

TEST_CASE("a caller may write through the library's descriptor") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto s = c.begin("step", 0, 500);
    int fd = s.fd();
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "via fd", 6) == 6);
    auto e = s.commit();
    CHECK(e.name == "step_000500.pt");
    CHECK(t::read_file(e.path) == "via fd");
    CHECK(c.verify(e.id));
}

TEST_CASE("streaming and a caller-written temp file cannot be mixed") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    ckptdb_catalog *db = c.handle();
    ckptdb_save *s = nullptr;
    REQUIRE(ckptdb_save_begin(&s, db, "epoch", 1, 1, nullptr) == CKPTDB_OK);
    REQUIRE(ckptdb_save_write(s, "x", 1) == CKPTDB_OK);
    const char *p = nullptr;
    CHECK(ckptdb_save_temp_path(&p, s) == CKPTDB_EMISUSE);
    CHECK(p == nullptr);
    ckptdb_save_free(s);
    REQUIRE(ckptdb_save_begin(&s, db, "epoch", 2, 1, nullptr) == CKPTDB_OK);
    REQUIRE(ckptdb_save_temp_path(&p, s) == CKPTDB_OK);
    CHECK(ckptdb_save_write(s, "x", 1) == CKPTDB_EMISUSE);
    ckptdb_save_free(s);
    CHECK(t::temp_files(d.path).empty());
}

TEST_CASE("abort, and free without commit, remove the temp file and mark the row aborted") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    ckptdb_save *s = nullptr;
    REQUIRE(ckptdb_save_begin(&s, c.handle(), "epoch", 1, 1, nullptr) == CKPTDB_OK);
    REQUIRE(ckptdb_save_write(s, "partial", 7) == CKPTDB_OK);
    CHECK(t::temp_files(d.path).size() == 1);
    CHECK(ckptdb_save_abort(s) == CKPTDB_OK);
    CHECK(t::temp_files(d.path).empty());
    CHECK(ckptdb_save_commit(nullptr, s) == CKPTDB_EMISUSE);
    ckptdb_save_free(s);
    {
        auto s2 = c.begin("epoch", 2, 2);
        s2.write("dropped");
    }
    CHECK(t::temp_files(d.path).empty());
    CHECK(t::query(t::catalog_path(d), "SELECT status FROM checkpoints ORDER BY id") ==
          std::vector<std::string>{"aborted", "aborted"});
    CHECK(count_events(d, "aborted") == 2);
    CHECK_FALSE(c.latest().has_value());
    CHECK(t::names(d.path).count("epoch_001.pt") == 0);
}

TEST_CASE("a committed save refuses a second commit, a write and an abort") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    ckptdb_save *s = nullptr;
    REQUIRE(ckptdb_save_begin(&s, c.handle(), "epoch", 1, 1, nullptr) == CKPTDB_OK);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_save_commit(&e, s) == CKPTDB_OK);
    CHECK(std::string(e.name) == "epoch_001.pt");  // borrowed from the save until it is freed
    CHECK(ckptdb_save_commit(nullptr, s) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_write(s, "x", 1) == CKPTDB_EMISUSE);
    CHECK(ckptdb_save_abort(s) == CKPTDB_EMISUSE);
    ckptdb_save_free(s);
    CHECK(c.latest()->name == "epoch_001.pt");
}

TEST_CASE("default names follow the kind, and a taken default name gets a suffix") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    CHECK(c.save_bytes("epoch", 10, 1000, "a").name == "epoch_010.pt");
    CHECK(c.save_bytes("epoch", 10, 1000, "b").name == "epoch_010-2.pt");
    CHECK(c.save_bytes("epoch", 10, 1000, "c").name == "epoch_010-3.pt");
    CHECK(c.save_bytes("step", 1, 500, "d").name == "step_000500.pt");
    CHECK(c.save_bytes("preempt", 1, 512, "e").name == "preempt_000512.pt");
    CHECK(c.save_bytes("manual", 1, 7, "f").name == "manual_000007.pt");
    long long before = ::time(nullptr);
    std::string tname = c.save_bytes("time", 1, 8, "g").name;
    long long after = ::time(nullptr);
    REQUIRE(tname.rfind("time_", 0) == 0);
    long long stamp = std::atoll(tname.c_str() + 5);
    CHECK(stamp >= before);
    CHECK(stamp <= after);
    // A file the catalog does not know is never overwritten: the default moves on.
    t::write_file(d / "epoch_011.pt", "not ours");
    CHECK(c.save_bytes("epoch", 11, 1100, "h").name == "epoch_011-2.pt");
    CHECK(t::read_file(d / "epoch_011.pt") == "not ours");
}

TEST_CASE("an explicit name that is taken fails with EEXISTS and changes nothing") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    c.save_bytes("epoch", 1, 1, "first", std::string("best.pt"));
    t::write_file(d / "foreign.pt", "someone else's");
    std::string before = t::snapshot(d);
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    ckptdb_save *s = nullptr;
    o.name = "best.pt";
    CHECK(ckptdb_save_begin(&s, c.handle(), "epoch", 2, 2, &o) == CKPTDB_EEXISTS);
    CHECK(s == nullptr);
    CHECK(std::string(ckptdb_last_error()).find("best.pt") != std::string::npos);
    o.name = "foreign.pt";
    CHECK(ckptdb_save_begin(&s, c.handle(), "epoch", 2, 2, &o) == CKPTDB_EEXISTS);
    CHECK(std::string(ckptdb_last_error()).find("does not own") != std::string::npos);
    CHECK(t::snapshot(d) == before);
    CHECK(t::read_file(d / "foreign.pt") == "someone else's");
}

TEST_CASE("the name of an aborted save can be used again") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    c.begin("epoch", 1, 1, std::string("x.pt")).abort();
    CHECK(c.save_bytes("epoch", 1, 1, "again", std::string("x.pt")).name == "x.pt");
}

TEST_CASE("metadata is stored as a JSON object that sqlite3 can query") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto e = c.save_bytes("epoch", 1, 1, "m", std::nullopt, std::string(" { \"val_loss\" : 0.25, \"acc\": 0.9 } "));
    CHECK(e.metadata == "{\"acc\":0.9,\"val_loss\":0.25}");
    CHECK(t::query1(t::catalog_path(d), "SELECT json_extract(metadata, '$.val_loss') FROM checkpoints") == "0.25");
    CHECK(c.save_bytes("epoch", 2, 2, "n").metadata == "{}");
}

TEST_CASE("a save outlives the handle that began it") {
    t::TempDir d;
    ckptdb_catalog *db = nullptr;
    REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
    ckptdb_save *s = nullptr;
    REQUIRE(ckptdb_save_begin(&s, db, "epoch", 1, 1, nullptr) == CKPTDB_OK);
    ckptdb_close(db);
    REQUIRE(ckptdb_save_write(s, "late", 4) == CKPTDB_OK);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_save_commit(&e, s) == CKPTDB_OK);
    ckptdb_save_free(s);
    ckptdbxx::catalog c(d.path);
    CHECK(c.latest()->name == "epoch_001.pt");
}

TEST_CASE("the directory is created when missing, and a run row records this process") {
    t::TempDir d;
    std::string sub = d / "new-ckpts";
    ckptdbxx::catalog c(sub);
    CHECK(c.dir() == sub);
    auto e = c.save_bytes("epoch", 1, 1, "x");
    CHECK(e.run_id > 0);
    CHECK(t::query1(sub + "/ckptdb.sqlite", "SELECT pid FROM runs") == std::to_string(::getpid()));
}

namespace {
struct Seen {
    std::vector<std::string> events;
};
void on_event(const char *event, int64_t id, const char *detail, void *payload) {
    CHECK((id > 0 || std::string(event) == "run_ended"));
    CHECK(detail != nullptr);
    static_cast<Seen *>(payload)->events.push_back(event);
}
}  // namespace

TEST_CASE("events reach the callback after their transaction committed") {
    t::TempDir d;
    Seen seen;
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.on_event = on_event;
    o.event_payload = &seen;
    {
        ckptdbxx::catalog c(d.path, &o);
        c.save_bytes("epoch", 1, 1, "x");
        c.begin("epoch", 2, 2).abort();
        CHECK(seen.events == std::vector<std::string>{"begun", "committed", "begun", "aborted"});
    }
    CHECK(seen.events.back() == "run_ended");
}

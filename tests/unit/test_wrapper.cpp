// The C++ wrapper (capi/ckptdb.hpp) over what the CLI uses: each call copies
// the library's answer into owning values, and each failure becomes a
// ckptdbxx::error with the library's code, its message as detail(), and
// "<code's name>: <detail>" as what(); an exception thrown by a callback
// stops the call and reaches the caller unchanged.
#include <doctest/doctest.h>

#include <stdexcept>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

// Runs f, which must throw ckptdbxx::error with code; returns it.
template <class F>
ckptdbxx::error thrown_by(F &&f, int code) {
    try {
        f();
    } catch (const ckptdbxx::error &e) {
        CHECK(e.code() == code);
        CHECK_FALSE(e.detail().empty());
        CHECK(std::string(e.what()) == std::string(ckptdb_strerror(code)) + ": " + e.detail());
        return e;
    }
    FAIL("no ckptdbxx::error thrown");
    return ckptdbxx::error(0, "");
}

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

void flip_first_byte(const std::string &path) {
    std::string b = t::read_file(path);
    b[0] = char(b[0] ^ 0x5a);
    t::write_file(path, b);
}

}  // namespace

TEST_CASE("error keeps the library's message apart from the code's name") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    ckptdbxx::error e = thrown_by([&] { c.get(int64_t(424242)); }, CKPTDB_ENOTFOUND);
    CHECK(contains(e.detail(), "424242"));
    // The two-argument form (existing callers) has the message as its detail.
    ckptdbxx::error plain(CKPTDB_EIO, "disk on fire");
    CHECK(plain.detail() == "disk on fire");
    CHECK(std::string(plain.what()) == "disk on fire");
}

TEST_CASE("open_options: flags apply, a failure throws, events reach on_event") {
    t::TempDir d;
    ckptdbxx::open_options no_create;
    no_create.flags = CKPTDB_OPEN_NO_CREATE;
    thrown_by([&] { ckptdbxx::catalog c(d / "missing", no_create); }, CKPTDB_ENOTFOUND);
    CHECK_FALSE(t::exists(d / "missing"));

    int64_t id = ckptdbxx::catalog(d.path).save_bytes("epoch", 1, 1, "good bytes").id;
    flip_first_byte(d / "epoch_001.pt");
    std::vector<std::string> seen;
    ckptdbxx::open_options o;
    o.on_event = [&](const std::string &event, int64_t checkpoint_id, const std::string &) {
        if (event == "corrupt") seen.push_back(std::to_string(checkpoint_id));
    };
    ckptdbxx::catalog c(d.path, o);
    CHECK_FALSE(c.latest().has_value());
    CHECK(seen == std::vector<std::string>{std::to_string(id)});
}

TEST_CASE("verify with progress: bytes reported, corruption thrown, a throwing callback stops it") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    std::string data = t::pattern(300000);
    ckptdbxx::entry e = c.save_bytes("epoch", 1, 1, data);
    int64_t last = -1;
    c.verify(e.id, [&](int64_t done, int64_t total) {
        CHECK(total == int64_t(data.size()));
        last = done;
    });
    CHECK(last == int64_t(data.size()));

    struct stop {};
    CHECK_THROWS_AS(c.verify(e.id, [](int64_t, int64_t) { throw stop{}; }), stop);
    CHECK(c.get(e.id).status == CKPTDB_STATUS_COMPLETE);  // stopping is not corruption

    flip_first_byte(e.path);
    thrown_by([&] { c.verify(e.id, [](int64_t, int64_t) {}); }, CKPTDB_ECORRUPT);
    CHECK(c.get(e.id).status == CKPTDB_STATUS_CORRUPT);
    thrown_by([&] { c.verify(999, [](int64_t, int64_t) {}); }, CKPTDB_ENOTFOUND);
}

TEST_CASE("prune, pin, files, events, runs and disk_usage copy their rows and throw the library's failures") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    for (int i = 1; i <= 3; ++i) c.save_bytes("epoch", i, i * 10, "epoch bytes " + std::to_string(i));

    ckptdb_keep_kind keep_one[] = {CKPTDB_KEEP_KIND("epoch", 1)};
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = keep_one;
    r.keep_last_count = 1;
    ckptdbxx::prune_result plan = c.prune(&r, true);
    CHECK(plan.count == 2);
    REQUIRE(plan.items.size() == 2);
    CHECK(plan.items[0].name == "epoch_001.pt");
    CHECK(plan.items[0].size == 13);
    CHECK_FALSE(plan.items[0].rule.empty());
    CHECK(t::exists(d / "epoch_001.pt"));  // a dry run changes nothing

    c.pin(c.get("epoch_001.pt").id);
    CHECK(c.get("epoch_001.pt").pinned);
    ckptdbxx::prune_result done = c.prune(&r);
    CHECK(done.count == 1);
    REQUIRE(done.items.size() == 1);
    CHECK(done.items[0].name == "epoch_002.pt");
    CHECK(t::exists(d / "epoch_001.pt"));
    CHECK_FALSE(t::exists(d / "epoch_002.pt"));

    r.best_k = -3;
    r.best_metric = "loss";
    thrown_by([&] { c.prune(&r); }, CKPTDB_EINVAL);
    thrown_by([&] { c.pin(999); }, CKPTDB_ENOTFOUND);

    int64_t id3 = c.get("epoch_003.pt").id;
    std::vector<ckptdbxx::file> files = c.files(id3);
    REQUIRE(files.size() == 1);
    CHECK(files[0].rank == 0);
    CHECK(files[0].name == "epoch_003.pt");
    CHECK(files[0].path == d / "epoch_003.pt");
    CHECK(files[0].size == 13);
    CHECK(files[0].checksum.size() == 32);
    thrown_by([&] { c.files(999); }, CKPTDB_ENOTFOUND);

    std::vector<ckptdbxx::event> events = c.events(id3);
    REQUIRE(events.size() >= 2);
    CHECK(events.front().name == "begun");
    CHECK(events.front().checkpoint_id == id3);
    CHECK(events.back().name == "committed");

    std::vector<ckptdbxx::run> runs = c.runs();
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].saves == 3);
    CHECK_FALSE(runs[0].host.empty());

    int64_t bytes = 0, checkpoints = 0;
    for (const auto &u : c.disk_usage())
        if (u.status == CKPTDB_STATUS_COMPLETE) bytes += u.bytes, checkpoints += u.checkpoints;
    CHECK(checkpoints == 2);
    CHECK(bytes == 26);
    CHECK(ckptdbxx::status_name(CKPTDB_STATUS_COMPLETE) == "complete");
    CHECK(ckptdbxx::version() == ckptdb_version());

    // A moved-from catalog has no handle: every call is the library's misuse error.
    ckptdbxx::catalog moved = std::move(c);
    thrown_by([&] { c.events(); }, CKPTDB_EMISUSE);
    thrown_by([&] { c.runs(); }, CKPTDB_EMISUSE);
    thrown_by([&] { c.disk_usage(); }, CKPTDB_EMISUSE);
    CHECK(moved.runs().size() == 1);
}

TEST_CASE("fsck_dir, rebuild and adopt report findings and throw the library's failures") {
    t::TempDir d;
    thrown_by([&] { ckptdbxx::fsck_dir(d / "missing"); }, CKPTDB_ENOTFOUND);
    thrown_by([&] { ckptdbxx::rebuild(d / "missing"); }, CKPTDB_ENOTFOUND);

    t::write_file(d / "epoch_004.pt", "written without ckptdb");
    ckptdbxx::fsck_report lost = ckptdbxx::fsck_dir(d.path);
    CHECK_FALSE(lost.rebuilt);
    REQUIRE_FALSE(lost.findings.empty());
    CHECK(lost.findings.front().kind == "catalog_missing");
    CHECK_FALSE(t::exists(t::catalog_path(d)));  // a check changes nothing

    ckptdbxx::rebuild_report adopted = ckptdbxx::adopt(d.path);
    CHECK(adopted.rows == 1);
    REQUIRE(adopted.findings.size() == 1);
    CHECK(adopted.findings[0].kind == "adopted");
    CHECK(adopted.findings[0].name == "epoch_004.pt");
    CHECK(adopted.findings[0].checkpoint_id > 0);
    thrown_by([&] { ckptdbxx::adopt(d.path); }, CKPTDB_EEXISTS);
    CHECK(ckptdbxx::catalog(d.path).list().size() == 1);  // the refusal changed nothing

    ckptdbxx::fsck_report clean = ckptdbxx::fsck_dir(d.path);
    CHECK(clean.problems == 0);
}

TEST_CASE("sync reports items and progress, says corrupt without throwing, and throws the library's failures") {
    t::TempDir src, dst;
    {
        ckptdbxx::catalog c(src.path);
        c.save_bytes("epoch", 1, 1, "first");
        c.save_bytes("epoch", 2, 2, "second");
    }
    thrown_by([&] { ckptdbxx::sync(src.path, src / "inside"); }, CKPTDB_EINVAL);
    CHECK_FALSE(t::exists(src / "inside"));

    flip_first_byte(src / "epoch_002.pt");
    std::vector<ckptdbxx::finding> items;
    int64_t last_total = -1;
    ckptdbxx::sync_options o;
    o.on_item = [&](const ckptdbxx::finding &f) { items.push_back(f); };
    o.progress = [&](int64_t, int64_t total) { last_total = total; };
    ckptdbxx::sync_result r = ckptdbxx::sync(src.path, dst.path, o);
    CHECK(r.corrupt);
    CHECK(r.copied == 1);
    CHECK(r.bytes == 5);
    CHECK(last_total >= 5);
    REQUIRE(items.size() == 2);
    CHECK(items[0].kind == "copied");
    CHECK(items[0].name == "epoch_001.pt");
    CHECK(items[1].kind == "failed");
    CHECK(items[1].name == "epoch_002.pt");

    struct stop {};
    ckptdbxx::sync_options throwing;
    throwing.on_item = [](const ckptdbxx::finding &) { throw stop{}; };
    CHECK_THROWS_AS(ckptdbxx::sync(src.path, dst.path, throwing), stop);
}

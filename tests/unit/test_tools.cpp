// History listings, verify with progress, fsck and its repairs, rebuilding a
// lost catalog, and sync to another directory (with a real kill midway).
#include <doctest/doctest.h>

#include <algorithm>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

struct Items {
    std::vector<std::string> lines;  // "kind name action"
    void add(const char *kind, const char *name, const char *action) {
        lines.push_back(std::string(kind) + " " + name + (*action ? std::string(" ") + action : std::string()));
    }
    // One per item type: fsck, rebuild/adopt and sync each have their own.
    static int cb(const ckptdb_fsck_item *it, void *p) {
        static_cast<Items *>(p)->add(it->kind, it->name, it->action);
        return 0;
    }
    static int cb(const ckptdb_rebuild_item *it, void *p) {
        static_cast<Items *>(p)->add(it->kind, it->name, it->action);
        return 0;
    }
    static int cb(const ckptdb_sync_item *it, void *p) {
        static_cast<Items *>(p)->add(it->kind, it->name, "");
        return 0;
    }
    bool has(const std::string &line) const { return std::find(lines.begin(), lines.end(), line) != lines.end(); }
    std::string all() const {
        std::string out;
        for (const auto &l : lines) out += l + "; ";
        return out;
    }
};

}  // namespace

TEST_CASE("files, events and runs are listed with their columns") {
    t::TempDir d;
    int code = 0;
    t::run_helper({"save", d.path, "100", "--epoch", "1"}, &code);  // an earlier run
    REQUIRE(code == 0);
    ckptdbxx::catalog c(d.path);
    auto e = c.save_bytes("epoch", 2, 20, "abc");
    c.mark_resumed(e.id);
    REQUIRE(ckptdb_run_progress(c.handle(), 2, 35) == CKPTDB_OK);

    std::vector<std::string> files;
    REQUIRE(ckptdb_files(
                c.handle(), e.id,
                [](const ckptdb_file *f, void *p) {
                    static_cast<std::vector<std::string> *>(p)->push_back(std::string(f->name) + " " +
                                                                          std::to_string(f->size) + " " + f->checksum);
                    return 0;
                },
                &files) == CKPTDB_OK);
    CHECK(files == std::vector<std::string>{"epoch_002.pt 3 06b05ab6733a618578af5f94892f3950"});
    CHECK(ckptdb_files(
              c.handle(), 999, [](const ckptdb_file *, void *) { return 0; }, nullptr) == CKPTDB_ENOTFOUND);

    std::vector<std::string> events;
    auto collect = [](const ckptdb_event *ev, void *p) {
        static_cast<std::vector<std::string> *>(p)->push_back(ev->event);
        return 0;
    };
    REQUIRE(ckptdb_events(c.handle(), e.id, 0, collect, &events) == CKPTDB_OK);
    CHECK(events == std::vector<std::string>{"begun", "committed", "resumed"});
    events.clear();
    REQUIRE(ckptdb_events(c.handle(), 0, 0, collect, &events) == CKPTDB_OK);
    CHECK(events.size() >= 6);  // both runs' saves and the first run's end

    struct Run {
        int64_t id, saves, last_step, resumed_from;
        std::string exit_reason;
    };
    std::vector<Run> runs;
    REQUIRE(ckptdb_runs(
                c.handle(),
                [](const ckptdb_run *r, void *p) {
                    static_cast<std::vector<Run> *>(p)->push_back(
                        {r->id, r->saves, r->last_step, r->resumed_from, r->exit_reason});
                    return 0;
                },
                &runs) == CKPTDB_OK);
    REQUIRE(runs.size() == 2);
    CHECK(runs[0].exit_reason == "clean");
    CHECK(runs[0].saves == 1);
    CHECK(runs[1].exit_reason.empty());  // still running
    CHECK(runs[1].last_step == 35);
    CHECK(runs[1].resumed_from == e.id);
}

TEST_CASE("verify reports progress and can be stopped by the callback") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto e = c.save_bytes("epoch", 1, 1, t::pattern(3 << 20));
    std::vector<int64_t> seen;
    auto cb = [](int64_t done, int64_t total, void *p) {
        CHECK(total == 3 << 20);
        static_cast<std::vector<int64_t> *>(p)->push_back(done);
        return 0;
    };
    REQUIRE(ckptdb_verify_progress(c.handle(), e.id, cb, &seen) == CKPTDB_OK);
    REQUIRE(seen.size() >= 3);
    CHECK(seen.back() == 3 << 20);
    CHECK(std::is_sorted(seen.begin(), seen.end()));
    CHECK(ckptdb_verify_progress(
              c.handle(), e.id, [](int64_t, int64_t, void *) { return 1; }, nullptr) == CKPTDB_ECALLBACK);
    CHECK(ckptdb_last_callback_value() == 1);
    CHECK(c.get(e.id).status == CKPTDB_STATUS_COMPLETE);  // stopping is not corruption
}

TEST_CASE("fsck finds temp files, missing files, size mismatches and unknown files; repair fixes what is safe") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto a = c.save_bytes("epoch", 1, 1, "aaaa");
    auto b = c.save_bytes("epoch", 2, 2, "bbbb");
    c.save_bytes("epoch", 3, 3, "cccc");
    auto s = c.begin("epoch", 4, 4);  // a save in flight is left alone
    REQUIRE(::unlink(a.path.c_str()) == 0);
    t::write_file(b.path, "bb");
    t::write_file(d / ".ckptdb-tmp-0123456789abcdef0123456789abcdef", "orphan");
    t::write_file(d / "notes.txt", "mine");

    Items check;
    int64_t problems = 0;
    REQUIRE(ckptdb_fsck(&problems, c.handle(), 0, Items::cb, &check) == CKPTDB_OK);
    CHECK_MESSAGE(problems == 4, check.all());
    CHECK(check.has("missing_file epoch_001.pt"));
    CHECK(check.has("size_mismatch epoch_002.pt"));
    CHECK(check.has("temp_file .ckptdb-tmp-0123456789abcdef0123456789abcdef"));
    CHECK(check.has("unknown_file notes.txt"));
    CHECK(check.lines.size() == 5);                       // plus the save in flight
    CHECK(c.get(a.id).status == CKPTDB_STATUS_COMPLETE);  // a check changes nothing

    Items repair;
    REQUIRE(ckptdb_fsck(&problems, c.handle(), 1, Items::cb, &repair) == CKPTDB_OK);
    CHECK(repair.has("missing_file epoch_001.pt marked corrupt"));
    CHECK(repair.has("size_mismatch epoch_002.pt marked corrupt"));
    CHECK(repair.has("temp_file .ckptdb-tmp-0123456789abcdef0123456789abcdef removed"));
    CHECK(repair.has("unknown_file notes.txt"));
    CHECK(t::read_file(d / "notes.txt") == "mine");
    CHECK(t::temp_files(d.path).size() == 1);  // the save in flight keeps its temp file
    s.abort();
    Items after;
    REQUIRE(ckptdb_fsck(&problems, c.handle(), 0, Items::cb, &after) == CKPTDB_OK);
    CHECK_MESSAGE(problems == 1, after.all());  // only the user's file remains to report
}

TEST_CASE("a lost catalog is rebuilt from the files, the old one kept aside") {
    t::TempDir d;
    {
        ckptdbxx::catalog c(d.path);
        c.save_bytes("epoch", 1, 10, "one");
        c.save_bytes("step", 1, 500, "two");
        c.save_bytes("epoch", 2, 20, "three");
    }
    t::write_file(d / "notes.txt", "mine");
    std::string broken = "this is not a database any more";
    t::write_file(t::catalog_path(d), broken);
    ::unlink((t::catalog_path(d) + "-wal").c_str());
    ::unlink((t::catalog_path(d) + "-shm").c_str());
    ckptdb_catalog *db = nullptr;
    CHECK(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_ENOTCATALOG);

    Items seen;
    int64_t rows = 0;
    REQUIRE(ckptdb_rebuild(&rows, d.path.c_str(), nullptr, Items::cb, &seen) == CKPTDB_OK);
    CHECK(rows == 3);
    CHECK(seen.has("unknown_file notes.txt"));
    CHECK(seen.has("rebuilt epoch_002.pt added"));
    std::string aside;
    for (const auto &n : t::names(d.path))
        if (n.rfind("ckptdb.sqlite.broken-", 0) == 0) aside = n;
    REQUIRE(!aside.empty());
    CHECK(t::read_file(d / aside) == broken);
    ckptdbxx::catalog c(d.path);
    auto l = c.latest();
    REQUIRE(l.has_value());
    CHECK(c.list().size() == 3);
    auto st = c.get(std::string("step_000500.pt"));
    CHECK(st.kind == "step");
    CHECK(st.step == 500);
    CHECK(c.get(std::string("epoch_002.pt")).epoch == 2);
    CHECK(c.verify(st.id));
}

TEST_CASE("sync copies complete checkpoints, verifies them, and leaves a consistent catalog") {
    t::TempDir src, parent;
    std::string dst = parent / "mirror";
    {
        ckptdbxx::catalog c(src.path);
        for (int e = 1; e <= 3; e++) c.save_bytes("epoch", e, e, t::pattern(100000, e));
        c.begin("epoch", 9, 9).write("in flight");  // aborted when released: never copied
    }
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    Items items;
    o.on_item = Items::cb;
    o.item_payload = &items;
    int64_t copied = 0, bytes = 0;
    REQUIRE(ckptdb_sync(&copied, &bytes, src.path.c_str(), dst.c_str(), &o) == CKPTDB_OK);
    CHECK(copied == 3);
    CHECK(bytes == 300000);
    for (int e = 1; e <= 3; e++)
        CHECK(t::read_file(dst + "/epoch_00" + std::to_string(e) + ".pt") == t::pattern(100000, e));
    CHECK(t::query1(dst + "/ckptdb.sqlite", "SELECT count(*) FROM checkpoints WHERE status = 'complete'") == "3");
    {
        ckptdbxx::catalog m(dst);
        CHECK(m.latest()->name == "epoch_003.pt");
        int64_t checked = 0, bad = 0;
        CHECK(ckptdb_verify_all(&checked, &bad, m.handle(), nullptr, nullptr) == CKPTDB_OK);
        CHECK(checked == 3);
    }
    // Idempotent: a second run copies nothing.
    REQUIRE(ckptdb_sync(&copied, nullptr, src.path.c_str(), dst.c_str(), nullptr) == CKPTDB_OK);
    CHECK(copied == 0);
    // Nested directories are refused.
    CHECK(ckptdb_sync(nullptr, nullptr, src.path.c_str(), (src / "inner").c_str(), nullptr) == CKPTDB_EINVAL);
    CHECK(std::string(ckptdb_last_error()).find("inside") != std::string::npos);
    CHECK_FALSE(t::exists(src / "inner"));
    CHECK(ckptdb_sync(nullptr, nullptr, src.path.c_str(), src.path.c_str(), nullptr) == CKPTDB_EINVAL);
}

TEST_CASE("sync keeps what src pruned unless asked to delete it") {
    t::TempDir src, dst;
    ckptdbxx::catalog c(src.path);
    for (int e = 1; e <= 3; e++) c.save_bytes("epoch", e, e, "x" + std::to_string(e));
    REQUIRE(ckptdb_sync(nullptr, nullptr, src.path.c_str(), dst.path.c_str(), nullptr) == CKPTDB_OK);
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", 1)};
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = keep;
    r.keep_last_count = 1;
    REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    REQUIRE(ckptdb_sync(nullptr, nullptr, src.path.c_str(), dst.path.c_str(), nullptr) == CKPTDB_OK);
    CHECK(t::exists(dst / "epoch_001.pt"));
    CHECK(t::query1(t::catalog_path(dst), "SELECT count(*) FROM checkpoints WHERE status = 'complete'") == "3");
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    o.delete_pruned = 1;
    REQUIRE(ckptdb_sync(nullptr, nullptr, src.path.c_str(), dst.path.c_str(), &o) == CKPTDB_OK);
    CHECK_FALSE(t::exists(dst / "epoch_001.pt"));
    CHECK_FALSE(t::exists(dst / "epoch_002.pt"));
    CHECK(t::exists(dst / "epoch_003.pt"));
    CHECK(t::query1(t::catalog_path(dst), "SELECT group_concat(status) FROM checkpoints ORDER BY id") ==
          "pruned,pruned,complete");
}

TEST_CASE("a sync killed midway never leaves a catalog naming a partial file; the next run finishes") {
    for (const char *point : {"sync_copied", "sync_installing"}) {
        CAPTURE(point);
        t::TempDir src, dst;
        {
            ckptdbxx::catalog c(src.path);
            for (int e = 1; e <= 4; e++) c.save_bytes("epoch", e, e, t::pattern(200000, e));
        }
        REQUIRE(ckptdb_sync(nullptr, nullptr, src.path.c_str(), dst.path.c_str(), nullptr) == CKPTDB_OK);
        {
            ckptdbxx::catalog c(src.path);
            for (int e = 5; e <= 7; e++) c.save_bytes("epoch", e, e, t::pattern(200000, e));
        }
        t::Child child({"sync", src.path, dst.path, "--pause-at", point});
        REQUIRE(child.line() == std::string("PAUSED ") + point);
        child.kill9();
        // Every complete row names a whole file: the copies committed before
        // the kill, each on its own, and nothing else.
        for (const auto &row :
             t::query(t::catalog_path(dst), "SELECT name, checksum FROM checkpoints WHERE status = 'complete'")) {
            std::string name = row.substr(0, row.find('|'));
            CHECK(t::exists(dst / name));
        }
        CHECK(std::stoi(
                  t::query1(t::catalog_path(dst), "SELECT count(*) FROM checkpoints WHERE status = 'complete'")) >= 4);
        int64_t copied = 0;
        REQUIRE(ckptdb_sync(&copied, nullptr, src.path.c_str(), dst.path.c_str(), nullptr) == CKPTDB_OK);
        CHECK(copied <= 3);
        CHECK(t::temp_files(dst.path).empty());
        ckptdbxx::catalog m(dst.path);
        int64_t checked = 0, bad = 0;
        CHECK(ckptdb_verify_all(&checked, &bad, m.handle(), nullptr, nullptr) == CKPTDB_OK);
        CHECK(checked == 7);
    }
}

// Several threads of one process sharing one catalog handle, each saving
// (with rotation) through saves of its own, while another thread lists the
// catalog through cursors: every committed id is distinct and in the
// catalog, and the invariants hold. Run under ThreadSanitizer by
// tests/run.sh, where any data race fails the suite.
//
//   CKPTDB_STRESS_SAVES  saves per thread (default 40)
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "stress.hpp"

static stress::Figures g_fig("stress-threads");

TEST_CASE("threads sharing one handle save and rotate concurrently; nothing lost or duplicated") {
    const int threads = 6;
    const long saves = stress::env_long("CKPTDB_STRESS_SAVES", 40);
    t::TempDir d;
    ckptdb_catalog *db = nullptr;
    REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
    ckptdb_retention keep = CKPTDB_RETENTION_INIT;
    keep.keep_last_default = 3;
    REQUIRE(ckptdb_set_retention(db, &keep) == CKPTDB_OK);

    std::mutex mu;
    std::vector<int64_t> ids;
    std::vector<std::string> errors;
    std::atomic<bool> saving{true};
    std::atomic<long> listed{0};
    auto saver = [&](int th) {
        const char *kinds[] = {"epoch", "time", "step", "manual"};
        std::vector<unsigned char> bytes;
        for (long i = 0; i < saves; i++) {
            bytes.assign(static_cast<size_t>(100 + (th * 7919 + i * 104729) % 20000),
                         static_cast<unsigned char>(th * 31 + i));
            std::string meta = "{\"thread\": " + std::to_string(th) + ", \"i\": " + std::to_string(i) + "}";
            ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
            o.metadata = meta.c_str();
            ckptdb_save *s = nullptr;
            int rc = ckptdb_save_begin(&s, db, kinds[(th + i) % 4], i, th * 100000 + i, &o);
            if (rc == CKPTDB_OK) rc = ckptdb_save_write(s, bytes.data(), bytes.size());
            ckptdb_entry e = CKPTDB_ENTRY_INIT;
            if (rc == CKPTDB_OK) rc = ckptdb_save_commit(&e, s);
            std::lock_guard<std::mutex> lock(mu);
            if (rc == CKPTDB_OK)
                ids.push_back(e.id);
            else
                errors.push_back("thread " + std::to_string(th) + " save " + std::to_string(i) + ": " +
                                 ckptdb_strerror(rc) + ": " + ckptdb_last_error());
            ckptdb_save_free(s);
        }
    };
    auto lister = [&] {
        while (saving.load()) {
            ckptdb_cursor *c = nullptr;
            if (ckptdb_cursor_open(&c, db, nullptr) != CKPTDB_OK) {
                std::lock_guard<std::mutex> lock(mu);
                errors.push_back(std::string("cursor: ") + ckptdb_last_error());
                return;
            }
            ckptdb_entry e = CKPTDB_ENTRY_INIT;
            while (ckptdb_cursor_next(&e, c) == CKPTDB_OK) listed++;
            ckptdb_cursor_free(c);
        }
    };
    std::thread reader(lister);
    std::vector<std::thread> pool;
    for (int th = 0; th < threads; th++) pool.emplace_back(saver, th);
    for (auto &th : pool) th.join();
    saving = false;
    reader.join();
    REQUIRE(ckptdb_close(db) == CKPTDB_OK);

    CHECK_MESSAGE(errors.empty(), stress::join(errors));
    CHECK(static_cast<long>(ids.size()) == threads * saves);
    harness::Expect expect;
    expect.acknowledged.insert(ids.begin(), ids.end());
    CHECK(expect.acknowledged.size() == ids.size());  // no id handed out twice
    CHECK(listed.load() > 0);
    g_fig.acknowledged = static_cast<long>(ids.size());
    const std::string cat = t::catalog_path(d);
    CHECK(t::query1(cat, "SELECT count(*) FROM checkpoints") == std::to_string(threads * saves));
    CHECK(t::query1(cat,
                    "SELECT count(DISTINCT json_extract(metadata, '$.thread') || ':' || "
                    "json_extract(metadata, '$.i')) FROM checkpoints") == std::to_string(threads * saves));
    expect.newest_complete_seq = stress::newest_complete_seq(d.path);
    CHECK(expect.newest_complete_seq == threads * saves);
    auto bad = stress::all_checks(d.path, expect);
    g_fig.cases++;
    g_fig.violations += static_cast<long>(bad.size());
    CHECK_MESSAGE(bad.empty(), stress::join(bad));
}

// Eight processes saving, rotating, pinning and pruning in one directory at
// once: every save each process was told is durable is in the catalog
// exactly once (complete, or pruned by a rule), no caller ever sees a busy
// error, and the invariants hold.
//
//   CKPTDB_STRESS_SAVES  saves per process (default 60)
#include <doctest/doctest.h>

#include <map>
#include <memory>

#include "stress.hpp"

static stress::Figures g_fig("stress-procs");

TEST_CASE("8 processes saving and rotating at once: nothing lost or duplicated, no busy error, invariants hold") {
    const int procs = 8;
    const long saves = stress::env_long("CKPTDB_STRESS_SAVES", 60);
    t::TempDir d;
    std::vector<std::unique_ptr<stress::Helper>> kids;
    for (int p = 0; p < procs; p++) {
        std::vector<std::string> args{
            "loop",        d.path,  "--seed",  std::to_string(p + 1), "--count", std::to_string(saves),
            "--max-bytes", "32768", "--prunes"};
        if (p % 2 == 0) args.push_back("--pins");
        kids.push_back(std::make_unique<stress::Helper>(args));
    }
    std::map<int64_t, int> owner;  // acknowledged id -> process
    harness::Expect expect;
    for (int p = 0; p < procs; p++) {
        auto lines = kids[size_t(p)]->lines();
        CHECK_MESSAGE(kids[size_t(p)]->exit_code() == 0, "process " << p << ":\n" << stress::join(lines));
        REQUIRE(!lines.empty());
        // No busy error, nor any other, reached the caller.
        for (const auto &l : lines) CHECK_MESSAGE(l.rfind("ERR", 0) != 0, "process " << p << ": " << l);
        CHECK(lines.back() == "DONE " + std::to_string(saves));
        auto ids = stress::acks(lines);
        CHECK(static_cast<long>(ids.size()) == saves);
        for (int64_t id : ids) {
            // Never the same id acknowledged twice, in one process or two.
            CHECK_MESSAGE(owner.count(id) == 0,
                          "id " << id << " acknowledged by processes " << owner[id] << " and " << p);
            owner[id] = p;
            expect.acknowledged.insert(id);
        }
    }
    g_fig.acknowledged = static_cast<long>(expect.acknowledged.size());
    const std::string cat = t::catalog_path(d);
    const std::string all = std::to_string(procs * saves);
    // One row per save: none lost, none duplicated, none left over.
    CHECK(t::query1(cat, "SELECT count(*) FROM checkpoints") == all);
    CHECK(t::query1(cat,
                    "SELECT count(DISTINCT json_extract(metadata, '$.seed') || ':' || json_extract(metadata, '$.i')) "
                    "FROM checkpoints") == all);
    CHECK(t::query1(cat, "SELECT count(*) FROM checkpoints WHERE status IN ('complete', 'pruned')") == all);
    CHECK(t::query1(cat, "SELECT count(*) FROM events WHERE event = 'committed'") == all);
    CHECK(t::query1(cat, "SELECT count(*) FROM runs WHERE exit_reason IN ('clean', 'preempted')") ==
          std::to_string(procs));
    // Rotation ran: the directory holds only what the policy keeps.
    CHECK(stress::query_i64(cat, "SELECT count(*) FROM checkpoints WHERE status = 'pruned'") > procs * saves / 2);
    expect.newest_complete_seq = stress::newest_complete_seq(d.path);
    CHECK(expect.newest_complete_seq == procs * saves);
    auto bad = stress::all_checks(d.path, expect);
    g_fig.cases++;
    g_fig.violations += static_cast<long>(bad.size());
    CHECK_MESSAGE(bad.empty(), stress::join(bad));
    // On disk: exactly the complete checkpoints, the catalog, last.pt and the reserve.
    std::set<std::string> want, have;
    for (const auto &n : t::query(cat, "SELECT name FROM checkpoints WHERE status = 'complete'")) want.insert(n);
    want.insert(".ckptdb-ballast");
    for (const auto &n : t::names(d.path))
        if (n.rfind("ckptdb.sqlite", 0) != 0 && n != "last.pt") have.insert(n);
    CHECK(have == want);
}

// Random kills: save loops (rotation, pins, prunes by hand) run in helper
// processes and are SIGKILLed after random delays, then restarted, over and
// over. After every kill the directory must recover to a state where every
// acknowledged save is still there (complete, or pruned by a rule), the
// newest complete checkpoint before the kill is still resumable, and the
// invariants I1-I6 hold.
//
//   CKPTDB_CRASH_ITERATIONS  kills to deliver (default 300)
//   CKPTDB_STRESS_SEED       repeat a run (the seed is printed)
#include <doctest/doctest.h>

#include <chrono>
#include <memory>

#include "stress.hpp"

static stress::Figures g_fig("stress-kills");

TEST_CASE("save loops SIGKILLed after random delays recover with every acknowledged save and the invariants intact") {
    const long target = stress::env_long("CKPTDB_CRASH_ITERATIONS", 300);
    stress::Rng rng(stress::seed("stress-kills"));
    t::TempDir d;
    harness::Expect expect;
    long rounds = 0;
    auto t0 = std::chrono::steady_clock::now();
    while (g_fig.kills < target) {
        rounds++;
        CAPTURE(rounds);
        // One writer, or two racing in the same directory.
        int procs = rng.below(3) == 0 ? 2 : 1;
        std::vector<std::unique_ptr<stress::Helper>> kids;
        for (int p = 0; p < procs; p++) {
            std::vector<std::string> args{"loop",   d.path,    "--seed", std::to_string(rng.next() % 1000000000),
                                          "--pins", "--prunes"};
            // Mostly small saves (kills land in every step of many saves),
            // sometimes larger ones (kills land inside the writes).
            args.push_back("--max-bytes");
            args.push_back(rng.below(4) == 0 ? "1048576" : "65536");
            kids.push_back(std::make_unique<stress::Helper>(args));
        }
        // 0-2 ms: inside the open and its recovery; 0-60 ms: the first
        // saves; 60-250 ms: a loop well under way (saves acknowledged).
        uint64_t pick = rng.below(5);
        uint64_t delay_us = pick == 0 ? rng.below(2000) : pick < 3 ? rng.below(60000) : 60000 + rng.below(190000);
        ::usleep(static_cast<useconds_t>(delay_us));
        std::vector<int64_t> round_acks;
        for (auto &k : kids) {
            k->kill9();
            auto lines = k->lines();
            for (const auto &l : lines) {
                // A helper that died on its own (an error) is a failure.
                CHECK_MESSAGE(l.rfind("ERR", 0) != 0, l);
            }
            if (k->killed()) g_fig.kills++;
            for (int64_t id : stress::acks(lines)) round_acks.push_back(id);
        }
        g_fig.acknowledged += static_cast<long>(round_acks.size());
        expect.acknowledged.insert(round_acks.begin(), round_acks.end());
        if (t::exists(t::catalog_path(d))) {
            // The newest checkpoint complete before the kill: the newest
            // after the last check, or a save acknowledged since.
            expect.newest_complete_seq = std::max(expect.newest_complete_seq, stress::max_seq_of(d.path, round_acks));
        }
        auto bad = stress::all_checks(d.path, expect);
        g_fig.cases++;
        g_fig.violations += static_cast<long>(bad.size());
        REQUIRE_MESSAGE(bad.empty(), "after kill round " << rounds << " (delay " << delay_us << " us):\n"
                                                         << stress::join(bad));
        // The baseline for the next round: what recovery left complete.
        expect.newest_complete_seq = stress::newest_complete_seq(d.path);
    }
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto cat = t::catalog_path(d);
    long recovered = static_cast<long>(stress::query_i64(cat, "SELECT count(*) FROM events WHERE event = 'recovered'"));
    long crashed = static_cast<long>(stress::query_i64(cat, "SELECT count(*) FROM runs WHERE exit_reason = 'crashed'"));
    std::printf(
        "stress-kills: %ld rounds, %ld kills in %.1f s; %ld saves resolved by recovery, %ld runs ended as "
        "crashed\n",
        rounds, g_fig.kills, secs, recovered, crashed);
    // The kills did land inside saves: recovery had work to do.
    CHECK(recovered >= std::min<long>(10, target / 30));
    CHECK(g_fig.acknowledged > 0);
}

// Deterministic real kills at every I/O operation: a helper process
// (fork+exec) runs a scenario, stops at operation k ("PAUSED k <op>", the
// library's calls and SQLite's counted together) and is SIGKILLed there, for
// every k until the scenario completes; then the directory is recovered and
// checked (I1-I6, recovery twice, integrity_check, every acknowledged commit
// kept).
#include <doctest/doctest.h>

#include <functional>

#include "common.hpp"

namespace {

common::Figures g_fig;

void kill_everywhere(const std::string &scenario, const std::function<void(const std::string &)> &prepare = nullptr) {
    trace::Image start;
    if (prepare) {
        common::Scratch tmpl;
        prepare(tmpl.path);
        start = common::image(tmpl.path);
    }
    const long step = common::sanitized() ? 3 : 1;
    long ops = 0;
    for (long k = 1;; k += step) {
        common::Scratch run;
        trace::materialise(start, run.path);
        std::vector<std::string> args{"pause", scenario, run.path, std::to_string(k)};
        if (prepare) args.push_back("--no-setup");
        common::Helper h(args);
        common::Acks acks;
        std::string l;
        for (l = h.line(); !l.empty(); l = h.line())
            if (!common::parse_line(l, acks)) break;
        g_fig.runs++;
        if (acks.done.rfind("DONE ", 0) == 0) {
            h.wait();
            ops = std::atol(acks.done.c_str() + 5);
            CHECK_MESSAGE(acks.done.find(" 0 ") != std::string::npos, "the scenario failed unharmed: ", acks.done);
            break;
        }
        REQUIRE_MESSAGE(acks.done.rfind("PAUSED " + std::to_string(k) + " ", 0) == 0, "helper said: ", acks.done);
        h.kill9();
        g_fig.kills++;
        harness::Expect x;
        for (const auto &b : acks.base) {
            x.acknowledged.insert(b.first);
            x.newest_complete_seq = std::max(x.newest_complete_seq, b.second);
        }
        for (const auto &a : acks.acked) {
            x.acknowledged.insert(a.first);
            x.newest_complete_seq = std::max(x.newest_complete_seq, a.second);
        }
        std::string dir = run.path + "/a";
        if (!t::exists(dir) && x.acknowledged.empty()) continue;  // killed before the directory existed
        auto v = harness::check_invariants(dir, x);
        g_fig.violations += static_cast<long>(v.size());
        CHECK_MESSAGE(v.empty(), scenario, ": killed at ", acks.done, "\n", harness::join(v));
    }
    std::printf("kills / %s: %ld I/O operations, killed at %s\n", scenario.c_str(), ops,
                step == 1 ? "every one" : "every third");
    std::fflush(stdout);
}

struct PrintAtExit {
    ~PrintAtExit() { g_fig.print("kills at every operation"); }
} g_print;

}  // namespace

TEST_CASE("killed at every I/O operation of saves with rotation") { kill_everywhere("saves"); }
TEST_CASE("killed at every I/O operation of a recovery") { kill_everywhere("recovery", common::killed_writers); }
TEST_CASE("killed at every I/O operation of a prune") { kill_everywhere("prune"); }

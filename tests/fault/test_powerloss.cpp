// Simulated power loss (after ALICE and CrashMonkey): a helper process runs a
// scenario with every disk-changing operation of the library and of SQLite
// recorded, with its sync barriers (trace.hpp). From the trace, crash states
// are built: every prefix; every prefix with all unsynced operations lost;
// just before each barrier, each operation it would make durable lost on its
// own; the last write torn three ways. Each state is materialised in a fresh
// directory, recovered and resumed through libckptdb.so, and checked: I1-I6,
// recovery twice, integrity_check; every commit acknowledged before the crash
// point survives (I4). The bounded run samples a few hundred states;
// CKPTDB_CRASH_ITERATIONS multiplies the sample (a nightly run: 50).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <random>

#include "common.hpp"
#include "scenarios.hpp"

namespace {

common::Figures g_fig;
long g_generated = 0;

// Records the scenario in a helper process; returns its trace and output.
std::vector<trace::Event> record(const std::string &scenario, const std::string &root, bool setup, common::Acks &acks,
                                 const std::string &trace_file) {
    std::vector<std::string> args{"record", scenario, root, trace_file};
    if (!setup) args.push_back("--no-setup");
    common::Helper h(args);
    for (std::string l = h.line(); !l.empty(); l = h.line()) common::parse_line(l, acks);
    int st = h.wait();
    REQUIRE_MESSAGE(WIFEXITED(st), "the recording helper died");
    REQUIRE_MESSAGE(WEXITSTATUS(st) == 0, acks.done);
    return trace::load(trace_file);
}

void power_loss(const std::string &scenario, size_t sample,
                const std::function<void(const std::string &)> &prepare = nullptr) {
    common::Scratch work;
    const std::string root = work.path + "/run";
    REQUIRE(::mkdir(root.c_str(), 0755) == 0);
    if (prepare) prepare(root);
    common::Acks acks;
    std::vector<trace::Event> ev = record(scenario, root, !prepare, acks, work.path + "/trace");
    {
        // The recorder's own check: replaying the whole trace gives the
        // directory the helper left.
        trace::CrashState all{ev.size(), {}, -1, 0, "all"};
        trace::Image replay = trace::image_of(ev, all), real = common::image(root);
        std::string diff;
        // The reserve's blocks (.ckptdb-ballast) are allocated by fallocate,
        // which the trace does not record: its name is replayed, not its
        // zeros (a crash state's short reserve is made whole by the open).
        auto reserve = [](const std::string &p) {
            const std::string n = "/.ckptdb-ballast";
            return p == n.substr(1) || (p.size() > n.size() && p.compare(p.size() - n.size(), n.size(), n) == 0);
        };
        for (const auto &kv : real) {
            auto it = replay.find(kv.first);
            if (it == replay.end())
                diff += "missing in the replay: " + kv.first + "\n";
            else if (it->second != kv.second && !(reserve(kv.first) && it->second[0] == 'f'))
                diff += "differs: " + kv.first + " (" + std::to_string(kv.second.size()) + " vs " +
                        std::to_string(it->second.size()) + " bytes)\n";
        }
        for (const auto &kv : replay)
            if (!real.count(kv.first)) diff += "only in the replay: " + kv.first + "\n";
        REQUIRE_MESSAGE(diff.empty(), diff);
    }
    if (std::getenv("CKPTDB_TRACE_DUMP"))
        for (size_t i = 0; i < ev.size(); i++)
            std::fprintf(stderr, "%zu %s ino=%lld off=%lld %s %s len=%zu\n", i, trace::op_name(ev[i].op),
                         static_cast<long long>(ev[i].ino), static_cast<long long>(ev[i].off), ev[i].path.c_str(),
                         ev[i].path2.c_str(), ev[i].data.size());
    std::vector<trace::CrashState> states = trace::crash_states(ev, common::scale() > 1);
    g_generated += static_cast<long>(states.size());

    size_t acked_total = 0;
    for (const auto &e : ev) acked_total += e.op == trace::Op::ack;
    CHECK(acked_total == acks.acked.size());

    // A fixed sample (the same in every run), distinct disk images only.
    std::vector<size_t> order(states.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    std::mt19937 rng(12345);
    std::shuffle(order.begin(), order.end(), rng);
    std::set<size_t> seen;
    size_t tried = 0, shown = 0;
    for (size_t idx : order) {
        if (tried >= sample) break;
        const trace::CrashState &cs = states[idx];
        trace::Image img = trace::image_of(ev, cs);
        std::string flat;
        for (const auto &kv : img) flat += kv.first + '\0' + std::to_string(kv.second.size()) + '\0' + kv.second;
        size_t acked_before = 0;  // two states differ if they promise different acknowledged commits
        for (size_t i = 0; i < cs.prefix; i++) acked_before += ev[i].op == trace::Op::ack;
        flat += '\0' + std::to_string(acked_before);
        if (!seen.insert(std::hash<std::string>()(flat)).second) continue;
        tried++;
        g_fig.crash_states++;

        harness::Expect x;
        x.kept = scen::user_files(scenario);
        for (const auto &b : acks.base) {
            x.acknowledged.insert(b.first);
            x.newest_complete_seq = std::max(x.newest_complete_seq, b.second);
        }
        for (size_t i = 0; i < cs.prefix; i++)
            if (ev[i].op == trace::Op::ack) {
                x.acknowledged.insert(ev[i].ino);
                x.newest_complete_seq = std::max(x.newest_complete_seq, ev[i].off);
            }
        common::Scratch st;
        trace::materialise(img, st.path);
        std::vector<std::string> v;
        if (t::exists(st.path + "/a")) {
            v = harness::check_invariants(st.path + "/a", x);
            if (v.empty()) {
                std::string r = common::resume_save(st.path + "/a");
                if (!r.empty()) v.push_back("resume: a save after recovery failed: " + r);
            }
        } else if (!x.acknowledged.empty()) {
            v.push_back("the checkpoint directory is gone, with acknowledged checkpoints in it");
        }
        if (t::exists(st.path + "/b")) {
            for (auto &m : harness::check_invariants(st.path + "/b", harness::Expect()))
                v.push_back("destination: " + m);
        }
        g_fig.violations += static_cast<long>(v.size());
        if (!v.empty() && shown++ < 5)
            CHECK_MESSAGE(v.empty(), scenario, ": ", cs.what, "\n", harness::join(v));
        else
            CHECK(v.empty());
    }
    std::printf("power loss / %s: %zu trace events, %zu crash states built, %zu distinct states checked\n",
                scenario.c_str(), ev.size(), states.size(), tried);
    std::fflush(stdout);
}

size_t budget(size_t base) {
    size_t n = base * static_cast<size_t>(common::scale());
    return common::sanitized() ? std::max<size_t>(base / 4, 10) : n;
}

struct PrintAtExit {
    ~PrintAtExit() {
        std::printf("power loss: %ld crash states built in all\n", g_generated);
        g_fig.print("power loss");
    }
} g_print;

}  // namespace

TEST_CASE("power loss: saves with rotation, in a directory the first open creates") {
    power_loss("saves", budget(120));
}
TEST_CASE("power loss: saves after one in an existing directory") { power_loss("fail-then-good", budget(60)); }
TEST_CASE("power loss: prune") { power_loss("prune", budget(60)); }
TEST_CASE("power loss: recovery of killed writers") { power_loss("recovery", budget(40), common::killed_writers); }
TEST_CASE("power loss: sync") { power_loss("sync", budget(40)); }
TEST_CASE("power loss: directory saves with rotation, a user's file inside the pruned one") {
    power_loss("dirs", budget(40));
}
TEST_CASE("power loss: sharded saves of two ranks with rotation") { power_loss("shards", budget(30)); }
TEST_CASE("power loss: directory saves in place with rotation, a user's file inside the pruned one") {
    power_loss("inplace", budget(30));
}

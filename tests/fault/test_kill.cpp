// Deterministic real kills at every I/O operation: a helper process
// (fork+exec) runs a scenario, stops at operation k ("PAUSED k <op>", the
// library's calls and SQLite's counted together) and is SIGKILLed there, for
// every k until the scenario completes; then the directory is recovered and
// checked (I1-I6, recovery twice, integrity_check, every acknowledged commit
// kept).
#include <doctest/doctest.h>

#include <functional>

#include "common.hpp"
#include "scenarios.hpp"

namespace {

common::Figures g_fig;

// sample: 2 for the longer scenarios (directory and sharded saves), whose
// bounded run kills at every other operation (thinned).
void kill_everywhere(const std::string &scenario, const std::function<void(const std::string &)> &prepare = nullptr,
                     long sample = 1) {
    trace::Image start;
    if (prepare) {
        common::Scratch tmpl;
        prepare(tmpl.path);
        start = common::image(tmpl.path);
    }
    const long step = (common::sanitized() ? 3 : 1) * common::thinned(sample);
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
        x.kept = scen::user_files(scenario);
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
                step == 1 ? "every one" : ("one in " + std::to_string(step)).c_str());
    std::fflush(stdout);
}

// Rebuild and adopt, killed at every operation: the directory has its old
// state (no catalog, or the lost one) or the whole new catalog; every file
// is untouched; no temp catalog survives the next open; and running the
// same command again finishes the job.
void kill_adoption(const std::string &scenario, const std::vector<std::string> &names) {
    const long step = common::sanitized() ? 3 : 1;
    long ops = 0;
    for (long k = 1;; k += step) {
        common::Scratch run;
        common::Helper h({"pause", scenario, run.path, std::to_string(k)});
        common::Acks acks;
        for (std::string l = h.line(); !l.empty(); l = h.line())
            if (!common::parse_line(l, acks)) break;
        bool done = acks.done.rfind("DONE ", 0) == 0;
        if (done) {
            h.wait();
            ops = std::atol(acks.done.c_str() + 5);
            CHECK_MESSAGE(acks.done.find(" 0 ") != std::string::npos, "the scenario failed unharmed: ", acks.done);
        } else {
            REQUIRE_MESSAGE(acks.done.rfind("PAUSED " + std::to_string(k) + " ", 0) == 0, "helper said: ", acks.done);
            h.kill9();
            g_fig.kills++;
        }
        g_fig.runs++;
        const std::string dir = run.path + "/a";
        const std::string where = scenario + ": killed at " + acks.done;
        std::vector<std::string> v;
        auto files_intact = [&] {
            for (size_t i = 0; i < names.size(); i++)
                if (!t::exists(dir + "/" + names[i]) ||
                    t::read_file(dir + "/" + names[i]) != scen::bytes_for(static_cast<int>(i) + 1, 3000))
                    v.push_back(names[i] + " was changed or removed");
        };
        files_intact();
        auto whole = [&](const std::shared_ptr<ckptdb::Catalog> &cat) {
            int complete = 0;
            for (const ckptdb::Entry &e : cat->entries_page(0, 1u << CKPTDB_STATUS_COMPLETE, std::nullopt, 100)) {
                complete++;
                if (!e.pinned) v.push_back(e.name + " was taken in without a pin");
            }
            if (complete != static_cast<int>(names.size()))
                v.push_back("the catalog holds " + std::to_string(complete) + " of " + std::to_string(names.size()) +
                            " checkpoints");
            auto newest = cat->latest(std::nullopt, ckptdb::Catalog::Verify::full);
            if (!newest || newest->name != names.back())
                v.push_back("the newest is " + (newest ? newest->name : std::string("none")) + ", not " + names.back());
        };
        if (!t::exists(dir)) {
            v.push_back("the directory is gone");
        } else {
            bool installed = false;
            try {
                whole(ckptdb::Catalog::open(dir, ckptdb::OpenOptions()));
                installed = true;
            } catch (const ckptdb::Error &e) {
                // Not installed: the open refuses (no usable catalog) ...
                if (e.code() != CKPTDB_ENOTCATALOG) v.push_back(std::string("open failed: ") + e.what());
            }
            if (!installed) {
                // ... and the same command again finishes the job.
                try {
                    ckptdb::Catalog::rebuild(
                        dir, ckptdb::OpenOptions(), nullptr,
                        scenario == "adopt" ? ckptdb::Catalog::Adoption::adopt : ckptdb::Catalog::Adoption::rebuild);
                    whole(ckptdb::Catalog::open(dir, ckptdb::OpenOptions()));
                } catch (const ckptdb::Error &e) {
                    v.push_back(std::string("running it again failed: ") + e.what());
                }
            }
            for (const std::string &n : t::names(dir))
                if (n.find(".new-") != std::string::npos || n.rfind(".ckptdb-tmp-", 0) == 0)
                    v.push_back("left behind after the next open: " + n);
            files_intact();
        }
        g_fig.violations += static_cast<long>(v.size());
        CHECK_MESSAGE(v.empty(), where, "\n", harness::join(v));
        if (done) break;
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
// Every other operation in the bounded run, every one in a nightly-sized run.
TEST_CASE("killed at I/O operations of directory saves with rotation") { kill_everywhere("dirs", nullptr, 2); }
TEST_CASE("killed at I/O operations of sharded saves with rotation") { kill_everywhere("shards", nullptr, 2); }
TEST_CASE("killed at I/O operations of directory saves in place with rotation") {
    kill_everywhere("inplace", nullptr, 2);
}

TEST_CASE("killed at every I/O operation of a rebuild of a lost catalog") {
    kill_adoption("rebuild", {"epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "epoch_004.pt"});
}
TEST_CASE("killed at every I/O operation of an adopt") {
    kill_adoption("adopt", {"epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"});
}

// Fault injection, SQLite's method: for each scenario, fail I/O operation
// k = 1, 2, ... (the library's own calls and SQLite's, counted together)
// until the scenario completes without reaching k; once and persistently;
// EIO, ENOSPC, EDQUOT, a short write, EINTR. After each: the call failed with
// a clear error (or absorbed the fault), and with the fault cleared the
// invariants hold, nothing acknowledged is lost, and the directory takes a
// new save. Runs in this process: the engine is linked statically with the
// test seam; the invariants are checked through libckptdb.so, whose I/O is
// the real one.
#include <doctest/doctest.h>

#include <chrono>

#include "common.hpp"
#include "faultio.hpp"
#include "scenarios.hpp"

namespace {

common::Figures g_fig;

struct Variant {
    faultio::Mode mode;
    int err;
    const char *name;
    bool exhaustive;  // every k in the bounded run (others: every stride-th k)
};

const Variant k_variants[] = {
    {faultio::Mode::errno_once, EIO, "EIO once", true},
    {faultio::Mode::errno_always, EIO, "EIO persistent", false},
    {faultio::Mode::errno_once, ENOSPC, "ENOSPC once", false},
    {faultio::Mode::errno_always, ENOSPC, "ENOSPC persistent", false},
    {faultio::Mode::errno_once, EDQUOT, "EDQUOT once", false},
    {faultio::Mode::errno_always, EDQUOT, "EDQUOT persistent", false},
    {faultio::Mode::short_write, 0, "short write, then full", false},
    {faultio::Mode::eintr_once, 0, "EINTR once", false},
    {faultio::Mode::eintr_always, 0, "EINTR storm (16 in a row)", false},
};

bool clear_error(int code, const std::string &msg) {
    switch (code) {
        case CKPTDB_EIO:
        case CKPTDB_ENOSPC:
        case CKPTDB_EDB:
        case CKPTDB_EPERM:
        case CKPTDB_ENOTFOUND:
        case CKPTDB_ECORRUPT:
        case CKPTDB_EBUSY:
            return !msg.empty();
        default:
            return false;
    }
}

// Complete checkpoints of a directory before the body runs: acknowledged.
harness::Expect expect_from(const std::string &dir) {
    harness::Expect x;
    x.newest_complete_seq = harness::newest_complete_seq(dir);
    if (t::exists(dir + "/ckptdb.sqlite"))
        for (const auto &id : t::query(dir + "/ckptdb.sqlite", "SELECT id FROM checkpoints WHERE status = 'complete'"))
            x.acknowledged.insert(std::stoll(id));
    return x;
}

// sample: 2 for the longer scenarios (directory and sharded saves), whose
// bounded run tries every other k of "EIO once" too (thinned).
void inject(const std::string &scenario, const std::function<void(const std::string &root)> &prepare = nullptr,
            long sample = 1) {
    const scen::Scenario *s = scen::find(scenario);
    REQUIRE(s);
    faultio::install();
    common::Scratch tmpl;
    if (prepare) prepare(tmpl.path);
    s->setup(tmpl.path);
    trace::Image start = common::image(tmpl.path);
    // The bounded run tries every k for "EIO once" and every 8th k for the
    // other kinds (a different residue per kind, so that together they
    // still cover every k); CKPTDB_CRASH_ITERATIONS=8 or more tries every k
    // of every kind. Under the sanitizers, a quarter of that.
    const long stride = std::max(1L, 8 / common::scale()) * (common::sanitized() ? 4 : 1);
    long residue = 0;
    for (const Variant &v : k_variants) {
        long step = v.exhaustive ? (common::sanitized() ? 4 : 1) * common::thinned(sample) : stride;
        long first = 1 + (residue++ % step);
        for (long k = first;; k += step) {
            auto t_start = std::chrono::steady_clock::now();
            common::Scratch run;
            trace::materialise(start, run.path);
            harness::Expect before_a = expect_from(run.path + "/a");
            harness::Expect x = before_a;
            x.kept = scen::user_files(scenario);
            std::set<int64_t> acked;
            faultio::Fault f;
            f.mode = v.mode;
            f.k = k;
            f.err = v.err ? v.err : EIO;
            faultio::arm(f);
            scen::Result r = s->body(run.path, [&](int64_t id, int64_t seq) {
                acked.insert(id);
                if (seq > x.newest_complete_seq) x.newest_complete_seq = seq;
            });
            bool reached = faultio::reached();
            std::string hit = faultio::st().last_hit;
            faultio::disarm();
            g_fig.runs++;
            if (!reached) {
                if (std::getenv("CKPTDB_FAULT_VERBOSE"))
                    std::fprintf(stderr, "%s / %s: %ld operations, %ld runs so far\n", scenario.c_str(), v.name, k - 1,
                                 g_fig.runs);
                CHECK_MESSAGE(r.code == 0, scenario, ": without a fault the scenario failed: ", r.message);
                break;
            }
            g_fig.faults++;
            CAPTURE(scenario);
            const std::string variant = v.name;
            CAPTURE(variant);
            CAPTURE(k);
            CAPTURE(hit);
            if (r.code != 0) CHECK_MESSAGE(clear_error(r.code, r.message), "code ", r.code, ": ", r.message);
            // One fault fails at most the one call it hit: every other save
            // on the same handle succeeds.
            if (scenario == "fail-then-good" && r.saves_ok + r.failed_calls > 0 &&
                (v.mode == faultio::Mode::errno_once || v.mode == faultio::Mode::eintr_once))
                CHECK_MESSAGE(r.failed_calls <= 1, r.failed_calls, " saves failed after a one-off fault: ", r.message);
            x.acknowledged.insert(acked.begin(), acked.end());
            auto t_body = std::chrono::steady_clock::now();
            auto viol = harness::check_invariants(run.path + "/a", x);
            auto t_check = std::chrono::steady_clock::now();
            if (scenario == "sync" && t::exists(run.path + "/b")) {
                harness::Expect xb;
                if (r.code == 0) xb = before_a;  // a sync that returned OK holds every complete checkpoint
                auto vb = harness::check_invariants(run.path + "/b", xb);
                for (auto &m : vb) viol.push_back("destination: " + m);
            }
            g_fig.violations += static_cast<long>(viol.size());
            CHECK_MESSAGE(viol.empty(), harness::join(viol));
            std::string resumed = common::resume_save(run.path + "/a");
            CHECK_MESSAGE(resumed.empty(), "a save after the fault was cleared failed: ", resumed);
            if (std::getenv("CKPTDB_FAULT_VERBOSE")) {
                auto ms =
                    std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t_start)
                        .count();
                auto ms1 = std::chrono::duration_cast<std::chrono::milliseconds>(t_body - t_start).count();
                auto ms2 = std::chrono::duration_cast<std::chrono::milliseconds>(t_check - t_body).count();
                if (ms > 100)
                    std::fprintf(stderr, "slow: %s k=%ld hit %s: %ld ms (to body end %ld, check %ld) (%s)\n", v.name, k,
                                 hit.c_str(), static_cast<long>(ms), static_cast<long>(ms1), static_cast<long>(ms2),
                                 r.message.c_str());
            }
        }
    }
}

struct PrintAtExit {
    ~PrintAtExit() { g_fig.print("fault injection"); }
} g_print;

}  // namespace

TEST_CASE("fault injection: saves with rotation") { inject("saves"); }
TEST_CASE("fault injection: a failing save, then good ones on the same handle") { inject("fail-then-good"); }
TEST_CASE("fault injection: prune") { inject("prune"); }
TEST_CASE("fault injection: recovery of killed writers") { inject("recovery", common::killed_writers); }
TEST_CASE("fault injection: sync") { inject("sync"); }
TEST_CASE("fault injection: directory saves with rotation, a user's file inside the pruned one") {
    inject("dirs", nullptr, 2);
}
TEST_CASE("fault injection: sharded saves of two ranks with rotation") { inject("shards", nullptr, 2); }
TEST_CASE("fault injection: directory saves in place with rotation, a user's file inside the pruned one") {
    inject("inplace", nullptr, 4);
}

// Defects the loop above found, kept as cases of their own.

TEST_CASE("regression: a failing lookup while a save picks its default name fails the save instead of looping") {
    faultio::install();
    common::Scratch root;
    auto cat = ckptdb::Catalog::open(scen::dir_a(root.path), ckptdb::OpenOptions());
    faultio::Fault f;
    f.mode = faultio::Mode::errno_always;
    f.k = 1;
    f.only = "fstatat";
    faultio::arm(f);
    int code = 0;
    std::string msg;
    try {
        scen::save_one(cat, 1);
    } catch (const ckptdb::Error &e) {
        code = e.code();
        msg = e.what();
    }
    faultio::disarm();
    CHECK(code == CKPTDB_EIO);
    CHECK(msg.find("cannot look up") != std::string::npos);
    cat.reset();
    auto v = harness::check_invariants(scen::dir_a(root.path), harness::Expect());
    CHECK_MESSAGE(v.empty(), harness::join(v));
}

TEST_CASE("regression: a read error while latest verifies the newest checkpoint never marks it corrupt") {
    faultio::install();
    common::Scratch root;
    auto cat = ckptdb::Catalog::open(scen::dir_a(root.path), ckptdb::OpenOptions());
    ckptdb::Entry old = scen::save_one(cat, 1);
    ckptdb::Entry newest = scen::save_one(cat, 2);
    for (const char *op : {"open", "pread"}) {
        CAPTURE(op);
        faultio::Fault f;
        f.mode = faultio::Mode::errno_once;
        f.k = 1;
        f.only = op;
        faultio::arm(f);
        std::optional<ckptdb::Entry> got = cat->latest(std::nullopt, ckptdb::Catalog::Verify::full);
        faultio::disarm();
        REQUIRE(got);
        CHECK(got->id == old.id);  // skipped for this call only
        CHECK(cat->entry(newest.id).status == CKPTDB_STATUS_COMPLETE);
        CHECK(cat->latest(std::nullopt, ckptdb::Catalog::Verify::full)->id == newest.id);
    }
    // Nothing readable at all: an I/O error, not "nothing found", and nothing marked.
    faultio::Fault f;
    f.mode = faultio::Mode::errno_always;
    f.k = 1;
    f.only = "pread";
    faultio::arm(f);
    int code = 0;
    try {
        cat->latest(std::nullopt, ckptdb::Catalog::Verify::full);
    } catch (const ckptdb::Error &e) {
        code = e.code();
    }
    faultio::disarm();
    CHECK(code == CKPTDB_EIO);
    CHECK(cat->entry(newest.id).status == CKPTDB_STATUS_COMPLETE);
    CHECK(cat->entry(old.id).status == CKPTDB_STATUS_COMPLETE);
}

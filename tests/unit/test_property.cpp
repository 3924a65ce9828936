// Property test: random sequences of save, commit, abort, pin, prune and
// reopen under random retention policies. After every step the invariants
// (docs/DESIGN.md, "Invariants") are checked against the catalog and directory:
//   - every complete row names a file of the recorded size (I1);
//   - the newest complete checkpoint before a step is still complete after it,
//     unless a newer one was committed (I2, I6);
//   - no pinned checkpoint and none of the best K is ever pruned (I6);
//   - a save in flight is never touched, and no temp file outlives a reopen (I3);
//   - last.pt names the newest complete checkpoint.
// CKPTDB_PROPERTY_SEQUENCES (default 10000) and CKPTDB_PROPERTY_SEED set the run.
#include <doctest/doctest.h>

#include <memory>
#include <random>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

// A persistent read-only connection for the checks (one open per sequence).
struct Probe {
    sqlite3 *db = nullptr;
    explicit Probe(const std::string &path) {
        REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
    }
    ~Probe() { sqlite3_close(db); }
    std::vector<std::vector<std::string>> rows(const std::string &sql) {
        sqlite3_stmt *st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        std::vector<std::vector<std::string>> out;
        while (sqlite3_step(st) == SQLITE_ROW) {
            std::vector<std::string> r;
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *v = sqlite3_column_text(st, c);
                r.push_back(v ? reinterpret_cast<const char *>(v) : "");
            }
            out.push_back(r);
        }
        sqlite3_finalize(st);
        return out;
    }
    std::string one(const std::string &sql) {
        auto r = rows(sql);
        return r.empty() ? "" : r[0][0];
    }
};

// How many of the best k (by val_loss, smaller first; as the catalog ranks
// them) among the checkpoints complete before the step's prune, i.e. complete
// now or pruned by events after `events_before`, were pruned.
std::string best_pruned_sql(int k, const std::string &events_before) {
    return "SELECT count(*) FROM (SELECT status, metadata, commit_seq FROM ("
           "SELECT status, metadata, commit_seq FROM checkpoints WHERE status = 'complete' UNION ALL "
           "SELECT c.status, c.metadata, c.commit_seq FROM events e JOIN checkpoints c ON c.id = e.checkpoint_id "
           "WHERE e.event = 'pruned' AND e.id > " +
           events_before +
           ") "
           "ORDER BY typeof(json_extract(metadata, '$.val_loss')) NOT IN ('integer', 'real'), "
           "json_extract(metadata, '$.val_loss'), commit_seq DESC LIMIT " +
           std::to_string(k) +
           ") "
           "WHERE status = 'pruned'";
}

}  // namespace

TEST_CASE("property: the protected set and the invariants hold across random sequences") {
    const char *n_env = std::getenv("CKPTDB_PROPERTY_SEQUENCES");
    const char *seed_env = std::getenv("CKPTDB_PROPERTY_SEED");
    const int sequences = n_env ? std::atoi(n_env) : 10000;
    const uint64_t seed = seed_env ? std::strtoull(seed_env, nullptr, 10) : 20261127;
    MESSAGE("sequences " << sequences << ", seed " << seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };

    // fsync is free on tmpfs: the property is about logic, the crash suites about disks.
    if (t::exists("/dev/shm") && ::access("/dev/shm", W_OK) == 0) ::setenv("TMPDIR", "/dev/shm", 1);
    t::TempDir d;
    const char *kinds[] = {"epoch", "time", "preempt", "manual", "step"};
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", 3), CKPTDB_KEEP_KIND("time", 2),
                               CKPTDB_KEEP_KIND("preempt", 0), CKPTDB_KEEP_KIND("manual", 0),
                               CKPTDB_KEEP_KIND("step", 1)};
    int64_t epoch = 0, step = 0, checks = 0;

    for (int seq = 0; seq < sequences; seq++) {
        ckptdbxx::catalog c(d.path);
        CHECK(t::temp_files(d.path).empty());  // nothing of a released save survives a reopen
        ckptdb_retention policy = CKPTDB_RETENTION_INIT;
        int variant = pick(4);
        if (variant >= 1) {
            policy.keep_last = keep;
            policy.keep_last_count = 5;
            policy.keep_every_n_epochs = pick(2) ? 4 : 0;
        }
        if (variant >= 2) {
            policy.best_metric = "val_loss";
            policy.best_k = 1 + pick(2);
        }
        if (variant == 3) policy.max_bytes = 20000 + pick(20000);
        bool auto_prune = pick(3) != 0;
        REQUIRE(ckptdb_set_retention(c.handle(), auto_prune ? &policy : nullptr) == CKPTDB_OK);
        Probe p(t::catalog_path(d));
        std::vector<ckptdbxx::save> open_saves;

        int ops = 1 + pick(6);
        for (int op = 0; op < ops; op++) {
            std::string newest_before =
                p.one("SELECT commit_seq FROM checkpoints WHERE status = 'complete' ORDER BY commit_seq DESC LIMIT 1");
            std::string events_before = p.one("SELECT coalesce(max(id), 0) FROM events");
            int what = pick(10);
            if (std::getenv("CKPTDB_PROPERTY_TRACE"))
                std::fprintf(stderr, "seq %d op %d what %d variant %d auto %d open %zu\n", seq, op, what, variant,
                             auto_prune ? 1 : 0, open_saves.size());
            if (what <= 3 || (what <= 5 && open_saves.size() >= 2)) {  // a whole save
                std::string kind = kinds[pick(5)];
                step += 1 + pick(50);
                if (kind == "epoch") epoch++;
                std::string meta = pick(4) ? "{\"val_loss\": " + std::to_string(pick(1000) / 100.0) + "}" : "{}";
                try {
                    c.save_bytes(kind, epoch, step, std::string(static_cast<size_t>(pick(4000)), 'x'), std::nullopt,
                                 meta);
                } catch (const ckptdbxx::error &e) {
                    REQUIRE_MESSAGE(e.code() == CKPTDB_ENOSPC, e.what());  // a tight budget may refuse up front
                }
            } else if (what <= 5) {  // begin and leave in flight
                try {
                    open_saves.push_back(c.begin(kinds[pick(5)], epoch, ++step));
                    open_saves.back().write(std::string(static_cast<size_t>(pick(3000)), 'y'));
                } catch (const ckptdbxx::error &e) {
                    REQUIRE_MESSAGE(e.code() == CKPTDB_ENOSPC, e.what());
                }
            } else if (what == 6 && !open_saves.empty()) {  // commit or abort one in flight
                size_t i = static_cast<size_t>(pick(static_cast<int>(open_saves.size())));
                if (pick(2))
                    open_saves[i].commit();
                else
                    open_saves[i].abort();
                open_saves.erase(open_saves.begin() + static_cast<long>(i));
            } else if (what == 7) {  // pin or unpin
                auto ids = p.rows("SELECT id, pinned FROM checkpoints WHERE status = 'complete'");
                if (!ids.empty()) {
                    auto &r = ids[static_cast<size_t>(pick(static_cast<int>(ids.size())))];
                    REQUIRE(ckptdb_pin(c.handle(), std::stoll(r[0]), r[1] == "1" ? 0 : 1) == CKPTDB_OK);
                }
            } else {  // an explicit prune, sometimes a dry run
                int dry = pick(4) == 0;
                // A cheap fingerprint of everything a prune could change.
                auto fingerprint = [&] {
                    std::string f = p.one(
                        "SELECT (SELECT coalesce(max(id), 0) FROM events) || ' ' || "
                        "(SELECT group_concat(id || status) FROM checkpoints WHERE status = 'complete')");
                    for (const auto &n : t::names(d.path)) f += " " + n;
                    return f;
                };
                std::string before = dry ? fingerprint() : "";
                REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &policy, dry, nullptr, nullptr) == CKPTDB_OK);
                if (dry) CHECK(fingerprint() == before);
            }

            // --- invariants ---
            checks++;
            for (auto &r : p.rows("SELECT name, size FROM checkpoints WHERE status = 'complete'")) {
                struct stat st;
                bool ok =
                    ::lstat((d / r[0]).c_str(), &st) == 0 && S_ISREG(st.st_mode) && std::to_string(st.st_size) == r[1];
                REQUIRE_MESSAGE(ok, "complete checkpoint " << r[0] << " has no file of " << r[1] << " bytes");
            }
            // The newest complete checkpoint may only give way to a newer complete one.
            if (!newest_before.empty())
                REQUIRE_MESSAGE(p.one("SELECT count(*) FROM checkpoints WHERE status = 'complete' AND commit_seq >= " +
                                      newest_before) != "0",
                                "the newest complete checkpoint (commit " << newest_before << ") was lost");
            REQUIRE(p.one("SELECT count(*) FROM events e JOIN checkpoints c ON c.id = e.checkpoint_id "
                          "WHERE e.event = 'pruned' AND e.id > " +
                          events_before + " AND c.pinned = 1") == "0");
            if (policy.best_metric)
                REQUIRE_MESSAGE(p.one(best_pruned_sql(policy.best_k, events_before)) == "0",
                                "one of the best " << policy.best_k << " was pruned");
            REQUIRE(p.one("SELECT count(*) FROM checkpoints WHERE status = 'writing'") ==
                    std::to_string(open_saves.size()));
            REQUIRE(t::temp_files(d.path).size() == open_saves.size());
            std::string newest =
                p.one("SELECT name FROM checkpoints WHERE status = 'complete' ORDER BY commit_seq DESC LIMIT 1");
            char buf[512];
            ssize_t n = ::readlink((d / "last.pt").c_str(), buf, sizeof buf);
            REQUIRE(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) == newest);
            for (auto &r : p.rows("SELECT name FROM checkpoints c JOIN events e ON e.checkpoint_id = c.id "
                                  "WHERE e.event = 'pruned' AND e.id > " +
                                  events_before +
                                  " AND NOT EXISTS (SELECT 1 FROM checkpoints l WHERE l.name = c.name "
                                  "AND l.status IN ('writing', 'complete', 'corrupt'))"))
                REQUIRE_MESSAGE(!t::exists(d / r[0]), "pruned " << r[0] << " is still on disk");
        }
    }
    ckptdbxx::catalog c(d.path);
    int64_t checked = 0, corrupt = 0;
    CHECK(ckptdb_verify_all(&checked, &corrupt, c.handle(), nullptr, nullptr) == CKPTDB_OK);
    CHECK(corrupt == 0);
    CHECK(t::query1(t::catalog_path(d), "PRAGMA integrity_check") == "ok");
    MESSAGE(checks << " steps checked; " << checked << " complete checkpoints verified at the end");
}

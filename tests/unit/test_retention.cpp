// Retention: each rule alone and combined, the protected set, the byte
// budget ahead of a save, pins, dry runs, the last-link, and crash-safety of
// the prune itself.
#include <doctest/doctest.h>

#include <algorithm>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

// Names of the complete checkpoints in commit order, space-separated.
std::string complete_names(const t::TempDir &d) {
    return t::query1(t::catalog_path(d),
                     "SELECT group_concat(name, ' ') FROM (SELECT name FROM checkpoints WHERE status = 'complete' "
                     "ORDER BY commit_seq)");
}

std::string joined(const std::vector<std::string> &v) {
    std::string out;
    for (const auto &x : v) out += (out.empty() ? "" : ", ") + x;
    return out;
}

std::string rule_of(const t::TempDir &d, const std::string &name) {
    return t::query1(t::catalog_path(d), "SELECT prune_rule FROM checkpoints WHERE name = '" + name +
                                             "' AND status = 'pruned' ORDER BY id DESC LIMIT 1");
}

std::string link_target(const t::TempDir &d, const std::string &link = "last.pt") {
    char buf[4096];
    ssize_t n = ::readlink((d / link).c_str(), buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

void set_policy(ckptdbxx::catalog &c, const ckptdb_retention &r) {
    REQUIRE(ckptdb_set_retention(c.handle(), &r) == CKPTDB_OK);
}

// A policy that keeps the newest `count` checkpoints of one kind.
struct KeepOne {
    ckptdb_keep_kind keep[1];
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    KeepOne(const char *kind, int count) : keep{CKPTDB_KEEP_KIND(kind, count)} {
        r.keep_last = keep;
        r.keep_last_count = 1;
    }
    KeepOne(const KeepOne &) = delete;
    KeepOne &operator=(const KeepOne &) = delete;
};

std::string meta(double loss) { return "{\"val_loss\": " + std::to_string(loss) + "}"; }

}  // namespace

TEST_CASE("the default policy keeps 5 epoch and 3 time checkpoints and drops preempt once a newer one exists") {
    t::TempDir d;
    {
        ckptdbxx::catalog c(d.path);
        ckptdb_retention r = CKPTDB_RETENTION_INIT;
        set_policy(c, r);
        for (int e = 1; e <= 8; e++) {
            c.save_bytes("epoch", e, e * 10, "e" + std::to_string(e));
            c.save_bytes("time", e, e * 10 + 5, "t" + std::to_string(e), "time_" + std::to_string(e) + ".pt");
        }
        c.save_bytes("preempt", 8, 85, "p");
        CHECK(t::exists(d / "preempt_000085.pt"));  // newest: protected
        c.save_bytes("epoch", 9, 90, "e9");
        CHECK_FALSE(t::exists(d / "preempt_000085.pt"));
        CHECK(rule_of(d, "preempt_000085.pt") == "keep_last:preempt=0");
        CHECK(complete_names(d) ==
              "epoch_005.pt epoch_006.pt time_6.pt epoch_007.pt time_7.pt epoch_008.pt time_8.pt epoch_009.pt");
        CHECK(rule_of(d, "epoch_004.pt") == "keep_last:epoch=5");
        CHECK(rule_of(d, "time_5.pt") == "keep_last:time=3");
        CHECK_FALSE(t::exists(d / "epoch_001.pt"));
        CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event = 'pruned'") == "10");
    }
    // The last rotation's deletions are recorded by the next write (here: the close).
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT count(*) FROM checkpoints WHERE status = 'pruned' AND deleted_at IS NULL") == "0");
    // Rows stay as history.
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints") == "18");
}

TEST_CASE("every Nth epoch is kept as a milestone") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    KeepOne policy("epoch", 2);
    ckptdb_retention &r = policy.r;
    r.keep_every_n_epochs = 5;
    set_policy(c, r);
    for (int e = 1; e <= 12; e++) c.save_bytes("epoch", e, e, "x");
    CHECK(complete_names(d) == "epoch_005.pt epoch_010.pt epoch_011.pt epoch_012.pt");
}

TEST_CASE("one checkpoint per time interval is kept") {
    t::TempDir d;
    {
        ckptdbxx::catalog c(d.path);
        for (int i = 0; i < 6; i++) c.save_bytes("time", 0, i, "x", "t" + std::to_string(i) + ".pt");
    }
    // Spread the commits over three hours: 0:00, 0:20, 1:10, 1:50, 2:05, 2:30.
    sqlite3 *db = nullptr;
    REQUIRE(sqlite3_open(t::catalog_path(d).c_str(), &db) == SQLITE_OK);
    const char *times[] = {"00:00", "00:20", "01:10", "01:50", "02:05", "02:30"};
    for (int i = 0; i < 6; i++) {
        std::string sql = std::string("UPDATE checkpoints SET committed_at = '2026-01-01T") + times[i] +
                          ":00.000Z' WHERE name = 't" + std::to_string(i) + ".pt'";
        REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    }
    sqlite3_close(db);
    ckptdbxx::catalog c(d.path);
    KeepOne policy("time", 1);
    ckptdb_retention &r = policy.r;
    r.keep_interval_seconds = 3600;
    int64_t count = 0;
    REQUIRE(ckptdb_prune(&count, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(count == 2);  // t1 and t3: each shares its hour with an earlier one
    CHECK(complete_names(d) == "t0.pt t2.pt t4.pt t5.pt");
}

TEST_CASE("the best K by a metric are protected; rows without the metric rank last") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    KeepOne policy("epoch", 1);
    ckptdb_retention &r = policy.r;
    r.best_metric = "val_loss";
    r.best_k = 2;
    set_policy(c, r);
    double losses[] = {0.9, 0.2, 0.5, 0.1, 0.7};
    for (int e = 0; e < 5; e++) c.save_bytes("epoch", e + 1, e, "x", std::nullopt, meta(losses[e]));
    c.save_bytes("epoch", 6, 6, "x");  // no metric
    c.save_bytes("epoch", 7, 7, "x", std::nullopt, std::string("{\"val_loss\": \"n/a\"}"));
    // Best two (0.1 and 0.2) and the newest survive.
    CHECK(complete_names(d) == "epoch_002.pt epoch_004.pt epoch_007.pt");
    CHECK(rule_of(d, "epoch_006.pt") == "keep_last:epoch=1");

    // Larger is better: accuracy.
    t::TempDir d2;
    ckptdbxx::catalog c2(d2.path);
    r.best_metric = "eval.acc";
    r.best_mode = CKPTDB_BEST_MAX;
    r.best_k = 1;
    set_policy(c2, r);
    double accs[] = {0.5, 0.8, 0.6};
    for (int e = 0; e < 3; e++)
        c2.save_bytes("epoch", e + 1, e, "x", std::nullopt, "{\"eval\": {\"acc\": " + std::to_string(accs[e]) + "}}");
    CHECK(complete_names(d2) == "epoch_002.pt epoch_003.pt");
}

TEST_CASE("pinned checkpoints are never pruned; unpinned ones go at the next prune") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    KeepOne policy("epoch", 1);
    ckptdb_retention &r = policy.r;
    set_policy(c, r);
    auto first = c.save_bytes("epoch", 1, 1, "x");
    REQUIRE(ckptdb_pin(c.handle(), first.id, 1) == CKPTDB_OK);
    c.save_bytes("epoch", 2, 2, "x");
    REQUIRE(ckptdb_pin_by_name(c.handle(), "epoch_002.pt", 1) == CKPTDB_OK);
    c.save_bytes("epoch", 3, 3, "x");
    CHECK(complete_names(d) == "epoch_001.pt epoch_002.pt epoch_003.pt");
    CHECK(c.get(first.id).pinned);
    REQUIRE(ckptdb_pin(c.handle(), first.id, 0) == CKPTDB_OK);
    c.save_bytes("epoch", 4, 4, "x");
    CHECK(complete_names(d) == "epoch_002.pt epoch_004.pt");
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event IN ('pinned', 'unpinned')") == "3");
    // Pinning something that is gone, or unknown, is refused.
    CHECK(ckptdb_pin(c.handle(), first.id, 1) == CKPTDB_EINVAL);
    CHECK(ckptdb_pin(c.handle(), 9999, 1) == CKPTDB_ENOTFOUND);
    CHECK(ckptdb_pin_by_name(c.handle(), "nope.pt", 1) == CKPTDB_ENOTFOUND);
}

TEST_CASE("a checkpoint removed at the user's word: its file goes, its row stays pruned; pinned ones are refused") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto first = c.save_bytes("epoch", 1, 1, "one");
    auto second = c.save_bytes("epoch", 2, 2, "two");
    auto third = c.save_bytes("epoch", 3, 3, "three");
    REQUIRE(ckptdb_pin(c.handle(), second.id, 1) == CKPTDB_OK);
    // A pinned checkpoint is refused, naming the pin; nothing changes.
    std::string before = t::snapshot(d);
    CHECK(ckptdb_remove(c.handle(), second.id) == CKPTDB_EINVAL);
    CHECK(std::string(ckptdb_last_error()).find("pinned") != std::string::npos);
    CHECK(t::snapshot(d) == before);
    // The newest may go too: the last link then names the newest left.
    c.remove(third.id);
    CHECK_FALSE(t::exists(d / "epoch_003.pt"));
    CHECK(link_target(d) == "epoch_002.pt");
    REQUIRE(ckptdb_remove_by_name(c.handle(), "epoch_001.pt") == CKPTDB_OK);
    CHECK_FALSE(t::exists(d / "epoch_001.pt"));
    CHECK(rule_of(d, "epoch_001.pt") == "removed");
    CHECK(rule_of(d, "epoch_003.pt") == "removed");
    CHECK(complete_names(d) == "epoch_002.pt");
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event = 'pruned' AND detail = 'removed'") ==
          "2");
    // The deletion times ride along with the next write, as a prune's do.
    c.save_bytes("epoch", 4, 4, "four");
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT count(*) FROM checkpoints WHERE deleted_at IS NULL AND status = 'pruned'") == "0");
    (void)first;
    // Read-only handles cannot remove.
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = CKPTDB_OPEN_READONLY;
    ckptdbxx::catalog ro(d.path, &o);
    CHECK(ckptdb_remove(ro.handle(), second.id) == CKPTDB_EREADONLY);
}

TEST_CASE("the checkpoint a live run resumed from is kept until that run commits a newer one") {
    t::TempDir d;
    int code = 0;  // two checkpoints saved by earlier runs
    t::run_helper({"save", d.path, "10", "--epoch", "1"}, &code);
    REQUIRE(code == 0);
    t::run_helper({"save", d.path, "10", "--epoch", "2"}, &code);
    REQUIRE(code == 0);
    ckptdbxx::catalog c(d.path);
    auto old = c.get(std::string("epoch_001.pt"));
    c.mark_resumed(old.id);  // this run rolls back on purpose
    KeepOne policy("epoch", 0);
    ckptdb_retention &r = policy.r;
    REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(complete_names(d) == "epoch_001.pt epoch_002.pt");
    c.save_bytes("epoch", 2, 3, "x", std::string("rolled.pt"));
    REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(complete_names(d) == "rolled.pt");
}

TEST_CASE("corrupt checkpoints are kept unless a prune asks for them; then they go with the rule 'corrupt'") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    auto a = c.save_bytes("manual", 0, 1, "aaaa", std::string("a.pt"));
    c.save_bytes("manual", 0, 2, "bbbb", std::string("b.pt"));
    t::write_file(a.path, "AAAA");
    CHECK_FALSE(c.verify(a.id));
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last_default = -1;
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("manual", -1)};
    r.keep_last = keep;
    r.keep_last_count = 1;
    REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(t::exists(a.path));  // quarantined
    r.prune_corrupt = 1;
    REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(rule_of(d, "a.pt") == "corrupt");
    CHECK_FALSE(t::exists(a.path));
}

TEST_CASE("a dry run returns the same plan and changes nothing") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    for (int e = 1; e <= 9; e++) c.save_bytes("epoch", e, e, "x");
    std::string before = t::snapshot(d);
    std::vector<std::string> planned;
    auto collect = [](const ckptdb_prune_item *it, void *p) {
        static_cast<std::vector<std::string> *>(p)->push_back(std::string(it->name) + " " + it->rule);
        return 0;
    };
    int64_t count = 0, bytes = 0;
    REQUIRE(ckptdb_prune(&count, &bytes, c.handle(), nullptr, 1, collect, &planned) == CKPTDB_OK);
    CHECK(count == 4);
    CHECK(bytes == 4);
    CHECK(joined(planned) ==
          "epoch_001.pt keep_last:epoch=5, epoch_002.pt keep_last:epoch=5, "
          "epoch_003.pt keep_last:epoch=5, epoch_004.pt keep_last:epoch=5");
    CHECK(t::snapshot(d) == before);
    std::vector<std::string> done;
    REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), nullptr, 0, collect, &done) == CKPTDB_OK);
    CHECK(joined(done) == joined(planned));
    CHECK(complete_names(d) == "epoch_005.pt epoch_006.pt epoch_007.pt epoch_008.pt epoch_009.pt");
}

TEST_CASE("the byte budget deletes the oldest unprotected checkpoints, rules notwithstanding") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    KeepOne policy("epoch", -1);
    ckptdb_retention &r = policy.r;
    r.max_bytes = 3500;
    set_policy(c, r);
    std::string kb(1000, 'k');
    for (int e = 1; e <= 6; e++) c.save_bytes("epoch", e, e, kb);
    CHECK(complete_names(d) == "epoch_004.pt epoch_005.pt epoch_006.pt");
    CHECK(rule_of(d, "epoch_003.pt") == "budget");
    int64_t used =
        std::stoll(t::query1(t::catalog_path(d), "SELECT sum(size) FROM checkpoints WHERE status = 'complete'"));
    CHECK(used <= 3500);
}

TEST_CASE("the budget makes room ahead of a save, and refuses up front when only protected checkpoints remain") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    std::string kb(1000, 'k');
    KeepOne policy("epoch", -1);
    ckptdb_retention &r = policy.r;
    r.max_bytes = 3000;
    set_policy(c, r);
    for (int e = 1; e <= 3; e++) c.save_bytes("epoch", e, e, kb);
    // Ahead of time: beginning the 4th save already removes the oldest.
    auto s = c.begin("epoch", 4, 4);
    CHECK_FALSE(t::exists(d / "epoch_001.pt"));
    CHECK(rule_of(d, "epoch_001.pt") == "budget");
    s.write(kb);
    s.commit();
    // Pin everything but the newest: nothing unprotected is left to delete.
    REQUIRE(ckptdb_pin_by_name(c.handle(), "epoch_002.pt", 1) == CKPTDB_OK);
    REQUIRE(ckptdb_pin_by_name(c.handle(), "epoch_003.pt", 1) == CKPTDB_OK);
    std::string before = t::snapshot(d);
    ckptdb_save *sv = nullptr;
    CHECK(ckptdb_save_begin(&sv, c.handle(), "epoch", 5, 5, nullptr) == CKPTDB_ENOSPC);
    CHECK(sv == nullptr);
    std::string msg = ckptdb_last_error();
    CHECK_MESSAGE(msg.find("epoch_002.pt") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find("pinned") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find("newest") != std::string::npos, msg);
    CHECK(t::snapshot(d) == before);
}

TEST_CASE("bad policies are refused, name the field, and delete nothing") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    for (int e = 1; e <= 7; e++) c.save_bytes("epoch", e, e, "x");
    std::string before = t::snapshot(d);
    auto refused = [&](const ckptdb_retention &r, const std::string &mention) {
        CHECK(ckptdb_set_retention(c.handle(), &r) == CKPTDB_EINVAL);
        CHECK_MESSAGE(std::string(ckptdb_last_error()).find(mention) != std::string::npos, ckptdb_last_error());
        CHECK(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_EINVAL);
    };
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    ckptdb_keep_kind neg[] = {CKPTDB_KEEP_KIND("epoch", -5)};
    r.keep_last = neg;
    r.keep_last_count = 1;
    refused(r, "keep_last for kind 'epoch'");
    ckptdb_keep_kind twice[] = {CKPTDB_KEEP_KIND("epoch", 1), CKPTDB_KEEP_KIND("epoch", 2)};
    r.keep_last = twice;
    r.keep_last_count = 2;
    refused(r, "twice");
    ckptdb_keep_kind badkind[] = {CKPTDB_KEEP_KIND("no such/kind", 1)};
    r.keep_last = badkind;
    r.keep_last_count = 1;
    refused(r, "kind 'no such/kind'");
    r = CKPTDB_RETENTION_INIT;
    r.keep_last_count = 3;
    refused(r, "keep_last is NULL");
    r = CKPTDB_RETENTION_INIT;
    r.keep_every_n_epochs = -1;
    refused(r, "keep_every_n_epochs");
    r = CKPTDB_RETENTION_INIT;
    r.keep_interval_seconds = -60;
    refused(r, "keep_interval_seconds");
    r = CKPTDB_RETENTION_INIT;
    r.max_bytes = -1;
    refused(r, "max_bytes");
    r = CKPTDB_RETENTION_INIT;
    r.best_metric = "val_loss";
    r.best_k = 0;
    refused(r, "best_k");
    r = CKPTDB_RETENTION_INIT;
    r.best_metric = "a'); DROP TABLE checkpoints; --";
    refused(r, "best_metric");
    r = CKPTDB_RETENTION_INIT;
    r.best_mode = 7;
    refused(r, "best_mode");
    r = CKPTDB_RETENTION_INIT;
    r.version = 42;
    refused(r, "version");
    r = CKPTDB_RETENTION_INIT;
    r.keep_last_default = -2;
    refused(r, "keep_last_default");
    CHECK(t::snapshot(d) == before);
}

TEST_CASE("last.pt follows the newest complete checkpoint; the catalog stays the truth") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    CHECK(link_target(d).empty());
    c.save_bytes("epoch", 1, 1, "one");
    CHECK(link_target(d) == "epoch_001.pt");
    CHECK(t::read_file(d / "last.pt") == "one");
    auto two = c.save_bytes("epoch", 2, 2, "two");
    CHECK(link_target(d) == "epoch_002.pt");
    REQUIRE(::unlink((d / "last.pt").c_str()) == 0);  // deleting the link changes nothing
    CHECK(c.latest()->name == "epoch_002.pt");
    t::write_file(two.path, "TWO");  // corruption found: the link moves back
    CHECK(c.latest()->name == "epoch_001.pt");
    CHECK(link_target(d) == "epoch_001.pt");
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.name = "last.pt";
    ckptdb_save *s = nullptr;
    CHECK(ckptdb_save_begin(&s, c.handle(), "epoch", 3, 3, &o) == CKPTDB_EINVAL);
    CHECK(t::temp_files(d.path).empty());
}

TEST_CASE("the last-link can be renamed or turned off, and never replaces a user's regular file") {
    t::TempDir a, b, u;
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.last_link = "current";
    {
        ckptdbxx::catalog c(a.path, &o);
        c.save_bytes("epoch", 1, 1, "x");
    }
    CHECK(link_target(a, "current") == "epoch_001.pt");
    CHECK_FALSE(t::exists(a / "last.pt"));
    o.last_link = "";
    {
        ckptdbxx::catalog c(b.path, &o);
        c.save_bytes("epoch", 1, 1, "x");
    }
    CHECK(t::names(b.path).count("last.pt") == 0);
    t::write_file(u / "last.pt", "the old recipe's copy");
    {
        // A regular last.pt is the old recipe's checkpoint: no catalog is
        // started beside it until it is adopted.
        ckptdb_catalog *refused = nullptr;
        CHECK(ckptdb_open(&refused, u.path.c_str(), nullptr) == CKPTDB_ENOTCATALOG);
        int64_t rows = 0;
        REQUIRE(ckptdb_adopt(&rows, u.path.c_str(), nullptr, nullptr, nullptr) == CKPTDB_OK);
        CHECK(rows == 1);
    }
    {
        ckptdbxx::catalog c(u.path);
        c.save_bytes("epoch", 1, 1, "x");
    }
    CHECK(t::read_file(u / "last.pt") == "the old recipe's copy");
    o.last_link = "../escape";
    ckptdb_catalog *db = nullptr;
    CHECK(ckptdb_open(&db, a.path.c_str(), &o) == CKPTDB_EINVAL);
}

TEST_CASE("a prune killed after marking its victims is finished by the next open") {
    t::TempDir d;
    {
        ckptdbxx::catalog c(d.path);
        for (int e = 1; e <= 8; e++) c.save_bytes("epoch", e, e, "x");
    }
    t::Child child({"prune", d.path, "--pause-at", "pruned_marked"});
    REQUIRE(child.line() == "PAUSED pruned_marked");
    child.kill9();
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT count(*) FROM checkpoints WHERE status = 'pruned' AND deleted_at IS NULL") == "3");
    CHECK(t::exists(d / "epoch_001.pt"));
    ckptdbxx::catalog c(d.path);
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT count(*) FROM checkpoints WHERE status = 'pruned' AND deleted_at IS NULL") == "0");
    CHECK_FALSE(t::exists(d / "epoch_001.pt"));
    CHECK_FALSE(t::exists(d / "epoch_003.pt"));
    CHECK(t::exists(d / "epoch_004.pt"));
    CHECK(t::query1(t::catalog_path(d), "SELECT exit_reason FROM runs WHERE id = 2") == "crashed");
}

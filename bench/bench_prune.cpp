// Retention costs, measured side by side in one run:
//  1. prune planning (ckptdb_prune dry run) with N rows in the catalog, in the
//     steady state of a long job (N - K rows of history, K complete) and in
//     the worst case (all N complete);
//  2. a small save with automatic rotation against the same save without a
//     policy, and both against the raw floor (write, fsync, rename, fsync the
//     directory) done by hand.
// Never asserts timings; fails only when an operation fails.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "ckptdb.h"

namespace {

[[noreturn]] void die_api(const char *what, int rc) {
    bench::die(std::string(what) + " failed: " + ckptdb_strerror(rc) + ": " + ckptdb_last_error());
}

void exec(sqlite3 *db, const std::string &sql) {
    char *err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) bench::die(std::string("sql: ") + err);
}

// A catalog with `rows` checkpoint rows, of which the last `complete` are
// complete (epoch and time kinds alternating, with a val_loss metric) and
// the rest pruned history.
std::string make_catalog(const std::string &dir, int rows, int complete) {
    ckptdb_catalog *h = nullptr;
    int rc = ckptdb_open(&h, dir.c_str(), nullptr);
    if (rc) die_api("ckptdb_open", rc);
    ckptdb_close(h);
    sqlite3 *db = nullptr;
    if (sqlite3_open((dir + "/ckptdb.sqlite").c_str(), &db) != SQLITE_OK) bench::die("sqlite3_open");
    exec(db, "BEGIN");
    exec(db,
         "INSERT INTO runs(host, boot_id, pid, proc_start, started_at, ended_at, exit_reason) "
         "VALUES('bench', 'none', 1, 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', 'clean')");
    sqlite3_stmt *st = nullptr;
    sqlite3_prepare_v2(db,
                       "INSERT INTO checkpoints(name, kind, epoch, step, size, checksum, status, created_at, "
                       "committed_at, deleted_at, run_id, metadata, commit_seq, prune_rule) "
                       "VALUES(?1, ?2, ?3, ?3, 1000, '00000000000000000000000000000000', ?4, "
                       "'2026-01-01T00:00:00.000Z', strftime('%Y-%m-%dT%H:%M:%fZ', 1767225600 + ?3, 'unixepoch'), "
                       "?5, 1, json_object('val_loss', ?6), ?3, ?7)",
                       -1, &st, nullptr);
    sqlite3_stmt *fl = nullptr;
    sqlite3_prepare_v2(db,
                       "INSERT INTO files(checkpoint_id, rank, name, size, checksum) VALUES(?1, 0, ?2, 1000, "
                       "'00000000000000000000000000000000')",
                       -1, &fl, nullptr);
    for (int i = 1; i <= rows; i++) {
        bool live = i > rows - complete;
        std::string kind = i % 2 ? "epoch" : "time";
        std::string name = kind + "_" + std::to_string(i) + ".pt";
        sqlite3_bind_text(st, 1, name.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, kind.c_str(), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, i);
        sqlite3_bind_text(st, 4, live ? "complete" : "pruned", -1, SQLITE_STATIC);
        if (live)
            sqlite3_bind_null(st, 5);
        else
            sqlite3_bind_text(st, 5, "2026-01-02T00:00:00.000Z", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, double((i * 7919) % 1000) / 1000.0);
        if (live)
            sqlite3_bind_null(st, 7);
        else
            sqlite3_bind_text(st, 7, "keep_last:epoch=5", -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) bench::die(sqlite3_errmsg(db));
        sqlite3_reset(st);
        sqlite3_bind_int64(fl, 1, sqlite3_last_insert_rowid(db));
        sqlite3_bind_text(fl, 2, name.c_str(), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(fl) != SQLITE_DONE) bench::die(sqlite3_errmsg(db));
        sqlite3_reset(fl);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(fl);
    exec(db, "COMMIT");
    sqlite3_close(db);
    return dir;
}

double time_plan(const std::string &dir, int calls, int64_t *victims) {
    ckptdb_catalog *db = nullptr;
    ckptdb_open_options oo = CKPTDB_OPEN_OPTIONS_INIT;
    oo.last_link = "";
    int rc = ckptdb_open(&db, dir.c_str(), &oo);
    if (rc) die_api("ckptdb_open", rc);
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.best_metric = "val_loss";
    r.best_k = 3;
    r.keep_every_n_epochs = 10;
    std::vector<double> t;
    for (int i = 0; i < calls + 3; i++) {
        double t0 = bench::now_s();
        rc = ckptdb_prune(victims, nullptr, db, &r, 1, nullptr, nullptr);
        double t1 = bench::now_s();
        if (rc) die_api("ckptdb_prune", rc);
        if (i >= 3) t.push_back(t1 - t0);
    }
    ckptdb_close(db);
    return bench::median(t);
}

double one_save(ckptdb_catalog *db, int64_t epoch, const std::vector<char> &payload) {
    double t0 = bench::now_s();
    ckptdb_save *s = nullptr;
    int rc = ckptdb_save_begin(&s, db, "epoch", epoch, epoch, nullptr);
    if (rc) die_api("ckptdb_save_begin", rc);
    rc = ckptdb_save_write(s, payload.data(), payload.size());
    if (rc) die_api("ckptdb_save_write", rc);
    rc = ckptdb_save_commit(nullptr, s);
    if (rc) die_api("ckptdb_save_commit", rc);
    ckptdb_save_free(s);
    return bench::now_s() - t0;
}

double raw_save(const std::string &dir, int i, const std::vector<char> &payload) {
    double t0 = bench::now_s();
    std::string tmp = dir + "/.raw.tmp", fin = dir + "/raw_" + std::to_string(i % 8) + ".bin";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::write(fd, payload.data(), payload.size()) != ssize_t(payload.size()) || ::fsync(fd) != 0)
        bench::die_errno("raw write " + tmp);
    ::close(fd);
    if (::rename(tmp.c_str(), fin.c_str()) != 0) bench::die_errno("rename");
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || ::fsync(dfd) != 0) bench::die_errno("fsync dir");
    ::close(dfd);
    return bench::now_s() - t0;
}

}  // namespace

int main(int argc, char **argv) {
    int rows = 100000, saves = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--rows")
            rows = std::atoi(argv[i + 1]);
        else if (a == "--saves")
            saves = std::atoi(argv[i + 1]);
        else
            bench::die("usage: bench_prune [--rows N] [--saves N]");
    }
    std::string work = bench::make_workdir("bench-prune");
    std::printf("bench_prune: ckptdb %s, %d rows, %d saves, work dir %s\n", ckptdb_version(), rows, saves,
                work.c_str());

    int64_t victims = 0;
    std::string steady = make_catalog(work + "/steady", rows, 20);
    double plan_steady = time_plan(steady, 200, &victims);
    std::printf("prune plan, %d rows (%d history + 20 complete): median %.3f ms, %lld victims\n", rows, rows - 20,
                plan_steady * 1e3, static_cast<long long>(victims));
    std::string worst = make_catalog(work + "/worst", rows, rows);
    double plan_worst = time_plan(worst, 10, &victims);
    std::printf("prune plan, %d rows all complete (worst case): median %.1f ms, %lld victims\n", rows, plan_worst * 1e3,
                static_cast<long long>(victims));

    // Small saves: with rotation, without, and the raw floor, interleaved.
    std::vector<char> payload(4096, 'p');
    ckptdb_catalog *with = nullptr, *without = nullptr;
    if (int rc = ckptdb_open(&with, (work + "/with").c_str(), nullptr)) die_api("ckptdb_open", rc);
    if (int rc = ckptdb_open(&without, (work + "/without").c_str(), nullptr)) die_api("ckptdb_open", rc);
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    if (int rc = ckptdb_set_retention(with, &r)) die_api("ckptdb_set_retention", rc);
    std::string raw_dir = work + "/raw";
    ::mkdir(raw_dir.c_str(), 0755);
    for (int i = 0; i < 10; i++) {  // reach the steady state: every save prunes one
        one_save(with, i, payload);
        one_save(without, i, payload);
    }
    std::vector<double> tw, tn, tr;
    for (int i = 10; i < 10 + saves; i++) {
        tw.push_back(one_save(with, i, payload));
        tn.push_back(one_save(without, i, payload));
        tr.push_back(raw_save(raw_dir, i, payload));
    }
    ckptdb_close(with);
    ckptdb_close(without);
    double mw = bench::median(tw), mn = bench::median(tn), mr = bench::median(tr);
    std::printf("4 KiB save with rotation %.3f ms, without %.3f ms: rotation adds %.3f ms (median of %d)\n", mw * 1e3,
                mn * 1e3, (mw - mn) * 1e3, saves);
    std::printf("raw floor (write, fsync, rename, fsync dir) %.3f ms: ckptdb without rotation %.2fx, with %.2fx\n",
                mr * 1e3, mn / mr, mw / mr);
    std::printf("RESULT prune_plan_steady_ms=%.3f\n", plan_steady * 1e3);
    std::printf("RESULT prune_plan_all_complete_ms=%.2f\n", plan_worst * 1e3);
    std::printf("RESULT save_rotation_extra_ms=%.3f\n", (mw - mn) * 1e3);
    std::printf("RESULT save_small_ratio_vs_raw=%.2f\n", mn / mr);
    bench::remove_tree(work);
    return 0;
}

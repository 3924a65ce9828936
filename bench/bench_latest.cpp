// bench_latest: ckptdb_latest() against the usual recipe's mtime scan.
//
// Builds a checkpoint directory with N small files (64 bytes each, distinct
// deterministic content, named epoch_%06d.pt, written without fsync, mtimes
// strictly increasing so the scan has a unique newest), and a catalog that
// records them: ckptdb_open() creates the schema, then the rows are
// bulk-inserted with the sqlite3 C API in one transaction following
// sql/schema/0001_initial.sql (one runs row; per file a complete checkpoints
// row with commit_seq = 1..N and its files row; checksums are XXH3-128 in
// xxh128sum's canonical hex).
//
// Then, side by side in one run, it times:
//   ckptdb_latest(NULL kind) with CKPTDB_VERIFY_NONE, _SIZE and _FULL,
//   ckptdb_latest("epoch", CKPTDB_VERIFY_NONE)        (the per-kind index),
//   glob:       readdir + filter on suffix ".pt"      (listing only),
//   mtime scan: readdir + filter ".pt" + fstatat each + max mtime
//               (the seed's find_latest_checkpoint).
// Headline: median(mtime scan) / median(latest) per verify mode.  Timings are
// never asserted; the program exits non-zero only on real errors (an API
// failure, or latest()/the scan returning something other than the newest).
//
// usage: bench_latest [--files N | N] [--calls 2000] [--warmup 50] [--scan-calls 20]

#include "bench_common.hpp"

#include <ckptdb.h>
#include <sqlite3.h>
#include <xxhash.h>

#include <cinttypes>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die_api(const char *what, int rc) {
    bench::die(std::string(what) + " failed: " + ckptdb_strerror(rc) + ": " + ckptdb_last_error());
}

[[noreturn]] void die_sql(sqlite3 *db, const std::string &what) { bench::die(what + ": " + sqlite3_errmsg(db)); }

std::string iso_utc(int64_t ms_since_epoch) {
    time_t secs = time_t(ms_since_epoch / 1000);
    int ms = int(ms_since_epoch % 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

std::string xxh128_hex(const void *data, size_t len) {
    XXH128_hash_t h = XXH3_128bits(data, len);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    static const char hex[] = "0123456789abcdef";
    std::string s;
    for (unsigned char b : c.digest) {
        s.push_back(hex[b >> 4]);
        s.push_back(hex[b & 15]);
    }
    return s;
}

std::string read_small(const char *path) {
    FILE *f = std::fopen(path, "r");
    if (!f) return "";
    char buf[512];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// Field 22 of /proc/self/stat: start time in clock ticks since boot.
int64_t proc_start_ticks() {
    std::string st = read_small("/proc/self/stat");
    size_t p = st.rfind(')');
    if (p == std::string::npos) return 0;
    // After ") " comes field 3 (state); field 22 is 19 fields further.
    const char *s = st.c_str() + p + 2;
    for (int field = 3; field < 22 && *s; ++field) {
        s = std::strchr(s, ' ');
        if (!s) return 0;
        ++s;
    }
    return std::strtoll(s, nullptr, 10);
}

std::string file_name(int i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "epoch_%06d.pt", i);
    return buf;
}

struct Made {
    std::vector<std::string> sums;  // checksum per file
    int64_t base_ms;                // file i: mtime base_ms/1000 + i seconds
};

// Create the N files (no fsync), mtimes increasing by one second.
Made make_files(const std::string &dir, int n) {
    Made m;
    m.sums.reserve(size_t(n));
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    m.base_ms = (int64_t(now.tv_sec) - n - 3600) * 1000;
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) bench::die_errno("open " + dir);
    char buf[64];
    for (int i = 0; i < n; ++i) {
        for (size_t k = 0; k < sizeof buf; ++k) buf[k] = char('a' + (i * 7 + int(k) * 13) % 26);
        int hl = std::snprintf(buf, sizeof buf, "ckptdb-bench epoch %06d ", i);
        buf[hl] = '|';
        buf[sizeof buf - 1] = '\n';
        std::string name = file_name(i);
        int fd = openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) bench::die_errno("create " + dir + "/" + name);
        if (write(fd, buf, sizeof buf) != ssize_t(sizeof buf)) bench::die_errno("write " + name);
        timespec ts[2];
        ts[0].tv_sec = time_t(m.base_ms / 1000 + i);
        ts[0].tv_nsec = 0;
        ts[1] = ts[0];
        if (futimens(fd, ts) != 0) bench::die_errno("futimens " + name);
        if (close(fd) != 0) bench::die_errno("close " + name);
        m.sums.push_back(xxh128_hex(buf, sizeof buf));
    }
    close(dfd);
    return m;
}

// Bulk insert: one transaction, one runs row, N checkpoints + files rows.
// Returns the id of the row with the highest commit_seq.
int64_t fill_catalog(const std::string &catalog, const Made &m, int n) {
    sqlite3 *db = nullptr;
    if (sqlite3_open_v2(catalog.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
        die_sql(db, "open " + catalog);
    sqlite3_busy_timeout(db, 60000);
    auto exec = [&](const char *sql) {
        char *err = nullptr;
        if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            std::string e = err ? err : "?";
            sqlite3_free(err);
            bench::die(std::string("sql: ") + sql + ": " + e);
        }
    };
    exec("PRAGMA foreign_keys=ON");
    exec("BEGIN IMMEDIATE");

    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    std::string boot_id = read_small("/proc/sys/kernel/random/boot_id");
    std::string started = iso_utc(m.base_ms - 1000);
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO runs(host, boot_id, pid, proc_start, started_at) "
                           "VALUES(?1, ?2, ?3, ?4, ?5)",
                           -1, &st, nullptr) != SQLITE_OK)
        die_sql(db, "prepare runs");
    sqlite3_bind_text(st, 1, host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, boot_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, int64_t(getpid()));
    sqlite3_bind_int64(st, 4, proc_start_ticks());
    sqlite3_bind_text(st, 5, started.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) die_sql(db, "insert runs");
    sqlite3_finalize(st);
    int64_t run_id = sqlite3_last_insert_rowid(db);

    sqlite3_stmt *ck = nullptr, *fl = nullptr;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO checkpoints(name, kind, epoch, step, size, checksum, status, "
                           "created_at, committed_at, run_id, metadata, commit_seq) "
                           "VALUES(?1, 'epoch', ?2, ?3, ?4, ?5, 'complete', ?6, ?7, ?8, '{}', ?9)",
                           -1, &ck, nullptr) != SQLITE_OK)
        die_sql(db, "prepare checkpoints");
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO files(checkpoint_id, rank, name, size, checksum) "
                           "VALUES(?1, 0, ?2, ?3, ?4)",
                           -1, &fl, nullptr) != SQLITE_OK)
        die_sql(db, "prepare files");

    int64_t newest_id = 0;
    for (int i = 0; i < n; ++i) {
        std::string name = file_name(i);
        int64_t t_ms = m.base_ms + int64_t(i) * 1000;
        std::string created = iso_utc(t_ms);
        std::string committed = iso_utc(t_ms + 345);
        sqlite3_bind_text(ck, 1, name.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ck, 2, i);
        sqlite3_bind_int64(ck, 3, int64_t(i) * 100);
        sqlite3_bind_int64(ck, 4, 64);
        sqlite3_bind_text(ck, 5, m.sums[size_t(i)].c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ck, 6, created.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ck, 7, committed.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ck, 8, run_id);
        sqlite3_bind_int64(ck, 9, int64_t(i) + 1);
        if (sqlite3_step(ck) != SQLITE_DONE) die_sql(db, "insert checkpoints " + name);
        sqlite3_reset(ck);
        int64_t id = sqlite3_last_insert_rowid(db);
        sqlite3_bind_int64(fl, 1, id);
        sqlite3_bind_text(fl, 2, name.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(fl, 3, 64);
        sqlite3_bind_text(fl, 4, m.sums[size_t(i)].c_str(), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(fl) != SQLITE_DONE) die_sql(db, "insert files " + name);
        sqlite3_reset(fl);
        newest_id = id;
    }
    sqlite3_finalize(ck);
    sqlite3_finalize(fl);
    exec("COMMIT");
    if (sqlite3_close(db) != SQLITE_OK) die_sql(db, "close " + catalog);
    return newest_id;
}

// The usual recipe: list *.pt, stat each, take the newest mtime.
std::string mtime_scan(const std::string &dir, size_t *count) {
    DIR *d = opendir(dir.c_str());
    if (!d) bench::die_errno("opendir " + dir);
    int dfd = dirfd(d);
    std::string best;
    timespec best_t = {0, 0};
    size_t n = 0;
    while (dirent *e = readdir(d)) {
        size_t len = std::strlen(e->d_name);
        if (len < 3 || std::strcmp(e->d_name + len - 3, ".pt") != 0) continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, 0) != 0) bench::die_errno(std::string("stat ") + e->d_name);
        ++n;
        if (best.empty() || st.st_mtim.tv_sec > best_t.tv_sec ||
            (st.st_mtim.tv_sec == best_t.tv_sec && st.st_mtim.tv_nsec > best_t.tv_nsec)) {
            best_t = st.st_mtim;
            best = e->d_name;
        }
    }
    closedir(d);
    *count = n;
    return best;
}

// glob("*.pt") alone: the listing, no stat.
size_t glob_pt(const std::string &dir, std::vector<std::string> *names) {
    names->clear();
    DIR *d = opendir(dir.c_str());
    if (!d) bench::die_errno("opendir " + dir);
    while (dirent *e = readdir(d)) {
        size_t len = std::strlen(e->d_name);
        if (len >= 3 && std::strcmp(e->d_name + len - 3, ".pt") == 0) names->emplace_back(e->d_name);
    }
    closedir(d);
    return names->size();
}

struct Stats {
    double median_us, p99_us;
};

Stats stats_us(const std::vector<double> &s) {
    std::vector<double> us;
    us.reserve(s.size());
    for (double x : s) us.push_back(x * 1e6);
    return {bench::median(us), bench::quantile(us, 0.99)};
}

Stats time_latest(ckptdb_catalog *db, const char *kind, unsigned flags, int warmup, int calls, int64_t want_id,
                  const std::string &want_name) {
    std::vector<double> t;
    t.reserve(size_t(calls));
    for (int i = 0; i < warmup + calls; ++i) {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        double t0 = bench::now_s();
        int rc = ckptdb_latest(&e, db, kind, flags);
        double t1 = bench::now_s();
        if (rc != CKPTDB_OK) die_api("ckptdb_latest", rc);
        if (e.id != want_id || !e.name || want_name != e.name)
            bench::die("ckptdb_latest returned id " + std::to_string(e.id) + " (" + (e.name ? e.name : "null") +
                       "), want id " + std::to_string(want_id) + " (" + want_name + ")");
        if (i >= warmup) t.push_back(t1 - t0);
    }
    return stats_us(t);
}

void usage() {
    std::fprintf(stderr, "usage: bench_latest [--files N | N] [--calls 2000] [--warmup 50] [--scan-calls 20]\n");
    std::exit(2);
}

int parse_pos(const char *s) {
    char *end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (!end || *end || v < 1 || v > 100000000) usage();
    return int(v);
}

}  // namespace

int main(int argc, char **argv) {
    int nfiles = 100000, calls = 2000, warmup = 50, scan_calls = 20;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--files" && i + 1 < argc)
            nfiles = parse_pos(argv[++i]);
        else if (a == "--calls" && i + 1 < argc)
            calls = parse_pos(argv[++i]);
        else if (a == "--warmup" && i + 1 < argc)
            warmup = std::atoi(argv[++i]);
        else if (a == "--scan-calls" && i + 1 < argc)
            scan_calls = parse_pos(argv[++i]);
        else if (!a.empty() && a[0] != '-')
            nfiles = parse_pos(a.c_str());
        else
            usage();
    }
    if (warmup < 0) usage();

    std::string work = bench::make_workdir("bench-latest");
    std::string dir = work + "/ckpts";
    std::printf("bench_latest: ckptdb %s, %d files, work dir %s\n", ckptdb_version(), nfiles, work.c_str());
    std::fflush(stdout);

    // 1. The catalog schema, through the library.
    ckptdb_catalog *db = nullptr;
    // No last.pt link: the scan below counts every *.pt entry, as the usual
    // recipe's glob would, and must see exactly the files made here.
    ckptdb_open_options oo = CKPTDB_OPEN_OPTIONS_INIT;
    oo.last_link = "";
    int rc = ckptdb_open(&db, dir.c_str(), &oo);
    if (rc != CKPTDB_OK) die_api("ckptdb_open (create)", rc);
    ckptdb_close(db);
    db = nullptr;

    // 2. The files.
    double t0 = bench::now_s();
    Made m = make_files(dir, nfiles);
    double t_files = bench::now_s() - t0;

    // 3. The rows.
    t0 = bench::now_s();
    int64_t newest_id = fill_catalog(dir + "/ckptdb.sqlite", m, nfiles);
    double t_fill = bench::now_s() - t0;
    std::string newest_name = file_name(nfiles - 1);
    std::printf("setup: %d files in %.2f s, %d rows inserted in %.2f s (one transaction)\n", nfiles, t_files, nfiles,
                t_fill);

    // 4. Reopen (recovery runs on a catalog with N rows and a directory of N files).
    t0 = bench::now_s();
    rc = ckptdb_open(&db, dir.c_str(), &oo);
    if (rc != CKPTDB_OK) die_api("ckptdb_open (reopen)", rc);
    double t_open = bench::now_s() - t0;
    std::printf("ckptdb_open of the filled catalog: %.1f ms\n", t_open * 1e3);
    std::fflush(stdout);

    // 5. latest() per verify mode.
    struct Mode {
        const char *label;
        const char *kind;
        unsigned flags;
        Stats s;
    } modes[] = {
        {"verify_none", nullptr, CKPTDB_VERIFY_NONE, {}},
        {"verify_size", nullptr, CKPTDB_VERIFY_SIZE, {}},
        {"verify_full", nullptr, CKPTDB_VERIFY_FULL, {}},
        {"kind_epoch_verify_none", "epoch", CKPTDB_VERIFY_NONE, {}},
    };
    for (auto &md : modes) md.s = time_latest(db, md.kind, md.flags, warmup, calls, newest_id, newest_name);

    // 6. The mtime scan and the bare glob.
    std::vector<double> t_scan, t_glob;
    std::vector<std::string> names;
    for (int i = 0; i < 2 + scan_calls; ++i) {
        size_t count = 0;
        double a = bench::now_s();
        std::string best = mtime_scan(dir, &count);
        double b = bench::now_s();
        if (best != newest_name || count != size_t(nfiles))
            bench::die("mtime scan found " + best + " among " + std::to_string(count) + " files, want " + newest_name +
                       " among " + std::to_string(nfiles));
        double c = bench::now_s();
        size_t g = glob_pt(dir, &names);
        double d = bench::now_s();
        if (g != size_t(nfiles)) bench::die("glob found " + std::to_string(g) + " files");
        if (i >= 2) {
            t_scan.push_back(b - a);
            t_glob.push_back(d - c);
        }
    }
    Stats scan = stats_us(t_scan), glob = stats_us(t_glob);

    ckptdb_close(db);

    std::printf("\n%-36s %12s %12s %14s\n", "", "median us", "p99 us", "scan/this");
    for (const auto &md : modes) {
        char lbl[64];
        std::snprintf(lbl, sizeof lbl, "ckptdb_latest %s", md.label);
        std::printf("%-36s %12.1f %12.1f %13.0fx\n", lbl, md.s.median_us, md.s.p99_us, scan.median_us / md.s.median_us);
    }
    std::printf("%-36s %12.1f %12.1f %13.2fx\n", "glob *.pt (listing only)", glob.median_us, glob.p99_us,
                scan.median_us / glob.median_us);
    std::printf("%-36s %12.1f %12.1f %13.2fx\n", "mtime scan (glob+stat+max)", scan.median_us, scan.p99_us, 1.0);
    std::printf("(latest: %d calls after %d warm-up; scan: %d calls after 2 warm-up; %d files)\n\n", calls, warmup,
                scan_calls, nfiles);

    for (const auto &md : modes) {
        std::printf("RESULT latest_median_us_%s=%.2f\n", md.label, md.s.median_us);
        std::printf("RESULT latest_p99_us_%s=%.2f\n", md.label, md.s.p99_us);
    }
    std::printf("RESULT mtime_scan_median_us=%.1f\n", scan.median_us);
    std::printf("RESULT mtime_scan_p99_us=%.1f\n", scan.p99_us);
    std::printf("RESULT glob_median_us=%.1f\n", glob.median_us);
    for (const auto &md : modes)
        std::printf("RESULT ratio_scan_vs_latest_%s=%.1f\n", md.label, scan.median_us / md.s.median_us);
    std::printf("RESULT open_ms_filled_catalog=%.2f\n", t_open * 1e3);
    std::fflush(stdout);

    bench::remove_tree(work);
    return 0;
}

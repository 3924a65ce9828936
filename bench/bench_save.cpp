// bench_save: a ckptdb streaming save against the physical limit.
//
// For each size, per repetition and side by side on the same file system:
//   dd      dd if=/dev/zero of=<dir>/dd.bin bs=4M count=N conv=fsync
//   ckptdb  ckptdb_save_begin -> ckptdb_save_write (4 MiB chunks of zeros)
//           -> ckptdb_save_commit -> ckptdb_save_free   (catalog already open)
// Both are timed with CLOCK_MONOTONIC around the whole operation (for dd: the
// whole child process).  Which one runs first alternates per repetition, and
// sync() runs (untimed) before each timed operation.  Optionally xxh128sum of
// a file of the same size already in the page cache is timed as the hashing
// limit, and its output is checked against the checksum ckptdb recorded.
//
// Headline: median(ckptdb) / median(dd) (the ratio of the minima is printed
// too: this disk's fsync times are noisy).  Timings are never asserted; the
// program exits non-zero only when an operation fails.
//
// usage: bench_save [--sizes 64M,1G] [--reps 5] [--no-hash]

#include "bench_common.hpp"

#include <ckptdb.h>

#include <spawn.h>
#include <sys/wait.h>

#include <cinttypes>
#include <string>
#include <vector>

extern char **environ;

namespace {

constexpr size_t kChunk = size_t(4) << 20;  // 4 MiB, as dd bs=4M

uint64_t parse_size(const std::string &s) {
    if (s.empty()) bench::die("empty size");
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (errno || end == s.c_str()) bench::die("bad size: " + s);
    std::string unit(end);
    uint64_t mul = 1;
    if (unit == "" || unit == "B")
        mul = 1;
    else if (unit == "K" || unit == "KiB" || unit == "k")
        mul = uint64_t(1) << 10;
    else if (unit == "M" || unit == "MiB")
        mul = uint64_t(1) << 20;
    else if (unit == "G" || unit == "GiB")
        mul = uint64_t(1) << 30;
    else
        bench::die("bad size unit: " + s);
    if (v == 0) bench::die("size must be > 0: " + s);
    return uint64_t(v) * mul;
}

std::string size_label(uint64_t n) {
    char buf[64];
    if (n % (uint64_t(1) << 30) == 0)
        std::snprintf(buf, sizeof buf, "%" PRIu64 "GiB", n >> 30);
    else if (n % (uint64_t(1) << 20) == 0)
        std::snprintf(buf, sizeof buf, "%" PRIu64 "MiB", n >> 20);
    else if (n % (uint64_t(1) << 10) == 0)
        std::snprintf(buf, sizeof buf, "%" PRIu64 "KiB", n >> 10);
    else
        std::snprintf(buf, sizeof buf, "%" PRIu64 "B", n);
    return buf;
}

std::vector<std::string> dd_args(const std::string &path, uint64_t size) {
    std::vector<std::string> a = {"dd", "if=/dev/zero", "of=" + path, "bs=4M"};
    if (size % kChunk == 0) {
        a.push_back("count=" + std::to_string(size / kChunk));
    } else {
        a.push_back("count=" + std::to_string(size));
        a.push_back("iflag=count_bytes");
    }
    a.push_back("conv=fsync");
    a.push_back("status=none");
    return a;
}

// Files are kept until every repetition of a size is done: deleting 1 GiB on
// a file system mounted with online discard stalls the next timed write and
// would hand that stall to whichever side runs next.
double time_dd(const std::string &dir, uint64_t size, int rep) {
    std::string path = dir + "/dd-" + std::to_string(rep) + ".bin";
    auto args = dd_args(path, size);
    sync();
    double t0 = bench::now_s();
    bench::run_child(args, nullptr);
    double t1 = bench::now_s();
    struct stat st;
    if (stat(path.c_str(), &st) != 0) bench::die_errno("stat " + path);
    if (uint64_t(st.st_size) != size) bench::die("dd wrote a file of the wrong size: " + path);
    return t1 - t0;
}

[[noreturn]] void die_api(const char *what, int rc) {
    bench::die(std::string(what) + " failed: " + ckptdb_strerror(rc) + ": " + ckptdb_last_error());
}

// One streaming save into a fresh catalog in <dir>/cat-<rep>; returns the
// time of begin -> writes -> commit -> free.  Kept until the size is done.
double time_ckptdb(const std::string &dir, uint64_t size, int rep, const std::vector<char> &zeros,
                   std::string *checksum, double *open_s) {
    std::string cat = dir + "/cat-" + std::to_string(rep);
    double to0 = bench::now_s();
    ckptdb_catalog *db = nullptr;
    int rc = ckptdb_open(&db, cat.c_str(), nullptr);
    if (rc != CKPTDB_OK) die_api("ckptdb_open", rc);
    *open_s = bench::now_s() - to0;

    ckptdb_save_options so = CKPTDB_SAVE_OPTIONS_INIT;
    so.name = "bench.pt";
    ckptdb_entry e = CKPTDB_ENTRY_INIT;

    sync();
    double t0 = bench::now_s();
    ckptdb_save *save = nullptr;
    rc = ckptdb_save_begin(&save, db, "manual", 0, 0, &so);
    if (rc != CKPTDB_OK) die_api("ckptdb_save_begin", rc);
    uint64_t left = size;
    while (left > 0) {
        size_t n = left < kChunk ? size_t(left) : kChunk;
        rc = ckptdb_save_write(save, zeros.data(), n);
        if (rc != CKPTDB_OK) die_api("ckptdb_save_write", rc);
        left -= n;
    }
    rc = ckptdb_save_commit(&e, save);
    if (rc != CKPTDB_OK) die_api("ckptdb_save_commit", rc);
    std::string sum = e.checksum ? e.checksum : "";
    int64_t esize = e.size;
    int estatus = e.status;
    ckptdb_save_free(save);
    double t1 = bench::now_s();

    if (esize != int64_t(size))
        bench::die("commit reported size " + std::to_string(esize) + ", wrote " + std::to_string(size));
    if (estatus != CKPTDB_STATUS_COMPLETE) bench::die(std::string("commit left status ") + ckptdb_status_name(estatus));
    std::string file = cat + "/bench.pt";
    struct stat st;
    if (stat(file.c_str(), &st) != 0) bench::die_errno("stat " + file);
    if (uint64_t(st.st_size) != size) bench::die("committed file has the wrong size: " + file);
    *checksum = sum;

    ckptdb_close(db);
    return t1 - t0;
}

// xxh128sum of a file of the given size already in the page cache.
double time_xxh128sum(const std::string &dir, uint64_t size, int reps, std::string *sum_out) {
    std::string path = dir + "/hash.bin";
    bench::run_child(dd_args(path, size), nullptr);  // fsynced: clean pages stay cached
    std::string out;
    bench::run_child({"xxh128sum", "-q", path}, &out);  // warm-up, and the reference checksum
    *sum_out = out.substr(0, out.find_first_of(" \t\n"));
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        double t0 = bench::now_s();
        bench::run_child({"xxh128sum", "-q", path}, &out);
        t.push_back(bench::now_s() - t0);
    }
    if (unlink(path.c_str()) != 0) bench::die_errno("unlink " + path);
    return bench::median(t);
}

bool have_program(const char *name) {
    const char *path = std::getenv("PATH");
    std::string p = path ? path : "/usr/bin:/bin";
    size_t start = 0;
    while (start <= p.size()) {
        size_t end = p.find(':', start);
        if (end == std::string::npos) end = p.size();
        std::string d = p.substr(start, end - start);
        if (d.empty()) d = ".";
        if (access((d + "/" + name).c_str(), X_OK) == 0) return true;
        start = end + 1;
    }
    return false;
}

void usage() {
    std::fprintf(stderr, "usage: bench_save [--sizes 64M,1G] [--reps 5] [--no-hash]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char **argv) {
    std::vector<uint64_t> sizes = {uint64_t(64) << 20, uint64_t(1) << 30};
    int reps = 5;
    bool hash = true;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--sizes" && i + 1 < argc) {
            sizes.clear();
            std::string list = argv[++i];
            size_t start = 0;
            while (start <= list.size()) {
                size_t end = list.find(',', start);
                if (end == std::string::npos) end = list.size();
                if (end > start) sizes.push_back(parse_size(list.substr(start, end - start)));
                start = end + 1;
            }
            if (sizes.empty()) usage();
        } else if (a == "--reps" && i + 1 < argc) {
            reps = std::atoi(argv[++i]);
            if (reps < 1) usage();
        } else if (a == "--no-hash") {
            hash = false;
        } else {
            usage();
        }
    }
    if (hash && !have_program("xxh128sum")) {
        std::printf("note: xxh128sum not found in PATH; skipping the hashing limit\n");
        hash = false;
    }

    std::string dir = bench::make_workdir("bench-save");
    std::printf("bench_save: ckptdb %s, work dir %s, %d rep(s), chunk 4 MiB\n", ckptdb_version(), dir.c_str(), reps);
    std::fflush(stdout);

    std::vector<char> zeros(kChunk, 0);
    for (uint64_t size : sizes) {
        std::string label = size_label(size);
        std::vector<double> t_dd, t_db, t_open;
        std::string sum;
        for (int r = 0; r < reps; ++r) {
            double dd_s, db_s, open_s;
            if (r % 2 == 0) {
                dd_s = time_dd(dir, size, r);
                db_s = time_ckptdb(dir, size, r, zeros, &sum, &open_s);
            } else {
                db_s = time_ckptdb(dir, size, r, zeros, &sum, &open_s);
                dd_s = time_dd(dir, size, r);
            }
            t_dd.push_back(dd_s);
            t_db.push_back(db_s);
            t_open.push_back(open_s);
            std::printf("  rep %d %s: ckptdb %.3f s  dd %.3f s  ratio %.2fx  (open %.1f ms)\n", r + 1, label.c_str(),
                        db_s, dd_s, db_s / dd_s, open_s * 1e3);
            std::fflush(stdout);
        }
        for (int r = 0; r < reps; ++r) {
            std::string dd_file = dir + "/dd-" + std::to_string(r) + ".bin";
            if (unlink(dd_file.c_str()) != 0) bench::die_errno("unlink " + dd_file);
            bench::remove_tree(dir + "/cat-" + std::to_string(r));
        }
        sync();
        sleep(2);  // untimed: let the discards of the removed files settle
        double m_dd = bench::median(t_dd), m_db = bench::median(t_db);
        double ratio = m_db / m_dd;
        double b_dd = bench::quantile(t_dd, 0.0), b_db = bench::quantile(t_db, 0.0);
        double mib = double(size) / double(1 << 20);
        std::printf(
            "save %s: ckptdb %.3f s  dd %.3f s  ratio %.2fx (median of %d)"
            "  [ckptdb %.0f MiB/s, dd %.0f MiB/s]\n",
            label.c_str(), m_db, m_dd, ratio, reps, mib / m_db, mib / m_dd);
        std::printf("save %s best: ckptdb %.3f s  dd %.3f s  ratio %.2fx (min of %d)\n", label.c_str(), b_db, b_dd,
                    b_db / b_dd, reps);
        if (hash) {
            std::string ref;
            double m_h = time_xxh128sum(dir, size, reps, &ref);
            if (ref != sum)
                bench::die("checksum mismatch for " + label + ": ckptdb recorded '" + sum + "', xxh128sum prints '" +
                           ref + "'");
            std::printf(
                "hash %s: xxh128sum %.3f s (page cache, median of %d)  [%.0f MiB/s]"
                "  ckptdb/xxh128sum %.2fx  checksum matches xxh128sum\n",
                label.c_str(), m_h, reps, mib / m_h, m_db / m_h);
            std::printf("RESULT save_%s_xxh128sum_s=%.4f\n", label.c_str(), m_h);
        }
        std::printf("RESULT save_%s_ckptdb_s=%.4f\n", label.c_str(), m_db);
        std::printf("RESULT save_%s_dd_s=%.4f\n", label.c_str(), m_dd);
        std::printf("RESULT save_%s_ratio_vs_dd=%.3f\n", label.c_str(), ratio);
        std::printf("RESULT save_%s_ratio_vs_dd_best=%.3f\n", label.c_str(), b_db / b_dd);
        std::fflush(stdout);
    }

    bench::remove_tree(dir);
    return 0;
}

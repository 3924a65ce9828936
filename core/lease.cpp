#include "lease.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>

#include "ckptdb.h"
#include "db.hpp"
#include "error.hpp"
#include "io.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace ckptdb {

bool g_renew_leases = true;

int64_t lease_seconds() {
    const char *v = std::getenv(kLeaseEnv);
    if (!v) return kDefaultLeaseSeconds;
    const std::string s(v);
    bool digits =
        !s.empty() && s.size() <= 12 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    int64_t n = digits ? std::stoll(s) : 0;
    if (n < 1 || n > kMaxLeaseSeconds)
        fail(CKPTDB_EINVAL, std::string("environment variable ") + kLeaseEnv +
                                " must be a whole number of seconds from 1 to " + std::to_string(kMaxLeaseSeconds) +
                                " (10 years), got '" + s.substr(0, 40) + (s.size() > 40 ? "...'" : "'") +
                                "; unset it for the default of " + std::to_string(kDefaultLeaseSeconds) + " s");
    return n;
}

int64_t lease_clock() {
    struct timespec now;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return static_cast<int64_t>(now.tv_sec);
}

void renew_lease(int fd, int64_t &last, bool force) {
    if (!g_renew_leases) return;
    const int64_t now = lease_clock();
    if (!force && now - last < kRenewSeconds) return;
    last = now;
    // Only the mtime; UTIME_NOW lets a network file system stamp it with the
    // server's clock, the one every judge compares against.
    static const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    ::futimens(fd, times);
}

void hold_writer_lock(int fd) {
    int rc;
    do {
        rc = ::flock(fd, LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    // A fresh file nobody else has opened to write: the only failure is a
    // file system without locks, where the lease alone decides.
}

std::vector<WriterRow> writer_rows(Catalog &cat) {
    std::vector<WriterRow> rows;
    cat.read([&](Store &db) { rows = db.writing_rows(); });
    for (WriterRow &w : rows) w.files = cat.files(w.id);
    return rows;
}

namespace {

std::string utc_seconds(double unix_seconds) {
    std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

WriterVerdict judge_writer(const ProcIdentity &self, const Dir &dir, const WriterRow &w, int64_t lease, double now) {
    if (!w.has_run || w.run_ended) return {true, ""};
    Liveness l = liveness(self, w.host, w.boot_id, w.pid, w.proc_start);
    if (l != Liveness::unknown) return {l == Liveness::dead, ""};

    // The files of the save as they stand: its temp files, and its final
    // files once renamed (a rename keeps the mtime). Names are checked before
    // any is looked at; links are not followed.
    std::vector<std::string> present;
    double beat = w.begun_unix;
    bool from_file = false;
    for (const FileRow &f : w.files) {
        for (const std::string *n : {&f.temp_name, &f.name}) {
            bool valid = n == &f.temp_name ? is_exact_temp_name(*n) : name_problem(*n).empty();
            struct stat st;
            if (!valid || io::ops().fstatat(dir.fd.get(), n->c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISREG(st.st_mode))
                continue;
            double m = static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9;
            beat = from_file ? std::max(beat, m) : m;
            from_file = true;
            present.push_back(*n);
        }
    }
    // A directory save: the temp directory and every file in it (a save in
    // place: its final directory, whose name its row gives as the temp
    // directory's).
    int err = 0;
    Dir tmp;
    if (is_temp_dir_name(w.temp_dir) || name_problem(w.temp_dir).empty()) tmp = open_subdir(dir, w.temp_dir, err);
    if (tmp.fd) {
        std::vector<std::string> inside = {"."};
        for (std::string &n : list_names(tmp)) inside.push_back(std::move(n));
        for (const std::string &n : inside) {
            struct stat st;
            if (io::ops().fstatat(tmp.fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            double m = static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9;
            beat = from_file ? std::max(beat, m) : m;
            from_file = true;
        }
    }
    const std::string last = "host " + w.host + " last heartbeat " + utc_seconds(beat) +
                             (from_file ? " (its file's mtime)" : " (the save's begin time, no file yet)");
    if (now - beat <= static_cast<double>(lease)) return {false, "a writer on " + last + ", within its lease"};
    for (const std::string &n : present)
        if (temp_in_use(dir, n)) return {false, "a writer on host " + w.host + " holds its file locked"};
    if (tmp.fd)
        for (const std::string &n : list_names(tmp))
            if (temp_in_use(tmp, n))
                return {false, "a writer on host " + w.host + " holds a file of its directory locked"};
    return {true, "lease expired: " + last + ", " + std::to_string(static_cast<int64_t>(now - beat)) +
                      " s ago, lease " + std::to_string(lease) + " s (" + kLeaseEnv + ")"};
}

}  // namespace ckptdb

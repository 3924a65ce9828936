// Shared pieces of the stress suites: the stress helper as a child process,
// counts scaled by environment variables, the checks each suite makes after
// every case on top of the invariants of tests/harness/invariants.hpp, and
// the figures every suite prints at its end.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../harness/invariants.hpp"
#include "../unit/support.hpp"

extern char **environ;

namespace stress {

// An integer from the environment, or def when unset or empty.
inline long env_long(const char *name, long def) {
    const char *v = std::getenv(name);
    if (!v || !*v) return def;
    return std::strtol(v, nullptr, 10);
}

// The seed of a randomized suite: CKPTDB_STRESS_SEED, or one drawn from the
// clock. Printed so that a failing run can be repeated.
inline uint64_t seed(const char *suite) {
    uint64_t s = static_cast<uint64_t>(env_long("CKPTDB_STRESS_SEED", 0));
    if (s == 0) {
        struct timespec ts;
        ::clock_gettime(CLOCK_REALTIME, &ts);
        s = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 20) ^
            static_cast<uint64_t>(::getpid());
        s &= 0x7fffffffffffull;
    }
    std::printf("%s: seed %llu (repeat with CKPTDB_STRESS_SEED=%llu)\n", suite, static_cast<unsigned long long>(s),
                static_cast<unsigned long long>(s));
    std::fflush(stdout);
    return s;
}

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 1) {}
    uint64_t next() {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        return s * 0x2545f4914f6cdd1dull;
    }
    uint64_t below(uint64_t n) { return n ? next() % n : 0; }
};

// The stress helper (tests/stress/stress_helper.cpp) as a child process,
// started with posix_spawn (fork+exec), its stdout a pipe.
class Helper {
public:
    explicit Helper(const std::vector<std::string> &args) {
        const char *path = std::getenv("CKPTDB_STRESS_HELPER");
        if (!path) throw std::runtime_error("CKPTDB_STRESS_HELPER is not set (run through meson test)");
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        std::vector<std::string> all{path};
        all.insert(all.end(), args.begin(), args.end());
        std::vector<char *> argv;
        for (auto &a : all) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        int rc = ::posix_spawn(&pid_, path, &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(fds[1]);
        if (rc != 0) {
            ::close(fds[0]);
            throw std::runtime_error("posix_spawn of the stress helper failed");
        }
        fd_ = fds[0];
    }
    Helper(const Helper &) = delete;
    Helper &operator=(const Helper &) = delete;
    ~Helper() {
        if (status_ < 0) kill9();
        if (fd_ >= 0) ::close(fd_);
    }

    // Every line the child printed until it exited (or was killed).
    std::vector<std::string> lines() {
        drain(-1);
        std::vector<std::string> out;
        std::istringstream in(buf_);
        for (std::string l; std::getline(in, l);) out.push_back(l);
        return out;
    }
    void kill9() {
        if (status_ >= 0) return;
        ::kill(pid_, SIGKILL);
        wait();
    }
    int wait() {
        if (status_ >= 0) return status_;
        int st = 0;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {}
        status_ = st;
        return st;
    }
    int exit_code() {
        int st = wait();
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    bool killed() { return WIFSIGNALED(wait()) && WTERMSIG(wait()) == SIGKILL; }
    // Reads what is there now, without blocking (keeps the pipe from filling).
    void pump() { drain(0); }

private:
    void drain(int timeout_ms) {
        char tmp[8192];
        for (;;) {
            struct pollfd p = {fd_, POLLIN, 0};
            int r = ::poll(&p, 1, timeout_ms);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return;
            ssize_t n = ::read(fd_, tmp, sizeof tmp);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;
            buf_.append(tmp, static_cast<size_t>(n));
        }
    }
    pid_t pid_ = -1;
    int fd_ = -1;
    int status_ = -1;
    std::string buf_;
};

// The ids of the "ACK <id>" lines.
inline std::vector<int64_t> acks(const std::vector<std::string> &lines) {
    std::vector<int64_t> out;
    for (const auto &l : lines)
        if (l.rfind("ACK ", 0) == 0) out.push_back(std::stoll(l.substr(4)));
    return out;
}

inline std::string join(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &x : v) s += "  " + x + "\n";
    return s;
}

inline int64_t query_i64(const std::string &db, const std::string &sql) {
    std::string v = t::query1(db, sql);
    return v == "<none>" || v == "NULL" ? 0 : std::stoll(v);
}

// commit_seq of the newest complete checkpoint in the catalog (0 if none).
inline int64_t newest_complete_seq(const std::string &dir) {
    return query_i64(dir + "/ckptdb.sqlite", "SELECT max(commit_seq) FROM checkpoints WHERE status = 'complete'");
}

// The largest commit_seq among ids (0 if none).
inline int64_t max_seq_of(const std::string &dir, const std::vector<int64_t> &ids) {
    if (ids.empty()) return 0;
    std::string in;
    for (int64_t id : ids) in += (in.empty() ? "" : ",") + std::to_string(id);
    return query_i64(dir + "/ckptdb.sqlite", "SELECT max(commit_seq) FROM checkpoints WHERE id IN (" + in + ")");
}

// Checks of the stress suites beyond I1-I6: every acknowledged save is a row
// that is complete or was pruned by a rule (never aborted, corrupt, lost or
// writing), no row is left writing, no temp file remains, and SQLite's
// integrity check is clean. Run after check_invariants (which recovers).
inline std::vector<std::string> own_checks(const std::string &dir, const std::set<int64_t> &acknowledged) {
    std::vector<std::string> bad;
    const std::string db = dir + "/ckptdb.sqlite";
    std::string ic = t::query1(db, "PRAGMA integrity_check");
    if (ic != "ok") bad.push_back("integrity_check: " + ic);
    std::set<int64_t> complete_or_pruned;
    for (const auto &r : t::query(db, "SELECT id FROM checkpoints WHERE status IN ('complete', 'pruned')"))
        complete_or_pruned.insert(std::stoll(r));
    for (int64_t id : acknowledged)
        if (!complete_or_pruned.count(id))
            bad.push_back("acknowledged checkpoint " + std::to_string(id) + " is " +
                          t::query1(db, "SELECT status FROM checkpoints WHERE id = " + std::to_string(id)));
    int64_t writing = query_i64(db, "SELECT count(*) FROM checkpoints WHERE status = 'writing'");
    if (writing) bad.push_back(std::to_string(writing) + " rows still writing after recovery");
    for (const auto &n : t::temp_files(dir)) bad.push_back("temp file left: " + n);
    return bad;
}

// check_invariants plus own_checks, for one case.
inline std::vector<std::string> all_checks(const std::string &dir, const harness::Expect &expect) {
    std::vector<std::string> bad = harness::check_invariants(dir, expect);
    for (auto &v : own_checks(dir, expect.acknowledged)) bad.push_back(v);
    return bad;
}

// The figures every suite prints at its end (a suite keeps one as a static
// object: it prints when the suite's process exits).
struct Figures {
    const char *suite;
    long kills = 0, acknowledged = 0, disk_full_failures = 0, violations = 0, cases = 0;
    explicit Figures(const char *name) : suite(name) {}
    ~Figures() { print(); }
    void print() const {
        std::printf(
            "%s figures: cases %ld, kills delivered %ld, saves acknowledged %ld, full-disk failures "
            "injected %ld, invariant violations %ld\n",
            suite, cases, kills, acknowledged, disk_full_failures, violations);
        std::fflush(stdout);
    }
};

}  // namespace stress

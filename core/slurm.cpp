// Requeue on preemption under Slurm.  A job that received Slurm's warning
// signal (--signal=B:USR1@N) and saved its preempt checkpoint asks Slurm to
// put it back in the queue (`scontrol requeue`), so that the next attempt
// resumes from that checkpoint; the attempt is an event in the catalog and
// its success the run's exit reason ("requeued").
#include "slurm.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"
#include "fsio.hpp"
#include "signals.hpp"

extern char **environ;

namespace ckptdb {

namespace slurm {

namespace {

// scontrol gives up on an unreachable controller after its own message
// timeouts (10 s each by default); this bound only guards against a hang.
constexpr int kRequeueTimeoutMs = 30000;

// Set by the first requeue attempt of the process: the job is requeued once,
// however many handles commit preempt checkpoints.
std::atomic<bool> g_attempted{false};

double now_s() {
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string joined(const std::vector<std::string> &argv) {
    std::string s;
    for (const auto &a : argv) s += (s.empty() ? "" : " ") + a;
    return s;
}

std::string first_line(const std::string &text) {
    size_t start = text.find_first_not_of(" \t\r\n");
    if (start == std::string::npos) return std::string();
    size_t end = text.find_first_of("\r\n", start);
    std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    for (char &c : line)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

// posix_spawn's attributes and file actions, released on every path.
struct SpawnSetup {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    bool have_actions = false, have_attr = false;
    ~SpawnSetup() {
        if (have_actions) posix_spawn_file_actions_destroy(&actions);
        if (have_attr) posix_spawnattr_destroy(&attr);
    }
};

}  // namespace

bool valid_job_id(const std::string &id) {
    if (id.empty() || id.size() > 32 || id[0] < '0' || id[0] > '9') return false;
    for (char c : id)
        if ((c < '0' || c > '9') && c != '_') return false;
    return true;
}

CommandResult run_command(const std::vector<std::string> &argv, int timeout_ms) {
    CommandResult r;
    const std::string cmd = joined(argv);
    if (argv.empty()) {
        r.failure = "no command";
        return r;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail_os("cannot make a pipe for", argv[0], errno);
    UniqueFd rd(p[0]), wr(p[1]);

    SpawnSetup s;
    int rc = posix_spawn_file_actions_init(&s.actions);
    if (rc == 0) {
        s.have_actions = true;
        rc = posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
    }
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&s.actions, 1, "/dev/null", O_WRONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&s.actions, wr.get(), 2);  // clears CLOEXEC on 2
    if (rc == 0) {
        rc = posix_spawnattr_init(&s.attr);
        s.have_attr = rc == 0;
    }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    // The trainer's mask and ignored signals are no business of the command.
    if (rc == 0) rc = posix_spawnattr_setsigmask(&s.attr, &none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&s.attr, &all);
    if (rc == 0) rc = posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc != 0) {
        r.failure = "cannot prepare to run '" + cmd + "': " + std::strerror(rc);
        return r;
    }
    std::vector<char *> args;
    for (const auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    rc = posix_spawnp(&pid, args[0], &s.actions, &s.attr, args.data(), environ);
    if (rc != 0) {
        r.failure = "cannot run '" + cmd + "': " + std::strerror(rc) +
                    (rc == ENOENT ? " (is " + argv[0] + " on PATH?)" : std::string());
        return r;
    }
    wr.reset();  // the child holds the only write end: EOF when it exits

    // Read stderr until EOF or the deadline.
    std::string err;
    bool timed_out = false;
    const double deadline = now_s() + timeout_ms / 1000.0;
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {rd.get(), POLLIN, 0};
        int n = ::poll(&pfd, 1, static_cast<int>(left * 1000.0) + 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;  // the deadline is checked above
        char buf[512];
        ssize_t got = ::read(rd.get(), buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;  // EOF: the command (and whatever it started) closed stderr
        if (err.size() < 4096) err.append(buf, static_cast<size_t>(got));
    }
    if (timed_out) ::kill(pid, SIGKILL);
    // EOF comes at exit; a command that closed stderr early is waited for
    // until the deadline, then killed.
    int status = 0;
    pid_t w;
    for (;;) {
        w = ::waitpid(pid, &status, timed_out ? 0 : WNOHANG);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) {
            if (now_s() >= deadline) {
                timed_out = true;
                ::kill(pid, SIGKILL);
            } else {
                struct timespec ts = {0, 10 * 1000 * 1000};
                ::nanosleep(&ts, nullptr);
            }
            continue;
        }
        break;
    }
    std::string line = first_line(err);
    if (timed_out) {
        std::string limit =
            timeout_ms % 1000 == 0 ? std::to_string(timeout_ms / 1000) + " s" : std::to_string(timeout_ms) + " ms";
        r.failure = "'" + cmd + "' did not finish within " + limit + " and was killed";
    } else if (w < 0) {
        r.failure = "'" + cmd + "' ran, but its exit status is unknown: " + std::strerror(errno);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        r.ok = true;
        return r;
    } else if (WIFEXITED(status)) {
        r.failure = "'" + cmd + "' exited with status " + std::to_string(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        r.failure = "'" + cmd + "' was killed by signal " + std::to_string(WTERMSIG(status));
    } else {
        r.failure = "'" + cmd + "' ended with wait status " + std::to_string(status);
    }
    if (!line.empty()) r.failure += ": " + line;
    return r;
}

std::optional<Requeue> requeue_after_preempt(int signo) noexcept {
    try {
        if (signo != SIGUSR1) return std::nullopt;
        const char *job = std::getenv("SLURM_JOB_ID");
        if (!job || !*job) return std::nullopt;
        if (g_attempted.exchange(true)) return std::nullopt;
        std::string id(job);
        if (!valid_job_id(id)) {
            std::string shown = first_line(id);
            if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
            return Requeue{false,
                           "SLURM_JOB_ID '" + shown + "' is not a Slurm job id (digits and '_'); scontrol was not run"};
        }
        CommandResult c = run_command({"scontrol", "requeue", id}, kRequeueTimeoutMs);
        if (c.ok) return Requeue{true, "job " + id + " requeued after SIGUSR1 (scontrol requeue " + id + ")"};
        return Requeue{false, c.failure};
    } catch (const std::exception &e) {
        return Requeue{false, std::string("requeue not attempted: ") + e.what()};
    } catch (...) {
        return Requeue{false, "requeue not attempted: unknown error"};
    }
}

}  // namespace slurm

void Catalog::requeue_after_preempt() noexcept {
    if (!opts_.requeue || readonly()) return;
    std::optional<slurm::Requeue> r = slurm::requeue_after_preempt(signals::requested());
    if (!r) return;
    {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        requeued_ = r->ok;
    }
    log_event_noexcept(r->ok ? "requeued" : "requeue_failed", r->detail);
}

}  // namespace ckptdb

#include "signals.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb::signals {

namespace {

// A signal handler may only touch lock-free atomics (or volatile
// sig_atomic_t); a lock inside the atomic could deadlock the handler.
static_assert(std::atomic<int>::is_always_lock_free, "the preemption flag must be a lock-free atomic");
static_assert(std::atomic<bool>::is_always_lock_free, "the handler's state must be lock-free atomics");

std::atomic<int> g_flag{0};
std::atomic<bool> g_chain{false};

// Per signal: is our handler installed, and what was there before.  prev is
// written before our handler goes in and left untouched after it comes out,
// so a handler running concurrently with restore() never reads a torn value.
std::atomic<bool> g_active[NSIG];
struct sigaction g_prev[NSIG];

void set_first(int signo) noexcept {
    int expected = 0;
    g_flag.compare_exchange_strong(expected, signo, std::memory_order_acq_rel, std::memory_order_acquire);
}

void on_signal(int signo, siginfo_t *info, void *ctx) {
    int saved_errno = errno;
    set_first(signo);
    if (signo > 0 && signo < NSIG && g_chain.load(std::memory_order_acquire) &&
        g_active[signo].load(std::memory_order_acquire)) {
        const struct sigaction &p = g_prev[signo];
        if (p.sa_flags & SA_SIGINFO) {
            if (p.sa_sigaction != on_signal && p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN)
                p.sa_sigaction(signo, info, ctx);
        } else if (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN) {
            p.sa_handler(signo);
        }
    }
    errno = saved_errno;
}

bool is_ours(const struct sigaction &sa) { return (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == on_signal; }

[[noreturn]] void bad_signal(int signo, const std::string &why) {
    fail(CKPTDB_EINVAL, "signal " + std::to_string(signo) + " cannot be watched: " + why);
}

void check_signal(int signo) {
    if (signo <= 0 || signo >= NSIG) bad_signal(signo, "signal numbers are 1.." + std::to_string(NSIG - 1));
    if (signo == SIGKILL || signo == SIGSTOP) bad_signal(signo, "SIGKILL and SIGSTOP cannot be caught");
    // The C library reserves some signals for itself (glibc: 32 and 33);
    // asking sigaction about them is refused the same way as setting them.
    struct sigaction cur;
    if (::sigaction(signo, nullptr, &cur) != 0) bad_signal(signo, std::strerror(errno));
}

void restore_one(int signo) {
    if (!g_active[signo].load(std::memory_order_acquire)) return;
    if (::sigaction(signo, &g_prev[signo], nullptr) != 0)
        fail(CKPTDB_ERROR, "restoring the handler of signal " + std::to_string(signo) + ": " + std::strerror(errno));
    g_active[signo].store(false, std::memory_order_release);
}

}  // namespace

void install(const std::vector<int> &sigs, bool chain) {
    for (int s : sigs) check_signal(s);
    restore();
    g_chain.store(chain, std::memory_order_release);
    struct sigaction ours;
    std::memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_signal;
    ours.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    for (int s : sigs) {
        if (g_active[s].load(std::memory_order_acquire)) continue;  // listed twice
        // One call swaps the handler in and reads the previous one; prev is
        // published (and chaining enabled) only after it is stored.
        struct sigaction prev;
        if (::sigaction(s, &ours, &prev) != 0) {
            int err = errno;
            restore();
            fail(CKPTDB_EINVAL, "installing the handler of signal " + std::to_string(s) + ": " + std::strerror(err));
        }
        if (is_ours(prev)) {
            // Cannot happen through this API (restore() ran above), but never
            // chain to ourselves: it would recurse.
            std::memset(&prev, 0, sizeof prev);
            prev.sa_handler = SIG_DFL;
        }
        g_prev[s] = prev;
        g_active[s].store(true, std::memory_order_release);
    }
}

void restore() {
    for (int s = 1; s < NSIG; s++) restore_one(s);
}

int requested() noexcept { return g_flag.load(std::memory_order_acquire); }

void request(int signo) noexcept {
    if (signo > 0) set_first(signo);
}

void clear() noexcept { g_flag.store(0, std::memory_order_release); }

}  // namespace ckptdb::signals

// The process-wide preemption flag and the signal handlers that set it.
// A handler only records the signal number (the first one wins) and,
// optionally, chains to the handler that was there before; nothing else
// happens inside a signal handler.  The training loop polls requested().
#pragma once

#include <vector>

namespace ckptdb::signals {

// Installs the flag-setting handler for each signal of sigs (duplicates are
// ignored).  Every number is checked first (1..NSIG-1, not SIGKILL/SIGSTOP,
// accepted by sigaction): on a bad one, Error(CKPTDB_EINVAL) naming it is
// thrown and nothing changes.  An earlier set is restored before the new set
// is installed.  With chain, a previous handler that was a function (either
// sa_handler or SA_SIGINFO sa_sigaction) is called after the flag is set;
// SIG_DFL and SIG_IGN are not.  Not thread-safe against itself or restore().
void install(const std::vector<int> &sigs, bool chain);

// Puts back the handlers that install() replaced.  Nothing installed: no-op.
void restore();

// The first signal received or requested since the last clear(); 0 if none.
// Async-signal-safe (a lock-free atomic).
int requested() noexcept;

// Sets the flag to signo unless one is already set; signo <= 0 is ignored.
// Async-signal-safe.
void request(int signo) noexcept;

void clear() noexcept;

}  // namespace ckptdb::signals

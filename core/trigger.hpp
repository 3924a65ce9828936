// Trigger answers a training loop's "save now?" after each step: every N
// epochs (at an epoch's end), every N steps, every T seconds since the last
// save (or start, or resume), whichever comes first, and always once
// preemption was requested.  It keeps no I/O and no locks; one loop owns it.
#pragma once

#include <cstdint>
#include <functional>

namespace ckptdb {

class Trigger {
public:
    struct Options {
        int64_t every_epochs = 5;       // 0: off
        int64_t every_steps = 0;        // 0: off
        double every_seconds = 900;     // 0: off
        bool watch_signals = true;      // answer "preempt" once signals::requested()
        std::function<double()> clock;  // seconds, monotonic; empty: CLOCK_MONOTONIC
    };

    // Throws Error(CKPTDB_EINVAL) naming the field for a negative or
    // non-finite value.  The time interval starts now.
    explicit Trigger(Options opts);

    // After finishing `step` of `epoch` (epoch_end: the epoch just
    // completed): "preempt", "epoch", "step", "time" (in that order of
    // precedence; static strings) or nullptr for no save.  Never a save for
    // the step last recorded with saved() or resumed().  Negative epoch or
    // step: Error(CKPTDB_EINVAL).
    const char *check(int64_t epoch, int64_t step, bool epoch_end) const;

    // A save of `step` was committed: restart the time interval.
    void saved(int64_t step);

    // The loop resumed at `step`: no save for it, and the time interval
    // restarts now.
    void resumed(int64_t step);

    // Preemption was requested and this trigger watches signals.
    bool should_stop() const noexcept;

private:
    double now() const;
    void mark(int64_t step, const char *what);

    Options o_;
    double since_ = 0;  // start of the current time interval
    bool have_last_ = false;
    int64_t last_step_ = 0;
};

}  // namespace ckptdb

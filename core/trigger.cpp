#include "trigger.hpp"

#include <time.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "ckptdb.h"
#include "error.hpp"
#include "signals.hpp"

namespace ckptdb {

namespace {

std::string num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

void non_negative(int64_t v, const char *field) {
    if (v < 0) fail(CKPTDB_EINVAL, std::string(field) + " must be >= 0, got " + std::to_string(v));
}

double monotonic() {
    struct timespec ts;
    if (::clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        fail(CKPTDB_ERROR, std::string("clock_gettime(CLOCK_MONOTONIC): ") + std::strerror(errno));
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

Trigger::Trigger(Options opts) : o_(std::move(opts)) {
    non_negative(o_.every_epochs, "every_epochs");
    non_negative(o_.every_steps, "every_steps");
    if (!std::isfinite(o_.every_seconds))
        fail(CKPTDB_EINVAL, "every_seconds must be a finite number >= 0, got " + num(o_.every_seconds));
    if (o_.every_seconds < 0) fail(CKPTDB_EINVAL, "every_seconds must be >= 0, got " + num(o_.every_seconds));
    since_ = now();
}

double Trigger::now() const {
    double t = o_.clock ? o_.clock() : monotonic();
    // A NaN would make every comparison false and silently disable the timer.
    if (!std::isfinite(t)) fail(CKPTDB_EINVAL, "the trigger's clock returned " + num(t) + ", not a finite time");
    return t;
}

const char *Trigger::check(int64_t epoch, int64_t step, bool epoch_end) const {
    if (epoch < 0) fail(CKPTDB_EINVAL, "epoch must be >= 0, got " + std::to_string(epoch));
    if (step < 0) fail(CKPTDB_EINVAL, "step must be >= 0, got " + std::to_string(step));
    if (have_last_ && step == last_step_) return nullptr;
    if (should_stop()) return "preempt";
    if (epoch_end && o_.every_epochs > 0 && epoch % o_.every_epochs == 0) return "epoch";
    if (o_.every_steps > 0 && step % o_.every_steps == 0) return "step";
    if (o_.every_seconds > 0 && now() - since_ >= o_.every_seconds) return "time";
    return nullptr;
}

void Trigger::mark(int64_t step, const char *what) {
    if (step < 0) fail(CKPTDB_EINVAL, std::string(what) + " step must be >= 0, got " + std::to_string(step));
    double t = now();  // may throw: leave the state as it was
    since_ = t;
    last_step_ = step;
    have_last_ = true;
}

void Trigger::saved(int64_t step) { mark(step, "saved"); }

void Trigger::resumed(int64_t step) { mark(step, "resumed"); }

bool Trigger::should_stop() const noexcept { return o_.watch_signals && signals::requested() != 0; }

}  // namespace ckptdb

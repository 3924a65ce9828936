// The extern "C" shims for preemption signals and save triggers: every
// function catches everything and turns it into a status code plus the
// thread's last-error message (capi_internal.hpp).
#include <memory>
#include <utility>
#include <vector>

#include <csignal>

#include "capi_internal.hpp"
#include "ckptdb.h"
#include "signals.hpp"
#include "trigger.hpp"

using namespace ckptdb::capi;

struct ckptdb_trigger {
    explicit ckptdb_trigger(ckptdb::Trigger::Options o) : trigger(std::move(o)) {}
    ckptdb::Trigger trigger;
};

extern "C" {

int ckptdb_signals_install(const int *signals, size_t count, int chain) {
    return guard([&] {
        std::vector<int> sigs;
        if (signals)
            sigs.assign(signals, signals + count);
        else
            sigs = {SIGTERM, SIGINT, SIGUSR1};
        ckptdb::signals::install(sigs, chain != 0);
    });
}

int ckptdb_signals_restore(void) {
    return guard([&] { ckptdb::signals::restore(); });
}

// These three are called from signal handlers and hot loops: they touch only
// the lock-free flag, never the thread's last error.
int ckptdb_preempt_requested(void) { return ckptdb::signals::requested(); }
void ckptdb_preempt_request(int signo) { ckptdb::signals::request(signo); }
void ckptdb_preempt_clear(void) { ckptdb::signals::clear(); }

int ckptdb_trigger_options_init(ckptdb_trigger_options *opts, unsigned int version) {
    const ckptdb_trigger_options defaults = CKPTDB_TRIGGER_OPTIONS_INIT;
    return init_options(opts, version, CKPTDB_TRIGGER_OPTIONS_VERSION, defaults, "ckptdb_trigger_options");
}

int ckptdb_trigger_new(ckptdb_trigger **out, const ckptdb_trigger_options *opts) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        ckptdb_trigger_options o = CKPTDB_TRIGGER_OPTIONS_INIT;
        if (opts) {
            check_version(opts->version, CKPTDB_TRIGGER_OPTIONS_VERSION, "ckptdb_trigger_options");
            o = *opts;
        }
        ckptdb::Trigger::Options to;
        to.every_epochs = o.every_epochs;
        to.every_steps = o.every_steps;
        to.every_seconds = o.every_seconds;
        to.watch_signals = o.watch_signals != 0;
        if (o.clock) {
            ckptdb_clock_fn fn = o.clock;
            void *payload = o.clock_payload;
            to.clock = [fn, payload] { return fn(payload); };
        }
        *out = std::make_unique<ckptdb_trigger>(std::move(to)).release();
    });
}

void ckptdb_trigger_free(ckptdb_trigger *trigger) { delete trigger; }

int ckptdb_trigger_check(const char **out_kind, ckptdb_trigger *trigger, int64_t epoch, int64_t step, int epoch_end) {
    if (out_kind) *out_kind = nullptr;
    return guard([&] {
        need(out_kind, "out_kind");
        need(trigger, "trigger");
        *out_kind = trigger->trigger.check(epoch, step, epoch_end != 0);
    });
}

int ckptdb_trigger_saved(ckptdb_trigger *trigger, int64_t step) {
    return guard([&] {
        need(trigger, "trigger");
        trigger->trigger.saved(step);
    });
}

int ckptdb_trigger_resumed(ckptdb_trigger *trigger, int64_t step) {
    return guard([&] {
        need(trigger, "trigger");
        trigger->trigger.resumed(step);
    });
}

// Returns a boolean, not a status: NULL answers 0 and leaves CKPTDB_EMISUSE
// as the thread's last error.
int ckptdb_trigger_should_stop(const ckptdb_trigger *trigger) {
    int stop = 0;
    guard([&] {
        need(trigger, "trigger");
        stop = trigger->trigger.should_stop() ? 1 : 0;
    });
    return stop;
}

}  // extern "C"

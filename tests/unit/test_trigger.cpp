// Save triggers and preemption signals, through the C ABI: the trigger with an
// injected clock (each rule alone, whichever comes first, precedence, no
// second save for a step already saved or resumed), and real signals
// delivered to this test process (raise, and kill(1) from a child).
#include <doctest/doctest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#define CKPTDB_EXPERIMENTAL  // triggers and signals
#include "ckptdb.h"

extern char **environ;

namespace {

struct FakeClock {
    double now = 1000.0;
};

double fake_clock(void *payload) { return static_cast<FakeClock *>(payload)->now; }

struct TriggerFree {
    void operator()(ckptdb_trigger *t) const { ckptdb_trigger_free(t); }
};
using TriggerPtr = std::unique_ptr<ckptdb_trigger, TriggerFree>;

TriggerPtr make(FakeClock &clock, int64_t epochs, int64_t steps, double seconds, int watch) {
    ckptdb_trigger_options o = CKPTDB_TRIGGER_OPTIONS_INIT;
    o.every_epochs = epochs;
    o.every_steps = steps;
    o.every_seconds = seconds;
    o.watch_signals = watch;
    o.clock = fake_clock;
    o.clock_payload = &clock;
    ckptdb_trigger *t = nullptr;
    int rc = ckptdb_trigger_new(&t, &o);
    REQUIRE_MESSAGE(rc == CKPTDB_OK, ckptdb_last_error());
    REQUIRE(t != nullptr);
    return TriggerPtr(t);
}

// The trigger's answer as a string ("" for no save).
std::string kind(ckptdb_trigger *t, int64_t epoch, int64_t step, int epoch_end) {
    const char *k = reinterpret_cast<const char *>(0x1);
    int rc = ckptdb_trigger_check(&k, t, epoch, step, epoch_end);
    REQUIRE_MESSAGE(rc == CKPTDB_OK, ckptdb_last_error());
    return k ? std::string(k) : std::string();
}

// The flag is process-wide: every test starts and ends with it clear and
// with no ckptdb handler installed.
struct CleanSignals {
    CleanSignals() {
        ckptdb_signals_restore();
        ckptdb_preempt_clear();
    }
    ~CleanSignals() {
        ckptdb_signals_restore();
        ckptdb_preempt_clear();
    }
};

// Saves a signal's disposition and puts it back at the end of the test.
struct SavedAction {
    int sig;
    struct sigaction old;
    explicit SavedAction(int s) : sig(s) { ::sigaction(sig, nullptr, &old); }
    ~SavedAction() { ::sigaction(sig, &old, nullptr); }
};

volatile sig_atomic_t g_plain_calls = 0;
volatile sig_atomic_t g_plain_signo = 0;
volatile sig_atomic_t g_info_calls = 0;
volatile sig_atomic_t g_info_signo = 0;
volatile sig_atomic_t g_flag_seen_in_chain = -1;

void plain_handler(int signo) {
    g_plain_calls = g_plain_calls + 1;
    g_plain_signo = signo;
    g_flag_seen_in_chain = ckptdb_preempt_requested();
    errno = EIO;  // a careless handler; ckptdb's must still restore errno
}

void info_handler(int signo, siginfo_t *info, void *) {
    g_info_calls = g_info_calls + 1;
    g_info_signo = info ? info->si_signo : -signo;
}

void reset_counters() {
    g_plain_calls = 0;
    g_plain_signo = 0;
    g_info_calls = 0;
    g_info_signo = 0;
    g_flag_seen_in_chain = -1;
}

void set_handler(int sig, void (*fn)(int)) {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    REQUIRE(::sigaction(sig, &sa, nullptr) == 0);
}

void set_info_handler(int sig) {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = info_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    REQUIRE(::sigaction(sig, &sa, nullptr) == 0);
}

struct sigaction current(int sig) {
    struct sigaction sa;
    REQUIRE(::sigaction(sig, nullptr, &sa) == 0);
    return sa;
}

bool is_ckptdb_handler(int sig) {
    struct sigaction sa = current(sig);
    return (sa.sa_flags & SA_SIGINFO) && (sa.sa_flags & SA_RESTART) && sa.sa_sigaction != info_handler &&
           sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN && sa.sa_handler != plain_handler;
}

void check_refused(int rc, int code, const std::vector<std::string> &mentions) {
    CHECK(rc == code);
    CHECK(ckptdb_last_error_code() == code);
    std::string msg = ckptdb_last_error();
    for (const auto &m : mentions) CHECK_MESSAGE(msg.find(m) != std::string::npos, "'" << m << "' not in: " << msg);
}

}  // namespace

// ---------------------------------------------------------------------------
// Triggers, one rule at a time

TEST_CASE("every_epochs saves only at the end of every Nth epoch") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 2, 0, 0, 0);
    CHECK(kind(t.get(), 1, 10, 0) == "");
    CHECK(kind(t.get(), 1, 10, 1) == "");  // epoch 1 is not a multiple of 2
    CHECK(kind(t.get(), 2, 15, 0) == "");  // epoch 2, but not at its end
    CHECK(kind(t.get(), 2, 20, 1) == "epoch");
    CHECK(kind(t.get(), 3, 30, 1) == "");
    CHECK(kind(t.get(), 4, 40, 1) == "epoch");
    c.now += 1e6;  // time is off: no "time" however long it has been
    CHECK(kind(t.get(), 5, 50, 1) == "");
}

TEST_CASE("every_steps saves at steps aligned to step % N == 0, end of epoch or not") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 0, 100, 0, 0);
    CHECK(kind(t.get(), 1, 99, 0) == "");
    CHECK(kind(t.get(), 1, 100, 0) == "step");
    CHECK(kind(t.get(), 1, 101, 0) == "");
    CHECK(kind(t.get(), 1, 150, 1) == "");  // epoch end does not matter with epochs off
    CHECK(kind(t.get(), 2, 200, 1) == "step");
    CHECK(kind(t.get(), 2, 300, 0) == "step");
}

TEST_CASE("every_seconds counts from the start, then from the last save") {
    CleanSignals clean;
    FakeClock c;  // created at t=1000
    auto t = make(c, 0, 0, 60, 0);
    c.now = 1059.9;
    CHECK(kind(t.get(), 1, 1, 0) == "");
    c.now = 1060.0;
    CHECK(kind(t.get(), 1, 2, 0) == "time");
    CHECK(kind(t.get(), 1, 3, 1) == "time");  // not saved yet: still due
    REQUIRE(ckptdb_trigger_saved(t.get(), 3) == CKPTDB_OK);
    c.now = 1061.0;
    CHECK(kind(t.get(), 1, 4, 0) == "");
    c.now = 1119.0;
    CHECK(kind(t.get(), 1, 5, 0) == "");
    c.now = 1120.0;
    CHECK(kind(t.get(), 1, 6, 0) == "time");
}

TEST_CASE("ckptdb_trigger_resumed: no save for the resumed step and no time save right away") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 0, 100, 60, 0);
    c.now = 1100.0;  // 100 s since start: a time save would be due
    CHECK(kind(t.get(), 5, 499, 0) == "time");
    REQUIRE(ckptdb_trigger_resumed(t.get(), 500) == CKPTDB_OK);
    CHECK(kind(t.get(), 5, 500, 1) == "");  // aligned, but it is the step resumed from
    CHECK(kind(t.get(), 5, 501, 0) == "");  // the interval restarted at the resume
    c.now = 1159.0;
    CHECK(kind(t.get(), 5, 502, 0) == "");
    c.now = 1160.0;
    CHECK(kind(t.get(), 5, 503, 0) == "time");
    CHECK(kind(t.get(), 6, 600, 0) == "step");
}

TEST_CASE("no second answer for the step last saved, whatever else is due") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 1, 100, 10, 1);
    CHECK(kind(t.get(), 1, 100, 1) == "epoch");
    REQUIRE(ckptdb_trigger_saved(t.get(), 100) == CKPTDB_OK);
    c.now += 1000;  // time due as well
    CHECK(kind(t.get(), 1, 100, 1) == "");
    CHECK(kind(t.get(), 1, 100, 0) == "");
    ckptdb_preempt_request(SIGTERM);
    CHECK(kind(t.get(), 1, 100, 1) == "");  // the preempt save of this step is the one just committed
    CHECK(ckptdb_trigger_should_stop(t.get()) != 0);
    CHECK(kind(t.get(), 2, 101, 0) == "preempt");  // a later step is a new question
    ckptdb_preempt_clear();
    CHECK(kind(t.get(), 2, 101, 0) == "time");
    // Only the last recorded step is remembered.
    REQUIRE(ckptdb_trigger_saved(t.get(), 101) == CKPTDB_OK);
    CHECK(kind(t.get(), 2, 100, 1) == "epoch");
}

// ---------------------------------------------------------------------------
// Triggers combined

using Saves = std::vector<std::pair<int64_t, std::string>>;

// A training loop of `steps` steps, 100 per epoch, each taking `seconds_per_step`
// on the fake clock; returns every (step, kind) the trigger answered.
Saves simulate(ckptdb_trigger *t, FakeClock &c, int64_t steps, double seconds_per_step) {
    Saves got;
    const double start = c.now;
    for (int64_t step = 1; step <= steps; step++) {
        c.now = start + seconds_per_step * static_cast<double>(step);
        int64_t epoch = (step - 1) / 100 + 1;
        std::string k = kind(t, epoch, step, step % 100 == 0);
        if (k.empty()) continue;
        got.emplace_back(step, k);
        REQUIRE(ckptdb_trigger_saved(t, step) == CKPTDB_OK);
    }
    return got;
}

TEST_CASE("epochs and seconds: whichever comes first, each save restarting the clock") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 2, 0, 30, 0);
    Saves want = {
        {60, "time"},  {120, "time"}, {180, "time"}, {200, "epoch"},
        {260, "time"}, {320, "time"}, {380, "time"}, {400, "epoch"},
    };
    CHECK(simulate(t.get(), c, 400, 0.5) == want);
}

TEST_CASE("a step that ends an epoch and is due by time is saved once, as epoch, when the epoch save is due") {
    CleanSignals clean;
    FakeClock c;
    // Time falls due every 50 steps, so on the last step of every epoch
    // (100 steps each); the epoch save is due every 2 epochs.
    auto t = make(c, 2, 0, 50, 0);
    Saves want = {
        {50, "time"},  {100, "time"}, {150, "time"}, {200, "epoch"},
        {250, "time"}, {300, "time"}, {350, "time"}, {400, "epoch"},
    };
    CHECK(simulate(t.get(), c, 400, 1.0) == want);
}

TEST_CASE("epochs and steps: whichever comes first") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 1, 30, 0, 0);
    Saves want = {
        {30, "step"},  {60, "step"},  {90, "step"},  {100, "epoch"},
        {120, "step"}, {150, "step"}, {180, "step"}, {200, "epoch"},
    };
    CHECK(simulate(t.get(), c, 200, 0.0) == want);
}

TEST_CASE("precedence: preempt > epoch > step > time") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 2, 10, 5, 1);
    c.now += 10;  // time due
    ckptdb_preempt_request(SIGTERM);
    CHECK(kind(t.get(), 2, 20, 1) == "preempt");  // all four due
    ckptdb_preempt_clear();
    CHECK(kind(t.get(), 2, 20, 1) == "epoch");
    CHECK(kind(t.get(), 2, 20, 0) == "step");
    CHECK(kind(t.get(), 2, 21, 0) == "time");
    CHECK(kind(t.get(), 3, 30, 1) == "step");  // epoch 3 is not a multiple of 2
}

TEST_CASE("a trigger that does not watch signals ignores the preemption flag") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 2, 0, 0, 0);
    ckptdb_preempt_request(SIGUSR1);
    REQUIRE(ckptdb_preempt_requested() == SIGUSR1);
    CHECK(ckptdb_trigger_should_stop(t.get()) == 0);
    CHECK(kind(t.get(), 1, 5, 0) == "");
    CHECK(kind(t.get(), 2, 6, 1) == "epoch");
}

// ---------------------------------------------------------------------------
// Options

TEST_CASE("CKPTDB_TRIGGER_OPTIONS_INIT and options_init give the production default") {
    CleanSignals clean;
    ckptdb_trigger_options o;
    std::memset(&o, 0xab, sizeof o);
    REQUIRE(ckptdb_trigger_options_init(&o, CKPTDB_TRIGGER_OPTIONS_VERSION) == CKPTDB_OK);
    CHECK(o.version == CKPTDB_TRIGGER_OPTIONS_VERSION);
    CHECK(o.every_epochs == 5);
    CHECK(o.every_steps == 0);
    CHECK(o.every_seconds == 900.0);
    CHECK(o.watch_signals == 1);
    CHECK((o.clock == nullptr));
    CHECK(o.clock_payload == nullptr);
    ckptdb_trigger_options m = CKPTDB_TRIGGER_OPTIONS_INIT;
    CHECK(m.version == o.version);
    CHECK(m.every_epochs == o.every_epochs);
    CHECK(m.every_steps == o.every_steps);
    CHECK(m.every_seconds == o.every_seconds);
    CHECK(m.watch_signals == o.watch_signals);

    // The default, with a clock: 15 minutes, or epoch 5, or preemption.
    FakeClock c;
    o.clock = fake_clock;
    o.clock_payload = &c;
    ckptdb_trigger *raw = nullptr;
    REQUIRE(ckptdb_trigger_new(&raw, &o) == CKPTDB_OK);
    TriggerPtr t(raw);
    c.now = 1899.9;
    CHECK(kind(t.get(), 4, 400, 1) == "");
    CHECK(kind(t.get(), 5, 500, 1) == "epoch");
    CHECK(kind(t.get(), 5, 501, 0) == "");
    c.now = 1900.0;
    CHECK(kind(t.get(), 5, 502, 0) == "time");
    ckptdb_preempt_request(SIGTERM);
    CHECK(kind(t.get(), 5, 503, 0) == "preempt");
    CHECK(ckptdb_trigger_should_stop(t.get()) != 0);
}

TEST_CASE("NULL options mean the production default") {
    CleanSignals clean;
    ckptdb_trigger *raw = nullptr;
    REQUIRE(ckptdb_trigger_new(&raw, nullptr) == CKPTDB_OK);
    TriggerPtr t(raw);
    CHECK(kind(t.get(), 4, 400, 1) == "");
    CHECK(kind(t.get(), 5, 500, 0) == "");
    CHECK(kind(t.get(), 5, 500, 1) == "epoch");
    CHECK(kind(t.get(), 6, 600, 0) == "");  // every_steps is off
    CHECK(ckptdb_trigger_should_stop(t.get()) == 0);
    ckptdb_preempt_request(SIGINT);
    CHECK(kind(t.get(), 6, 601, 0) == "preempt");
    CHECK(ckptdb_trigger_should_stop(t.get()) != 0);
}

TEST_CASE("bad trigger options are refused with the field and value named") {
    CleanSignals clean;
    FakeClock c;
    struct Bad {
        const char *what;
        void (*set)(ckptdb_trigger_options &);
        std::vector<std::string> mentions;
    };
    const double inf = std::numeric_limits<double>::infinity();
    (void)inf;
    std::vector<Bad> bad = {
        {"negative epochs", [](ckptdb_trigger_options &o) { o.every_epochs = -1; }, {"every_epochs", "-1"}},
        {"negative steps", [](ckptdb_trigger_options &o) { o.every_steps = -3; }, {"every_steps", "-3"}},
        {"negative seconds", [](ckptdb_trigger_options &o) { o.every_seconds = -1; }, {"every_seconds", "-1"}},
        {"NaN seconds",
         [](ckptdb_trigger_options &o) { o.every_seconds = std::numeric_limits<double>::quiet_NaN(); },
         {"every_seconds", "nan"}},
        {"inf seconds",
         [](ckptdb_trigger_options &o) { o.every_seconds = std::numeric_limits<double>::infinity(); },
         {"every_seconds", "inf"}},
        {"-inf seconds",
         [](ckptdb_trigger_options &o) { o.every_seconds = -std::numeric_limits<double>::infinity(); },
         {"every_seconds", "-inf"}},
        {"version 0", [](ckptdb_trigger_options &o) { o.version = 0; }, {"ckptdb_trigger_options", "version 0"}},
        {"version 99", [](ckptdb_trigger_options &o) { o.version = 99; }, {"ckptdb_trigger_options", "version 99"}},
    };
    for (const auto &b : bad) {
        INFO(b.what);
        ckptdb_trigger_options o = CKPTDB_TRIGGER_OPTIONS_INIT;
        o.clock = fake_clock;
        o.clock_payload = &c;
        b.set(o);
        ckptdb_trigger *t = reinterpret_cast<ckptdb_trigger *>(0x1);
        check_refused(ckptdb_trigger_new(&t, &o), CKPTDB_EINVAL, b.mentions);
        CHECK(t == nullptr);
    }
    ckptdb_trigger_options o;
    check_refused(ckptdb_trigger_options_init(&o, 0), CKPTDB_EINVAL, {"ckptdb_trigger_options", "version 0"});
    check_refused(ckptdb_trigger_options_init(&o, 99), CKPTDB_EINVAL, {"ckptdb_trigger_options", "version 99"});

    // A clock that returns NaN would silently switch the timer off.
    ckptdb_trigger_options n = CKPTDB_TRIGGER_OPTIONS_INIT;
    n.clock = [](void *) { return std::numeric_limits<double>::quiet_NaN(); };
    ckptdb_trigger *t = reinterpret_cast<ckptdb_trigger *>(0x1);
    check_refused(ckptdb_trigger_new(&t, &n), CKPTDB_EINVAL, {"clock", "nan"});
    CHECK(t == nullptr);
}

TEST_CASE("negative epoch or step is refused; a good call clears the last error") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 1, 1, 0, 0);
    const char *k = reinterpret_cast<const char *>(0x1);
    check_refused(ckptdb_trigger_check(&k, t.get(), -1, 5, 1), CKPTDB_EINVAL, {"epoch", "-1"});
    CHECK(k == nullptr);
    check_refused(ckptdb_trigger_check(&k, t.get(), 1, -5, 1), CKPTDB_EINVAL, {"step", "-5"});
    check_refused(ckptdb_trigger_saved(t.get(), -2), CKPTDB_EINVAL, {"step", "-2"});
    check_refused(ckptdb_trigger_resumed(t.get(), -7), CKPTDB_EINVAL, {"step", "-7"});
    CHECK(kind(t.get(), 1, 5, 1) == "epoch");
    CHECK(ckptdb_last_error_code() == CKPTDB_OK);
    CHECK(std::string(ckptdb_last_error()).empty());
}

TEST_CASE("NULL handles and out-parameters are CKPTDB_EMISUSE") {
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 1, 1, 0, 1);
    check_refused(ckptdb_trigger_options_init(nullptr, CKPTDB_TRIGGER_OPTIONS_VERSION), CKPTDB_EMISUSE, {"opts"});
    check_refused(ckptdb_trigger_new(nullptr, nullptr), CKPTDB_EMISUSE, {"out"});
    check_refused(ckptdb_trigger_check(nullptr, t.get(), 1, 1, 1), CKPTDB_EMISUSE, {"out_kind"});
    const char *k = reinterpret_cast<const char *>(0x1);
    check_refused(ckptdb_trigger_check(&k, nullptr, 1, 1, 1), CKPTDB_EMISUSE, {"trigger"});
    CHECK(k == nullptr);
    check_refused(ckptdb_trigger_saved(nullptr, 1), CKPTDB_EMISUSE, {"trigger"});
    check_refused(ckptdb_trigger_resumed(nullptr, 1), CKPTDB_EMISUSE, {"trigger"});
    ckptdb_preempt_request(SIGTERM);
    CHECK(ckptdb_trigger_should_stop(nullptr) == 0);
    CHECK(ckptdb_last_error_code() == CKPTDB_EMISUSE);
    ckptdb_trigger_free(nullptr);  // accepted, and leaves the last error alone
    CHECK(ckptdb_last_error_code() == CKPTDB_EMISUSE);
}

// ---------------------------------------------------------------------------
// The preemption flag and real signals

TEST_CASE("the flag: request, first one wins, clear; signo <= 0 is ignored") {
    CleanSignals clean;
    CHECK(ckptdb_preempt_requested() == 0);
    ckptdb_preempt_request(0);
    ckptdb_preempt_request(-5);
    CHECK(ckptdb_preempt_requested() == 0);
    ckptdb_preempt_request(SIGUSR2);
    ckptdb_preempt_request(SIGTERM);
    CHECK(ckptdb_preempt_requested() == SIGUSR2);
    ckptdb_preempt_clear();
    CHECK(ckptdb_preempt_requested() == 0);
    ckptdb_preempt_request(SIGTERM);
    CHECK(ckptdb_preempt_requested() == SIGTERM);
}

TEST_CASE("raise(SIGUSR1) after install sets the flag; the trigger answers preempt and should_stop") {
    SavedAction keep_usr1(SIGUSR1), keep_term(SIGTERM), keep_int(SIGINT);
    CleanSignals clean;
    FakeClock c;
    auto t = make(c, 5, 0, 900, 1);
    REQUIRE(ckptdb_signals_install(nullptr, 0, 0) == CKPTDB_OK);  // the default set
    CHECK(is_ckptdb_handler(SIGTERM));
    CHECK(is_ckptdb_handler(SIGINT));
    CHECK(is_ckptdb_handler(SIGUSR1));
    CHECK(ckptdb_trigger_should_stop(t.get()) == 0);
    CHECK(kind(t.get(), 1, 7, 0) == "");
    REQUIRE(raise(SIGUSR1) == 0);
    CHECK(ckptdb_preempt_requested() == SIGUSR1);
    CHECK(kind(t.get(), 1, 8, 0) == "preempt");
    CHECK(ckptdb_trigger_should_stop(t.get()) != 0);
}

TEST_CASE("the first signal received wins") {
    SavedAction keep_usr1(SIGUSR1), keep_usr2(SIGUSR2);
    CleanSignals clean;
    const int sigs[] = {SIGUSR1, SIGUSR2};
    REQUIRE(ckptdb_signals_install(sigs, 2, 0) == CKPTDB_OK);
    REQUIRE(raise(SIGUSR2) == 0);
    REQUIRE(raise(SIGUSR1) == 0);
    CHECK(ckptdb_preempt_requested() == SIGUSR2);
    ckptdb_preempt_request(SIGTERM);
    CHECK(ckptdb_preempt_requested() == SIGUSR2);
}

TEST_CASE("SIGTERM from another process (kill(1) via posix_spawn) sets the flag and does not kill us") {
    SavedAction keep_term(SIGTERM);
    CleanSignals clean;
    const int sigs[] = {SIGTERM};
    // No chain: the previous SIGTERM handler is doctest's crash reporter.
    REQUIRE(ckptdb_signals_install(sigs, 1, 0) == CKPTDB_OK);
    std::string pid = std::to_string(::getpid());
    char arg0[] = "kill";
    char arg1[] = "-TERM";
    std::vector<char> arg2(pid.begin(), pid.end());
    arg2.push_back('\0');
    char *argv[] = {arg0, arg1, arg2.data(), nullptr};
    pid_t child = 0;
    REQUIRE(::posix_spawn(&child, "/bin/kill", nullptr, nullptr, argv, environ) == 0);
    int status = 0;
    pid_t w;
    do {
        w = ::waitpid(child, &status, 0);  // SA_RESTART, but be safe
    } while (w < 0 && errno == EINTR);
    REQUIRE(w == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    for (int i = 0; i < 500 && ckptdb_preempt_requested() == 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        ::nanosleep(&ts, nullptr);
    }
    CHECK(ckptdb_preempt_requested() == SIGTERM);
}

TEST_CASE("chain calls a previous plain handler after setting the flag, and keeps errno") {
    SavedAction keep(SIGUSR2);
    CleanSignals clean;
    reset_counters();
    set_handler(SIGUSR2, plain_handler);
    const int sigs[] = {SIGUSR2, SIGUSR2};  // listed twice: still one handler, one chained call
    REQUIRE(ckptdb_signals_install(sigs, 2, 1) == CKPTDB_OK);
    errno = ERANGE;
    REQUIRE(raise(SIGUSR2) == 0);
    CHECK(errno == ERANGE);  // plain_handler set EIO; the ckptdb handler restores it
    CHECK(g_plain_calls == 1);
    CHECK(g_plain_signo == SIGUSR2);
    CHECK(g_flag_seen_in_chain == SIGUSR2);  // the flag was set before chaining
    CHECK(ckptdb_preempt_requested() == SIGUSR2);
}

TEST_CASE("chain calls a previous SA_SIGINFO handler with its siginfo") {
    SavedAction keep(SIGUSR1);
    CleanSignals clean;
    reset_counters();
    set_info_handler(SIGUSR1);
    const int sigs[] = {SIGUSR1};
    REQUIRE(ckptdb_signals_install(sigs, 1, 1) == CKPTDB_OK);
    REQUIRE(raise(SIGUSR1) == 0);
    CHECK(g_info_calls == 1);
    CHECK(g_info_signo == SIGUSR1);
    CHECK(ckptdb_preempt_requested() == SIGUSR1);
}

TEST_CASE("without chain the previous handler is not called") {
    SavedAction keep(SIGUSR2);
    CleanSignals clean;
    reset_counters();
    set_handler(SIGUSR2, plain_handler);
    const int sigs[] = {SIGUSR2};
    REQUIRE(ckptdb_signals_install(sigs, 1, 0) == CKPTDB_OK);
    REQUIRE(raise(SIGUSR2) == 0);
    CHECK(g_plain_calls == 0);
    CHECK(ckptdb_preempt_requested() == SIGUSR2);
}

TEST_CASE("chain does not chain to SIG_DFL or SIG_IGN (the process survives)") {
    SavedAction keep1(SIGUSR1), keep2(SIGUSR2);
    CleanSignals clean;
    set_handler(SIGUSR1, SIG_DFL);  // default action of SIGUSR1: terminate
    set_handler(SIGUSR2, SIG_IGN);
    const int sigs[] = {SIGUSR1, SIGUSR2};
    REQUIRE(ckptdb_signals_install(sigs, 2, 1) == CKPTDB_OK);
    REQUIRE(raise(SIGUSR1) == 0);
    REQUIRE(raise(SIGUSR2) == 0);
    CHECK(ckptdb_preempt_requested() == SIGUSR1);
    REQUIRE(ckptdb_signals_restore() == CKPTDB_OK);
    CHECK((current(SIGUSR1).sa_handler == SIG_DFL));
    CHECK((current(SIGUSR2).sa_handler == SIG_IGN));
}

TEST_CASE("restore puts the previous handlers back") {
    SavedAction keep1(SIGUSR1), keep2(SIGUSR2);
    CleanSignals clean;
    reset_counters();
    set_handler(SIGUSR2, plain_handler);
    set_info_handler(SIGUSR1);
    const int sigs[] = {SIGUSR1, SIGUSR2};
    REQUIRE(ckptdb_signals_install(sigs, 2, 0) == CKPTDB_OK);
    CHECK(is_ckptdb_handler(SIGUSR1));
    CHECK(is_ckptdb_handler(SIGUSR2));
    REQUIRE(ckptdb_signals_restore() == CKPTDB_OK);
    struct sigaction a2 = current(SIGUSR2);
    CHECK((a2.sa_handler == plain_handler));
    CHECK((a2.sa_flags & SA_SIGINFO) == 0);
    struct sigaction a1 = current(SIGUSR1);
    CHECK((a1.sa_flags & SA_SIGINFO) != 0);
    CHECK((a1.sa_sigaction == info_handler));
    REQUIRE(raise(SIGUSR2) == 0);
    CHECK(g_plain_calls == 1);
    CHECK(ckptdb_preempt_requested() == 0);        // ours is gone
    CHECK(ckptdb_signals_restore() == CKPTDB_OK);  // twice is harmless
    CHECK((current(SIGUSR2).sa_handler == plain_handler));
}

TEST_CASE("installing again restores the first set, then installs the new one") {
    SavedAction keep1(SIGUSR1), keep2(SIGUSR2);
    CleanSignals clean;
    reset_counters();
    set_handler(SIGUSR1, plain_handler);
    set_info_handler(SIGUSR2);
    const int first[] = {SIGUSR1};
    const int second[] = {SIGUSR2};
    REQUIRE(ckptdb_signals_install(first, 1, 1) == CKPTDB_OK);
    REQUIRE(ckptdb_signals_install(second, 1, 1) == CKPTDB_OK);
    CHECK((current(SIGUSR1).sa_handler == plain_handler));
    CHECK(is_ckptdb_handler(SIGUSR2));
    REQUIRE(raise(SIGUSR1) == 0);
    CHECK(g_plain_calls == 1);
    CHECK(ckptdb_preempt_requested() == 0);
    REQUIRE(raise(SIGUSR2) == 0);
    CHECK(ckptdb_preempt_requested() == SIGUSR2);
    CHECK(g_info_calls == 1);  // chained once, not to itself
    REQUIRE(ckptdb_signals_restore() == CKPTDB_OK);
    CHECK((current(SIGUSR2).sa_sigaction == info_handler));
}

TEST_CASE("invalid signals are CKPTDB_EINVAL and change nothing") {
    SavedAction keep1(SIGUSR1), keep2(SIGUSR2);
    CleanSignals clean;
    set_handler(SIGUSR1, plain_handler);
    const int good[] = {SIGUSR2};
    REQUIRE(ckptdb_signals_install(good, 1, 0) == CKPTDB_OK);
    for (int bad : {0, -1, SIGKILL, SIGSTOP, NSIG, 9999}) {
        INFO("signal " << bad);
        const int sigs[] = {SIGUSR1, bad};
        check_refused(ckptdb_signals_install(sigs, 2, 0), CKPTDB_EINVAL, {"signal " + std::to_string(bad)});
        CHECK((current(SIGUSR1).sa_handler == plain_handler));  // not installed
        CHECK(is_ckptdb_handler(SIGUSR2));                      // earlier set still in place
    }
    REQUIRE(raise(SIGUSR2) == 0);
    CHECK(ckptdb_preempt_requested() == SIGUSR2);
}

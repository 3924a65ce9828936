// train.cpp - a LibTorch trainer that saves and resumes its whole training
// state through ckptdb (libckptdb_torch).
//
// A small MLP learns a fixed function of deterministic synthetic data with
// Adam and a StepLR schedule.  Everything about checkpoints is left to the
// library:
//   - auto-resume: on start, the newest checkpoint that verifies is loaded
//     (model, optimizer, scheduler, RNG, extras); no flag needed;
//   - when to save: a ckptdb_trigger (kind "epoch" every --save-every-epochs
//     epochs, default 5; kind "time" every --save-every-seconds, default 900);
//   - rotation: the library's default policy (the newest 5 "epoch" and 3
//     "time" checkpoints; a "preempt" one until a newer save);
//   - preemption: SIGTERM, SIGINT or SIGUSR1 finish the step, save it as
//     kind "preempt", print "stopped: ..." and exit 0;
//   - --async: epoch and time saves copy the state on this thread and are
//     written in the background; a preempt save waits for them first.
// Resume is exact, also in the middle of an epoch: the order of the samples
// is a function of (seed, epoch), and the loop skips the steps already done.
//
// A save records epoch = completed epochs, step = completed global steps.
//
// Output (stdout), one line each:
//   resume: none, starting fresh
//   resume: id=I name=N epoch=E step=S bytes=B
//   save: id=I name=N kind=K epoch=E step=S bytes=B
//   stopped: signal=G epoch=E step=S kind=K
//   done: epoch=E step=S loss=L
//   final: params=<hex> optimizer=<hex>   (FNV-1a of every parameter byte, and of the optimizer state)
// Exit status: 0 done or stopped by a signal after saving; 1 error; 2 bad command line.
// Triggers and signals are ckptdb's experimental tier.
#define CKPTDB_EXPERIMENTAL
#include <ckptdb_torch.hpp>

#include <torch/torch.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct config {
    std::string dir;
    int64_t epochs = 20;
    int64_t samples = 512;
    int64_t batch = 32;
    int64_t hidden = 64;
    uint64_t seed = 1;
    double lr = 1e-2;
    int64_t lr_step = 5;
    double lr_gamma = 0.5;
    int64_t save_every_epochs = 5;
    double save_every_seconds = 900.0;
    int64_t step_sleep_ms = 0;
    double sim_step_seconds = 0.0;  // > 0: the trigger's clock is simulated
    bool async = false;
};

constexpr int64_t kFeatures = 16;

[[noreturn]] void usage_error(const std::string &msg) {
    std::fprintf(stderr, "ckptdb-train-cpp: %s\nTry 'ckptdb-train-cpp --help'.\n", msg.c_str());
    std::exit(2);
}

void usage() {
    std::printf(
        "usage: ckptdb-train-cpp --dir DIR [options]\n"
        "LibTorch trainer (MLP, Adam, StepLR) that saves and resumes through ckptdb.\n\n"
        "  --dir DIR                 checkpoint directory (created if missing)\n"
        "  --epochs N                epochs in all (default 20)\n"
        "  --samples N               synthetic samples (default 512)\n"
        "  --batch N                 batch size (default 32; samples must be a multiple)\n"
        "  --hidden N                hidden width (default 64)\n"
        "  --seed N                  seed of the data, its order and the initial weights (default 1)\n"
        "  --lr X                    Adam learning rate (default 0.01)\n"
        "  --lr-step N --lr-gamma X  StepLR: multiply the rate by X every N epochs (default 5, 0.5)\n"
        "  --save-every-epochs N     kind \"epoch\" every N epochs (default 5; 0: off)\n"
        "  --save-every-seconds T    kind \"time\" every T seconds (default 900; 0: off)\n"
        "  --step-sleep-ms N         sleep N ms per step (default 0)\n"
        "  --simulated-step-seconds T\n"
        "                            the trigger's clock starts at 0 and each step advances\n"
        "                            it by T seconds (default 0: the real monotonic clock)\n"
        "  --async                   write epoch and time saves in the background\n\n"
        "Starts from the newest checkpoint that verifies.  SIGTERM/SIGINT/SIGUSR1: save\n"
        "the step as kind \"preempt\" and exit 0; the same command continues the run.\n");
}

int64_t to_int(const std::string &flag, const std::string &v, int64_t min) {
    char *end = nullptr;
    errno = 0;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (errno || end == v.c_str() || *end || x < min)
        usage_error(flag + " needs an integer >= " + std::to_string(min) + ", not '" + v + "'");
    return x;
}

double to_double(const std::string &flag, const std::string &v) {
    char *end = nullptr;
    errno = 0;
    double x = std::strtod(v.c_str(), &end);
    if (errno || end == v.c_str() || *end || !(x >= 0.0) || !std::isfinite(x))
        usage_error(flag + " needs a number >= 0, not '" + v + "'");
    return x;
}

config parse(int argc, char **argv) {
    config c;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            usage();
            std::exit(0);
        }
        if (a == "--async") {
            c.async = true;
            continue;
        }
        std::string v;
        auto eq = a.find('=');
        if (eq != std::string::npos) {
            v = a.substr(eq + 1);
            a = a.substr(0, eq);
        } else {
            if (i + 1 >= argc) usage_error("option '" + a + "' needs a value");
            v = argv[++i];
        }
        if (a == "--dir")
            c.dir = v;
        else if (a == "--epochs")
            c.epochs = to_int(a, v, 0);
        else if (a == "--samples")
            c.samples = to_int(a, v, 1);
        else if (a == "--batch")
            c.batch = to_int(a, v, 1);
        else if (a == "--hidden")
            c.hidden = to_int(a, v, 1);
        else if (a == "--seed")
            c.seed = uint64_t(to_int(a, v, 0));
        else if (a == "--lr")
            c.lr = to_double(a, v);
        else if (a == "--lr-step")
            c.lr_step = to_int(a, v, 1);
        else if (a == "--lr-gamma")
            c.lr_gamma = to_double(a, v);
        else if (a == "--save-every-epochs")
            c.save_every_epochs = to_int(a, v, 0);
        else if (a == "--save-every-seconds")
            c.save_every_seconds = to_double(a, v);
        else if (a == "--step-sleep-ms")
            c.step_sleep_ms = to_int(a, v, 0);
        else if (a == "--simulated-step-seconds")
            c.sim_step_seconds = to_double(a, v);
        else
            usage_error("unknown option '" + a + "'");
    }
    if (c.dir.empty()) usage_error("--dir DIR is required");
    if (c.samples % c.batch != 0) usage_error("--samples must be a multiple of --batch");
    return c;
}

// splitmix64's output function: the data and its order are pure functions
// of integers, so another program (tests/torch/python_interop.py) can
// rebuild them exactly.
uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double uniform(uint64_t seed, uint64_t k) {  // in [-1, 1)
    return double(mix(seed * 0x100000001B3ull + k) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

void make_data(const config &c, torch::Tensor &x, torch::Tensor &y) {
    std::vector<double> xs(size_t(c.samples * kFeatures)), ys(size_t(c.samples));
    for (int64_t i = 0; i < c.samples; i++) {
        double t = 0.0;
        for (int64_t j = 0; j < kFeatures; j++) {
            double v = uniform(c.seed, uint64_t(i * kFeatures + j));
            xs[size_t(i * kFeatures + j)] = v;
            t += double((j % 5) - 2) * 0.25 * v;
        }
        ys[size_t(i)] = t + 0.5 * xs[size_t(i * kFeatures)] * xs[size_t(i * kFeatures + 1)];
    }
    x = torch::tensor(xs, torch::kDouble).reshape({c.samples, kFeatures}).to(torch::kFloat);
    y = torch::tensor(ys, torch::kDouble).reshape({c.samples, 1}).to(torch::kFloat);
}

// The order of the samples in epoch e (0-based): Fisher-Yates driven by mix().
std::vector<int64_t> order(const config &c, int64_t e) {
    std::vector<int64_t> p(size_t(c.samples));
    for (int64_t i = 0; i < c.samples; i++) p[size_t(i)] = i;
    uint64_t s = c.seed ^ (uint64_t(e + 1) * 0xD1B54A32D192ED03ull);
    for (int64_t i = c.samples - 1; i > 0; i--) {
        s = mix(s);
        int64_t j = int64_t(s % uint64_t(i + 1));
        std::swap(p[size_t(i)], p[size_t(j)]);
    }
    return p;
}

uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = static_cast<const unsigned char *>(data);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

// Optimizer::state()'s key of a parameter: its TensorImpl, a pointer in
// current LibTorch, the pointer's text in older releases.
template <class Map>
typename Map::key_type state_key(const Map &, const torch::Tensor &p) {
    if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%p", static_cast<void *>(p.unsafeGetTensorImpl()));
        return buf;
    } else {
        return p.unsafeGetTensorImpl();
    }
}

uint64_t fnv_tensor(uint64_t h, const torch::Tensor &t) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    return fnv(h, c.data_ptr(), size_t(c.numel()) * c.element_size());
}

[[noreturn]] void fail(const std::string &msg) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    std::exit(1);
}

int run(const config &c) {
    torch::set_num_threads(1);
    torch::manual_seed(c.seed);
    auto model =
        torch::nn::Sequential(torch::nn::Linear(kFeatures, c.hidden), torch::nn::ReLU(),
                              torch::nn::Linear(c.hidden, c.hidden), torch::nn::ReLU(), torch::nn::Linear(c.hidden, 1));
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(c.lr));
    torch::optim::StepLR sched(opt, unsigned(c.lr_step), c.lr_gamma);

    ckptdbxx::training_state state;
    state.add_module(*model).add_optimizer(opt).add_scheduler(sched);

    ckptdbxx::catalog db(c.dir);
    ckptdb_retention keep = CKPTDB_RETENTION_INIT;  // newest 5 epoch, 3 time; preempt until superseded
    if (ckptdb_set_retention(db.handle(), &keep) != CKPTDB_OK) fail(ckptdb_last_error());
    if (ckptdb_signals_install(nullptr, 0, 0) != CKPTDB_OK) fail(ckptdb_last_error());
    ckptdb_trigger_options to = CKPTDB_TRIGGER_OPTIONS_INIT;
    to.every_epochs = c.save_every_epochs;
    to.every_seconds = c.save_every_seconds;
    double sim_now = 0.0;  // --simulated-step-seconds: advanced once per step
    if (c.sim_step_seconds > 0.0) {
        to.clock = [](void *p) { return *static_cast<double *>(p); };
        to.clock_payload = &sim_now;
    }
    ckptdb_trigger *trig = nullptr;
    if (ckptdb_trigger_new(&trig, &to) != CKPTDB_OK) fail(ckptdb_last_error());
    std::unique_ptr<ckptdb_trigger, void (*)(ckptdb_trigger *)> trig_guard(trig, ckptdb_trigger_free);

    int64_t step = 0;
    if (auto r = state.resume(db)) {
        step = r->step;
        std::printf("resume: id=%" PRId64 " name=%s epoch=%" PRId64 " step=%" PRId64 " bytes=%" PRId64 "\n",
                    r->checkpoint.id, r->checkpoint.name.c_str(), r->epoch, r->step, r->checkpoint.size);
        ckptdb_trigger_resumed(trig, step);
    } else {
        std::printf("resume: none, starting fresh\n");
    }
    std::fflush(stdout);

    torch::Tensor x, y;
    make_data(c, x, y);
    const int64_t spe = c.samples / c.batch;
    ckptdbxx::async_saver saver(state, db);
    auto report = [](const ckptdbxx::entry &e) {
        std::printf("save: id=%" PRId64 " name=%s kind=%s epoch=%" PRId64 " step=%" PRId64 " bytes=%" PRId64 "\n", e.id,
                    e.name.c_str(), e.kind.c_str(), e.epoch, e.step, e.size);
        std::fflush(stdout);
    };

    double loss_v = 0.0;
    std::string last_kind = "none";  // the kind of the newest save of this run
    for (int64_t epoch = step / spe; epoch < c.epochs; epoch++) {
        std::vector<int64_t> perm = order(c, epoch);
        torch::Tensor idx_all = torch::tensor(perm, torch::kLong);
        for (int64_t pos = step - epoch * spe; pos < spe; pos++) {
            torch::Tensor idx = idx_all.slice(0, pos * c.batch, (pos + 1) * c.batch);
            opt.zero_grad();
            torch::Tensor loss = torch::mse_loss(model->forward(x.index_select(0, idx)), y.index_select(0, idx));
            loss.backward();
            opt.step();
            loss_v = loss.item<double>();
            step++;
            sim_now += c.sim_step_seconds;
            bool end = pos + 1 == spe;
            int64_t done_epochs = end ? epoch + 1 : epoch;
            if (end) {
                sched.step();
                ckptdb_run_progress(db.handle(), done_epochs, step);
            }
            state.set_extra("loss", loss_v);
            if (c.step_sleep_ms) std::this_thread::sleep_for(std::chrono::milliseconds(c.step_sleep_ms));

            const char *kind = nullptr;
            if (ckptdb_trigger_check(&kind, trig, done_epochs, step, end ? 1 : 0) != CKPTDB_OK)
                fail(ckptdb_last_error());
            if (kind) {
                std::string meta = "{\"loss\": " + std::to_string(loss_v) + "}";
                if (c.async && std::strcmp(kind, "preempt") != 0) {
                    if (auto e = saver.wait()) report(*e);
                    saver.save(kind, done_epochs, step, meta);
                } else {
                    if (auto e = saver.wait()) report(*e);
                    report(saver.save_now(kind, done_epochs, step, meta));
                }
                ckptdb_trigger_saved(trig, step);
                last_kind = kind;
            }
            if (ckptdb_trigger_should_stop(trig)) {
                if (auto e = saver.wait()) report(*e);
                std::printf("stopped: signal=%d epoch=%" PRId64 " step=%" PRId64 " kind=%s\n",
                            ckptdb_preempt_requested(), done_epochs, step, last_kind.c_str());
                return 0;
            }
        }
    }
    if (auto e = saver.wait()) report(*e);

    uint64_t hp = 0xcbf29ce484222325ull, ho = 0xcbf29ce484222325ull;
    for (auto &p : model->parameters()) hp = fnv_tensor(hp, p);
    for (auto &g : opt.param_groups()) {
        double lr = g.options().get_lr();
        ho = fnv(ho, &lr, sizeof lr);
        for (auto &p : g.params()) {
            auto it = opt.state().find(state_key(opt.state(), p));
            if (it == opt.state().end()) continue;
            auto &ps = static_cast<torch::optim::AdamParamState &>(*it->second);
            int64_t n = ps.step();
            ho = fnv(ho, &n, sizeof n);
            ho = fnv_tensor(fnv_tensor(ho, ps.exp_avg()), ps.exp_avg_sq());
        }
    }
    std::printf("done: epoch=%" PRId64 " step=%" PRId64 " loss=%.9g\n", c.epochs, step, loss_v);
    std::printf("final: params=%016" PRIx64 " optimizer=%016" PRIx64 "\n", hp, ho);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    config c = parse(argc, argv);
    try {
        return run(c);
    } catch (const std::exception &e) {
        fail(e.what());
    }
}

// ckptdb_torch.hpp - save and resume a whole LibTorch training state through
// a ckptdb catalog (libckptdb_torch; pkg-config --cflags --libs ckptdb_torch).
//
// A training_state names the live objects of a trainer (modules, optimizers,
// LR schedulers), the CPU (and CUDA) RNG state, an AMP grad-scaler state,
// and free-form extra values.  save() writes all of it, streamed, as one
// checkpoint of the catalog; resume() loads the newest checkpoint that
// verifies (the catalog falls back past corrupt ones) into the same objects.
//
// File format: a zip archive that Python's torch.load reads as a plain dict,
// also with the weights-only unpickler (torch >= 2.6's default)
//   {"epoch": int, "step": int,
//    "model": state_dict (parameters and buffers under their state_dict names),
//    "optimizer": optimizer.state_dict() as torch.optim lays it out,
//    "scheduler": {"last_epoch", "_step_count", "_last_lr"},
//    "rng": {"torch": ByteTensor, "cuda": [ByteTensor per device]},
//    "scaler": GradScaler.state_dict() ({} when disabled),
//    "extra": {str: value}}
// One key per registered object, by its name ("model", "optimizer" and
// "scheduler" by default; the last two are None when nothing is registered
// under them).
//
// Errors: catalog failures throw ckptdbxx::error (code and message); a
// checkpoint that does not fit the live objects throws ckptdbxx::load_error,
// which names the keys.  Thread-safety: one training_state is used by one
// thread at a time; async_saver copies the state on the caller's thread and
// touches only its own copy in the background.
#ifndef CKPTDB_TORCH_HPP
#define CKPTDB_TORCH_HPP

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <ckptdb.hpp>

namespace c10 {
struct IValue;
}  // namespace c10
namespace torch {
namespace nn {
class Module;
}  // namespace nn
namespace optim {
class Optimizer;
class LRScheduler;
}  // namespace optim
}  // namespace torch

namespace ckptdbxx {

// The state of an AMP-style dynamic loss scaler, as plain values (the keys
// of torch.cuda.amp.GradScaler.state_dict()).  Saved as {} when disabled.
struct grad_scaler_state {
    bool enabled = false;
    double scale = 65536.0;
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
    int64_t growth_tracker = 0;
};

struct load_options {
    // Strict: any missing or unexpected key or shape mismatch is a
    // load_error and nothing is changed.  Not strict: what matches is
    // loaded and the rest is returned in the load_report.
    bool strict = true;
};

// What a load left out.  Keys are "<object>.<state_dict key>", e.g.
// "model.fc1.weight"; a mismatch reads "model.fc1.weight: checkpoint [64, 16], live [32, 16]".
struct load_report {
    std::vector<std::string> missing_keys;     // in the live objects, not in the checkpoint
    std::vector<std::string> unexpected_keys;  // in the checkpoint, not in the live objects
    std::vector<std::string> mismatched;       // present in both, with another shape or layout
    bool clean() const { return missing_keys.empty() && unexpected_keys.empty() && mismatched.empty(); }
    std::string to_string() const;
};

// A checkpoint that cannot be loaded into the live objects (or is not a
// training state at all).  Nothing was changed.
class load_error : public std::runtime_error {
public:
    load_error(const std::string &msg, load_report report) : std::runtime_error(msg), report_(std::move(report)) {}
    const load_report &report() const noexcept { return report_; }

private:
    load_report report_;
};

struct resume_info {
    entry checkpoint;  // the catalog row that was loaded
    int64_t epoch = 0;
    int64_t step = 0;
    load_report report;  // empty unless load_options::strict was false
};

class async_saver;

class training_state {
public:
    training_state();
    ~training_state();
    training_state(const training_state &) = delete;
    training_state &operator=(const training_state &) = delete;

    // Register live objects; they must outlive the training_state.  Names
    // are top-level keys of the file: non-empty, unique, and none of
    // "epoch", "step", "rng", "scaler", "extra".  Optimizers: Adam, AdamW
    // and SGD (anything else is rejected here, with std::invalid_argument).
    training_state &add_module(torch::nn::Module &module, const std::string &name = "model");
    training_state &add_optimizer(torch::optim::Optimizer &optimizer, const std::string &name = "optimizer");
    // StepLR and any other LRScheduler: its step count is saved and restored.
    training_state &add_scheduler(torch::optim::LRScheduler &scheduler, const std::string &name = "scheduler");

    grad_scaler_state scaler;  // saved and restored as plain values
    bool save_rng = true;      // save (and restore) the CPU RNG, and CUDA's when present

    // Free-form extra values, saved under "extra" and replaced as a whole by
    // a load: None, bool, int, float, complex, str, dense tensors, devices,
    // and lists, tuples and dicts (keys str, int, float, bool) of them --
    // what torch.load(weights_only=True) accepts.  Anything else throws
    // std::invalid_argument naming the key and where in the value it is.
    // A list comes back from a file with its element type when all its
    // elements share one (int, float, bool, str, tensor), else as List[Any].
    void set_extra(const std::string &key, const c10::IValue &value);
    bool has_extra(const std::string &key) const;
    c10::IValue extra(const std::string &key) const;  // throws std::out_of_range when absent
    std::vector<std::string> extra_keys() const;
    void clear_extras();

    // Save the whole state as one checkpoint of kind (epoch, step, ... see
    // ckptdb_save_begin), streamed into the catalog's durable writer.
    // metadata: a JSON object of metrics (for best-K retention, queries).
    // Durable when it returns.  On failure the save is aborted and the
    // error thrown (ckptdbxx::error).
    entry save(catalog &db, const std::string &kind, int64_t epoch, int64_t step, const std::string &metadata = "{}",
               const std::string &name = "");

    // Load the newest complete checkpoint that verifies (the catalog marks
    // a corrupt one and falls back to the next) and record the resume in
    // the catalog.  nullopt when there is none.  Every tensor is read to
    // CPU memory first and checked against the live objects; only then is
    // anything copied into them (on their own devices).
    std::optional<resume_info> resume(catalog &db, const load_options &opts = {});
    // Load one given checkpoint of the catalog (verified while it is read).
    resume_info load(catalog &db, const entry &checkpoint, const load_options &opts = {});
    // Load a file outside any catalog (e.g. one written by Python's torch.save
    // in this layout).  epoch and step (may be null) receive the file's values.
    load_report load_file(const std::string &path, const load_options &opts = {}, int64_t *epoch = nullptr,
                          int64_t *step = nullptr);

    // Serialize the state (the archive bytes of a checkpoint) into sink, in
    // pieces; the state is never copied whole into a buffer.
    void write(const std::function<void(const void *, size_t)> &sink, int64_t epoch, int64_t step) const;

    struct impl;

private:
    friend class async_saver;
    std::unique_ptr<impl> impl_;
};

struct async_options {
    // A save() while one is in flight: false waits for it, true skips the
    // new one (save() returns false).
    bool skip_if_busy = false;
};

// Asynchronous saves: save() copies the state to host memory on the
// caller's thread and begins the checkpoint (its "writing" row), then a
// background thread writes and commits it.  One save is in flight at a
// time.  An error of a background save is thrown by the next call on the
// saver (save, wait, save_now), never lost; that call does nothing else.
// The destructor waits for the save in flight; call wait() before it to
// see the outcome.
class async_saver {
public:
    async_saver(training_state &state, catalog &db, async_options opts = {});
    ~async_saver();
    async_saver(const async_saver &) = delete;
    async_saver &operator=(const async_saver &) = delete;

    // True when a save was started, false when it was skipped (busy and skip_if_busy).
    bool save(const std::string &kind, int64_t epoch, int64_t step, const std::string &metadata = "{}");
    // Wait for the save in flight.  Returns the checkpoint committed since
    // the last wait (nullopt if none) or throws the background error.
    std::optional<entry> wait();
    // For preemption: wait for the save in flight, then save synchronously.
    entry save_now(const std::string &kind, int64_t epoch, int64_t step, const std::string &metadata = "{}");
    // A save is being written in the background right now.
    bool busy() const;

private:
    void join();
    training_state &state_;
    catalog &db_;
    async_options opts_;
    std::thread worker_;
    std::atomic<bool> running_{false};
    std::optional<entry> done_;
    std::exception_ptr error_;
};

}  // namespace ckptdbxx

#endif  // CKPTDB_TORCH_HPP

// training_state.cpp - libckptdb_torch: a whole LibTorch training state as
// one checkpoint of a ckptdb catalog, over the public C ABI.
//
// The only translation unit of the library that includes LibTorch: its
// headers cost tens of seconds each time they are compiled.
//
// Writing: the state is turned into one IValue tree (tensors are shared,
// not copied, unless a host snapshot is asked for), pickled the way
// torch.save pickles (tensor storages as persistent ids, their bytes as
// records "data/<key>"), and the zip records are streamed through
// PyTorchStreamWriter into ckptdb_save_write.  Only the pickle itself (a few
// KiB) is buffered.
//
// Reading: the file is read record by record (pread), every tensor mapped
// to the CPU, the whole tree checked against the live objects, and only then
// copied into them.
#include "ckptdb_torch.hpp"

#include <ATen/Context.h>
#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/schedulers/lr_scheduler.h>
#include <torch/optim/sgd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <type_traits>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ckptdbxx {

namespace {

using c10::IValue;
using GenericDict = c10::impl::GenericDict;
using GenericList = c10::impl::GenericList;

const char *const kReserved[] = {"epoch", "step", "rng", "scaler", "extra"};

enum class opt_kind { adam, adamw, sgd };

// LRScheduler keeps its step count in a protected member; a derived class
// may name it, which gives a pointer to member usable on any scheduler.
struct scheduler_access : torch::optim::LRScheduler {
    static unsigned &step_count(torch::optim::LRScheduler &s) { return s.*(&scheduler_access::step_count_); }
};

std::string shape_str(c10::IntArrayRef sizes) {
    std::string s = "[";
    for (size_t i = 0; i < sizes.size(); i++) {
        if (i) s += ", ";
        s += std::to_string(sizes[i]);
    }
    return s + "]";
}

std::string join(const std::vector<std::string> &v, size_t max = 20) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < max; i++) s += (i ? ", " : "") + v[i];
    if (v.size() > max) s += ", ... (" + std::to_string(v.size() - max) + " more)";
    return s;
}

GenericDict str_any_dict() { return GenericDict(c10::StringType::get(), c10::AnyType::get()); }

std::optional<IValue> get(const GenericDict &d, const std::string &key) {
    auto it = d.find(IValue(key));
    if (it == d.end()) return std::nullopt;
    return it->value();
}

[[noreturn]] void bad_format(const std::string &where, const std::string &what) {
    throw load_error(where + ": " + what + " (not a training state written by ckptdb_torch or in its layout)",
                     load_report{});
}

int64_t as_int(const IValue &v, const std::string &where) {
    if (v.isInt()) return v.toInt();
    if (v.isBool()) return v.toBool() ? 1 : 0;
    if (v.isDouble() && v.toDouble() == double(int64_t(v.toDouble()))) return int64_t(v.toDouble());
    if (v.isTensor() && v.toTensor().numel() == 1) return v.toTensor().item<double>();
    bad_format(where, "expected an integer, found " + v.tagKind());
}

double as_double(const IValue &v, const std::string &where) {
    if (v.isDouble()) return v.toDouble();
    if (v.isInt()) return double(v.toInt());
    if (v.isTensor() && v.toTensor().numel() == 1) return v.toTensor().item<double>();
    bad_format(where, "expected a number, found " + v.tagKind());
}

bool as_bool(const IValue &v, const std::string &where) {
    if (v.isBool()) return v.toBool();
    if (v.isInt()) return v.toInt() != 0;
    bad_format(where, "expected a bool, found " + v.tagKind());
}

GenericDict as_dict(const IValue &v, const std::string &where) {
    if (!v.isGenericDict()) bad_format(where, "expected a dict, found " + v.tagKind());
    return v.toGenericDict();
}

at::Tensor as_tensor(const IValue &v, const std::string &where) {
    if (!v.isTensor()) bad_format(where, "expected a tensor, found " + v.tagKind());
    return v.toTensor();
}

std::vector<IValue> as_list(const IValue &v, const std::string &where) {
    if (v.isList()) return v.toListRef().vec();
    if (v.isTuple()) return v.toTupleRef().elements().vec();
    if (v.isIntList()) {
        std::vector<IValue> out;
        for (int64_t x : v.toIntVector()) out.emplace_back(x);
        return out;
    }
    bad_format(where, "expected a list, found " + v.tagKind());
}

// --- What a file may hold -------------------------------------------------
// Every checkpoint must load with torch.load's weights-only unpickler (the
// default of torch >= 2.6): only tensors, plain Python values, and
// torch.device.  The pickler writes a typed list (List[int], List[float],
// List[bool], List[Tensor]) as a call of torch.jit._pickle.build_*list and,
// with tag_aggregates, every list and dict as a call of
// torch.jit._pickle.restore_type_tag; the safe loader refuses both.  So the
// tree is written untagged, with every list untyped (plain()), and extras
// may hold only what plain pickle opcodes express (check_plain()).

std::string key_text(const IValue &k) {
    if (k.isString()) return "'" + k.toStringRef() + "'";
    if (k.isInt()) return std::to_string(k.toInt());
    if (k.isBool()) return k.toBool() ? "True" : "False";
    if (k.isDouble()) return std::to_string(k.toDouble());
    return "<" + std::string(k.tagKind()) + ">";
}

void check_plain(const IValue &v, const std::string &where) {
    if (v.isNone() || v.isBool() || v.isInt() || v.isDouble() || v.isComplexDouble() || v.isString() || v.isDevice())
        return;
    if (v.isTensor()) {
        const at::Tensor &t = v.toTensor();
        if (!t.defined()) throw std::invalid_argument(where + ": an undefined tensor (store None instead)");
        if (t.layout() != at::kStrided || t.is_quantized())
            throw std::invalid_argument(where +
                                        ": a sparse, quantized or other non-dense tensor; extras hold dense tensors");
        return;
    }
    if (v.isList()) {
        size_t i = 0;
        for (const IValue &x : v.toListRef()) check_plain(x, where + "[" + std::to_string(i++) + "]");
        return;
    }
    if (v.isTuple()) {
        size_t i = 0;
        for (const IValue &x : v.toTupleRef().elements()) check_plain(x, where + "[" + std::to_string(i++) + "]");
        return;
    }
    if (v.isGenericDict()) {
        for (const auto &kv : v.toGenericDict()) {
            const IValue &k = kv.key();
            if (!(k.isString() || k.isInt() || k.isBool() || k.isDouble()))
                throw std::invalid_argument(where + ": a dict key of type " + std::string(k.tagKind()) +
                                            " (keys are str, int, float or bool)");
            check_plain(kv.value(), where + "[" + key_text(k) + "]");
        }
        return;
    }
    throw std::invalid_argument(
        where + ": a value of type " + std::string(v.tagKind()) +
        " cannot be saved (extras hold None, bool, int, float, complex, str, dense tensors, "
        "devices, and lists, tuples and dicts of them: what torch.load(weights_only=True) accepts)");
}

// The tree as it is written: every list untyped (List[Any]), recursively.
// Only handles are copied, never tensor data, unless host_copy asks for a
// copy of every tensor in host memory (an asynchronous save's snapshot;
// IValue::deepcopy() cannot copy every plain value, complex numbers for one).
IValue plain(const IValue &v, bool host_copy = false) {
    if (v.isList()) {
        GenericList out(c10::AnyType::get());
        out.reserve(v.toListRef().size());
        for (const IValue &x : v.toListRef()) out.push_back(plain(x, host_copy));
        return out;
    }
    if (v.isTuple()) {
        std::vector<IValue> el;
        for (const IValue &x : v.toTupleRef().elements()) el.push_back(plain(x, host_copy));
        return c10::ivalue::Tuple::create(std::move(el));
    }
    if (v.isGenericDict()) {
        GenericDict out(c10::AnyType::get(), c10::AnyType::get());
        for (const auto &kv : v.toGenericDict()) out.insert(kv.key(), plain(kv.value(), host_copy));
        return out;
    }
    if (host_copy && v.isTensor() && v.toTensor().defined())
        return v.toTensor().detach().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
    return v;
}

// Lists come back from a file untyped; a non-empty list whose elements all
// are ints, floats, bools, strings or tensors gets that element type back
// (so extra("ids").toIntList() works after a load as before the save), and
// a dict whose keys are all strings is Dict[str, Any].
IValue typed(const IValue &v) {
    if (v.isList()) {
        std::vector<IValue> el;
        for (const IValue &x : v.toListRef()) el.push_back(typed(x));
        auto all = [&](bool (IValue::*is)() const) {
            for (const IValue &x : el)
                if (!(x.*is)()) return false;
            return !el.empty();
        };
        c10::TypePtr t = c10::AnyType::get();
        if (all(&IValue::isInt))
            t = c10::IntType::get();
        else if (all(&IValue::isDouble))
            t = c10::FloatType::get();
        else if (all(&IValue::isBool))
            t = c10::BoolType::get();
        else if (all(&IValue::isString))
            t = c10::StringType::get();
        else if (all(&IValue::isTensor))
            t = c10::TensorType::get();
        GenericList out(t);
        for (IValue &x : el) out.push_back(std::move(x));
        return out;
    }
    if (v.isTuple()) {
        std::vector<IValue> el;
        for (const IValue &x : v.toTupleRef().elements()) el.push_back(typed(x));
        return c10::ivalue::Tuple::create(std::move(el));
    }
    if (v.isGenericDict()) {
        bool str_keys = true;
        for (const auto &kv : v.toGenericDict()) str_keys = str_keys && kv.key().isString();
        c10::TypePtr key_type = c10::AnyType::get();
        if (str_keys) key_type = c10::StringType::get();
        GenericDict out(key_type, c10::AnyType::get());
        for (const auto &kv : v.toGenericDict()) out.insert(kv.key(), typed(kv.value()));
        return out;
    }
    return v;
}

// A ReadAdapterInterface over a descriptor (pread), so records are read one
// by one instead of the whole file at once.
class fd_adapter : public caffe2::serialize::ReadAdapterInterface {
public:
    explicit fd_adapter(const std::string &path) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd_ < 0)
            throw error(errno == ENOENT ? CKPTDB_ENOTFOUND : CKPTDB_EIO, "open " + path + ": " + std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
            int e = errno;
            ::close(fd_);
            throw error(CKPTDB_EIO, path + ": not a regular file" + (e ? std::string(": ") + std::strerror(e) : ""));
        }
        size_ = size_t(st.st_size);
    }
    ~fd_adapter() override { ::close(fd_); }
    size_t size() const override { return size_; }
    size_t read(uint64_t pos, void *buf, size_t n, const char *what) const override {
        size_t done = 0;
        while (done < n) {
            ssize_t r = ::pread(fd_, static_cast<char *>(buf) + done, n - done, off_t(pos + done));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) throw error(CKPTDB_EIO, "read " + path_ + " (" + what + "): " + std::strerror(errno));
            if (r == 0) break;
            done += size_t(r);
        }
        return done;
    }

private:
    std::string path_;
    int fd_ = -1;
    size_t size_ = 0;
};

}  // namespace

// --------------------------------------------------------------------------
// The registry of live objects
// --------------------------------------------------------------------------

struct training_state::impl {
    struct module_ref {
        std::string name;
        torch::nn::Module *module;
    };
    struct optimizer_ref {
        std::string name;
        torch::optim::Optimizer *opt;
        opt_kind kind;
    };
    struct scheduler_ref {
        std::string name;
        torch::optim::LRScheduler *sched;
    };
    std::vector<module_ref> modules;
    std::vector<optimizer_ref> optimizers;
    std::vector<scheduler_ref> schedulers;
    GenericDict extras = str_any_dict();

    void check_name(const std::string &name) const {
        if (name.empty()) throw std::invalid_argument("ckptdb_torch: an object name must not be empty");
        for (const char *r : kReserved)
            if (name == r) throw std::invalid_argument("ckptdb_torch: name '" + name + "' is reserved");
        for (auto &m : modules)
            if (m.name == name) throw std::invalid_argument("ckptdb_torch: name '" + name + "' is already registered");
        for (auto &o : optimizers)
            if (o.name == name) throw std::invalid_argument("ckptdb_torch: name '" + name + "' is already registered");
        for (auto &s : schedulers)
            if (s.name == name) throw std::invalid_argument("ckptdb_torch: name '" + name + "' is already registered");
    }

    bool registered(const std::string &name) const {
        for (auto &m : modules)
            if (m.name == name) return true;
        for (auto &o : optimizers)
            if (o.name == name) return true;
        for (auto &s : schedulers)
            if (s.name == name) return true;
        return false;
    }

    IValue build(int64_t epoch, int64_t step, bool host_copy, const grad_scaler_state &scaler, bool rng) const;
    load_report load(const IValue &root, const std::string &what, const load_options &opts, int64_t *epoch,
                     int64_t *step, grad_scaler_state &scaler);
};

training_state::training_state() : impl_(std::make_unique<impl>()) {}
training_state::~training_state() = default;

training_state &training_state::add_module(torch::nn::Module &module, const std::string &name) {
    impl_->check_name(name);
    impl_->modules.push_back({name, &module});
    return *this;
}

training_state &training_state::add_optimizer(torch::optim::Optimizer &optimizer, const std::string &name) {
    impl_->check_name(name);
    opt_kind k;
    if (dynamic_cast<torch::optim::AdamW *>(&optimizer))
        k = opt_kind::adamw;
    else if (dynamic_cast<torch::optim::Adam *>(&optimizer))
        k = opt_kind::adam;
    else if (dynamic_cast<torch::optim::SGD *>(&optimizer))
        k = opt_kind::sgd;
    else
        throw std::invalid_argument("ckptdb_torch: optimizer '" + name +
                                    "' is not supported (supported: torch::optim::Adam, AdamW, SGD)");
    impl_->optimizers.push_back({name, &optimizer, k});
    return *this;
}

training_state &training_state::add_scheduler(torch::optim::LRScheduler &scheduler, const std::string &name) {
    impl_->check_name(name);
    impl_->schedulers.push_back({name, &scheduler});
    return *this;
}

void training_state::set_extra(const std::string &key, const c10::IValue &value) {
    check_plain(value, "ckptdb_torch: extra '" + key + "'");
    impl_->extras.insert_or_assign(IValue(key), value);
}
bool training_state::has_extra(const std::string &key) const { return impl_->extras.contains(IValue(key)); }
c10::IValue training_state::extra(const std::string &key) const {
    auto v = get(impl_->extras, key);
    if (!v) throw std::out_of_range("ckptdb_torch: no extra value '" + key + "'");
    return *v;
}
std::vector<std::string> training_state::extra_keys() const {
    std::vector<std::string> out;
    for (const auto &kv : impl_->extras) out.push_back(kv.key().toStringRef());
    return out;
}
void training_state::clear_extras() { impl_->extras = str_any_dict(); }

std::string load_report::to_string() const {
    std::string s;
    auto part = [&](const char *label, const std::vector<std::string> &v) {
        if (v.empty()) return;
        if (!s.empty()) s += "; ";
        s += std::string(label) + ": " + join(v);
    };
    part("missing keys", missing_keys);
    part("unexpected keys", unexpected_keys);
    part("mismatched", mismatched);
    return s.empty() ? "no differences" : s;
}

// --------------------------------------------------------------------------
// Building the tree (Python's layout)
// --------------------------------------------------------------------------

namespace {

at::Tensor out_tensor(const at::Tensor &t, bool host_copy) {
    at::Tensor d = t.detach();
    if (host_copy) return d.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
    return d;
}

// The key of a parameter in Optimizer::state(): its TensorImpl, as a pointer
// (LibTorch 2.x since the map became flat_hash_map<void *, ...>) or as the
// pointer's text (older releases).
using state_key = std::decay_t<decltype(std::declval<torch::optim::Optimizer &>().state())>::key_type;
template <typename K>
K param_key_as(const at::Tensor &p) {
    if constexpr (std::is_same_v<K, std::string>) {
        std::ostringstream s;
        s << p.unsafeGetTensorImpl();
        return s.str();
    } else {
        return p.unsafeGetTensorImpl();
    }
}
state_key param_key(const at::Tensor &p) { return param_key_as<state_key>(p); }

IValue optimizer_dict(torch::optim::Optimizer &opt, opt_kind kind, bool host_copy) {
    GenericDict state(c10::IntType::get(), c10::DictType::create(c10::StringType::get(), c10::AnyType::get()));
    GenericList groups(c10::DictType::create(c10::StringType::get(), c10::AnyType::get()));
    int64_t index = 0;
    for (auto &group : opt.param_groups()) {
        GenericDict g = str_any_dict();
        if (kind == opt_kind::sgd) {
            auto &o = static_cast<torch::optim::SGDOptions &>(group.options());
            g.insert("lr", o.lr());
            g.insert("momentum", o.momentum());
            g.insert("dampening", o.dampening());
            g.insert("weight_decay", o.weight_decay());
            g.insert("nesterov", o.nesterov());
            g.insert("maximize", false);
            g.insert("foreach", IValue());
            g.insert("differentiable", false);
        } else {
            double lr, eps, wd, b1, b2;
            bool ams;
            if (kind == opt_kind::adam) {
                auto &o = static_cast<torch::optim::AdamOptions &>(group.options());
                lr = o.lr(), eps = o.eps(), wd = o.weight_decay(), ams = o.amsgrad();
                std::tie(b1, b2) = o.betas();
            } else {
                auto &o = static_cast<torch::optim::AdamWOptions &>(group.options());
                lr = o.lr(), eps = o.eps(), wd = o.weight_decay(), ams = o.amsgrad();
                std::tie(b1, b2) = o.betas();
            }
            g.insert("lr", lr);
            g.insert("betas", c10::ivalue::Tuple::create({IValue(b1), IValue(b2)}));
            g.insert("eps", eps);
            g.insert("weight_decay", wd);
            g.insert("amsgrad", ams);
            if (kind == opt_kind::adam) {
                g.insert("maximize", false);
                g.insert("foreach", IValue());
                g.insert("capturable", false);
                g.insert("differentiable", false);
                g.insert("fused", false);
            } else {
                g.insert("foreach", IValue());
                g.insert("maximize", false);
                g.insert("capturable", false);
            }
        }
        c10::List<int64_t> ids;
        for (auto &p : group.params()) {
            auto it = opt.state().find(param_key(p));
            if (it != opt.state().end()) {
                GenericDict s = str_any_dict();
                if (kind == opt_kind::sgd) {
                    auto &ps = static_cast<torch::optim::SGDParamState &>(*it->second);
                    s.insert("momentum_buffer", ps.momentum_buffer().defined()
                                                    ? IValue(out_tensor(ps.momentum_buffer(), host_copy))
                                                    : IValue());
                } else {
                    int64_t stepv;
                    at::Tensor ea, eas, mx;
                    if (kind == opt_kind::adam) {
                        auto &ps = static_cast<torch::optim::AdamParamState &>(*it->second);
                        stepv = ps.step(), ea = ps.exp_avg(), eas = ps.exp_avg_sq(), mx = ps.max_exp_avg_sq();
                    } else {
                        auto &ps = static_cast<torch::optim::AdamWParamState &>(*it->second);
                        stepv = ps.step(), ea = ps.exp_avg(), eas = ps.exp_avg_sq(), mx = ps.max_exp_avg_sq();
                    }
                    // torch.optim keeps the step as a float32 scalar tensor.
                    s.insert("step", at::scalar_tensor(double(stepv), at::kFloat));
                    s.insert("exp_avg", out_tensor(ea, host_copy));
                    s.insert("exp_avg_sq", out_tensor(eas, host_copy));
                    if (mx.defined()) s.insert("max_exp_avg_sq", out_tensor(mx, host_copy));
                }
                state.insert(index, s);
            }
            ids.push_back(index++);
        }
        g.insert("params", ids);
        groups.push_back(g);
    }
    GenericDict d = str_any_dict();
    d.insert("state", state);
    d.insert("param_groups", groups);
    return d;
}

}  // namespace

namespace {
// RNG states are read at save time (not registered objects).
IValue rng_tree() {
    GenericDict d = str_any_dict();
    {
        auto gen = at::globalContext().defaultGenerator(at::kCPU);
        std::lock_guard<std::mutex> lock(gen.mutex());
        d.insert("torch", gen.get_state());
    }
    c10::List<at::Tensor> cuda;
    if (torch::cuda::is_available()) {
        for (size_t i = 0; i < size_t(torch::cuda::device_count()); i++) {
            auto gen = at::globalContext().defaultGenerator(at::Device(at::kCUDA, c10::DeviceIndex(i)));
            std::lock_guard<std::mutex> lock(gen.mutex());
            cuda.push_back(gen.get_state());
        }
    }
    d.insert("cuda", cuda);
    return d;
}

IValue scaler_tree(const grad_scaler_state &g) {
    GenericDict d = str_any_dict();
    if (!g.enabled) return d;
    d.insert("scale", g.scale);
    d.insert("growth_factor", g.growth_factor);
    d.insert("backoff_factor", g.backoff_factor);
    d.insert("growth_interval", g.growth_interval);
    d.insert("_growth_tracker", g.growth_tracker);
    return d;
}
}  // namespace

IValue training_state::impl::build(int64_t epoch, int64_t step, bool host_copy, const grad_scaler_state &scaler,
                                   bool rng) const {
    GenericDict root = str_any_dict();
    root.insert("epoch", epoch);
    root.insert("step", step);
    for (const char *def : {"model", "optimizer", "scheduler"})
        if (!registered(def)) root.insert(def, IValue());
    for (auto &m : modules) {
        c10::Dict<std::string, at::Tensor> sd;
        for (auto &kv : m.module->named_parameters(true)) sd.insert(kv.key(), out_tensor(kv.value(), host_copy));
        for (auto &kv : m.module->named_buffers(true)) sd.insert(kv.key(), out_tensor(kv.value(), host_copy));
        root.insert_or_assign(m.name, sd);
    }
    for (auto &o : optimizers) root.insert_or_assign(o.name, optimizer_dict(*o.opt, o.kind, host_copy));
    for (auto &s : schedulers) {
        GenericDict d = str_any_dict();
        int64_t n = scheduler_access::step_count(*s.sched);
        // torch.optim.lr_scheduler: last_epoch counts step() calls after
        // construction, _step_count includes the one in the constructor.
        d.insert("last_epoch", n);
        d.insert("_step_count", n + 1);
        c10::List<double> lrs;
        for (auto &o : optimizers)
            for (auto &g : o.opt->param_groups()) lrs.push_back(g.options().get_lr());
        d.insert("_last_lr", lrs);
        root.insert_or_assign(s.name, d);
    }
    root.insert("rng", rng ? rng_tree() : IValue());
    root.insert("scaler", scaler_tree(scaler));
    root.insert("extra", host_copy ? plain(extras, true) : IValue(extras.copy()));
    return root;
}

// --------------------------------------------------------------------------
// Streaming the archive
// --------------------------------------------------------------------------

namespace {

// Pickle root as torch.save does and stream the zip records into sink.  A
// failure of sink is kept and rethrown after the archive was closed: the
// zip writer must never be destroyed after a failed write (its destructor
// would throw), so after a failure the remaining bytes are discarded.
void write_archive(const IValue &root, const std::function<void(const void *, size_t)> &sink) {
    std::string pickle;
    // Untagged, untyped lists: what torch.load(weights_only=True) reads (see plain()).
    torch::jit::Pickler pickler([&](const char *p, size_t n) { pickle.append(p, n); }, nullptr, nullptr, nullptr,
                                nullptr, /*tag_aggregates=*/false);
    pickler.protocol();
    pickler.pushIValue(plain(root));
    pickler.stop();

    std::exception_ptr failed;
    caffe2::serialize::PyTorchStreamWriter writer([&](const void *p, size_t n) -> size_t {
        if (!failed) {
            try {
                sink(p, n);
            } catch (...) {
                failed = std::current_exception();
            }
        }
        return n;
    });
    struct discard_on_throw {
        std::exception_ptr &failed;
        int uncaught = std::uncaught_exceptions();
        ~discard_on_throw() {
            if (std::uncaught_exceptions() > uncaught && !failed)
                failed = std::make_exception_ptr(std::runtime_error("ckptdb_torch: archive abandoned"));
        }
    } guard{failed};

    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    size_t i = 0;
    for (const auto &t : pickler.tensorData()) {
        if (failed) break;
        // CPU tensors are written in place; others are copied one at a time.
        auto td = torch::jit::getWriteableTensorData(t);
        writer.writeRecord("data/" + std::to_string(i++), td.data(), td.sizeInBytes());
    }
    writer.writeEndOfFile();
    if (failed) std::rethrow_exception(failed);
}

entry save_tree(catalog &db, const IValue &root, const std::string &kind, int64_t epoch, int64_t step,
                const std::string &metadata, const std::string &name) {
    save s = db.begin(kind, epoch, step, name.empty() ? std::optional<std::string>() : name, metadata);
    write_archive(root, [&](const void *p, size_t n) { s.write(p, n); });
    return s.commit();
}

}  // namespace

void training_state::write(const std::function<void(const void *, size_t)> &sink, int64_t epoch, int64_t step) const {
    write_archive(impl_->build(epoch, step, false, scaler, save_rng), sink);
}

entry training_state::save(catalog &db, const std::string &kind, int64_t epoch, int64_t step,
                           const std::string &metadata, const std::string &name) {
    return save_tree(db, impl_->build(epoch, step, false, scaler, save_rng), kind, epoch, step, metadata, name);
}

// --------------------------------------------------------------------------
// Loading: read to CPU, check everything, then copy
// --------------------------------------------------------------------------

namespace {

IValue read_archive(const std::string &path) {
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<fd_adapter>(path));
    return torch::jit::readArchiveAndTensors("data", "", "", std::nullopt, std::nullopt, at::Device(at::kCPU), reader);
}

// One planned copy; nothing is applied until every check has passed.
struct plan {
    std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (live, loaded)
    std::vector<std::function<void()>> actions;
};

void plan_module(plan &pl, load_report &rep, torch::nn::Module &m, const std::string &name, const IValue &v) {
    GenericDict d = as_dict(v, name);
    std::map<std::string, at::Tensor> live;
    std::vector<std::string> live_order;  // state_dict order, for the report
    for (auto &kv : m.named_parameters(true)) live[kv.key()] = kv.value(), live_order.push_back(kv.key());
    for (auto &kv : m.named_buffers(true)) live[kv.key()] = kv.value(), live_order.push_back(kv.key());
    std::set<std::string> seen;
    for (const auto &kv : d) {
        if (!kv.key().isString()) bad_format(name, "a state_dict key is not a string");
        const std::string &k = kv.key().toStringRef();
        auto it = live.find(k);
        if (it == live.end()) {
            rep.unexpected_keys.push_back(name + "." + k);
            continue;
        }
        seen.insert(k);
        at::Tensor t = as_tensor(kv.value(), name + "." + k);
        if (t.sizes() != it->second.sizes()) {
            rep.mismatched.push_back(name + "." + k + ": checkpoint " + shape_str(t.sizes()) + ", live " +
                                     shape_str(it->second.sizes()));
            continue;
        }
        pl.copies.emplace_back(it->second, t);
    }
    for (auto &k : live_order)
        if (!seen.count(k)) rep.missing_keys.push_back(name + "." + k);
}

void plan_optimizer(plan &pl, load_report &rep, torch::optim::Optimizer &opt, opt_kind kind, const std::string &name,
                    const IValue &v) {
    GenericDict d = as_dict(v, name);
    auto st = get(d, "state");
    auto pg = get(d, "param_groups");
    if (!st || !pg) bad_format(name, "no 'state' or no 'param_groups'");
    std::vector<IValue> groups = as_list(*pg, name + ".param_groups");
    auto &live_groups = opt.param_groups();
    if (groups.size() != live_groups.size())
        throw load_error(name + ": the checkpoint has " + std::to_string(groups.size()) +
                             " parameter groups, the live optimizer " + std::to_string(live_groups.size()),
                         load_report{{}, {}, {name + ".param_groups"}});
    // Index -> live parameter, in torch.optim's numbering (over all groups).
    std::map<int64_t, at::Tensor> by_index;
    const char *kind_name = kind == opt_kind::sgd ? "SGD" : kind == opt_kind::adam ? "Adam" : "AdamW";
    for (size_t gi = 0; gi < groups.size(); gi++) {
        std::string where = name + ".param_groups[" + std::to_string(gi) + "]";
        GenericDict g = as_dict(groups[gi], where);
        auto need = [&](const char *key) {
            auto x = get(g, key);
            if (!x)
                throw load_error(
                    where + " has no '" + key + "': the checkpoint was not written for a " + kind_name + " optimizer",
                    load_report{{where + "." + key}, {}, {}});
            return *x;
        };
        std::vector<IValue> ids = as_list(need("params"), where + ".params");
        auto &lg = live_groups[gi];
        if (ids.size() != lg.params().size())
            throw load_error(where + ": the checkpoint has " + std::to_string(ids.size()) +
                                 " parameters, the live group " + std::to_string(lg.params().size()),
                             load_report{{}, {}, {where + ".params"}});
        for (size_t pi = 0; pi < ids.size(); pi++) {
            int64_t idx = as_int(ids[pi], where + ".params");
            if (!by_index.emplace(idx, lg.params()[pi]).second) bad_format(where, "parameter index used twice");
        }
        double lr = as_double(need("lr"), where + ".lr");
        double wd = as_double(need("weight_decay"), where + ".weight_decay");
        torch::optim::OptimizerOptions *opts = &lg.options();
        if (kind == opt_kind::sgd) {
            double mom = as_double(need("momentum"), where + ".momentum");
            double damp = as_double(need("dampening"), where + ".dampening");
            bool nest = as_bool(need("nesterov"), where + ".nesterov");
            pl.actions.push_back([opts, lr, wd, mom, damp, nest] {
                auto &o = static_cast<torch::optim::SGDOptions &>(*opts);
                o.lr(lr).weight_decay(wd).momentum(mom).dampening(damp).nesterov(nest);
            });
        } else {
            std::vector<IValue> betas = as_list(need("betas"), where + ".betas");
            if (betas.size() != 2) bad_format(where + ".betas", "expected two values");
            double b1 = as_double(betas[0], where + ".betas"), b2 = as_double(betas[1], where + ".betas");
            double eps = as_double(need("eps"), where + ".eps");
            bool ams = as_bool(need("amsgrad"), where + ".amsgrad");
            pl.actions.push_back([opts, kind, lr, wd, b1, b2, eps, ams] {
                if (kind == opt_kind::adam)
                    static_cast<torch::optim::AdamOptions &>(*opts)
                        .lr(lr)
                        .weight_decay(wd)
                        .betas({b1, b2})
                        .eps(eps)
                        .amsgrad(ams);
                else
                    static_cast<torch::optim::AdamWOptions &>(*opts)
                        .lr(lr)
                        .weight_decay(wd)
                        .betas({b1, b2})
                        .eps(eps)
                        .amsgrad(ams);
            });
        }
    }
    // Per-parameter state: everything is checked here, built in the actions.
    GenericDict sd = as_dict(*st, name + ".state");
    std::vector<std::pair<state_key, std::unique_ptr<torch::optim::OptimizerParamState>>> states;
    for (const auto &kv : sd) {
        int64_t idx = as_int(kv.key(), name + ".state");
        std::string where = name + ".state." + std::to_string(idx);
        auto it = by_index.find(idx);
        if (it == by_index.end()) {
            rep.unexpected_keys.push_back(where);
            continue;
        }
        const at::Tensor &p = it->second;
        GenericDict s = as_dict(kv.value(), where);
        auto tensor_like_param = [&](const char *key, bool required, at::Tensor &out) -> bool {
            auto x = get(s, key);
            if (!x || x->isNone()) {
                if (required)
                    throw load_error(where + " has no '" + key + "': the checkpoint was not written for a " +
                                         kind_name + " optimizer",
                                     load_report{{where + "." + key}, {}, {}});
                return true;
            }
            at::Tensor t = as_tensor(*x, where + "." + key);
            if (t.sizes() != p.sizes()) {
                rep.mismatched.push_back(where + "." + key + ": checkpoint " + shape_str(t.sizes()) + ", live " +
                                         shape_str(p.sizes()));
                return false;
            }
            out = t.to(p.options(), /*non_blocking=*/false, /*copy=*/true);
            return true;
        };
        if (kind == opt_kind::sgd) {
            at::Tensor buf;
            if (!tensor_like_param("momentum_buffer", false, buf)) continue;
            if (!buf.defined()) continue;  // torch.optim writes None without momentum
            auto ps = std::make_unique<torch::optim::SGDParamState>();
            ps->momentum_buffer(buf);
            states.emplace_back(param_key(p), std::move(ps));
        } else {
            auto sv = get(s, "step");
            if (!sv)
                throw load_error(where + " has no 'step': the checkpoint was not written for a " +
                                     std::string(kind_name) + " optimizer",
                                 load_report{{where + ".step"}, {}, {}});
            int64_t stepv = as_int(*sv, where + ".step");
            at::Tensor ea, eas, mx;
            if (!tensor_like_param("exp_avg", true, ea) || !tensor_like_param("exp_avg_sq", true, eas) ||
                !tensor_like_param("max_exp_avg_sq", false, mx))
                continue;
            if (kind == opt_kind::adam) {
                auto ps = std::make_unique<torch::optim::AdamParamState>();
                ps->step(stepv).exp_avg(ea).exp_avg_sq(eas);
                if (mx.defined()) ps->max_exp_avg_sq(mx);
                states.emplace_back(param_key(p), std::move(ps));
            } else {
                auto ps = std::make_unique<torch::optim::AdamWParamState>();
                ps->step(stepv).exp_avg(ea).exp_avg_sq(eas);
                if (mx.defined()) ps->max_exp_avg_sq(mx);
                states.emplace_back(param_key(p), std::move(ps));
            }
        }
    }
    auto shared = std::make_shared<decltype(states)>(std::move(states));
    torch::optim::Optimizer *o = &opt;
    pl.actions.push_back([o, shared] {
        o->state().clear();
        for (auto &kv : *shared) o->state()[kv.first] = std::move(kv.second);
    });
}

void plan_scheduler(plan &pl, torch::optim::LRScheduler &s, const std::string &name, const IValue &v) {
    GenericDict d = as_dict(v, name);
    auto le = get(d, "last_epoch");
    if (!le) bad_format(name, "no 'last_epoch'");
    int64_t n = as_int(*le, name + ".last_epoch");
    if (n < 0 || n > int64_t(std::numeric_limits<unsigned>::max())) bad_format(name + ".last_epoch", "out of range");
    torch::optim::LRScheduler *sp = &s;
    pl.actions.push_back([sp, n] { scheduler_access::step_count(*sp) = unsigned(n); });
}

}  // namespace

load_report training_state::impl::load(const IValue &rootv, const std::string &what, const load_options &opts,
                                       int64_t *epoch, int64_t *step, grad_scaler_state &scaler_out) {
    GenericDict root = as_dict(rootv, what);
    auto ev = get(root, "epoch"), sv = get(root, "step");
    if (!ev || !sv) bad_format(what, "no 'epoch' or no 'step'");
    int64_t e = as_int(*ev, what + ": epoch"), s = as_int(*sv, what + ": step");

    load_report rep;
    plan pl;
    std::set<std::string> known(std::begin(kReserved), std::end(kReserved));
    auto present = [&](const std::string &name) -> std::optional<IValue> {
        known.insert(name);
        auto v = get(root, name);
        if (!v || v->isNone()) {
            rep.missing_keys.push_back(name);
            return std::nullopt;
        }
        return v;
    };
    for (auto &m : modules)
        if (auto v = present(m.name)) plan_module(pl, rep, *m.module, m.name, *v);
    for (auto &o : optimizers)
        if (auto v = present(o.name)) plan_optimizer(pl, rep, *o.opt, o.kind, o.name, *v);
    for (auto &sc : schedulers)
        if (auto v = present(sc.name)) plan_scheduler(pl, *sc.sched, sc.name, *v);
    for (const auto &kv : root) {
        if (!kv.key().isString()) bad_format(what, "a top-level key is not a string");
        const std::string &k = kv.key().toStringRef();
        if (!known.count(k) && !kv.value().isNone()) rep.unexpected_keys.push_back(k);
    }

    // RNG, scaler, extras: plain values.
    at::Tensor cpu_rng;
    std::vector<at::Tensor> cuda_rng;
    if (auto r = get(root, "rng"); r && !r->isNone()) {
        GenericDict rd = as_dict(*r, "rng");
        if (auto t = get(rd, "torch")) cpu_rng = as_tensor(*t, "rng.torch");
        if (auto c = get(rd, "cuda"); c && !c->isNone())
            for (auto &x : as_list(*c, "rng.cuda")) cuda_rng.push_back(as_tensor(x, "rng.cuda"));
    }
    std::optional<grad_scaler_state> scaler;
    if (auto sc = get(root, "scaler"); sc && !sc->isNone()) {
        GenericDict d = as_dict(*sc, "scaler");
        grad_scaler_state g;
        if (d.size() > 0) {
            auto need = [&](const char *k) {
                auto x = get(d, k);
                if (!x) bad_format(std::string("scaler.") + k, "missing");
                return *x;
            };
            g.enabled = true;
            g.scale = as_double(need("scale"), "scaler.scale");
            g.growth_factor = as_double(need("growth_factor"), "scaler.growth_factor");
            g.backoff_factor = as_double(need("backoff_factor"), "scaler.backoff_factor");
            g.growth_interval = as_int(need("growth_interval"), "scaler.growth_interval");
            g.growth_tracker = as_int(need("_growth_tracker"), "scaler._growth_tracker");
        }
        scaler = g;
    }
    std::optional<GenericDict> extra;
    if (auto x = get(root, "extra"); x && !x->isNone()) {
        extra = as_dict(typed(*x), "extra");
        for (const auto &kv : *extra)
            if (!kv.key().isString()) bad_format("extra", "a key is not a string");
    }

    if (opts.strict && !rep.clean())
        throw load_error(what + " does not match the training state (nothing was loaded): " + rep.to_string(), rep);

    // Everything checked: apply.
    {
        torch::NoGradGuard no_grad;
        for (auto &c : pl.copies) c.first.copy_(c.second);
    }
    for (auto &a : pl.actions) a();
    if (scaler) scaler_out = *scaler;
    if (cpu_rng.defined()) {
        auto gen = at::globalContext().defaultGenerator(at::kCPU);
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(cpu_rng);
    }
    if (!cuda_rng.empty() && torch::cuda::is_available() && cuda_rng.size() == size_t(torch::cuda::device_count())) {
        for (size_t i = 0; i < cuda_rng.size(); i++) {
            auto gen = at::globalContext().defaultGenerator(at::Device(at::kCUDA, c10::DeviceIndex(i)));
            std::lock_guard<std::mutex> lock(gen.mutex());
            gen.set_state(cuda_rng[i]);
        }
    }
    if (extra) extras = *extra;
    if (epoch) *epoch = e;
    if (step) *step = s;
    return rep;
}

// --------------------------------------------------------------------------
// Resume and load
// --------------------------------------------------------------------------

namespace {
// Load a checkpoint whose bytes the catalog has just verified.
resume_info load_verified(training_state::impl &im, grad_scaler_state &scaler, const entry &checkpoint,
                          const load_options &opts) {
    IValue root;
    auto adapter = std::make_shared<fd_adapter>(checkpoint.path);
    if (checkpoint.size >= 0 && int64_t(adapter->size()) != checkpoint.size)
        throw error(CKPTDB_ECORRUPT, checkpoint.path + ": " + std::to_string(adapter->size()) +
                                         " bytes, the catalog recorded " + std::to_string(checkpoint.size));
    try {
        caffe2::serialize::PyTorchStreamReader reader(adapter);
        root =
            torch::jit::readArchiveAndTensors("data", "", "", std::nullopt, std::nullopt, at::Device(at::kCPU), reader);
    } catch (const c10::Error &e) {
        throw load_error(
            "checkpoint " + checkpoint.name + " cannot be read as a training state: " + e.what_without_backtrace(),
            load_report{});
    }
    resume_info info;
    info.checkpoint = checkpoint;
    info.report = im.load(root, "checkpoint " + checkpoint.name, opts, &info.epoch, &info.step, scaler);
    return info;
}
}  // namespace

resume_info training_state::load(catalog &db, const entry &checkpoint, const load_options &opts) {
    if (!db.verify(checkpoint.id))
        throw error(CKPTDB_ECORRUPT,
                    "checkpoint " + checkpoint.name + " does not match its catalog checksum (now marked corrupt)");
    return load_verified(*impl_, scaler, checkpoint, opts);
}

std::optional<resume_info> training_state::resume(catalog &db, const load_options &opts) {
    // The catalog verifies size and checksum, marks a corrupt checkpoint and
    // falls back to the next newest.
    std::optional<entry> e = db.latest(std::nullopt, CKPTDB_VERIFY_FULL);
    if (!e) return std::nullopt;
    resume_info info = load_verified(*impl_, scaler, *e, opts);
    db.mark_resumed(e->id);
    return info;
}

load_report training_state::load_file(const std::string &path, const load_options &opts, int64_t *epoch,
                                      int64_t *step) {
    IValue root;
    try {
        root = read_archive(path);
    } catch (const c10::Error &e) {
        throw load_error(path + " cannot be read as a training state: " + e.what_without_backtrace(), load_report{});
    }
    return impl_->load(root, path, opts, epoch, step, scaler);
}

// --------------------------------------------------------------------------
// Asynchronous saves
// --------------------------------------------------------------------------

async_saver::async_saver(training_state &state, catalog &db, async_options opts)
    : state_(state), db_(db), opts_(opts) {}

async_saver::~async_saver() {
    if (worker_.joinable()) worker_.join();
}

bool async_saver::busy() const { return running_.load(); }

void async_saver::join() {
    if (worker_.joinable()) worker_.join();
    if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;
        done_.reset();
        std::rethrow_exception(e);
    }
}

bool async_saver::save(const std::string &kind, int64_t epoch, int64_t step, const std::string &metadata) {
    if (worker_.joinable()) {
        if (running_.load() && opts_.skip_if_busy) return false;
        join();  // waits for the save in flight; throws the error of the one before
    }
    // Host copy on the caller's thread: the live objects may change as soon
    // as this returns.
    IValue root = state_.impl_->build(epoch, step, true, state_.scaler, state_.save_rng);
    ckptdbxx::save s = db_.begin(kind, epoch, step, std::nullopt, metadata);
    done_.reset();
    running_.store(true);
    worker_ = std::thread([this, root = std::move(root), s = std::move(s)]() mutable {
        try {
            write_archive(root, [&](const void *p, size_t n) { s.write(p, n); });
            entry e = s.commit();
            done_ = std::move(e);
        } catch (...) {
            error_ = std::current_exception();
        }
        root = IValue();  // free the host copy before the saver reports idle
        running_.store(false);
    });
    return true;
}

std::optional<entry> async_saver::wait() {
    join();
    std::optional<entry> out = std::move(done_);
    done_.reset();
    return out;
}

entry async_saver::save_now(const std::string &kind, int64_t epoch, int64_t step, const std::string &metadata) {
    join();
    return state_.save(db_, kind, epoch, step, metadata);
}

}  // namespace ckptdbxx

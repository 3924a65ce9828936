// libckptdb_torch: a whole training state saved through the catalog and
// loaded back; strict and non-strict loading; asynchronous saves.
#include <ckptdb_torch.hpp>
#include <torch/torch.h>

// LibTorch's logging (glog) defines CHECK and friends; doctest's are meant here.
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#include <doctest/doctest.h>

#include <sys/resource.h>

#include <csignal>
#include <sstream>
#include <type_traits>

#include "../unit/support.hpp"

namespace {

struct Net : torch::nn::Module {
    torch::nn::Linear fc1{nullptr}, fc2{nullptr};
    torch::nn::BatchNorm1d bn{nullptr};
    torch::nn::Linear head{nullptr};
    explicit Net(int64_t hidden = 8, bool extra_layer = false) {
        fc1 = register_module("fc1", torch::nn::Linear(4, hidden));
        bn = register_module("bn", torch::nn::BatchNorm1d(hidden));
        fc2 = register_module("fc2", torch::nn::Linear(hidden, 2));
        if (extra_layer) head = register_module("head", torch::nn::Linear(2, 2));
    }
    torch::Tensor forward(torch::Tensor x) { return fc2(torch::relu(bn(fc1(x)))); }
};

void train(Net &net, torch::optim::Optimizer &opt, int steps) {
    for (int i = 0; i < steps; i++) {
        opt.zero_grad();
        auto x = torch::randn({16, 4});
        auto loss = net.forward(x).pow(2).mean();
        loss.backward();
        opt.step();
    }
}

std::map<std::string, torch::Tensor> snapshot(torch::nn::Module &m) {
    std::map<std::string, torch::Tensor> out;
    for (auto &kv : m.named_parameters()) out[kv.key()] = kv.value().detach().clone();
    for (auto &kv : m.named_buffers()) out[kv.key()] = kv.value().detach().clone();
    return out;
}

bool same(const std::map<std::string, torch::Tensor> &a, torch::nn::Module &m) {
    auto b = snapshot(m);
    if (a.size() != b.size()) return false;
    for (auto &kv : a)
        if (!b.count(kv.first) || !torch::equal(kv.second, b[kv.first])) return false;
    return true;
}

// Optimizer::state() is keyed by the parameter's TensorImpl (a pointer in
// current LibTorch, the pointer's text in older releases).
template <class Map>
typename Map::key_type state_key(const Map &, const torch::Tensor &p) {
    if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
        std::ostringstream s;
        s << p.unsafeGetTensorImpl();
        return s.str();
    } else {
        return p.unsafeGetTensorImpl();
    }
}

template <class State>
const State &param_state(torch::optim::Optimizer &opt, const torch::Tensor &p) {
    return static_cast<const State &>(*opt.state().at(state_key(opt.state(), p)));
}

bool contains(const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("a saved training state resumes bit-exact into fresh objects") {
    torch::set_num_threads(1);
    t::TempDir dir;
    torch::manual_seed(1);
    Net net;
    torch::optim::Adam opt(net.parameters(), torch::optim::AdamOptions(0.01).amsgrad(true));
    torch::optim::StepLR sched(opt, 2, 0.5);
    train(net, opt, 3);
    for (int i = 0; i < 3; i++) sched.step();
    ckptdbxx::training_state st;
    st.add_module(net).add_optimizer(opt).add_scheduler(sched);
    st.scaler.enabled = true;
    st.scaler.scale = 1024.0;
    st.scaler.growth_tracker = 7;
    st.set_extra("note", std::string("hello"));
    st.set_extra("best", 0.25);
    ckptdbxx::catalog db(dir.path);
    ckptdbxx::entry e = st.save(db, "epoch", 3, 30, "{\"loss\": 0.5}");
    CHECK(e.name == "epoch_003.pt");
    CHECK(e.metadata == "{\"loss\":0.5}");
    auto saved = snapshot(net);
    torch::Tensor next_rand = torch::rand({4});  // what the RNG gives after the save
    double lr_saved = opt.param_groups()[0].options().get_lr();

    torch::manual_seed(99);
    Net net2;
    torch::optim::Adam opt2(net2.parameters(), torch::optim::AdamOptions(0.5));
    torch::optim::StepLR sched2(opt2, 2, 0.5);
    ckptdbxx::training_state st2;
    st2.add_module(net2).add_optimizer(opt2).add_scheduler(sched2);
    ckptdbxx::catalog db2(dir.path);
    auto r = st2.resume(db2);
    REQUIRE(r.has_value());
    CHECK(r->epoch == 3);
    CHECK(r->step == 30);
    CHECK(r->checkpoint.id == e.id);
    CHECK(r->report.clean());
    CHECK(same(saved, net2));
    CHECK(torch::equal(torch::rand({4}), next_rand));
    CHECK(opt2.param_groups()[0].options().get_lr() == lr_saved);
    CHECK(static_cast<torch::optim::AdamOptions &>(opt2.param_groups()[0].options()).amsgrad());
    auto p1 = net.parameters(), p2 = net2.parameters();
    for (size_t i = 0; i < p1.size(); i++) {
        auto &a = param_state<torch::optim::AdamParamState>(opt, p1[i]);
        auto &b = param_state<torch::optim::AdamParamState>(opt2, p2[i]);
        CHECK(a.step() == b.step());
        CHECK(torch::equal(a.exp_avg(), b.exp_avg()));
        CHECK(torch::equal(a.exp_avg_sq(), b.exp_avg_sq()));
        CHECK(torch::equal(a.max_exp_avg_sq(), b.max_exp_avg_sq()));
    }
    // The scheduler's count came back: the next steps change the rate as the original's do.
    for (int i = 0; i < 3; i++) {
        sched.step();
        sched2.step();
        CHECK(opt2.param_groups()[0].options().get_lr() == opt.param_groups()[0].options().get_lr());
    }
    CHECK(st2.scaler.enabled);
    CHECK(st2.scaler.scale == 1024.0);
    CHECK(st2.scaler.growth_tracker == 7);
    CHECK(st2.extra("note").toStringRef() == "hello");
    CHECK(st2.extra("best").toDouble() == 0.25);
    CHECK(st2.extra_keys().size() == 2);
    // Both processes now train on identically.
    torch::manual_seed(5);
    train(net, opt, 2);
    torch::manual_seed(5);
    train(net2, opt2, 2);
    CHECK(same(snapshot(net), net2));

    // The catalog recorded the resume.
    int64_t resumed = -1;
    ckptdb_runs(
        db2.handle(),
        [](const ckptdb_run *run, void *p) {
            if (run->resumed_from) *static_cast<int64_t *>(p) = run->resumed_from;
            return 0;
        },
        &resumed);
    CHECK(resumed == e.id);
}

TEST_CASE("SGD with momentum and AdamW round-trip their per-parameter state") {
    t::TempDir dir;
    ckptdbxx::catalog db(dir.path);
    torch::manual_seed(2);
    Net a;
    torch::optim::SGD sgd(a.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
    train(a, sgd, 2);
    Net b;
    torch::optim::AdamW adamw(b.parameters(), torch::optim::AdamWOptions(0.01).weight_decay(0.05));
    train(b, adamw, 2);
    ckptdbxx::training_state st;
    st.add_module(a, "net_a").add_optimizer(sgd, "sgd").add_module(b, "net_b").add_optimizer(adamw, "adamw");
    st.save(db, "manual", 0, 2);

    Net a2, b2;
    torch::optim::SGD sgd2(a2.parameters(), torch::optim::SGDOptions(0.5));
    torch::optim::AdamW adamw2(b2.parameters(), torch::optim::AdamWOptions(0.5));
    ckptdbxx::training_state st2;
    st2.add_module(a2, "net_a").add_optimizer(sgd2, "sgd").add_module(b2, "net_b").add_optimizer(adamw2, "adamw");
    REQUIRE(st2.resume(db));
    auto &so = static_cast<torch::optim::SGDOptions &>(sgd2.param_groups()[0].options());
    CHECK(so.lr() == 0.1);
    CHECK(so.momentum() == 0.9);
    CHECK(so.nesterov());
    CHECK(static_cast<torch::optim::AdamWOptions &>(adamw2.param_groups()[0].options()).weight_decay() == 0.05);
    auto pa = a.parameters(), pa2 = a2.parameters(), pb = b.parameters(), pb2 = b2.parameters();
    for (size_t i = 0; i < pa.size(); i++) {
        CHECK(torch::equal(param_state<torch::optim::SGDParamState>(sgd, pa[i]).momentum_buffer(),
                           param_state<torch::optim::SGDParamState>(sgd2, pa2[i]).momentum_buffer()));
        CHECK(param_state<torch::optim::AdamWParamState>(adamw2, pb2[i]).step() == 2);
        CHECK(torch::equal(param_state<torch::optim::AdamWParamState>(adamw, pb[i]).exp_avg_sq(),
                           param_state<torch::optim::AdamWParamState>(adamw2, pb2[i]).exp_avg_sq()));
    }
}

TEST_CASE("a checkpoint of another model is refused by name and changes nothing") {
    t::TempDir dir;
    ckptdbxx::catalog db(dir.path);
    torch::manual_seed(3);
    Net small(8);
    torch::optim::Adam opt(small.parameters());
    train(small, opt, 1);
    ckptdbxx::training_state st;
    st.add_module(small).add_optimizer(opt);
    st.save(db, "epoch", 1, 1);

    SUBCASE("other widths: shape mismatches, strict") {
        Net wide(16);
        torch::optim::Adam opt2(wide.parameters());
        ckptdbxx::training_state st2;
        st2.add_module(wide).add_optimizer(opt2);
        auto before = snapshot(wide);
        try {
            st2.resume(db);
            FAIL("a checkpoint of another shape was loaded");
        } catch (const ckptdbxx::load_error &e) {
            std::string m = e.what();
            CHECK(contains(m, "model.fc1.weight: checkpoint [8, 4], live [16, 4]"));
            CHECK(contains(m, "nothing was loaded"));
            CHECK(!e.report().mismatched.empty());
        }
        CHECK(same(before, wide));
        CHECK(opt2.state().empty());
    }
    SUBCASE("an extra layer: missing keys, strict and non-strict") {
        Net more(8, true);
        ckptdbxx::training_state st2;
        st2.add_module(more);
        auto before = snapshot(more);
        try {
            st2.resume(db);
            FAIL("a checkpoint with missing keys was loaded");
        } catch (const ckptdbxx::load_error &e) {
            std::string m = e.what();
            CHECK(contains(m, "missing keys: model.head.weight, model.head.bias"));
            CHECK(contains(m, "unexpected keys: optimizer"));
        }
        CHECK(same(before, more));

        ckptdbxx::load_options lenient;
        lenient.strict = false;
        auto r = st2.resume(db, lenient);
        REQUIRE(r);
        CHECK(r->report.missing_keys == std::vector<std::string>{"model.head.weight", "model.head.bias"});
        CHECK(r->report.unexpected_keys == std::vector<std::string>{"optimizer"});
        CHECK(torch::equal(more.fc1->weight, small.fc1->weight));
        CHECK(torch::equal(more.head->weight, before["head.weight"]));
    }
    SUBCASE("an optimizer of another type") {
        Net same_shape(8);
        torch::optim::SGD sgd(same_shape.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
        ckptdbxx::training_state st2;
        st2.add_module(same_shape).add_optimizer(sgd);
        auto before = snapshot(same_shape);
        try {
            st2.resume(db);
            FAIL("an Adam state was loaded into SGD");
        } catch (const ckptdbxx::load_error &e) {
            CHECK(contains(e.what(), "not written for a SGD optimizer"));
        }
        CHECK(same(before, same_shape));
    }
}

TEST_CASE("registration refuses reserved, duplicate and unsupported names") {
    Net net;
    torch::optim::RMSprop rms(net.parameters());
    torch::optim::Adam adam(net.parameters());
    ckptdbxx::training_state st;
    CHECK_THROWS_AS(st.add_module(net, "epoch"), std::invalid_argument);
    CHECK_THROWS_AS(st.add_module(net, ""), std::invalid_argument);
    st.add_module(net);
    CHECK_THROWS_AS(st.add_optimizer(adam, "model"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(st.add_optimizer(rms), doctest::Contains("not supported"), std::invalid_argument);
    CHECK_THROWS_AS(st.extra("nothing"), std::out_of_range);
}

TEST_CASE("resume falls back past a corrupt newest checkpoint; junk is not a training state") {
    t::TempDir dir;
    ckptdbxx::catalog db(dir.path);
    torch::manual_seed(4);
    Net net;
    ckptdbxx::training_state st;
    st.add_module(net);
    auto first = st.save(db, "epoch", 1, 10);
    auto kept = snapshot(net);
    {
        torch::NoGradGuard g;
        net.fc1->weight.add_(1.0);
    }
    auto second = st.save(db, "epoch", 2, 20);
    // Flip one byte of the newest file: same size, other checksum.
    std::string bytes = t::read_file(second.path);
    bytes[bytes.size() / 2] ^= 0x5a;
    t::write_file(second.path, bytes);

    Net fresh;
    ckptdbxx::training_state st2;
    st2.add_module(fresh);
    auto r = st2.resume(db);
    REQUIRE(r);
    CHECK(r->checkpoint.id == first.id);
    CHECK(r->epoch == 1);
    CHECK(same(kept, fresh));
    CHECK(db.get(second.id).status == CKPTDB_STATUS_CORRUPT);

    auto junk = db.save_bytes("manual", 3, 30, std::string(4096, 'x'));
    CHECK_THROWS_WITH_AS(st2.load(db, junk), doctest::Contains("cannot be read as a training state"),
                         ckptdbxx::load_error);
}

TEST_CASE("an asynchronous save writes the state as it was when save() returned") {
    t::TempDir dir;
    ckptdbxx::catalog db(dir.path);
    torch::manual_seed(6);
    Net net;
    ckptdbxx::training_state st;
    st.add_module(net);
    st.set_extra("tag", int64_t(1));
    ckptdbxx::async_saver saver(st, db);
    auto before = snapshot(net);
    REQUIRE(saver.save("epoch", 1, 1));
    {
        torch::NoGradGuard g;
        for (auto &p : net.parameters()) p.mul_(0);
    }
    st.set_extra("tag", int64_t(2));
    auto e = saver.wait();
    REQUIRE(e);
    CHECK(e->kind == "epoch");
    CHECK(!saver.wait());  // nothing committed since

    Net fresh;
    ckptdbxx::training_state st2;
    st2.add_module(fresh);
    REQUIRE(st2.load(db, *e).epoch == 1);
    CHECK(same(before, fresh));
    CHECK(st2.extra("tag").toInt() == 1);

    // A preemption waits for the save in flight, then saves: both commit, in order.
    REQUIRE(saver.save("time", 1, 2));
    auto pre = saver.save_now("preempt", 1, 3);
    CHECK(pre.kind == "preempt");
    auto rows = db.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE));
    REQUIRE(rows.size() == 3);
    CHECK(rows[1].kind == "time");
    CHECK(rows[2].kind == "preempt");
}

TEST_CASE("a second asynchronous save waits or is skipped, by option") {
    t::TempDir dir;
    ckptdbxx::catalog db(dir.path);
    auto big = torch::ones({32, 1024, 1024}, torch::kFloat);  // 128 MiB: still in flight a moment later
    torch::nn::Module holder;
    holder.register_buffer("big", big);
    ckptdbxx::training_state st;
    st.add_module(holder);
    ckptdbxx::async_options skip;
    skip.skip_if_busy = true;
    ckptdbxx::async_saver saver(st, db, skip);
    REQUIRE(saver.save("step", 0, 1));
    REQUIRE(saver.busy());
    CHECK_FALSE(saver.save("step", 0, 2));  // skipped
    REQUIRE(saver.wait());
    CHECK_FALSE(saver.busy());
    CHECK(db.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE)).size() == 1);

    ckptdbxx::async_saver waiting(st, db);
    REQUIRE(waiting.save("step", 0, 3));
    REQUIRE(waiting.save("step", 0, 4));  // waited for step 3 first
    REQUIRE(waiting.wait());
    auto rows = db.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE));
    REQUIRE(rows.size() == 3);
    CHECK(rows[1].step == 3);
    CHECK(rows[2].step == 4);
}

TEST_CASE("an error of a background save surfaces at the next call and the save is aborted") {
    t::TempDir dir;
    ckptdbxx::catalog db(dir.path);
    torch::nn::Module holder;
    holder.register_buffer("big", torch::ones({4, 1024, 1024}, torch::kFloat));  // 16 MiB
    ckptdbxx::training_state st;
    st.add_module(holder);
    ckptdbxx::async_saver saver(st, db);

    // Files may not grow past 4 MiB: the background write fails (EFBIG).
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 4u << 20;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    bool started = saver.save("step", 0, 1);
    while (saver.busy()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
    std::signal(SIGXFSZ, old_handler);
    REQUIRE(started);

    try {
        saver.save("step", 0, 2);
        FAIL("the background error was lost");
    } catch (const ckptdbxx::error &e) {
        CHECK(e.code() == CKPTDB_ENOSPC);  // EFBIG: the file may not grow
    }
    // That call did nothing else; the saver works again.
    CHECK(db.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE)).empty());
    CHECK(db.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_ABORTED)).size() == 1);
    REQUIRE(saver.save("step", 0, 3));
    auto e = saver.wait();
    REQUIRE(e);
    CHECK(e->step == 3);
}

// Every file must load with torch.load's weights-only unpickler (torch >=
// 2.6's default): no torch.jit._pickle calls (typed lists, type tags) in
// data.pkl.  tests/torch/python_interop.py loads such files in Python.
TEST_CASE("extras of every plain kind round-trip, typed lists included, and the pickle calls no torch.jit helper") {
    t::TempDir dir;
    torch::manual_seed(3);
    Net net;
    torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    train(net, opt, 2);
    ckptdbxx::training_state st;
    st.add_module(net).add_optimizer(opt);
    c10::impl::GenericDict inner(c10::StringType::get(), c10::AnyType::get());
    inner.insert("t", torch::arange(4, torch::kInt64));
    inner.insert("l", c10::List<int64_t>({7, 8}));
    st.set_extra("ints", c10::List<int64_t>({1, 2, int64_t(1) << 40}));
    st.set_extra("floats", c10::List<double>({0.5, 1e-300}));
    st.set_extra("bools", c10::List<bool>({true, false}));
    st.set_extra("strs", c10::List<std::string>({"a", "b"}));
    st.set_extra("tensors", c10::List<at::Tensor>({torch::ones({2}), torch::zeros({1}, torch::kFloat64)}));
    st.set_extra("tuple", c10::ivalue::Tuple::create({c10::IValue(int64_t(1)), c10::IValue(std::string("x"))}));
    st.set_extra("dict", inner);
    st.set_extra("none", c10::IValue());
    st.set_extra("complex", c10::complex<double>(1.5, -2.0));
    st.set_extra("device", c10::Device(c10::kCPU));

    std::string bytes;
    st.write([&](const void *p, size_t n) { bytes.append(static_cast<const char *>(p), n); }, 1, 2);
    CHECK(bytes.find("data.pkl") != std::string::npos);
    CHECK(bytes.find("torch.jit") == std::string::npos);
    CHECK(bytes.find("build_intlist") == std::string::npos);
    CHECK(bytes.find("restore_type_tag") == std::string::npos);

    ckptdbxx::catalog db(dir.path);
    st.save(db, "epoch", 1, 2);
    Net net2;
    torch::optim::SGD opt2(net2.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    ckptdbxx::training_state st2;
    st2.add_module(net2).add_optimizer(opt2);
    REQUIRE(st2.resume(db).has_value());
    CHECK(st2.extra_keys().size() == 10);
    CHECK(st2.extra("ints").toIntVector() == std::vector<int64_t>({1, 2, int64_t(1) << 40}));
    CHECK(st2.extra("floats").toDoubleVector() == std::vector<double>({0.5, 1e-300}));
    CHECK(st2.extra("bools").toBoolList().vec() == std::vector<bool>({true, false}));
    CHECK(st2.extra("strs").toList().get(1).toStringRef() == "b");
    auto tl = st2.extra("tensors").toTensorVector();
    REQUIRE(tl.size() == 2);
    CHECK(torch::equal(tl[0], torch::ones({2})));
    CHECK(tl[1].dtype() == torch::kFloat64);
    auto tup = st2.extra("tuple").toTupleRef().elements();
    REQUIRE(tup.size() == 2);
    CHECK(tup[0].toInt() == 1);
    CHECK(tup[1].toStringRef() == "x");
    auto d = st2.extra("dict").toGenericDict();
    CHECK(torch::equal(d.at("t").toTensor(), torch::arange(4, torch::kInt64)));
    CHECK(d.at("l").toIntVector() == std::vector<int64_t>({7, 8}));
    CHECK(st2.extra("none").isNone());
    CHECK(st2.extra("complex").toComplexDouble() == c10::complex<double>(1.5, -2.0));
    CHECK(st2.extra("device").toDevice() == c10::Device(c10::kCPU));
    auto p1 = net.parameters(), p2 = net2.parameters();
    for (size_t i = 0; i < p1.size(); i++)
        CHECK(torch::equal(param_state<torch::optim::SGDParamState>(opt, p1[i]).momentum_buffer(),
                           param_state<torch::optim::SGDParamState>(opt2, p2[i]).momentum_buffer()));
}

TEST_CASE("an extra the safe loader would refuse is rejected by set_extra, naming the key and the place") {
    ckptdbxx::training_state st;
    auto message = [&](const std::string &key, const c10::IValue &v) -> std::string {
        try {
            st.set_extra(key, v);
        } catch (const std::invalid_argument &e) {
            return e.what();
        }
        return "(accepted)";
    };
    // A generator (an object torch.load(weights_only=True) cannot rebuild), nested in a dict and a list.
    c10::impl::GenericList l(c10::AnyType::get());
    l.push_back(int64_t(1));
    l.push_back(at::detail::createCPUGenerator());
    c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
    d.insert("gen", l);
    std::string m = message("state", d);
    CHECK(contains(m, "extra 'state'['gen'][1]"));
    CHECK(contains(m, "Generator"));
    m = message("undef", at::Tensor());
    CHECK(contains(m, "extra 'undef'"));
    CHECK(contains(m, "undefined tensor"));
    c10::impl::GenericDict tk(c10::TensorType::get(), c10::AnyType::get());
    tk.insert(torch::ones({1}), int64_t(1));
    m = message("tensor_keys", tk);
    CHECK(contains(m, "extra 'tensor_keys'"));
    CHECK(contains(m, "dict key of type Tensor"));
    CHECK(message("sparse", torch::eye(2).to_sparse()).find("non-dense") != std::string::npos);
    // None of them was stored; a plain value still is.
    CHECK(st.extra_keys().empty());
    CHECK(message("ok", c10::List<double>({1.0})) == "(accepted)");
    CHECK(st.has_extra("ok"));
}

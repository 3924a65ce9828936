// write_state.cpp - for tests/torch/python_interop.py: writes LibTorch
// training states holding everything a file can hold (a module; Adam and SGD
// with per-parameter state; a StepLR; the CPU RNG; an enabled grad scaler;
// extras of every plain kind) through each writer of libckptdb_torch: a
// synchronous save, an asynchronous one (host copy) and write() to a file
// outside the catalog.  Python then loads each with plain torch.load(path)
// and checks the values against its own.
//
// usage: write_state DIR
// Prints, one per line:
//   file: <path>                                (three of them)
//   next_rand: <hex float> x4                   torch::rand({4}) right after the saves
#include <ckptdb_torch.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <iostream>

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: write_state DIR\n");
        return 2;
    }
    try {
        std::string dir = argv[1];
        torch::set_num_threads(1);
        torch::nn::Linear net(3, 2);
        {
            torch::NoGradGuard ng;
            net->weight.copy_(torch::arange(6, torch::kFloat32).reshape({2, 3}) / 8);
            net->bias.copy_(torch::tensor({0.25f, -0.5f}));
        }
        torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(0.01));
        torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
        torch::optim::StepLR sched(adam, 2, 0.5);
        for (int i = 0; i < 3; i++) {
            auto loss = net->forward(torch::ones({4, 3})).pow(2).sum();
            adam.zero_grad();
            sgd.zero_grad();
            loss.backward();
            adam.step();
            sgd.step();
            sched.step();
        }
        // The RNG state saved: three draws after seed 1234 (Python replays that).
        torch::manual_seed(1234);
        torch::rand({3});

        ckptdbxx::training_state st;
        st.add_module(*net).add_optimizer(adam).add_optimizer(sgd, "sgd").add_scheduler(sched);
        st.scaler.enabled = true;
        st.scaler.scale = 1024.0;
        st.scaler.growth_factor = 2.0;
        st.scaler.backoff_factor = 0.5;
        st.scaler.growth_interval = 100;
        st.scaler.growth_tracker = 7;
        st.set_extra("int", int64_t(1) << 40);
        st.set_extra("neg", int64_t(-7));
        st.set_extra("float", 0.1);
        st.set_extra("str", std::string("na\xc3\xafve \xe2\x9c\x93"));
        st.set_extra("bool", true);
        st.set_extra("none", c10::IValue());
        st.set_extra("complex", c10::complex<double>(1.5, -2.0));
        st.set_extra("device", c10::Device(c10::kCPU));
        st.set_extra("ints", c10::List<int64_t>({1, 2, 3}));
        st.set_extra("floats", c10::List<double>({0.5, 1e-300}));
        st.set_extra("bools", c10::List<bool>({true, false}));
        st.set_extra("strs", c10::List<std::string>({"a", "b"}));
        st.set_extra("tensors", c10::List<at::Tensor>({torch::arange(3), torch::ones({2, 2}, torch::kFloat64)}));
        st.set_extra("tuple", c10::ivalue::Tuple::create(
                                  {c10::IValue(int64_t(1)), c10::IValue(std::string("x")), c10::IValue(2.5)}));
        c10::impl::GenericList mixed(c10::AnyType::get());
        mixed.push_back(int64_t(1));
        mixed.push_back(std::string("x"));
        c10::impl::GenericDict by_int(c10::IntType::get(), c10::AnyType::get());
        by_int.insert(int64_t(3), 4.0);
        c10::impl::GenericDict nested(c10::StringType::get(), c10::AnyType::get());
        nested.insert("a", mixed);
        nested.insert("b", by_int);
        nested.insert("t", torch::arange(6, torch::kFloat64).reshape({2, 3}) / 3);
        st.set_extra("nested", nested);
        st.set_extra("empty_list", c10::impl::GenericList(c10::AnyType::get()));
        st.set_extra("empty_dict", c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));

        ckptdbxx::catalog db(dir + "/ckpts");
        ckptdbxx::entry e1 = st.save(db, "epoch", 3, 30);
        std::cout << "file: " << e1.path << "\n";
        {
            ckptdbxx::async_saver saver(st, db);
            saver.save("epoch", 4, 40);
            std::optional<ckptdbxx::entry> e2 = saver.wait();
            if (!e2) throw std::runtime_error("the asynchronous save committed nothing");
            std::cout << "file: " << e2->path << "\n";
        }
        std::string path3 = dir + "/written.pt";
        {
            std::ofstream out(path3, std::ios::binary);
            st.write([&](const void *p, size_t n) { out.write(static_cast<const char *>(p), std::streamsize(n)); }, 5,
                     50);
            if (!out.flush()) throw std::runtime_error("cannot write " + path3);
        }
        std::cout << "file: " << path3 << "\n";

        torch::Tensor next = torch::rand({4});
        std::cout << "next_rand:";
        for (int i = 0; i < 4; i++) {
            char buf[64];
            std::snprintf(buf, sizeof buf, " %a", double(next[i].item<float>()));
            std::cout << buf;
        }
        std::cout << std::endl;
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "write_state: %s\n", e.what());
        return 1;
    }
}

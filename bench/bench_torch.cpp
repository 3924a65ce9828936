// bench_torch: libckptdb_torch against the physical limit and against
// torch::pickle_save, measured side by side in one run.
//
// The state: one module holding --mib MiB of float32 tensors (8 tensors).
//   save vs dd   per repetition: `dd if=/dev/zero bs=4M conv=fsync` of the
//                archive's byte count, and training_state::save into a
//                catalog (streamed zip records -> ckptdb_save_write ->
//                commit); order alternates, sync() before each.  Ratio of
//                the medians (target <= 1.15x).
//   peak RSS     in a fresh child process per measurement (this program
//                re-executed): VmHWM after building the state and opening
//                the catalog, and again after one save; the difference is
//                the memory a save adds (target < 10% of the state).  The
//                same for torch::pickle_save of the same dict (its buffer
//                alone; writing it out adds nothing to the peak).
//   async        how long async_saver::save() blocks the caller, against a
//                clone of every tensor alone (the host copy); target <= 1.2x.
//                Then the background write + commit is waited for.
//   serialize    the archive into a sink that keeps nothing: the CPU part
//                of a save (pickle, the zip's CRC-32), printed for reference.
// Timings are never asserted; the program fails only when an operation does.
//
// usage: bench_torch [--mib 1024] [--reps 2]
#include "bench_common.hpp"

#include <ckptdb_torch.hpp>
#include <torch/torch.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cinttypes>
#include <fstream>

namespace {

constexpr int kTensors = 8;

int64_t vm_hwm_bytes() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // kB
    bench::die("no VmHWM in /proc/self/status");
}

struct state_holder {
    torch::nn::Module module;
    ckptdbxx::training_state state;
    explicit state_holder(int64_t mib) {
        int64_t per = mib * (int64_t(1) << 20) / kTensors / 4;  // float32 elements per tensor
        for (int i = 0; i < kTensors; i++)
            module.register_buffer("w" + std::to_string(i), torch::full({per}, float(i + 1), torch::kFloat));
        state.add_module(module);
    }
};

std::string fmt(const char *f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

// Child: print the peak resident memory a save (or pickle_save) adds.
int child(const std::string &what, int64_t mib, const std::string &dir) {
    torch::set_num_threads(1);
    state_holder h(mib);
    if (what == "save") {
        ckptdbxx::catalog db(dir);
        int64_t before = vm_hwm_bytes();
        h.state.save(db, "step", 0, 1);
        std::printf("%" PRId64 "\n", vm_hwm_bytes() - before);
    } else {
        c10::Dict<std::string, at::Tensor> sd;
        for (auto &kv : h.module.named_buffers()) sd.insert(kv.key(), kv.value());
        c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
        root.insert("model", sd);
        int64_t before = vm_hwm_bytes();
        std::vector<char> bytes = torch::jit::pickle_save(root);
        int64_t after = vm_hwm_bytes();
        if (bytes.size() < size_t(mib) << 20) bench::die("pickle_save produced too few bytes");
        std::printf("%" PRId64 "\n", after - before);
    }
    return 0;
}

int64_t rss_child(const std::string &what, int64_t mib, const std::string &dir) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) bench::die_errno("readlink /proc/self/exe");
    self[n] = '\0';
    std::string out;
    bench::run_child({self, "--child", what, "--mib", std::to_string(mib), "--dir", dir}, &out);
    return std::stoll(out);
}

double time_dd(const std::string &path, uint64_t bytes) {
    std::vector<std::string> a = {
        "dd",         "if=/dev/zero", "of=" + path, "bs=4M", "count=" + std::to_string(bytes), "iflag=count_bytes",
        "conv=fsync", "status=none"};
    sync();
    double t0 = bench::now_s();
    bench::run_child(a, nullptr);
    return bench::now_s() - t0;
}

}  // namespace

int main(int argc, char **argv) {
    int64_t mib = 1024;
    int reps = 2;
    std::string child_what, child_dir;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) bench::die("missing value for " + a);
            return argv[++i];
        };
        if (a == "--mib")
            mib = std::stoll(val());
        else if (a == "--reps")
            reps = std::stoi(val());
        else if (a == "--child")
            child_what = val();
        else if (a == "--dir")
            child_dir = val();
        else
            bench::die("unknown argument " + a + " (usage: bench_torch [--mib 1024] [--reps 2])");
    }
    if (mib < kTensors || reps < 1) bench::die("--mib must be >= 8 and --reps >= 1");
    try {
        if (!child_what.empty()) return child(child_what, mib, child_dir);

        torch::set_num_threads(1);
        std::string work = bench::make_workdir("bench-torch");
        state_holder h(mib);
        // The archive's size, and the CPU cost of serializing it (pickle,
        // zip CRC-32) into a sink that keeps nothing.
        uint64_t archive = 0;
        double ser0 = bench::now_s();
        h.state.write([&](const void *, size_t len) { archive += len; }, 0, 0);
        double serialize_s = bench::now_s() - ser0;
        std::printf("bench_torch: state %" PRId64 " MiB in %d float32 tensors; archive %" PRIu64 " bytes; dir %s\n",
                    mib, kTensors, archive, work.c_str());

        // 1. save vs dd conv=fsync, alternating.
        ckptdbxx::catalog db(work + "/ckpts");
        std::vector<double> dd, sv;
        for (int r = 0; r < reps; r++) {
            for (int k = 0; k < 2; k++) {
                if ((k == 0) == (r % 2 == 0)) {
                    dd.push_back(time_dd(work + "/dd-" + std::to_string(r) + ".bin", archive));
                } else {
                    sync();
                    double t0 = bench::now_s();
                    ckptdbxx::entry e = h.state.save(db, "step", 0, r + 1);
                    sv.push_back(bench::now_s() - t0);
                    if (uint64_t(e.size) != archive) bench::die("save wrote another byte count than the archive");
                }
            }
            std::printf("rep %d: dd conv=fsync %.3f s, ckptdb_torch save %.3f s\n", r + 1, dd.back(), sv.back());
            std::fflush(stdout);
        }

        // 2. Peak RSS added, each in a fresh process.
        int64_t rss_save = rss_child("save", mib, work + "/ckpts-rss");
        int64_t rss_pickle = rss_child("pickle", mib, "");

        // 3. Async: caller's blocked time against the host copy alone.
        std::vector<double> copy_t, block_t, bg_t;
        ckptdbxx::async_saver saver(h.state, db);
        for (int r = 0; r < reps; r++) {
            sync();
            {
                double t0 = bench::now_s();
                std::vector<torch::Tensor> copies;
                for (auto &kv : h.module.named_buffers()) copies.push_back(kv.value().clone());
                copy_t.push_back(bench::now_s() - t0);
            }
            double t0 = bench::now_s();
            saver.save("time", 0, 100 + r);
            block_t.push_back(bench::now_s() - t0);
            auto e = saver.wait();
            bg_t.push_back(bench::now_s() - t0);
            if (!e) bench::die("async save committed nothing");
            std::printf("async rep %d: host copy alone %.3f s, save() blocked %.3f s, committed after %.3f s\n", r + 1,
                        copy_t.back(), block_t.back(), bg_t.back());
            std::fflush(stdout);
        }

        double state_bytes = double(mib) * 1048576.0;
        std::printf("\nsummary (%" PRId64 " MiB state, %d reps, medians):\n", mib, reps);
        std::printf("  save vs dd conv=fsync       : %.3f s / %.3f s = %.3fx   (target <= 1.15x)\n", bench::median(sv),
                    bench::median(dd), bench::median(sv) / bench::median(dd));
        std::printf(
            "  peak RSS added by a save    : ckptdb_torch %s MiB (%s of the state), torch::pickle_save %s MiB (%s)"
            "   (target < 10%%)\n",
            fmt("%.1f", double(rss_save) / 1048576.0).c_str(),
            fmt("%.1f%%", 100.0 * double(rss_save) / state_bytes).c_str(),
            fmt("%.1f", double(rss_pickle) / 1048576.0).c_str(),
            fmt("%.1f%%", 100.0 * double(rss_pickle) / state_bytes).c_str());
        std::printf("  async: caller blocked       : %.3f s vs host copy alone %.3f s = %.3fx   (target <= 1.2x)\n",
                    bench::median(block_t), bench::median(copy_t), bench::median(block_t) / bench::median(copy_t));
        std::printf("  async: save() to committed  : %.3f s\n", bench::median(bg_t));
        std::printf("  serialize only (null sink)  : %.3f s (pickle + zip CRC-32, no I/O)\n", serialize_s);
        bench::remove_tree(work);
    } catch (const std::exception &e) {
        bench::die(e.what());
    }
    return 0;
}

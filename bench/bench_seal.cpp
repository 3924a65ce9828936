// What the seal of a shard's temp file costs a sharded save: the seal
// written by each writer after its fsync (write_seal) and read back by the
// commit (open, fstat, check_seal), for a 2-rank save of small files, with
// the seal in the extended attribute and in the sidecar file. Measured
// alone, on temp files like a shard's, and set against whole 2-rank saves
// (Shard begin/write/finish per rank, commit_shards) in the same directory
// tree. Links the engine statically for the internal entry points. Never
// asserts timings; fails only when an operation fails.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "catalog.hpp"
#include "error.hpp"
#include "fsio.hpp"
#include "hash.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace {

constexpr int kRanks = 2;

void sidecar_mode(bool on) {
    if (on)
        ::setenv("CKPTDB_TEST_SEAL_SIDECAR", "1", 1);
    else
        ::unsetenv("CKPTDB_TEST_SEAL_SIDECAR");
}

// Seconds spent in the seal alone per 2-rank save: write both seals, then
// the commit's read of both (open, fstat, check), then the removal of
// sidecars the commit does.
// Alternates the attribute (out[0]) and the sidecar (out[1]) save by save,
// so that a machine whose load drifts weighs on both alike.
void seal_alone(const std::string &path, int saves, size_t bytes, std::vector<double> out[2]) {
    ckptdb::Dir dir = ckptdb::open_dir(path, true);
    std::string data(bytes, 'x');
    for (int i = 0; i < 2 * saves; i++) {
        sidecar_mode(i % 2 == 1);
        ckptdb::UniqueFd fds[kRanks], seals[kRanks];
        ckptdb::ShardFile fs[kRanks];
        for (int r = 0; r < kRanks; r++) {
            fs[r].name = "step_" + std::to_string(i) + ".rank" + std::to_string(r) + ".pt";
            fs[r].temp_name = ckptdb::random_temp_name();
            fds[r] = ckptdb::create_locked_temp(dir, fs[r].temp_name);
            ckptdb::write_all(fds[r].get(), data.data(), data.size(), dir.join(fs[r].temp_name));
            ckptdb::Hasher h;
            h.update(data.data(), data.size());
            fs[r].size = static_cast<int64_t>(bytes);
            fs[r].checksum = h.hex();
        }
        double t0 = bench::now_s();
        for (int r = 0; r < kRanks; r++) seals[r] = ckptdb::write_seal(dir, fds[r].get(), fs[r]);
        bool side[kRanks];
        for (int r = 0; r < kRanks; r++) {
            int err = 0;
            ckptdb::UniqueFd f = ckptdb::open_read(dir, fs[r].temp_name, err);
            if (!f) bench::die("open " + fs[r].temp_name);
            struct stat st;
            if (::fstat(f.get(), &st) != 0) bench::die_errno("fstat");
            side[r] = ckptdb::check_seal(dir, f.get(), st, fs[r], static_cast<size_t>(r));
        }
        for (int r = 0; r < kRanks; r++)
            if (side[r]) ckptdb::unlink_name(dir, ckptdb::seal_sidecar_name(fs[r].temp_name));
        out[i % 2].push_back(bench::now_s() - t0);
        for (int r = 0; r < kRanks; r++) {
            ckptdb::drop_seal(dir, fs[r].temp_name, seals[r]);
            ckptdb::unlink_name(dir, fs[r].temp_name);
        }
    }
    sidecar_mode(false);
}

// Seconds per whole 2-rank save through the shard protocol, alternating
// the attribute (out[0]) and the sidecar (out[1]) in one catalog.
void whole_saves(const std::string &path, int saves, size_t bytes, std::vector<double> out[2]) {
    auto cat = ckptdb::Catalog::open(path, ckptdb::OpenOptions());
    std::string data(bytes, 'y');
    for (int i = 0; i < 2 * saves; i++) {
        sidecar_mode(i % 2 == 1);
        double t0 = bench::now_s();
        std::vector<std::unique_ptr<ckptdb::Shard>> shards;
        std::vector<ckptdb::ShardFile> files;
        for (int r = 0; r < kRanks; r++) {
            std::string name = "step_" + std::to_string(i) + ".rank" + std::to_string(r) + ".pt";
            shards.push_back(ckptdb::Shard::begin(path, name));
            shards.back()->write(data.data(), data.size());
            files.push_back(shards.back()->finish());
        }
        ckptdb::commit_shards(cat, "step", 0, i, std::nullopt, files);
        shards.clear();
        out[i % 2].push_back(bench::now_s() - t0);
    }
    sidecar_mode(false);
}

void report(const char *what, const std::vector<double> &v) {
    std::printf("  %-34s median %9.1f us  p99 %9.1f us  mean %9.1f us\n", what, bench::median(v) * 1e6,
                bench::quantile(v, 0.99) * 1e6, [&] {
                    double s = 0;
                    for (double x : v) s += x;
                    return v.empty() ? 0.0 : s / double(v.size()) * 1e6;
                }());
}

}  // namespace

int main(int argc, char **argv) {
    int saves = 1000;
    size_t bytes = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--saves")
            saves = std::atoi(argv[i + 1]);
        else if (a == "--bytes")
            bytes = std::strtoull(argv[i + 1], nullptr, 10);
        else
            bench::die("usage: bench_seal [--saves N] [--bytes N]");
    }
    std::string work = bench::make_workdir("bench-seal");
    std::printf("bench_seal: %d saves of %d ranks x %zu bytes, work dir %s\n", saves, kRanks, bytes, work.c_str());
    try {
        std::vector<double> alone[2], whole[2];
        seal_alone(work + "/alone", saves, bytes, alone);
        whole_saves(work + "/whole", saves, bytes, whole);
        const std::vector<double> &attr = alone[0], &side = alone[1], &whole_attr = whole[0], &whole_side = whole[1];
        report("seal + check, attribute", attr);
        report("seal + check, sidecar", side);
        report("whole 2-rank save, attribute", whole_attr);
        report("whole 2-rank save, sidecar", whole_side);
        double share_attr = bench::median(attr) / bench::median(whole_attr);
        double share_side = bench::median(side) / bench::median(whole_side);
        std::printf(
            "seal + check per 2-rank save: %.1f us with the attribute (%.2f%% of a save), %.1f us with the "
            "sidecar (%.2f%%)\n",
            bench::median(attr) * 1e6, share_attr * 100, bench::median(side) * 1e6, share_side * 100);
        std::printf(
            "RESULT seal_attr_us=%.2f\nRESULT seal_sidecar_us=%.2f\nRESULT seal_attr_share=%.5f\n"
            "RESULT seal_sidecar_share=%.5f\nRESULT save_2rank_attr_us=%.1f\n"
            "RESULT save_2rank_sidecar_us=%.1f\n",
            bench::median(attr) * 1e6, bench::median(side) * 1e6, share_attr, share_side,
            bench::median(whole_attr) * 1e6, bench::median(whole_side) * 1e6);
    } catch (const ckptdb::Error &e) {
        bench::die(e.what());
    }
    bench::remove_tree(work);
    return 0;
}

// Verify and sync of one large checkpoint against their physical limits,
// measured side by side in one run:
//   verify : ckptdb_verify  vs  xxh128sum of the same file
//   sync   : ckptdb_sync    vs  cp + xxh128sum of the copy
//            (and vs cp + sync FILE + xxh128sum, since sync fsyncs its copies)
// Never asserts timings; fails only when an operation fails.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "ckptdb.h"

namespace {

[[noreturn]] void die_api(const char *what, int rc) {
    bench::die(std::string(what) + " failed: " + ckptdb_strerror(rc) + ": " + ckptdb_last_error());
}

double timed(const std::vector<std::string> &cmd) {
    double t0 = bench::now_s();
    bench::run_child(cmd, nullptr);
    return bench::now_s() - t0;
}

}  // namespace

int main(int argc, char **argv) {
    uint64_t size = uint64_t(1) << 30;
    int reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--mib")
            size = std::strtoull(argv[i + 1], nullptr, 10) << 20;
        else if (a == "--reps")
            reps = std::atoi(argv[i + 1]);
        else
            bench::die("usage: bench_sync [--mib N] [--reps N]");
    }
    std::string work = bench::make_workdir("bench-sync");
    std::string src = work + "/src";
    std::printf("bench_sync: ckptdb %s, %llu MiB, %d reps, work dir %s\n", ckptdb_version(),
                static_cast<unsigned long long>(size >> 20), reps, work.c_str());

    ckptdb_catalog *db = nullptr;
    if (int rc = ckptdb_open(&db, src.c_str(), nullptr)) die_api("ckptdb_open", rc);
    ckptdb_save *s = nullptr;
    if (int rc = ckptdb_save_begin(&s, db, "epoch", 1, 1, nullptr)) die_api("ckptdb_save_begin", rc);
    std::vector<char> chunk(4 << 20);
    for (size_t i = 0; i < chunk.size(); i++) chunk[i] = char((i * 2654435761u) >> 13);
    for (uint64_t done = 0; done < size; done += chunk.size())
        if (int rc = ckptdb_save_write(s, chunk.data(), std::min<uint64_t>(chunk.size(), size - done)))
            die_api("ckptdb_save_write", rc);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    if (int rc = ckptdb_save_commit(&e, s)) die_api("ckptdb_save_commit", rc);
    const int64_t id = e.id;
    const std::string file = e.path;
    ckptdb_save_free(s);

    std::vector<double> t_verify, t_xxh, t_sync, t_cp, t_cp_sync;
    for (int r = 0; r < reps; r++) {
        double t0 = bench::now_s();
        if (int rc = ckptdb_verify(db, id)) die_api("ckptdb_verify", rc);
        t_verify.push_back(bench::now_s() - t0);
        t_xxh.push_back(timed({"xxh128sum", "-q", file}));
    }
    for (int r = 0; r < reps; r++) {
        std::string dst = work + "/dst-" + std::to_string(r), cp_dir = work + "/cp-" + std::to_string(r),
                    cps_dir = work + "/cps-" + std::to_string(r);
        ::mkdir(cp_dir.c_str(), 0755);
        ::mkdir(cps_dir.c_str(), 0755);
        ::sync();
        double t0 = bench::now_s();
        if (int rc = ckptdb_sync(nullptr, nullptr, src.c_str(), dst.c_str(), nullptr)) die_api("ckptdb_sync", rc);
        t_sync.push_back(bench::now_s() - t0);
        ::sync();
        t_cp.push_back(timed({"cp", file, cp_dir + "/"}) + timed({"xxh128sum", "-q", cp_dir + "/epoch_001.pt"}));
        ::sync();
        t_cp_sync.push_back(timed({"cp", file, cps_dir + "/"}) + timed({"sync", cps_dir + "/epoch_001.pt"}) +
                            timed({"xxh128sum", "-q", cps_dir + "/epoch_001.pt"}));
    }
    ckptdb_close(db);
    double v = bench::median(t_verify), x = bench::median(t_xxh), sy = bench::median(t_sync), c = bench::median(t_cp),
           cs = bench::median(t_cp_sync);
    std::printf("verify: ckptdb %.3f s, xxh128sum %.3f s: ratio %.2fx (median of %d)\n", v, x, v / x, reps);
    std::printf(
        "sync:   ckptdb %.3f s, cp + xxh128sum %.3f s: ratio %.2fx; cp + sync + xxh128sum %.3f s: ratio %.2fx\n", sy, c,
        sy / c, cs, sy / cs);
    std::printf("RESULT verify_ratio_vs_xxh128sum=%.3f\n", v / x);
    std::printf("RESULT sync_ratio_vs_cp_xxh128sum=%.3f\n", sy / c);
    std::printf("RESULT sync_ratio_vs_cp_fsync_xxh128sum=%.3f\n", sy / cs);
    bench::remove_tree(work);
    return 0;
}

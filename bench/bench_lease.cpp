// bench_lease: what the writer's lease renewals cost per save.
//
// A save renews its heartbeat (futimens on its temp file) at most every 10 s
// while it streams (a coarse clock read per write decides) and right before
// and after its fsync. This program links the engine statically and switches the renewals
// off (ckptdb::g_renew_leases) for the other side of the comparison:
//   on   begin -> write (4 MiB chunks) -> commit, renewals as in the library
//   off  the same with no renewal at all
// For each size, per repetition, one batch of N saves each way, the order
// alternating per repetition, in one catalog (a retention of one checkpoint
// keeps the directory small). Also timed: one futimens call alone.
//
// Prints per size the median per-save time each way, the difference per save
// and the ratio, then `RESULT lease_<size>_ratio_on_vs_off=...`. Timings are
// never asserted; it fails only when an operation fails.
//
// usage: bench_lease [--small-saves 200] [--big-saves 5] [--big-mib 64] [--reps 5]

#include "bench_common.hpp"

#include <sys/stat.h>

#include <string>
#include <vector>

#include "catalog.hpp"
#include "error.hpp"
#include "lease.hpp"
#include "writer.hpp"

namespace {

constexpr size_t kChunk = size_t(4) << 20;

double batch(const std::shared_ptr<ckptdb::Catalog> &cat, size_t bytes, int saves, bool renew, int64_t &epoch) {
    ckptdb::g_renew_leases = renew;
    std::string chunk(std::min(bytes, kChunk), 'x');
    double t0 = bench::now_s();
    for (int i = 0; i < saves; i++) {
        auto s = ckptdb::Save::begin(cat, "epoch", epoch, epoch, std::nullopt, std::nullopt);
        epoch++;
        for (size_t off = 0; off < bytes; off += chunk.size())
            s->write(chunk.data(), std::min(chunk.size(), bytes - off));
        s->commit();
    }
    double per = (bench::now_s() - t0) / saves;
    ckptdb::g_renew_leases = true;
    return per;
}

double futimens_cost(const std::string &dir, int calls) {
    std::string path = dir + "/futimens.bin";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) bench::die_errno("open " + path);
    int64_t last = 0;
    double t0 = bench::now_s();
    for (int i = 0; i < calls; i++) ckptdb::renew_lease(fd, last, true);
    double per = (bench::now_s() - t0) / calls;
    ::close(fd);
    ::unlink(path.c_str());
    return per;
}

}  // namespace

int main(int argc, char **argv) {
    int small_saves = 200, big_saves = 5, big_mib = 64, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        int v = std::atoi(argv[i + 1]);
        if (v <= 0) bench::die("bad value for " + a);
        if (a == "--small-saves")
            small_saves = v;
        else if (a == "--big-saves")
            big_saves = v;
        else if (a == "--big-mib")
            big_mib = v;
        else if (a == "--reps")
            reps = v;
        else
            bench::die("unknown option " + a);
    }
    std::string dir = bench::make_workdir("bench-lease");
    try {
        auto cat = ckptdb::Catalog::open(dir, ckptdb::OpenOptions());
        ckptdb::Retention r;
        r.keep_last = {{"epoch", 1}};
        cat->set_retention(r);
        int64_t epoch = 0;
        struct Case {
            const char *label;
            size_t bytes;
            int saves;
        };
        std::string big_label = std::to_string(big_mib) + "MiB";
        std::vector<Case> cases = {{"4KiB", 4096, small_saves}, {big_label.c_str(), size_t(big_mib) << 20, big_saves}};
        for (const Case &c : cases) {
            batch(cat, c.bytes, 1, true, epoch);  // warm the catalog and the page cache
            std::vector<double> on, off;
            for (int rep = 0; rep < reps; rep++) {
                bool on_first = rep % 2 == 0;
                for (int side = 0; side < 2; side++) {
                    bool renew = (side == 0) == on_first;
                    (renew ? on : off).push_back(batch(cat, c.bytes, c.saves, renew, epoch));
                }
            }
            double m_on = bench::median(on), m_off = bench::median(off);
            std::printf(
                "save %s: renewals on %.1f us/save, off %.1f us/save, difference %+.1f us/save, ratio %.4fx "
                "(median of %d batches of %d)\n",
                c.label, m_on * 1e6, m_off * 1e6, (m_on - m_off) * 1e6, m_on / m_off, reps, c.saves);
            std::printf("RESULT lease_%s_ratio_on_vs_off=%.4f\n", c.label, m_on / m_off);
            std::printf("RESULT lease_%s_diff_us_per_save=%.1f\n", c.label, (m_on - m_off) * 1e6);
        }
        double f = futimens_cost(dir, 10000);
        std::printf("one renewal (futimens) alone: %.2f us\nRESULT lease_renewal_us=%.2f\n", f * 1e6, f * 1e6);
    } catch (const ckptdb::Error &e) {
        bench::remove_tree(dir);
        bench::die(e.what());
    }
    bench::remove_tree(dir);
    return 0;
}

// A child process for the stress suites (always fork+exec'd by a test, never
// a fork of the test runner). It saves through the public C ABI
// (libckptdb.so), exactly as a trainer would, and prints one line per
// acknowledged save, flushed, once ckptdb_save_commit returned CKPTDB_OK:
//
//   stress_helper loop DIR [--seed S] [--count N] [--max-bytes B] [--pins] [--prunes]
//       N saves (0: until killed) of random kinds (epoch, time, step, manual,
//       preempt) and sizes (1 byte .. B), with rotation (the default policy,
//       other kinds kept 3); with --pins it pins and unpins now and then,
//       with --prunes it runs a prune by hand now and then.
//       Prints "ACK <id>" per commit, "DONE <n>" at the end; on any failure
//       "ERR <code> <message>" and exits 1.
//   stress_helper saves DIR SIZE...
//       One save of each size: "ACK <id>" or "FAIL <code> <message>" each,
//       then "DONE"; "ERR <code> <message>" (exit 1) if the open fails.
//   stress_helper fsize DIR LIMIT SMALL BIG
//       Sets RLIMIT_FSIZE to LIMIT bytes with SIGXFSZ ignored (writes past it
//       fail with EFBIG), then saves SMALL bytes ("ACK <id>"), BIG bytes
//       ("FAIL <code> <message>", or "ACK <id>" if it fit), and SMALL bytes
//       again ("ACK <id>"); prints "DONE".
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ckptdb.h"

namespace {

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull) {}
    uint64_t next() {  // xorshift64*
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        return s * 0x2545f4914f6cdd1dull;
    }
    uint64_t below(uint64_t n) { return n ? next() % n : 0; }
};

[[noreturn]] void die(const char *what, int rc) {
    std::printf("ERR %d %s: %s\n", rc, what, ckptdb_last_error());
    std::fflush(stdout);
    std::exit(1);
}

void check(int rc, const char *what) {
    if (rc != CKPTDB_OK) die(what, rc);
}

// Fills buf with bytes that depend on (seed, i), so no two saves look alike.
void fill(std::vector<unsigned char> &buf, uint64_t seed) {
    Rng r(seed);
    for (size_t i = 0; i < buf.size(); i += 8) {
        uint64_t v = r.next();
        std::memcpy(buf.data() + i, &v, std::min<size_t>(8, buf.size() - i));
    }
}

// One whole save; returns the status and, on success, the id.
int save_once(ckptdb_catalog *db, const char *kind, int64_t epoch, int64_t step,
              const std::vector<unsigned char> &bytes, const std::string &meta, int64_t *id) {
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.metadata = meta.c_str();
    ckptdb_save *s = nullptr;
    int rc = ckptdb_save_begin(&s, db, kind, epoch, step, &o);
    if (rc != CKPTDB_OK) return rc;
    // In pieces, as a serializer streams them.
    size_t off = 0;
    while (rc == CKPTDB_OK && off < bytes.size()) {
        size_t n = std::min<size_t>(bytes.size() - off, 64 << 10);
        rc = ckptdb_save_write(s, bytes.data() + off, n);
        off += n;
    }
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    if (rc == CKPTDB_OK) rc = ckptdb_save_commit(&e, s);
    if (rc == CKPTDB_OK) *id = e.id;
    ckptdb_save_free(s);  // leaves the last error alone
    return rc;
}

// Pins or unpins; false when another process's rotation pruned the
// checkpoint first (CKPTDB_EINVAL: a legitimate outcome of the race).
bool pin(ckptdb_catalog *db, int64_t id, int on) {
    int rc = ckptdb_pin(db, id, on);
    if (rc == CKPTDB_EINVAL) return false;
    check(rc, on ? "pin" : "unpin");
    return true;
}

int loop(const std::string &dir, std::vector<std::string> args) {
    uint64_t seed = 1;
    long count = 0;
    size_t max_bytes = 64 << 10;
    bool pins = false, prunes = false;
    for (size_t i = 0; i < args.size(); i++) {
        if (args[i] == "--seed" && i + 1 < args.size())
            seed = std::strtoull(args[++i].c_str(), nullptr, 10);
        else if (args[i] == "--count" && i + 1 < args.size())
            count = std::atol(args[++i].c_str());
        else if (args[i] == "--max-bytes" && i + 1 < args.size())
            max_bytes = std::strtoull(args[++i].c_str(), nullptr, 10);
        else if (args[i] == "--pins")
            pins = true;
        else if (args[i] == "--prunes")
            prunes = true;
        else {
            std::fprintf(stderr, "stress_helper loop: unknown argument %s\n", args[i].c_str());
            return 2;
        }
    }
    Rng rng(seed);
    ckptdb_catalog *db = nullptr;
    check(ckptdb_open(&db, dir.c_str(), nullptr), "open");
    ckptdb_retention keep = CKPTDB_RETENTION_INIT;
    keep.keep_last_default = 3;  // step and other kinds: 3, so the directory stays small
    check(ckptdb_set_retention(db, &keep), "set_retention");
    const char *kinds[] = {"epoch", "epoch", "epoch", "time", "step", "manual", "preempt"};
    int64_t pinned = 0;
    if (pins) {
        // The pins of an earlier (killed) run of this loop are released, so
        // that they do not pile up over many kills.
        std::vector<int64_t> old;
        auto collect = [](const ckptdb_entry *e, void *p) {
            if (e->pinned) static_cast<std::vector<int64_t> *>(p)->push_back(e->id);
            return 0;
        };
        ckptdb_filter f = {CKPTDB_FILTER_VERSION, CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE), nullptr};
        check(ckptdb_list(db, &f, collect, &old), "list");
        for (int64_t id : old) pin(db, id, 0);
    }
    std::vector<unsigned char> buf;
    long done = 0;
    for (long i = 0; count == 0 || i < count; i++) {
        const char *kind = kinds[rng.below(sizeof kinds / sizeof kinds[0])];
        buf.resize(1 + rng.below(max_bytes));
        fill(buf, seed * 1000003u + static_cast<uint64_t>(i));
        std::string meta = "{\"pid\": " + std::to_string(::getpid()) + ", \"seed\": " + std::to_string(seed) +
                           ", \"i\": " + std::to_string(i) + "}";
        int64_t id = 0;
        int rc = save_once(db, kind, i, i * 10, buf, meta, &id);
        if (rc != CKPTDB_OK) die("save", rc);
        std::printf("ACK %lld\n", static_cast<long long>(id));
        std::fflush(stdout);
        done++;
        if (pins && rng.below(8) == 0) {
            if (pinned) pin(db, pinned, 0);
            pinned = pin(db, id, 1) ? id : 0;
        }
        if (prunes && rng.below(6) == 0) check(ckptdb_prune(nullptr, nullptr, db, &keep, 0, nullptr, nullptr), "prune");
    }
    check(ckptdb_close(db), "close");
    std::printf("DONE %ld\n", done);
    std::fflush(stdout);
    return 0;
}

int fsize(const std::string &dir, const std::vector<std::string> &args) {
    if (args.size() != 3) return 2;
    rlim_t limit = std::strtoull(args[0].c_str(), nullptr, 10);
    size_t small = std::strtoull(args[1].c_str(), nullptr, 10), big = std::strtoull(args[2].c_str(), nullptr, 10);
    ::signal(SIGXFSZ, SIG_IGN);  // the write then fails with EFBIG instead of killing us
    struct rlimit rl = {limit, limit};
    if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) {
        std::perror("setrlimit");
        return 2;
    }
    ckptdb_catalog *db = nullptr;
    check(ckptdb_open(&db, dir.c_str(), nullptr), "open");
    std::vector<unsigned char> buf;
    int n = 0;
    for (size_t bytes : {small, big, small}) {
        buf.resize(bytes);
        fill(buf, static_cast<uint64_t>(++n));
        int64_t id = 0;
        int rc = save_once(db, "epoch", n, n, buf, "{}", &id);
        if (rc == CKPTDB_OK)
            std::printf("ACK %lld\n", static_cast<long long>(id));
        else
            std::printf("FAIL %d %s\n", rc, ckptdb_last_error());
        std::fflush(stdout);
    }
    check(ckptdb_close(db), "close");
    std::printf("DONE\n");
    return 0;
}

int saves(const std::string &dir, const std::vector<std::string> &args) {
    ckptdb_catalog *db = nullptr;
    check(ckptdb_open(&db, dir.c_str(), nullptr), "open");
    std::vector<unsigned char> buf;
    int n = 0;
    for (const std::string &a : args) {
        buf.resize(std::strtoull(a.c_str(), nullptr, 10));
        fill(buf, static_cast<uint64_t>(::getpid()) * 1000 + static_cast<uint64_t>(++n));
        int64_t id = 0;
        int rc = save_once(db, "epoch", n, n, buf, "{}", &id);
        if (rc == CKPTDB_OK)
            std::printf("ACK %lld\n", static_cast<long long>(id));
        else
            std::printf("FAIL %d %s\n", rc, ckptdb_last_error());
        std::fflush(stdout);
    }
    // Closing on a full disk may fail to record the run's end: the next
    // open finds the run ended without a close, which is what it was.
    int rc = ckptdb_close(db);
    std::printf("DONE %d\n", rc);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() < 2) {
        std::fprintf(stderr, "usage: stress_helper loop|fsize DIR ...\n");
        return 2;
    }
    std::string mode = args[0], dir = args[1];
    args.erase(args.begin(), args.begin() + 2);
    if (mode == "loop") return loop(dir, args);
    if (mode == "fsize") return fsize(dir, args);
    if (mode == "saves") return saves(dir, args);
    std::fprintf(stderr, "stress_helper: unknown mode %s\n", mode.c_str());
    return 2;
}

// What the fault, power-loss and kill suites share: a scratch area, copying
// a directory tree through an image, the sizes of a run (scaled by
// CKPTDB_CRASH_ITERATIONS), the directory killed writers leave behind for
// the recovery scenario, and the figures every suite prints at the end.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "invariants.hpp"
#include "support.hpp"
#include "trace.hpp"

namespace common {

// Where scratch directories go: $CKPTDB_CRASH_TMPDIR, else /dev/shm (these
// suites make thousands of small directories and model the disk themselves),
// else $TMPDIR or /tmp.
inline std::string scratch_base() {
    if (const char *e = std::getenv("CKPTDB_CRASH_TMPDIR"); e && *e) return e;
    if (::access("/dev/shm", W_OK) == 0) return "/dev/shm";
    const char *t = std::getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

struct Scratch {
    std::string path;
    Scratch() {
        std::string tmpl = scratch_base() + "/ckptdb-fault-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed under " + scratch_base());
        char real[PATH_MAX];
        if (!::realpath(buf.data(), real)) throw std::runtime_error("realpath failed");
        path = real;
    }
    ~Scratch() {
        std::string cmd = "rm -rf '" + path + "'";
        if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", path.c_str());
    }
    Scratch(const Scratch &) = delete;
    Scratch &operator=(const Scratch &) = delete;
};

// Everything under root as an image (trace.hpp), without SQLite's -shm.
inline void read_image(const std::string &root, const std::string &rel, trace::Image &img) {
    std::string abs = rel.empty() ? root : root + "/" + rel;
    for (const auto &n : t::names(abs)) {
        std::string r = rel.empty() ? n : rel + "/" + n;
        std::string p = root + "/" + r;
        struct stat sb;
        if (::lstat(p.c_str(), &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            img[r] = "d";
            read_image(root, r, img);
        } else if (S_ISLNK(sb.st_mode)) {
            char buf[4096];
            ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
            img[r] = "l" + std::string(buf, k > 0 ? static_cast<size_t>(k) : 0);
        } else if (S_ISREG(sb.st_mode) && !(r.size() > 4 && r.compare(r.size() - 4, 4, "-shm") == 0)) {
            img[r] = "f" + t::read_file(p);
        }
    }
}

inline trace::Image image(const std::string &root) {
    trace::Image img;
    read_image(root, "", img);
    return img;
}

// CKPTDB_CRASH_ITERATIONS scales the sampled parts of a run (default 1:
// the bounded CI set; a nightly run sets e.g. 50).
inline long scale() {
    const char *e = std::getenv("CKPTDB_CRASH_ITERATIONS");
    long v = e ? std::atol(e) : 1;
    return v < 1 ? 1 : v;
}

// The k a bounded run of a longer scenario tries: every sample-th (1 in a
// nightly-sized run, CKPTDB_CRASH_ITERATIONS above 1, which tries every k).
inline long thinned(long sample) { return scale() > 1 ? 1 : sample; }

// True in a sanitizer build (slower: runs fewer sampled cases).
inline bool sanitized() {
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

// The directory the recovery scenario starts from, made with real kills of
// the crash helper in root/a: one complete checkpoint, a save killed after
// its rename (to adopt), one killed mid-write (to abort, with its temp file),
// and a stray temp file nobody owns.
inline void killed_writers(const std::string &root) {
    std::string a = root + "/a";
    int code = 0;
    std::string l = t::run_helper({"save", a, "4096", "--epoch", "1"}, &code);
    if (code != 0) throw std::runtime_error("crash helper failed: " + l);
    for (auto p : {std::pair<const char *, const char *>{"renamed", "2"}, {"wrote", "3"}}) {
        t::Child c({"save", a, "65536", "--pause-at", p.first, "--epoch", p.second, "--chunk", "16384"});
        std::string got = c.line();
        if (got != std::string("PAUSED ") + p.first) throw std::runtime_error("crash helper: " + got);
        c.kill9();
    }
    t::write_file(a + "/.ckptdb-tmp-0123456789abcdef0123456789abcdef", "left by a writer that died");
}

// The fault helper (fault_helper.cpp) as a child process, stdout as a pipe.
struct Helper : t::Child {
    explicit Helper(const std::vector<std::string> &args) : t::Child(args, "CKPTDB_FAULT_HELPER") {}
};

// A save through the C ABI: the directory is usable again. Returns the
// error, "" when the save committed.
inline std::string resume_save(const std::string &dir) {
    ckptdb_catalog *db = nullptr;
    if (ckptdb_open(&db, dir.c_str(), nullptr) != CKPTDB_OK) return std::string("open: ") + ckptdb_last_error();
    std::string err;
    ckptdb_save *s = nullptr;
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    if (ckptdb_save_begin(&s, db, "manual", 99, 9900, nullptr) != CKPTDB_OK ||
        ckptdb_save_write(s, "resumed", 7) != CKPTDB_OK || ckptdb_save_commit(&e, s) != CKPTDB_OK)
        err = ckptdb_last_error();
    ckptdb_save_free(s);
    ckptdb_close(db);
    return err;
}

// What a helper run printed: BASE and ACK lines, and how it ended.
struct Acks {
    std::vector<std::pair<int64_t, int64_t>> base, acked;  // (id, commit_seq)
    std::string done;                                      // the DONE line, or PAUSED
};

inline bool parse_line(const std::string &l, Acks &a) {
    long long id = 0, seq = 0;
    if (std::sscanf(l.c_str(), "BASE %lld %lld", &id, &seq) == 2) {
        a.base.push_back({id, seq});
        return true;
    }
    if (std::sscanf(l.c_str(), "ACK %lld %lld", &id, &seq) == 2) {
        a.acked.push_back({id, seq});
        return true;
    }
    a.done = l;
    return false;
}

// Figures of one suite, printed at its end.
struct Figures {
    long crash_states = 0, faults = 0, kills = 0, violations = 0, runs = 0;
    void print(const char *suite) const {
        std::printf(
            "%s: runs %ld, crash states tried %ld, faults injected %ld, kills delivered %ld, "
            "invariant violations %ld\n",
            suite, runs, crash_states, faults, kills, violations);
        std::fflush(stdout);
    }
};

}  // namespace common

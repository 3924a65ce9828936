#include "names.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>

#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb {

std::string name_problem(const std::string &name) {
    if (name.empty()) return "is empty";
    if (name.size() > 255) return "is longer than 255 bytes";
    if (name == "." || name == "..") return "is '.' or '..'";
    for (unsigned char c : name) {
        if (c == '/') return "contains '/'";
        if (c == 0) return "contains a NUL byte";
        if (c < 0x20 || c == 0x7f) return "contains a control character";
    }
    if (name.compare(0, 7, ".ckptdb") == 0) return "starts with '.ckptdb', which is reserved for the library";
    return "";
}

bool is_catalog_file(const std::string &name, const std::string &catalog) {
    if (name == kBallastName) return true;
    if (name.compare(0, catalog.size(), catalog) != 0) return false;
    const std::string rest = name.substr(catalog.size());
    for (const char *suffix : kCatalogSuffixes)
        if (rest == suffix) return true;
    return rest.compare(0, 8, ".broken-") == 0 || rest.compare(0, 5, ".new-") == 0;
}

std::string kind_problem(const std::string &kind) {
    if (kind.empty()) return "is empty";
    if (kind.size() > 64) return "is longer than 64 characters";
    for (unsigned char c : kind) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                  c == '.';
        if (!ok) return "may contain only letters, digits, '_', '-' and '.'";
    }
    return "";
}

static std::string printable(const std::string &s) {
    std::string out;
    for (unsigned char c : s.substr(0, 80)) {
        if (c < 0x20 || c == 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        } else {
            out += static_cast<char>(c);
        }
    }
    return s.size() > 80 ? out + "..." : out;
}

void check_name(const std::string &name) {
    std::string p = name_problem(name);
    if (!p.empty()) fail(CKPTDB_EINVAL, "invalid checkpoint name '" + printable(name) + "': it " + p);
}

void check_kind(const std::string &kind) {
    std::string p = kind_problem(kind);
    if (!p.empty()) fail(CKPTDB_EINVAL, "invalid checkpoint kind '" + printable(kind) + "': it " + p);
}

std::string default_stem(const std::string &kind, int64_t epoch, int64_t step, int64_t unix_seconds) {
    char buf[128];
    if (kind == "epoch")
        std::snprintf(buf, sizeof buf, "epoch_%03lld", static_cast<long long>(epoch));
    else if (kind == "time")
        std::snprintf(buf, sizeof buf, "time_%lld", static_cast<long long>(unix_seconds));
    else
        std::snprintf(buf, sizeof buf, "%s_%06lld", kind.c_str(), static_cast<long long>(step));
    return buf;
}

std::string default_name(const std::string &kind, int64_t epoch, int64_t step, int64_t unix_seconds) {
    return default_stem(kind, epoch, step, unix_seconds) + ".pt";
}

std::string shard_name(const std::string &stem, int rank, int world) {
    if (world < 1 || rank < 0 || rank >= world)
        fail(CKPTDB_EINVAL, "invalid shard rank " + std::to_string(rank) + " of world " + std::to_string(world) +
                                ": the world must be at least 1 and the rank from 0 to world - 1");
    return stem + ".rank" + std::to_string(rank) + "-of-" + std::to_string(world) + ".pt";
}

std::string default_name(const std::string &kind, int64_t epoch, int64_t step, int suffix, int rank, int world,
                         int64_t unix_seconds) {
    check_kind(kind);
    if (epoch < 0) fail(CKPTDB_EINVAL, "epoch must be >= 0, got " + std::to_string(epoch));
    if (step < 0) fail(CKPTDB_EINVAL, "step must be >= 0, got " + std::to_string(step));
    if (suffix < 0) fail(CKPTDB_EINVAL, "a name's suffix must be >= 0, got " + std::to_string(suffix));
    if (world < 0)
        fail(CKPTDB_EINVAL, "world must be >= 0 (0: a single-file checkpoint), got " + std::to_string(world));
    std::string stem = default_stem(kind, epoch, step, unix_seconds);
    if (suffix >= 2) stem += "-" + std::to_string(suffix);
    if (world == 0) {
        if (rank != 0)
            fail(CKPTDB_EINVAL, "rank must be 0 for a single-file checkpoint (world 0), got " + std::to_string(rank));
        return stem + ".pt";
    }
    return shard_name(stem, rank, world);
}

namespace {

// Digits from s[at] on (at most `most`); the value in *v, the count returned.
size_t digits(const std::string &s, size_t at, size_t most, int64_t *v) {
    size_t n = 0;
    int64_t x = 0;
    while (at + n < s.size() && n < most && s[at + n] >= '0' && s[at + n] <= '9') x = x * 10 + (s[at + n++] - '0');
    *v = x;
    return n;
}

// "<kind>_<digits>" or "<kind>_<digits>-<n>", the whole of stem.
bool parse_stem(const std::string &stem, DefaultName &out) {
    // The kind may itself hold '_' and '-': try each '_' from the left, as
    // the shortest kind that leaves "<digits>[-<n>]" wins.
    for (size_t us = stem.find('_'); us != std::string::npos; us = stem.find('_', us + 1)) {
        int64_t n = 0, suffix = 0;
        size_t d = digits(stem, us + 1, 18, &n);
        if (d == 0) continue;
        size_t end = us + 1 + d;
        if (end < stem.size()) {
            if (stem[end] != '-') continue;
            size_t sd = digits(stem, end + 1, 9, &suffix);
            if (sd == 0 || end + 1 + sd != stem.size()) continue;
        }
        std::string kind = stem.substr(0, us);
        if (!kind_problem(kind).empty()) continue;
        out.kind = kind;
        out.epoch = kind == "epoch" ? n : 0;
        out.step = (kind == "epoch" || kind == "time") ? 0 : n;
        out.stem = stem;
        return true;
    }
    return false;
}

}  // namespace

bool parse_default_name(const std::string &name, DefaultName &out) {
    static const std::string pt = ".pt";
    if (name.size() <= pt.size() || name.compare(name.size() - pt.size(), pt.size(), pt) != 0) return false;
    std::string stem = name.substr(0, name.size() - pt.size());
    DefaultName d;
    // <stem>.rank<R>-of-<N>
    size_t r = stem.rfind(".rank");
    if (r != std::string::npos) {
        int64_t rank = 0, world = 0;
        size_t rd = digits(stem, r + 5, 9, &rank);
        size_t of = r + 5 + rd;
        if (rd > 0 && stem.compare(of, 4, "-of-") == 0) {
            size_t wd = digits(stem, of + 4, 9, &world);
            if (wd > 0 && of + 4 + wd == stem.size() && rank < world &&
                shard_name(stem.substr(0, r), static_cast<int>(rank), static_cast<int>(world)) == name &&
                parse_stem(stem.substr(0, r), d)) {
                d.rank = static_cast<int>(rank);
                d.world = static_cast<int>(world);
                out = d;
                return true;
            }
        }
    }
    if (!parse_stem(stem, d)) return false;
    out = d;
    return true;
}

bool parse_dir_name(const std::string &name, DefaultName &out) {
    DefaultName d;
    if (parse_stem(name, d)) {
        out = d;
        return true;
    }
    static const std::string hf = "checkpoint-";
    int64_t step = 0;
    if (name.compare(0, hf.size(), hf) != 0) return false;
    size_t n = digits(name, hf.size(), 18, &step);
    if (n == 0 || hf.size() + n != name.size()) return false;
    d.kind = "step";
    d.step = step;
    d.stem = name;
    out = d;
    return true;
}

bool parse_dcp_file_name(const std::string &name, int64_t &rank) {
    static const std::string ext = ".distcp";
    if (name.size() <= 2 + ext.size() || name.compare(0, 2, "__") != 0 ||
        name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
        return false;
    int64_t r = 0, n = 0;
    size_t rd = digits(name, 2, 9, &r);
    if (rd == 0 || 2 + rd >= name.size() || name[2 + rd] != '_') return false;
    size_t nd = digits(name, 3 + rd, 18, &n);
    if (nd == 0 || 3 + rd + nd + ext.size() != name.size()) return false;
    rank = r;
    return true;
}

std::string with_suffix(const std::string &name, int n) {
    std::string tail = "-" + std::to_string(n);
    auto dot = name.rfind('.');
    if (dot == std::string::npos || dot == 0) return name + tail;
    return name.substr(0, dot) + tail + name.substr(dot);
}

std::string random_temp_name() {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_os("getrandom failed for", "temp name", errno);
        }
        got += static_cast<size_t>(n);
    }
    static const char digits[] = "0123456789abcdef";
    std::string s = kTempPrefix;
    for (unsigned char c : b) {
        s += digits[c >> 4];
        s += digits[c & 15];
    }
    return s;
}

bool is_temp_name(const std::string &name) { return name.compare(0, 12, kTempPrefix) == 0; }

bool is_hex32(const std::string &s, size_t from) {
    if (s.size() != from + 32) return false;
    for (size_t i = from; i < s.size(); i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

bool is_exact_temp_name(const std::string &name) { return is_temp_name(name) && is_hex32(name, 12); }

bool is_temp_dir_name(const std::string &name) {
    const std::string suffix = kTempDirSuffix;
    return name.size() == 12 + 32 + suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
           is_exact_temp_name(name.substr(0, name.size() - suffix.size()));
}

}  // namespace ckptdb

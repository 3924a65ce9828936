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

std::string kind_problem(const std::string &kind) {
    if (kind.empty()) return "is empty";
    if (kind.size() > 64) return "is longer than 64 characters";
    for (unsigned char c : kind) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.';
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

std::string default_name(const std::string &kind, int64_t epoch, int64_t step, int64_t unix_seconds) {
    char buf[128];
    if (kind == "epoch")
        std::snprintf(buf, sizeof buf, "epoch_%03lld.pt", static_cast<long long>(epoch));
    else if (kind == "time")
        std::snprintf(buf, sizeof buf, "time_%lld.pt", static_cast<long long>(unix_seconds));
    else
        std::snprintf(buf, sizeof buf, "%s_%06lld.pt", kind.c_str(), static_cast<long long>(step));
    return buf;
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

}  // namespace ckptdb

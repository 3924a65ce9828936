// A recorded trace of file-system operations and the crash states built from
// it (after ALICE and CrashMonkey). Only what changes the disk is recorded,
// with the sync barriers that make it durable; reads are not.
//
// The model of durability (what a power loss may keep or lose):
//   - a write or truncate of a file is durable once that file was fsynced
//     (the library's fsync, SQLite's xSync) after it;
//   - a create, rename, unlink, symlink or mkdir is durable once its
//     directory was fsynced after it (SQLite syncs the directory on the first
//     xSync of a WAL or journal it created, and on xDelete when asked to);
//   - anything else may be lost, each operation independently; the last
//     write may be torn (a 4 KiB-aligned prefix, zeros, or garbage).
// Operations name files by inode (the recorder numbers them) so a write
// through a descriptor follows the file across renames.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace trace {

enum class Op : uint8_t {
    base_file = 1,  // path, ino, data: present before the trace began (durable)
    base_dir,       // path
    base_link,      // path, data = target
    create,         // path, ino
    write,          // ino, off, data
    truncate,       // ino, off = new size
    fsync,          // ino: barrier for the file's data
    dirsync,        // path = directory: barrier for its entries
    rename,         // path -> path2
    unlink,         // path
    mkdir,          // path
    symlink,        // path, data = target
    ack,            // ino = checkpoint id, off = commit_seq: a commit returned OK here
};

struct Event {
    Op op{};
    int64_t ino = 0;
    int64_t off = 0;
    std::string path, path2, data;
};

inline const char *op_name(Op op) {
    switch (op) {
        case Op::base_file:
            return "base_file";
        case Op::base_dir:
            return "base_dir";
        case Op::base_link:
            return "base_link";
        case Op::create:
            return "create";
        case Op::write:
            return "write";
        case Op::truncate:
            return "truncate";
        case Op::fsync:
            return "fsync";
        case Op::dirsync:
            return "dirsync";
        case Op::rename:
            return "rename";
        case Op::unlink:
            return "unlink";
        case Op::mkdir:
            return "mkdir";
        case Op::symlink:
            return "symlink";
        case Op::ack:
            return "ack";
    }
    return "?";
}

inline std::string parent_of(const std::string &p) {
    size_t k = p.rfind('/');
    return k == std::string::npos ? std::string() : p.substr(0, k);
}

inline bool is_namespace_op(Op op) {
    return op == Op::create || op == Op::rename || op == Op::unlink || op == Op::mkdir || op == Op::symlink;
}
inline bool is_data_op(Op op) { return op == Op::write || op == Op::truncate; }
inline bool is_base(Op op) { return op == Op::base_file || op == Op::base_dir || op == Op::base_link; }

// ---- serialisation -------------------------------------------------------

inline void put_i64(std::string &out, int64_t v) { out.append(reinterpret_cast<const char *>(&v), sizeof v); }
inline void put_str(std::string &out, const std::string &s) {
    put_i64(out, static_cast<int64_t>(s.size()));
    out += s;
}

inline std::string encode(const Event &e) {
    std::string out;
    out += static_cast<char>(e.op);
    put_i64(out, e.ino);
    put_i64(out, e.off);
    put_str(out, e.path);
    put_str(out, e.path2);
    put_str(out, e.data);
    return out;
}

inline std::vector<Event> load(const std::string &file) {
    FILE *f = std::fopen(file.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open trace " + file);
    std::string all;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, n);
    std::fclose(f);
    std::vector<Event> out;
    size_t pos = 0;
    auto i64 = [&]() {
        if (pos + 8 > all.size()) throw std::runtime_error("truncated trace " + file);
        int64_t v;
        std::memcpy(&v, all.data() + pos, 8);
        pos += 8;
        return v;
    };
    auto str = [&]() {
        int64_t len = i64();
        if (len < 0 || pos + static_cast<size_t>(len) > all.size()) throw std::runtime_error("bad trace " + file);
        std::string s = all.substr(pos, static_cast<size_t>(len));
        pos += static_cast<size_t>(len);
        return s;
    };
    while (pos < all.size()) {
        Event e;
        e.op = static_cast<Op>(all[pos++]);
        e.ino = i64();
        e.off = i64();
        e.path = str();
        e.path2 = str();
        e.data = str();
        out.push_back(std::move(e));
    }
    return out;
}

// ---- crash states ----------------------------------------------------------

// One state of the disk after a power loss: the first `prefix` events were
// issued; those in `dropped` did not reach the disk; when torn >= 0 the
// write at that index reached it torn (tear: 0 = a 4 KiB-aligned prefix,
// 1 = zeros, 2 = garbage).
struct CrashState {
    size_t prefix = 0;
    std::set<size_t> dropped;
    long torn = -1;
    int tear = 0;
    std::string what;  // how it was made, for messages
};

// Which of the first `prefix` events are durable (a later barrier covers them).
inline std::vector<bool> durable(const std::vector<Event> &ev, size_t prefix) {
    std::vector<bool> d(prefix, false);
    std::set<int64_t> synced_ino;
    std::set<std::string> synced_dir;
    for (size_t i = prefix; i-- > 0;) {
        const Event &e = ev[i];
        if (e.op == Op::fsync)
            synced_ino.insert(e.ino);
        else if (e.op == Op::dirsync)
            synced_dir.insert(e.path);
        if (is_base(e.op) || e.op == Op::ack || e.op == Op::fsync || e.op == Op::dirsync)
            d[i] = true;
        else if (is_data_op(e.op))
            d[i] = synced_ino.count(e.ino) > 0;
        else if (e.op == Op::rename)
            d[i] = synced_dir.count(parent_of(e.path)) && synced_dir.count(parent_of(e.path2));
        else if (is_namespace_op(e.op))
            d[i] = synced_dir.count(parent_of(e.path)) > 0;
    }
    return d;
}

// Every crash state the model allows that this harness builds: each prefix
// as issued; each prefix with everything not yet durable lost; just before
// each barrier, each operation it would have made durable lost alone; each
// write torn three ways.
// With pairs, also each two of those operations lost together (a larger
// space, for nightly-sized runs).
inline std::vector<CrashState> crash_states(const std::vector<Event> &ev, bool pairs = false) {
    std::vector<CrashState> out;
    size_t first = 0;
    while (first < ev.size() && is_base(ev[first].op)) first++;
    for (size_t p = first; p <= ev.size(); p++) {
        out.push_back({p, {}, -1, 0, "prefix " + std::to_string(p)});
        std::vector<bool> d = durable(ev, p);
        CrashState lost{p, {}, -1, 0, "prefix " + std::to_string(p) + ", everything unsynced lost"};
        for (size_t i = first; i < p; i++)
            if (!d[i]) lost.dropped.insert(i);
        if (!lost.dropped.empty()) out.push_back(lost);
        bool before_barrier = p < ev.size() && (ev[p].op == Op::fsync || ev[p].op == Op::dirsync);
        if (before_barrier && lost.dropped.size() > 1) {
            for (size_t i : lost.dropped)
                out.push_back({p,
                               {i},
                               -1,
                               0,
                               "prefix " + std::to_string(p) + " (before a barrier), " + op_name(ev[i].op) + " #" +
                                   std::to_string(i) + " lost"});
            if (pairs && lost.dropped.size() > 2)
                for (auto i = lost.dropped.begin(); i != lost.dropped.end(); ++i)
                    for (auto j = std::next(i); j != lost.dropped.end(); ++j)
                        out.push_back({p,
                                       {*i, *j},
                                       -1,
                                       0,
                                       "prefix " + std::to_string(p) + " (before a barrier), #" + std::to_string(*i) +
                                           " and #" + std::to_string(*j) + " lost"});
        }
        if (p > first && ev[p - 1].op == Op::write && !d[p - 1]) {
            for (int tear = 0; tear < 3; tear++)
                out.push_back({p,
                               {},
                               static_cast<long>(p - 1),
                               tear,
                               "prefix " + std::to_string(p) + ", last write torn (" +
                                   (tear == 0   ? "4 KiB prefix"
                                    : tear == 1 ? "zeros"
                                                : "garbage") +
                                   ")"});
        }
    }
    return out;
}

// What a state's directory holds: path -> "f" + contents, "d", "l" + target.
using Image = std::map<std::string, std::string>;

inline Image image_of(const std::vector<Event> &ev, const CrashState &s) {
    struct Node {
        char type;  // f, d, l
        int64_t ino;
        std::string target;
    };
    std::map<std::string, Node> ns;
    std::map<int64_t, std::string> data;
    auto parent_ok = [&](const std::string &p) {
        std::string par = parent_of(p);
        if (par.empty()) return true;
        auto it = ns.find(par);
        return it != ns.end() && it->second.type == 'd';
    };
    for (size_t i = 0; i < s.prefix; i++) {
        if (s.dropped.count(i)) continue;
        const Event &e = ev[i];
        switch (e.op) {
            case Op::base_file:
                ns[e.path] = {'f', e.ino, ""};
                data[e.ino] = e.data;
                break;
            case Op::base_dir:
            case Op::mkdir:
                if (parent_ok(e.path) && !ns.count(e.path)) ns[e.path] = {'d', 0, ""};
                break;
            case Op::base_link:
            case Op::symlink:
                if (parent_ok(e.path) && !ns.count(e.path)) ns[e.path] = {'l', 0, e.data};
                break;
            case Op::create:
                if (parent_ok(e.path) && !ns.count(e.path)) ns[e.path] = {'f', e.ino, ""};
                break;
            case Op::write: {
                std::string bytes = e.data;
                if (static_cast<long>(i) == s.torn) {
                    if (s.tear == 0)
                        bytes.resize(bytes.size() > 4096 ? (bytes.size() - 1) / 4096 * 4096 : 0);
                    else if (s.tear == 1)
                        bytes.assign(bytes.size(), '\0');
                    else
                        for (size_t k = 0; k < bytes.size(); k++) bytes[k] = static_cast<char>((k * 167 + 13) ^ 0x5a);
                }
                std::string &d = data[e.ino];
                size_t end = static_cast<size_t>(e.off) + bytes.size();
                if (d.size() < end) d.resize(end, '\0');
                d.replace(static_cast<size_t>(e.off), bytes.size(), bytes);
                break;
            }
            case Op::truncate:
                data[e.ino].resize(static_cast<size_t>(e.off), '\0');
                break;
            case Op::rename: {
                auto it = ns.find(e.path);
                if (it == ns.end() || !parent_ok(e.path2)) break;
                Node n = it->second;
                ns.erase(it);
                ns[e.path2] = n;
                // A directory's entries go with it.
                const std::string from = e.path + "/", to = e.path2 + "/";
                for (auto c = ns.lower_bound(from); c != ns.end() && c->first.compare(0, from.size(), from) == 0;) {
                    ns[to + c->first.substr(from.size())] = c->second;
                    c = ns.erase(c);
                }
                break;
            }
            case Op::unlink: {
                // A directory is removed only empty: its entries' removals
                // came before, so they reached the disk with it.
                ns.erase(e.path);
                const std::string under = e.path + "/";
                for (auto c = ns.lower_bound(under); c != ns.end() && c->first.compare(0, under.size(), under) == 0;)
                    c = ns.erase(c);
                break;
            }
            default:
                break;
        }
    }
    Image img;
    for (const auto &kv : ns) {
        if (kv.second.type == 'f')
            img[kv.first] = "f" + data[kv.second.ino];
        else if (kv.second.type == 'd')
            img[kv.first] = "d";
        else
            img[kv.first] = "l" + kv.second.target;
    }
    return img;
}

// Writes an image under root (an empty directory).
inline void materialise(const Image &img, const std::string &root) {
    for (const auto &kv : img) {  // map order: a directory comes before what it holds
        std::string p = root + "/" + kv.first;
        char t = kv.second[0];
        if (t == 'd') {
            if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) throw std::runtime_error("mkdir " + p);
        } else if (t == 'l') {
            if (::symlink(kv.second.c_str() + 1, p.c_str()) != 0) throw std::runtime_error("symlink " + p);
        } else {
            int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd < 0) throw std::runtime_error("create " + p + ": " + std::strerror(errno));
            const char *b = kv.second.data() + 1;
            size_t left = kv.second.size() - 1;
            while (left > 0) {
                ssize_t n = ::write(fd, b, left);
                if (n <= 0) {
                    ::close(fd);
                    throw std::runtime_error("write " + p);
                }
                b += n;
                left -= static_cast<size_t>(n);
            }
            ::close(fd);
        }
    }
}

}  // namespace trace

// A child process for the crash tests (always fork+exec'd, never a fork of
// the test runner). It links the engine statically so it can stop at a named
// point of the save protocol: it prints "PAUSED <point>" and waits there to
// be killed with SIGKILL.
//
//   crash_helper save DIR BYTES [--pause-at POINT] [--kind K] [--epoch E]
//                [--step S] [--name N] [--seed X] [--chunk C]
//       prints "COMMITTED <id> <name> <checksum>" on success
//   crash_helper open DIR [--drop-privs] [--readonly]
//       prints "OK" or "ERR <code> <message>"; exit status = code
//   crash_helper latest DIR [--drop-privs] [--trust-shared]
//       a resume: opens read-only, the newest complete checkpoint fully
//       verified; prints "LATEST <id> <name>", "NONE" or "ERR <code> <message>"
//   crash_helper recover DIR --pause-at POINT
//       opens the catalog (running recovery), pausing at POINT
//   crash_helper prune DIR [--corrupt] [--pause-at POINT | --stop-at POINT]
//       runs the default retention policy
//   crash_helper loop DIR COUNT [--seed X]
//       COUNT small saves of mixed kinds under the default retention policy;
//       prints "DONE <count>"
//   crash_helper sync SRC DST [--delete] [--pause-at POINT]
//       prints "SYNCED <copied> <bytes>"
//   crash_helper inplace DIR NAME [--pause-at POINT] [--metadata JSON] FILE:BYTES:SEED...
//       a directory save in place, its files written with plain write(2) as
//       any program writes them (point "inplace_file_written" after each);
//       prints "BEGUN <id> <name>", then "COMMITTED <id>"
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "ckptdb.h"
#include "dirsave.hpp"
#include "error.hpp"
#include "hooks.hpp"
#include "sync.hpp"
#include "writer.hpp"

static std::string g_pause_at;
static bool g_stop = false;  // --stop-at: stop (SIGSTOP) there, go on when continued

static void pause_hook(const char *point) {
    if (g_pause_at != point) return;
    std::printf("%s %s\n", g_stop ? "STOPPED" : "PAUSED", point);
    std::fflush(stdout);
    if (g_stop) {
        g_pause_at.clear();  // once
        ::raise(SIGSTOP);
        return;
    }
    for (;;) ::pause();
}

static std::optional<std::string> flag(std::vector<std::string> &args, const std::string &name) {
    for (size_t i = 0; i + 1 < args.size(); i++) {
        if (args[i] == name) {
            std::string v = args[i + 1];
            args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
            return v;
        }
    }
    return std::nullopt;
}

static bool bool_flag(std::vector<std::string> &args, const std::string &name) {
    for (size_t i = 0; i < args.size(); i++) {
        if (args[i] == name) {
            args.erase(args.begin() + static_cast<long>(i));
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() < 2) {
        std::fprintf(stderr, "usage: crash_helper save|open|latest|recover DIR ...\n");
        return 2;
    }
    std::string mode = args[0], dir = args[1];
    args.erase(args.begin(), args.begin() + 2);
    if (auto p = flag(args, "--pause-at")) {
        g_pause_at = *p;
        ckptdb::g_test_hook = pause_hook;
    }
    if (auto p = flag(args, "--stop-at")) {
        g_pause_at = *p;
        g_stop = true;
        ckptdb::g_test_hook = pause_hook;
    }
    try {
        if (mode == "open" || mode == "recover" || mode == "latest") {
            if (bool_flag(args, "--drop-privs")) {
                ::setgroups(0, nullptr);
                if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
                    std::perror("cannot drop privileges");
                    return 2;
                }
            }
            if (mode == "latest") {
                ckptdb::OpenOptions o;
                o.readonly = true;
                o.create = false;
                o.trust_shared = bool_flag(args, "--trust-shared");
                auto cat = ckptdb::Catalog::open(dir, o);
                auto e = cat->latest(std::nullopt, ckptdb::Catalog::Verify::full);
                if (e)
                    std::printf("LATEST %lld %s\n", static_cast<long long>(e->id), e->name.c_str());
                else
                    std::printf("NONE\n");
                return 0;
            }
            ckptdb::OpenOptions o;
            o.readonly = bool_flag(args, "--readonly");
            auto cat = ckptdb::Catalog::open(dir, o);
            std::printf("OK\n");
            return 0;
        }
        if (mode == "loop") {
            if (args.empty()) return 2;
            int count = std::atoi(args[0].c_str());
            args.erase(args.begin());
            unsigned seed = static_cast<unsigned>(std::atoi(flag(args, "--seed").value_or("1").c_str()));
            auto cat = ckptdb::Catalog::open(dir, ckptdb::OpenOptions());
            cat->set_retention(ckptdb::Retention::defaults());
            const char *kinds[] = {"epoch", "time", "manual", "step"};
            for (int i = 0; i < count; i++) {
                seed = seed * 1103515245u + 12345u;
                std::string kind = kinds[(seed >> 16) % 4];
                std::string meta = "{\"pid\": " + std::to_string(::getpid()) + ", \"i\": " + std::to_string(i) + "}";
                auto s = ckptdb::Save::begin(cat, kind, i, i, std::nullopt, meta);
                std::string bytes(1000 + (seed >> 8) % 3000, static_cast<char>('a' + i % 26));
                s->write(bytes.data(), bytes.size());
                s->commit();
            }
            std::printf("DONE %d\n", count);
            return 0;
        }
        if (mode == "sync") {
            if (args.empty()) return 2;
            ckptdb::SyncOptions so;
            std::string dst = args[0];
            args.erase(args.begin());
            so.delete_pruned = bool_flag(args, "--delete");
            ckptdb::SyncResult r = ckptdb::sync_dirs(dir, dst, so);
            std::printf("SYNCED %lld %lld\n", static_cast<long long>(r.copied), static_cast<long long>(r.bytes));
            return 0;
        }
        if (mode == "prune") {
            auto cat = ckptdb::Catalog::open(dir, ckptdb::OpenOptions());
            ckptdb::Retention r = ckptdb::Retention::defaults();
            r.prune_corrupt = bool_flag(args, "--corrupt");
            auto victims = cat->prune(r, false);
            std::printf("PRUNED %zu\n", victims.size());
            return 0;
        }
        if (mode == "inplace") {
            if (args.empty()) return 2;
            std::string name = args[0];
            args.erase(args.begin());
            auto meta = flag(args, "--metadata");
            auto cat = ckptdb::Catalog::open(dir, ckptdb::OpenOptions());
            auto save = ckptdb::DirSave::begin_in_place(cat, "step", 1, 100, name, std::nullopt);
            std::printf("BEGUN %lld %s\n", static_cast<long long>(save->id()), save->name().c_str());
            std::fflush(stdout);
            for (const std::string &a : args) {
                size_t p1 = a.find(':'), p2 = a.find(':', p1 + 1);
                if (p2 == std::string::npos) return 2;
                size_t n = std::strtoull(a.substr(p1 + 1, p2 - p1 - 1).c_str(), nullptr, 10);
                unsigned seed = static_cast<unsigned>(std::atoi(a.substr(p2 + 1).c_str()));
                std::string bytes(n, '\0');
                for (size_t i = 0; i < n; i++) bytes[i] = static_cast<char>((i * 31 + seed) & 0xff);
                std::string path = dir + "/" + name + "/" + a.substr(0, p1);
                int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0 || ::write(fd, bytes.data(), n) != static_cast<ssize_t>(n) || ::close(fd) != 0) {
                    std::perror(path.c_str());
                    return 2;
                }
                ckptdb::hook("inplace_file_written");
            }
            ckptdb::Entry e = save->commit_in_place(meta);
            std::printf("COMMITTED %lld\n", static_cast<long long>(e.id));
            return 0;
        }
        if (mode == "save") {
            if (args.empty()) return 2;
            size_t bytes = std::strtoull(args[0].c_str(), nullptr, 10);
            args.erase(args.begin());
            std::string kind = flag(args, "--kind").value_or("epoch");
            long long epoch = std::atoll(flag(args, "--epoch").value_or("1").c_str());
            long long step = std::atoll(flag(args, "--step").value_or("0").c_str());
            auto name = flag(args, "--name");
            unsigned seed = static_cast<unsigned>(std::atoi(flag(args, "--seed").value_or("7").c_str()));
            size_t chunk = std::strtoull(flag(args, "--chunk").value_or("65536").c_str(), nullptr, 10);
            auto cat = ckptdb::Catalog::open(dir, ckptdb::OpenOptions());
            auto s = ckptdb::Save::begin(cat, kind, epoch, step, name, std::nullopt);
            std::vector<unsigned char> buf(chunk);
            for (size_t off = 0; off < bytes; off += chunk) {
                size_t n = std::min(chunk, bytes - off);
                for (size_t i = 0; i < n; i++) buf[i] = static_cast<unsigned char>(((off + i) * 31 + seed) & 0xff);
                s->write(buf.data(), n);
            }
            ckptdb::Entry e = s->commit();
            std::printf("COMMITTED %lld %s %s\n", static_cast<long long>(e.id), e.name.c_str(), e.checksum.c_str());
            return 0;
        }
    } catch (const ckptdb::Error &e) {
        std::printf("ERR %d %s\n", e.code(), e.what());
        return e.code();
    }
    std::fprintf(stderr, "crash_helper: unknown mode %s\n", mode.c_str());
    return 2;
}

// A child process for the sharded-save tests (always fork+exec'd). Like
// crash_helper it links the engine statically so it can stop at a named
// point and wait there to be killed.
//
//   shard_helper shard DIR NAME BYTES [--seed X] [--pause-at POINT] [--hold]
//       writes one shard; prints "SHARD <name> <temp_name> <size> <checksum>";
//       with --hold it then waits (holding the shard) until killed
//   shard_helper commit DIR KIND EPOCH STEP [--pause-at POINT] NAME:TEMP:SIZE:SUM...
//       rank 0's commit of the given files; prints "COMMITTED <id>"
//   shard_helper dirfile DIR TEMP_DIR NAME RANK BYTES [--seed X] [--pause-at POINT] [--hold]
//       writes one file of a directory save; prints "FILE <name> <rank> <size> <checksum>"
//   shard_helper dirsave DIR KIND EPOCH STEP [--pause-at POINT] NAME:RANK:BYTES:SEED...
//       a directory save's coordinator that writes the files itself; prints
//       "BEGUN <id> <name> <temp dir>", then "COMMITTED <id>"
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "dirsave.hpp"
#include "error.hpp"
#include "hooks.hpp"
#include "shard.hpp"

static std::string g_pause_at;

static void pause_hook(const char *point) {
    if (g_pause_at != point) return;
    std::printf("PAUSED %s\n", point);
    std::fflush(stdout);
    for (;;) ::pause();
}

// The bytes of a test shard: a pattern that depends on the seed.
static std::string pattern(size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 131 + seed * 7 + i / 4096) & 0xff);
    return s;
}

int main(int argc, char **argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    bool hold = false;
    unsigned seed = 1;
    for (size_t i = 0; i < args.size();) {
        if (args[i] == "--pause-at" && i + 1 < args.size()) {
            g_pause_at = args[i + 1];
            ckptdb::g_test_hook = pause_hook;
            args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
        } else if (args[i] == "--seed" && i + 1 < args.size()) {
            seed = static_cast<unsigned>(std::atoi(args[i + 1].c_str()));
            args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
        } else if (args[i] == "--hold") {
            hold = true;
            args.erase(args.begin() + static_cast<long>(i));
        } else {
            i++;
        }
    }
    try {
        if (args.size() == 4 && args[0] == "shard") {
            auto sh = ckptdb::Shard::begin(args[1], args[2]);
            std::string bytes = pattern(static_cast<size_t>(std::atoll(args[3].c_str())), seed);
            for (size_t off = 0; off < bytes.size(); off += 65536) {
                size_t n = bytes.size() - off < 65536 ? bytes.size() - off : 65536;
                sh->write(bytes.data() + off, n);
                if (off == 0) ckptdb::hook("shard_wrote");
            }
            const ckptdb::ShardFile &f = sh->finish();
            std::printf("SHARD %s %s %lld %s\n", f.name.c_str(), f.temp_name.c_str(), static_cast<long long>(f.size),
                        f.checksum.c_str());
            std::fflush(stdout);
            if (hold)
                for (;;) ::pause();
            return 0;
        }
        if (args.size() == 6 && args[0] == "dirfile") {
            auto sh = ckptdb::Shard::begin_in(args[1], args[2], args[3], std::atoll(args[4].c_str()));
            std::string bytes = pattern(static_cast<size_t>(std::atoll(args[5].c_str())), seed);
            for (size_t off = 0; off < bytes.size(); off += 65536) {
                size_t n = bytes.size() - off < 65536 ? bytes.size() - off : 65536;
                sh->write(bytes.data() + off, n);
                if (off == 0) ckptdb::hook("shard_wrote");
            }
            const ckptdb::ShardFile &f = sh->finish();
            std::printf("FILE %s %lld %lld %s\n", f.name.c_str(), static_cast<long long>(f.rank),
                        static_cast<long long>(f.size), f.checksum.c_str());
            std::fflush(stdout);
            if (hold)
                for (;;) ::pause();
            return 0;
        }
        if (args.size() >= 6 && args[0] == "dirsave") {
            auto cat = ckptdb::Catalog::open(args[1], ckptdb::OpenOptions());
            auto save = ckptdb::DirSave::begin(cat, args[2], std::atoll(args[3].c_str()), std::atoll(args[4].c_str()),
                                               std::nullopt, std::nullopt);
            std::printf("BEGUN %lld %s %s\n", static_cast<long long>(save->id()), save->name().c_str(),
                        save->temp_name().c_str());
            std::fflush(stdout);
            std::vector<ckptdb::DirFileInfo> files;
            for (size_t i = 5; i < args.size(); i++) {
                const std::string &a = args[i];
                size_t p1 = a.find(':'), p2 = a.find(':', p1 + 1), p3 = a.find(':', p2 + 1);
                if (p3 == std::string::npos) return 2;
                std::string name = a.substr(0, p1);
                int64_t rank = std::atoll(a.substr(p1 + 1, p2 - p1 - 1).c_str());
                auto sh = ckptdb::Shard::begin_in(args[1], save->temp_name(), name, rank);
                std::string bytes = pattern(static_cast<size_t>(std::atoll(a.substr(p2 + 1, p3 - p2 - 1).c_str())),
                                            static_cast<unsigned>(std::atoi(a.substr(p3 + 1).c_str())));
                sh->write(bytes.data(), bytes.size());
                const ckptdb::ShardFile &f = sh->finish();
                files.push_back({f.name, rank, f.size, f.checksum});
            }
            ckptdb::Entry e = save->commit(files);
            std::printf("COMMITTED %lld\n", static_cast<long long>(e.id));
            return 0;
        }
        if (args.size() >= 6 && args[0] == "commit") {
            std::vector<ckptdb::ShardFile> files;
            for (size_t i = 5; i < args.size(); i++) {
                const std::string &a = args[i];
                size_t p1 = a.find(':'), p2 = a.find(':', p1 + 1), p3 = a.find(':', p2 + 1);
                if (p3 == std::string::npos) return 2;
                files.push_back({a.substr(0, p1), a.substr(p1 + 1, p2 - p1 - 1),
                                 std::atoll(a.substr(p2 + 1, p3 - p2 - 1).c_str()), a.substr(p3 + 1)});
            }
            auto cat = ckptdb::Catalog::open(args[1], ckptdb::OpenOptions());
            ckptdb::Entry e = ckptdb::commit_shards(cat, args[2], std::atoll(args[3].c_str()),
                                                    std::atoll(args[4].c_str()), std::nullopt, files);
            std::printf("COMMITTED %lld\n", static_cast<long long>(e.id));
            return 0;
        }
        std::fprintf(stderr, "usage: shard_helper shard DIR NAME BYTES | commit DIR KIND EPOCH STEP FILES...\n");
        return 2;
    } catch (const ckptdb::Error &e) {
        std::printf("ERR %d %s\n", e.code(), e.what());
        return e.code();
    }
}

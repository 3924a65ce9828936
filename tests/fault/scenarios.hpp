// The scenarios that fault injection, simulated power loss and real kills
// run, through the engine's C++ API (linked statically, so that its I/O goes
// through the test seam). Each has a setup, run with the seam quiet, and a
// body, run with it armed; the body reports every commit that returned OK.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "ckptdb.h"
#include "dirsave.hpp"
#include "error.hpp"
#include "shard.hpp"
#include "sync.hpp"
#include "writer.hpp"

namespace scen {

using Ack = std::function<void(int64_t id, int64_t seq)>;

// What the body did: the first error (code 0: none) and how many of its
// calls failed.
struct Result {
    int code = 0;
    std::string message;
    int failed_calls = 0;
    int saves_ok = 0;
    bool last_save_ok = false;
};

inline std::string bytes_for(int i, size_t n) {
    std::string s(n, '\0');
    for (size_t k = 0; k < n; k++) s[k] = static_cast<char>((k * 131 + static_cast<size_t>(i) * 7 + 1) & 0xff);
    return s;
}

// One save of kind epoch, written in two pieces; returns its entry.
inline ckptdb::Entry save_one(const std::shared_ptr<ckptdb::Catalog> &cat, int i, size_t n = 6000) {
    auto s = ckptdb::Save::begin(cat, "epoch", i, i * 100, std::nullopt, "{\"loss\": " + std::to_string(10 - i) + "}");
    std::string b = bytes_for(i, n);
    s->write(b.data(), n / 3);
    s->write(b.data() + n / 3, n - n / 3);
    return s->commit();
}

// One directory save of kind epoch: `files` files (2 or 3) written in this
// process into the save's temp directory by ranks 0 and 1, as
// torch.distributed.checkpoint lays them out, then committed.
inline ckptdb::Entry save_dir(const std::shared_ptr<ckptdb::Catalog> &cat, int i, int files, size_t n = 3000) {
    auto s = ckptdb::DirSave::begin(cat, "epoch", i, i * 100, std::nullopt, std::nullopt);
    std::vector<ckptdb::DirFileInfo> reported;
    for (int f = 0; f < files; f++) {
        const int64_t rank = f == 1 ? 1 : 0;
        const std::string name = f == 2 ? ".metadata" : "__" + std::to_string(rank) + "_0.distcp";
        auto w = ckptdb::Shard::begin_in(cat->dir().path, s->temp_name(), name, rank);
        std::string b = bytes_for(i * 10 + f, n / static_cast<size_t>(f + 1));
        w->write(b.data(), b.size());
        const ckptdb::ShardFile &done = w->finish();
        reported.push_back({done.name, rank, done.size, done.checksum});
    }
    return s->commit(reported);
}

// One directory save in place of kind epoch, as the Hugging Face Trainer
// writes `checkpoint-N/`: begun in place, two files written into the
// directory by the caller (through the traced I/O layer, without an fsync of
// its own), then committed with the metrics learnt after they were written.
inline ckptdb::Entry save_in_place(const std::shared_ptr<ckptdb::Catalog> &cat, int i, size_t n = 3000) {
    const std::string name = "checkpoint-" + std::to_string(i * 100);
    auto s = ckptdb::DirSave::begin_in_place(cat, "epoch", i, i * 100, name, std::nullopt);
    int err = 0;
    ckptdb::Dir sub = ckptdb::open_subdir(cat->dir(), name, err);
    if (!sub.fd) ckptdb::fail_os("cannot open", cat->dir().join(name), err);
    for (int f = 0; f < 2; f++) {
        const std::string file = f == 0 ? "model.safetensors" : "trainer_state.json";
        ckptdb::UniqueFd fd = ckptdb::create_exclusive(sub, file);
        std::string b = bytes_for(i * 10 + f, n / static_cast<size_t>(f + 1));
        ckptdb::write_all(fd.get(), b.data(), b.size(), sub.join(file));
    }
    return s->commit_in_place("{\"eval_loss\": " + std::to_string(10 - i) + "}");
}

// One sharded save of kind epoch: a file per rank (each written by a Shard,
// held until the commit), committed by commit_shards.
inline ckptdb::Entry save_shards(const std::shared_ptr<ckptdb::Catalog> &cat, int i, int ranks = 2, size_t n = 3000) {
    std::vector<std::unique_ptr<ckptdb::Shard>> shards;
    std::vector<ckptdb::ShardFile> files;
    for (int r = 0; r < ranks; r++) {
        char name[64];
        std::snprintf(name, sizeof name, "epoch_%03d.rank%d.pt", i, r);
        shards.push_back(ckptdb::Shard::begin(cat->dir().path, name));
        std::string b = bytes_for(i * 10 + r, n);
        shards.back()->write(b.data(), b.size());
        files.push_back(shards.back()->finish());
    }
    return ckptdb::commit_shards(cat, "epoch", i, i * 100, std::nullopt, files);
}

inline ckptdb::Retention keep_epochs(int k) {
    ckptdb::Retention r = ckptdb::Retention::defaults();
    r.keep_last["epoch"] = k;
    return r;
}

// Saves per scenario: 3, or 9 in a nightly-sized run (CKPTDB_CRASH_ITERATIONS
// above 1), whose longer traces give more crash states and kill points.
inline int saves_per_run() {
    const char *e = std::getenv("CKPTDB_CRASH_ITERATIONS");
    return e && std::atol(e) > 1 ? 9 : 3;
}

inline std::string dir_a(const std::string &root) { return root + "/a"; }
inline std::string dir_b(const std::string &root) { return root + "/b"; }

struct Scenario {
    std::string name;
    std::function<void(const std::string &root)> setup;                   // seam quiet
    std::function<Result(const std::string &root, const Ack &ack)> body;  // seam armed
};

inline Result run_guarded(const std::function<void(Result &)> &fn) {
    Result r;
    try {
        fn(r);
    } catch (const ckptdb::Error &e) {
        r.code = e.code();
        r.message = e.what();
        r.failed_calls++;
    }
    return r;
}

inline std::vector<Scenario> all() {
    std::vector<Scenario> v;

    // Saves with rotation (keep the last 2 epochs): the directory is created
    // by the first open; the body stops at the first failing call.
    v.push_back({"saves", [](const std::string &) {},
                 [](const std::string &root, const Ack &ack) {
                     return run_guarded([&](Result &r) {
                         auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         cat->set_retention(keep_epochs(2));
                         for (int i = 1; i <= saves_per_run(); i++) {
                             ckptdb::Entry e = save_one(cat, i);
                             ack(e.id, e.commit_seq);
                             r.saves_ok++;
                         }
                         r.last_save_ok = true;
                     });
                 }});

    // A save that fails, then good ones on the same handle: every save is
    // tried whatever happened to the one before.
    v.push_back({"fail-then-good",
                 [](const std::string &root) {
                     auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                     save_one(cat, 1);
                 },
                 [](const std::string &root, const Ack &ack) {
                     Result r;
                     std::shared_ptr<ckptdb::Catalog> cat;
                     try {
                         cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         cat->set_retention(keep_epochs(2));
                     } catch (const ckptdb::Error &e) {
                         r.code = e.code();
                         r.message = e.what();
                         r.failed_calls++;
                         return r;
                     }
                     for (int i = 2; i <= saves_per_run() + 1; i++) {
                         try {
                             ckptdb::Entry e = save_one(cat, i);
                             ack(e.id, e.commit_seq);
                             r.saves_ok++;
                             r.last_save_ok = true;
                         } catch (const ckptdb::Error &e) {
                             if (!r.code) {
                                 r.code = e.code();
                                 r.message = e.what();
                             } else {
                                 r.message += std::string("; then save ") + std::to_string(i) + ": " + e.what();
                             }
                             r.failed_calls++;
                             r.last_save_ok = false;
                         }
                     }
                     return r;
                 }});

    // A prune by hand of five complete checkpoints down to one.
    v.push_back({"prune",
                 [](const std::string &root) {
                     auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                     for (int i = 1; i <= 5; i++) save_one(cat, i, 3000);
                 },
                 [](const std::string &root, const Ack &) {
                     return run_guarded([&](Result &) {
                         auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         cat->prune(keep_epochs(1), false);
                     });
                 }});

    // Recovery of what killed writers left (prepared by the test with real
    // kills of the crash helper): the body is the open that recovers.
    v.push_back({"recovery", [](const std::string &) {},
                 [](const std::string &root, const Ack &) {
                     return run_guarded([&](Result &) {
                         auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         cat->latest(std::nullopt, ckptdb::Catalog::Verify::full);
                     });
                 }});

    // ckptdb sync of three checkpoints to a new directory.
    v.push_back({"sync",
                 [](const std::string &root) {
                     auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                     for (int i = 1; i <= 3; i++) save_one(cat, i, 5000);
                 },
                 [](const std::string &root, const Ack &) {
                     return run_guarded(
                         [&](Result &) { ckptdb::sync_dirs(dir_a(root), dir_b(root), ckptdb::SyncOptions()); });
                 }});
    // Rebuild of a catalog lost as an empty file (the old file is kept
    // aside), and adopt of a directory written without ckptdb (plain files,
    // a regular last.pt): each builds the whole catalog and installs it by
    // one rename.
    v.push_back({"rebuild",
                 [](const std::string &root) {
                     {
                         auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         for (int i = 1; i <= 4; i++) save_one(cat, i, 3000);
                     }
                     for (const char *suffix : {"-wal", "-shm"})
                         std::remove((dir_a(root) + "/ckptdb.sqlite" + suffix).c_str());
                     std::FILE *f = std::fopen((dir_a(root) + "/ckptdb.sqlite").c_str(), "w");
                     if (f) std::fclose(f);
                 },
                 [](const std::string &root, const Ack &) {
                     return run_guarded(
                         [&](Result &) { ckptdb::Catalog::rebuild(dir_a(root), ckptdb::OpenOptions(), nullptr); });
                 }});
    v.push_back({"adopt",
                 [](const std::string &root) {
                     ::mkdir(dir_a(root).c_str(), 0755);
                     for (int i = 1; i <= 4; i++) {
                         std::string name = i == 4 ? "last.pt" : "epoch_00" + std::to_string(i) + ".pt";
                         std::string b = bytes_for(i, 3000);
                         std::FILE *f = std::fopen((dir_a(root) + "/" + name).c_str(), "w");
                         if (f) {
                             std::fwrite(b.data(), 1, b.size(), f);
                             std::fclose(f);
                         }
                     }
                 },
                 [](const std::string &root, const Ack &) {
                     return run_guarded([&](Result &) {
                         ckptdb::Catalog::rebuild(dir_a(root), ckptdb::OpenOptions(), nullptr,
                                                  ckptdb::Catalog::Adoption::adopt);
                     });
                 }});

    // Directory saves with rotation (keep the last epoch). Setup makes two:
    // one of three files with a file of the user's put inside it, then one
    // of two. The body's first save prunes both: the second whole, the
    // first's own files only (the user's file stays, with the directory);
    // each later save (a nightly-sized run) prunes the one before.
    v.push_back({"dirs",
                 [](const std::string &root) {
                     auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                     ckptdb::Entry e = save_dir(cat, 1, 3);
                     std::FILE *f = std::fopen((dir_a(root) + "/" + e.name + "/notes.txt").c_str(), "w");
                     if (f) {
                         std::fputs("the user's own notes", f);
                         std::fclose(f);
                     }
                     save_dir(cat, 2, 2);
                 },
                 [](const std::string &root, const Ack &ack) {
                     return run_guarded([&](Result &r) {
                         auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         cat->set_retention(keep_epochs(1));
                         for (int i = 3; i <= saves_per_run(); i++) {
                             ckptdb::Entry e = save_dir(cat, i, 2);
                             ack(e.id, e.commit_seq);
                             r.saves_ok++;
                         }
                         r.last_save_ok = true;
                     });
                 }});

    // Directory saves in place with rotation (keep the last epoch). Setup
    // makes one, with a file of the user's put inside it; the body's first
    // save prunes its own files (the user's file stays, with the
    // directory); each later save (a nightly-sized run) prunes the one
    // before, whole.
    v.push_back({"inplace",
                 [](const std::string &root) {
                     auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                     ckptdb::Entry e = save_in_place(cat, 1);
                     std::FILE *f = std::fopen((dir_a(root) + "/" + e.name + "/notes.txt").c_str(), "w");
                     if (f) {
                         std::fputs("the user's own notes", f);
                         std::fclose(f);
                     }
                 },
                 [](const std::string &root, const Ack &ack) {
                     return run_guarded([&](Result &r) {
                         auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         cat->set_retention(keep_epochs(1));
                         for (int i = 2; i < saves_per_run(); i++) {
                             ckptdb::Entry e = save_in_place(cat, i);
                             ack(e.id, e.commit_seq);
                             r.saves_ok++;
                         }
                         r.last_save_ok = true;
                     });
                 }});

    // Sharded saves of two ranks with rotation (keep the last epoch): setup
    // commits one; each commit of the body prunes the one before, a file
    // per rank.
    v.push_back({"shards",
                 [](const std::string &root) {
                     auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                     save_shards(cat, 1);
                 },
                 [](const std::string &root, const Ack &ack) {
                     return run_guarded([&](Result &r) {
                         auto cat = ckptdb::Catalog::open(dir_a(root), ckptdb::OpenOptions());
                         cat->set_retention(keep_epochs(1));
                         for (int i = 2; i < saves_per_run(); i++) {
                             ckptdb::Entry e = save_shards(cat, i);
                             ack(e.id, e.commit_seq);
                             r.saves_ok++;
                         }
                         r.last_save_ok = true;
                     });
                 }});
    return v;
}

// The files of the user's that a scenario's setup puts into dir_a (relative
// to it), which no rule may delete: each must be there after the body and
// recovery (harness::Expect::kept).
inline std::vector<std::string> user_files(const std::string &scenario) {
    if (scenario == "dirs") return {"epoch_001/notes.txt"};
    if (scenario == "inplace") return {"checkpoint-100/notes.txt"};
    return {};
}

inline const Scenario *find(const std::string &name) {
    static std::vector<Scenario> v = all();
    for (const auto &s : v)
        if (s.name == name) return &s;
    return nullptr;
}

}  // namespace scen

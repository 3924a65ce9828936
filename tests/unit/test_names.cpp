// The default-name rule has one home (ckptdb_default_name) and rebuild and
// adopt read every name it gives back: kind, epoch and step, and the rank
// files of a sharded checkpoint as one checkpoint. Also ckptdb_fsck_dir, the
// whole `ckptdb fsck` (whose rebuild reads those names back).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include "ckptdb.h"
#include "support.hpp"

namespace {

std::string dname(const char *kind, int64_t epoch, int64_t step, int suffix = 0, int rank = 0, int world = 0,
                  int64_t unix_seconds = 1700000000) {
    char buf[300];
    REQUIRE(ckptdb_default_name(buf, sizeof buf, kind, epoch, step, unix_seconds, suffix, rank, world) == CKPTDB_OK);
    return buf;
}

// A file with an explicit modification time (seconds), so that the order a
// rebuild assumes does not depend on when the test ran.
void put(const t::TempDir &d, const std::string &name, const std::string &bytes, time_t mtime) {
    t::write_file(d / name, bytes);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    REQUIRE(::utimensat(AT_FDCWD, (d / name).c_str(), ts, 0) == 0);
}

}  // namespace

TEST_CASE("ckptdb_default_name gives each kind's name, the suffix and the rank files") {
    CHECK(dname("epoch", 10, 500) == "epoch_010.pt");
    CHECK(dname("step", 10, 500) == "step_000500.pt");
    CHECK(dname("preempt", 10, 500) == "preempt_000500.pt");
    CHECK(dname("time", 10, 500) == "time_1700000000.pt");
    CHECK(dname("my_kind-2", 1, 7) == "my_kind-2_000007.pt");
    CHECK(dname("epoch", 10, 500, 1) == "epoch_010.pt");
    CHECK(dname("epoch", 10, 500, 2) == "epoch_010-2.pt");
    CHECK(dname("epoch", 10, 500, 0, 3, 8) == "epoch_010.rank3-of-8.pt");
    CHECK(dname("step", 0, 20, 2, 0, 1) == "step_000020-2.rank0-of-1.pt");
    char t0[64];
    REQUIRE(ckptdb_default_name(t0, sizeof t0, "time", 0, 0, 0, 0, 0, 0) == CKPTDB_OK);  // 0: now
    CHECK(std::string(t0).rfind("time_", 0) == 0);
}

TEST_CASE("ckptdb_default_name refuses bad input, naming it") {
    char buf[64] = "untouched";
    auto bad = [&](int rc, const char *needle) {
        CHECK(rc == CKPTDB_EINVAL);
        CHECK_MESSAGE(std::string(ckptdb_last_error()).find(needle) != std::string::npos, ckptdb_last_error());
    };
    bad(ckptdb_default_name(buf, sizeof buf, "bad kind!", 1, 1, 0, 0, 0, 0), "invalid checkpoint kind");
    bad(ckptdb_default_name(buf, sizeof buf, "epoch", -1, 1, 0, 0, 0, 0), "epoch must be >= 0");
    bad(ckptdb_default_name(buf, sizeof buf, "epoch", 1, -1, 0, 0, 0, 0), "step must be >= 0");
    bad(ckptdb_default_name(buf, sizeof buf, "time", 1, 1, -5, 0, 0, 0), "unix_seconds must be >= 0");
    bad(ckptdb_default_name(buf, sizeof buf, "epoch", 1, 1, 0, -1, 0, 0), "suffix must be >= 0");
    bad(ckptdb_default_name(buf, sizeof buf, "epoch", 1, 1, 0, 0, 2, 2), "rank 2 of world 2");
    bad(ckptdb_default_name(buf, sizeof buf, "epoch", 1, 1, 0, 0, -1, 4), "rank -1 of world 4");
    bad(ckptdb_default_name(buf, sizeof buf, "epoch", 1, 1, 0, 0, 0, -1), "world must be >= 0");
    bad(ckptdb_default_name(buf, sizeof buf, "epoch", 1, 1, 0, 0, 1, 0), "rank must be 0");
    bad(ckptdb_default_name(buf, 12, "epoch", 1, 1, 0, 0, 0, 0), "needs 13 bytes");
    CHECK(std::string(buf).empty());  // never a partial name
    CHECK(ckptdb_default_name(nullptr, 10, "epoch", 1, 1, 0, 0, 0, 0) == CKPTDB_EMISUSE);
    CHECK(ckptdb_default_name(buf, sizeof buf, nullptr, 1, 1, 0, 0, 0, 0) == CKPTDB_EMISUSE);
}

TEST_CASE("adopt reads kind, epoch and step back from every default name, rank files as one checkpoint") {
    t::TempDir d;
    put(d, dname("epoch", 3, 30), "e3", 1000);
    put(d, dname("step", 0, 500, 2), "s500", 1001);
    put(d, dname("time", 0, 0), "t", 1002);
    put(d, dname("my_kind-2", 0, 7), "mk", 1003);
    // The rank files the Python binding writes for a sharded save.
    put(d, dname("epoch", 4, 40, 0, 0, 2), "rank0", 1004);
    put(d, dname("epoch", 4, 40, 0, 1, 2), "rank-one", 1005);
    // Two ranks of four: not a checkpoint anyone can resume; left alone.
    put(d, dname("step", 0, 90, 0, 0, 4), "p0", 1006);
    put(d, dname("step", 0, 90, 0, 2, 4), "p2", 1007);
    put(d, "model.pt", "m", 1008);

    std::vector<std::string> items;
    int64_t rows = 0;
    REQUIRE(ckptdb_adopt(
                &rows, d.path.c_str(), nullptr,
                [](const ckptdb_rebuild_item *it, void *p) {
                    static_cast<std::vector<std::string> *>(p)->push_back(std::string(it->kind) + " " + it->name);
                    return 0;
                },
                &items) == CKPTDB_OK);
    CHECK(rows == 6);
    auto cat = t::catalog_path(d);
    CHECK(t::query(cat, "SELECT name, kind, epoch, step, status FROM checkpoints ORDER BY commit_seq") ==
          std::vector<std::string>{"epoch_003.pt|epoch|3|0|complete", "step_000500-2.pt|step|0|500|complete",
                                   "time_1700000000.pt|time|0|0|complete", "my_kind-2_000007.pt|my_kind-2|0|7|complete",
                                   "epoch_004.rank0-of-2.pt|epoch|4|0|complete", "model.pt|adopted|0|0|complete"});
    // The sharded checkpoint: one row, each rank's file at its rank.
    CHECK(t::query(cat,
                   "SELECT f.rank, f.name, f.size FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id "
                   "WHERE c.name = 'epoch_004.rank0-of-2.pt' ORDER BY f.rank") ==
          std::vector<std::string>{"0|epoch_004.rank0-of-2.pt|5", "1|epoch_004.rank1-of-2.pt|8"});
    CHECK(t::query1(cat,
                    "SELECT size || '|' || coalesce(checksum, 'null') FROM checkpoints "
                    "WHERE name = 'epoch_004.rank0-of-2.pt'") == "13|null");
    // The partial set is reported, not adopted, and still there.
    for (const char *n : {"step_000090.rank0-of-4.pt", "step_000090.rank2-of-4.pt"}) {
        CHECK(std::find(items.begin(), items.end(), std::string("unknown_file ") + n) != items.end());
        CHECK(t::read_file(d / n).size() == 2);
    }
    CHECK(t::query1(cat, "SELECT count(*) FROM files WHERE name LIKE 'step_000090%'") == "0");

    // Resume sees the sharded checkpoint whole: every rank verified.
    ckptdb_catalog *db = nullptr;
    REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_get_by_name(&e, db, "epoch_004.rank0-of-2.pt") == CKPTDB_OK);
    CHECK(ckptdb_verify(db, e.id) == CKPTDB_OK);
    ckptdb_close(db);
}

TEST_CASE("ckptdb_fsck_dir: a lost catalog is reported without a change, rebuilt by a repair") {
    t::TempDir d;
    put(d, dname("epoch", 1, 10), "one", 1000);
    std::vector<std::string> items;
    auto cb = [](const ckptdb_fsck_item *it, void *p) {
        static_cast<std::vector<std::string> *>(p)->push_back(std::string(it->kind) + " " + it->name + " " +
                                                              it->action);
        return 0;
    };
    int64_t problems = -1;
    int rebuilt = -1;
    REQUIRE(ckptdb_fsck_dir(&problems, &rebuilt, d.path.c_str(), nullptr, 0, cb, &items) == CKPTDB_OK);
    CHECK(problems == 1);
    CHECK(rebuilt == 0);
    CHECK(items == std::vector<std::string>{"catalog_missing ckptdb.sqlite "});
    CHECK(t::names(d.path) == std::set<std::string>{"epoch_001.pt"});  // the check changed nothing

    items.clear();
    REQUIRE(ckptdb_fsck_dir(&problems, &rebuilt, d.path.c_str(), nullptr, 1, cb, &items) == CKPTDB_OK);
    CHECK(rebuilt == 1);
    CHECK(problems == 1);
    CHECK(items == std::vector<std::string>{"catalog_missing ckptdb.sqlite rebuilt (1 checkpoints)",
                                            "rebuilt epoch_001.pt added"});
    CHECK(t::query1(t::catalog_path(d), "SELECT kind || '|' || epoch FROM checkpoints") == "epoch|1");

    items.clear();
    REQUIRE(ckptdb_fsck_dir(&problems, &rebuilt, d.path.c_str(), nullptr, 0, cb, &items) == CKPTDB_OK);
    CHECK(problems == 0);
    CHECK(items.empty());
    // Not a lost catalog but no directory at all: the open's error.
    CHECK(ckptdb_fsck_dir(&problems, &rebuilt, (d / "nope").c_str(), nullptr, 0, cb, &items) == CKPTDB_ENOTFOUND);
    CHECK(ckptdb_fsck_dir(&problems, &rebuilt, nullptr, nullptr, 0, cb, &items) == CKPTDB_EMISUSE);
}

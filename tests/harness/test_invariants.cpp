// The invariant checker itself: quiet on a healthy directory, and each check
// reports what it exists to catch (a torn file, a lost acknowledged save, a
// missing newest checkpoint, an unknown file kept and listed, a temp
// directory left), for single files, sharded saves and directory
// checkpoints (file by file).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "invariants.hpp"
#include "support.hpp"

namespace {

int64_t save(const t::TempDir &d, int epoch, size_t bytes = 4096) {
    int code = 0;
    std::string l = t::run_helper({"save", d.path, std::to_string(bytes), "--epoch", std::to_string(epoch)}, &code);
    REQUIRE_MESSAGE(code == 0, l);
    return std::stoll(l.substr(std::string("COMMITTED ").size()));
}

}  // namespace

TEST_CASE("a healthy directory has no violations; unknown files are listed and kept") {
    t::TempDir d;
    harness::Expect x;
    x.acknowledged.insert(save(d, 1));
    x.acknowledged.insert(save(d, 2));
    x.newest_complete_seq = harness::newest_complete_seq(d.path);
    CHECK(x.newest_complete_seq == 2);
    t::write_file(d / "notes.txt", "mine");
    harness::Report r;
    auto v = harness::check_invariants(d.path, x, &r);
    CHECK_MESSAGE(v.empty(), harness::join(v));
    CHECK(r.complete == 2);
    CHECK(r.unknown_files == std::vector<std::string>{"notes.txt"});
    CHECK(t::exists(d / "notes.txt"));
    CHECK(r.latest_id == *x.acknowledged.rbegin());
}

TEST_CASE("a torn file of a complete row is an I1 violation and latest skips it (I5 sees the next)") {
    t::TempDir d;
    save(d, 1);
    int64_t id = save(d, 2);
    std::string path =
        d / t::query1(t::catalog_path(d), "SELECT name FROM checkpoints WHERE id = " + std::to_string(id));
    ::truncate(path.c_str(), 100);
    auto v = harness::check_invariants(d.path, harness::Expect());
    REQUIRE_FALSE(v.empty());
    CHECK(v[0].find("I1") == 0);
}

TEST_CASE("an acknowledged id that is not complete is an I4 violation; a lost newest is an I2 violation") {
    t::TempDir d;
    save(d, 1);
    harness::Expect x;
    x.acknowledged.insert(99);
    x.newest_complete_seq = 5;
    auto v = harness::check_invariants(d.path, x);
    std::string all = harness::join(v);
    CHECK(all.find("I4: acknowledged checkpoint 99 has no row") != std::string::npos);
    CHECK(all.find("I2: no row has commit_seq 5") != std::string::npos);
}

TEST_CASE("a checkpoint file deleted behind the catalog's back is reported") {
    t::TempDir d;
    harness::Expect x;
    x.acknowledged.insert(save(d, 1));
    x.newest_complete_seq = harness::newest_complete_seq(d.path);
    ::unlink((d / "epoch_001.pt").c_str());
    auto v = harness::check_invariants(d.path, x);
    REQUIRE_FALSE(v.empty());
    CHECK(harness::join(v).find("I1: complete checkpoint") != std::string::npos);
}

namespace {

// A directory checkpoint of kind epoch through the C ABI: files (name, rank,
// bytes) written into its temp directory, then committed.
int64_t save_dir(t::Cat &c, const std::string &dir, int epoch,
                 const std::vector<std::pair<std::string, int64_t>> &files) {
    ckptdb_dir_save *s = nullptr;
    ckptdb_dir_info info = CKPTDB_DIR_INFO_INIT;
    REQUIRE(ckptdb_dir_begin(&s, c.db, "epoch", epoch, epoch * 10, nullptr) == CKPTDB_OK);
    REQUIRE(ckptdb_dir_get_info(&info, s) == CKPTDB_OK);
    std::vector<ckptdb_shard *> shards;
    std::vector<ckptdb_shard_info> infos(files.size());
    std::vector<ckptdb_dir_file> reported;
    for (size_t i = 0; i < files.size(); i++) {
        ckptdb_shard *sh = nullptr;
        REQUIRE(ckptdb_dir_file_begin(&sh, dir.c_str(), info.temp_name, files[i].first.c_str(), files[i].second) ==
                CKPTDB_OK);
        shards.push_back(sh);
        std::string bytes = t::pattern(3000 + 100 * i, static_cast<unsigned>(epoch * 10 + i));
        REQUIRE(ckptdb_shard_write(sh, bytes.data(), bytes.size()) == CKPTDB_OK);
        infos[i] = CKPTDB_SHARD_INFO_INIT;
        REQUIRE(ckptdb_shard_finish(&infos[i], sh) == CKPTDB_OK);
        reported.push_back({CKPTDB_DIR_FILE_VERSION, infos[i].name, files[i].second, infos[i].size, infos[i].checksum});
    }
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_dir_commit(&e, s, reported.data(), reported.size()) == CKPTDB_OK);
    for (ckptdb_shard *sh : shards) ckptdb_shard_free(sh);
    ckptdb_dir_free(s);
    return e.id;
}

// A sharded checkpoint of kind epoch through the C ABI: one file per rank.
int64_t save_shards(t::Cat &c, const std::string &dir, int epoch, int ranks) {
    std::vector<ckptdb_shard *> shards;
    std::vector<ckptdb_shard_info> infos(static_cast<size_t>(ranks));
    std::vector<ckptdb_shard_file> files;
    for (int r = 0; r < ranks; r++) {
        ckptdb_shard *sh = nullptr;
        std::string name = "epoch_" + std::to_string(epoch) + ".rank" + std::to_string(r) + ".pt";
        REQUIRE(ckptdb_shard_begin(&sh, dir.c_str(), name.c_str()) == CKPTDB_OK);
        shards.push_back(sh);
        std::string bytes = t::pattern(2000 + 100 * static_cast<size_t>(r), static_cast<unsigned>(epoch * 10 + r));
        REQUIRE(ckptdb_shard_write(sh, bytes.data(), bytes.size()) == CKPTDB_OK);
        auto &in = infos[static_cast<size_t>(r)];
        in = CKPTDB_SHARD_INFO_INIT;
        REQUIRE(ckptdb_shard_finish(&in, sh) == CKPTDB_OK);
        files.push_back({CKPTDB_SHARD_FILE_VERSION, in.name, in.temp_name, in.size, in.checksum});
    }
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_commit_shards(&e, c.db, "epoch", epoch, epoch * 10, nullptr, files.data(), files.size()) ==
            CKPTDB_OK);
    for (ckptdb_shard *sh : shards) ckptdb_shard_free(sh);
    return e.id;
}

bool has(const std::vector<std::string> &v, const std::string &part) {
    for (const auto &x : v)
        if (x.find(part) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("directory and sharded checkpoints are checked file by file; a user's file inside a directory is listed") {
    t::TempDir d;
    harness::Expect x;
    {
        t::Cat c(d.path);
        x.acknowledged.insert(save_shards(c, d.path, 1, 2));
        x.acknowledged.insert(save_dir(c, d.path, 2, {{"__0_0.distcp", 0}, {"__1_0.distcp", 1}, {".metadata", 0}}));
    }
    x.newest_complete_seq = harness::newest_complete_seq(d.path);
    t::write_file(d / "epoch_002/notes.txt", "mine");
    harness::Report r;
    auto v = harness::check_invariants(d.path, x, &r);
    CHECK_MESSAGE(v.empty(), harness::join(v));
    CHECK(r.complete == 2);
    CHECK(r.latest_id == *x.acknowledged.rbegin());
    CHECK(r.unknown_files == std::vector<std::string>{"epoch_002/notes.txt"});
    CHECK(t::exists(d / "epoch_002/notes.txt"));
    // Gone, whatever removed it, it is a violation of I3.
    x.kept = {"epoch_002/notes.txt"};
    CHECK(harness::check_invariants(d.path, x).empty());
    REQUIRE(::unlink((d / "epoch_002/notes.txt").c_str()) == 0);
    CHECK(has(harness::check_invariants(d.path, x),
              "I3: epoch_002/notes.txt, a file the catalog did not write, is gone"));
}

TEST_CASE("a torn file inside a directory checkpoint is an I1 violation; a lost rank's file of a sharded one too") {
    t::TempDir d;
    int64_t shards = 0;
    {
        t::Cat c(d.path);
        shards = save_shards(c, d.path, 1, 2);
        save_dir(c, d.path, 2, {{"__0_0.distcp", 0}, {"__1_0.distcp", 1}});
    }
    REQUIRE(::truncate((d / "epoch_002/__1_0.distcp").c_str(), 100) == 0);
    harness::Report r;
    auto v = harness::check_invariants(d.path, harness::Expect(), &r);
    CHECK(has(v, "I1: complete checkpoint"));
    CHECK(has(v, "(epoch_002/): file __1_0.distcp is 100 bytes"));
    CHECK(r.latest_id == shards);  // latest falls back past the torn directory (I5 holds)
    CHECK_FALSE(has(v, "I5"));

    REQUIRE(::unlink((d / "epoch_1.rank1.pt").c_str()) == 0);
    v = harness::check_invariants(d.path, harness::Expect());
    CHECK(has(v, "file epoch_1.rank1.pt: cannot open"));
}

TEST_CASE("a temp directory left after recovery is an I3 violation, unless a live writer holds a file in it") {
    t::TempDir d;
    { t::Cat c(d.path); }
    const std::string held_dir = ".ckptdb-tmp-0123456789abcdef0123456789abcdef.d";
    REQUIRE(::mkdir((d / held_dir).c_str(), 0755) == 0);
    t::write_file(d / held_dir + "/__0_0.distcp", "being written");
    int fd = ::open((d / held_dir + "/__0_0.distcp").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX) == 0);
    // Recovery removes neither a live writer's file nor, then, its directory.
    auto v = harness::check_invariants(d.path, harness::Expect());
    CHECK_MESSAGE(v.empty(), harness::join(v));
    CHECK(t::exists(d / held_dir + "/__0_0.distcp"));
    ::close(fd);

    // Nobody holds it: recovery removes it.
    v = harness::check_invariants(d.path, harness::Expect());
    CHECK_MESSAGE(v.empty(), harness::join(v));
    CHECK_FALSE(t::exists(d / held_dir));

    // One recovery cannot empty (a directory inside it, which the library
    // never makes) stays, and is reported.
    const std::string stuck = ".ckptdb-tmp-fedcba9876543210fedcba9876543210.d";
    REQUIRE(::mkdir((d / stuck).c_str(), 0755) == 0);
    REQUIRE(::mkdir((d / stuck + "/sub").c_str(), 0755) == 0);
    v = harness::check_invariants(d.path, harness::Expect());
    CHECK(has(v, "I3: temp directory " + stuck + " remains after recovery"));
}

TEST_CASE("I7: the directory of an aborted save in place left behind is reported") {
    t::TempDir d;
    {
        t::Cat c(d.path);
        ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
        o.name = "checkpoint-1";
        ckptdb_dir_save *s = nullptr;
        REQUIRE(ckptdb_dir_begin_in_place(&s, c.db, "step", 0, 1, &o) == CKPTDB_OK);
        t::write_file(d / "checkpoint-1/model.safetensors", "m");
        REQUIRE(ckptdb_dir_abort(s) == CKPTDB_OK);
        ckptdb_dir_free(s);
    }
    auto v = harness::check_invariants(d.path, harness::Expect());
    CHECK_MESSAGE(v.empty(), harness::join(v));
    // Put back behind the catalog's back: what recovery must never leave.
    REQUIRE(::mkdir((d / "checkpoint-1").c_str(), 0755) == 0);
    v = harness::check_invariants(d.path, harness::Expect());
    REQUIRE(v.size() == 1);
    CHECK(v[0].find("I7: the directory checkpoint-1/") == 0);
}

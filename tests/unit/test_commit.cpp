// The commit protocol (core/commit.*) through the engine itself, linked
// statically: cases that need a named point of the protocol in this process.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <ctime>
#include <functional>
#include <vector>

#include "catalog.hpp"
#include "commit.hpp"
#include "hooks.hpp"
#include "names.hpp"
#include "shard.hpp"
#include "support.hpp"

namespace {

// Sets the mtime of path to `ago` seconds before now (atime untouched).
void set_mtime_ago(const std::string &path, int64_t ago) {
    struct timespec ts[2];
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_sec = ::time(nullptr) - ago;
    ts[1].tv_nsec = 0;
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

// A finished rank file that no writer holds any more (its rank's process is
// gone): created locked, written, fsynced and sealed as a shard's, then
// released.
ckptdb::ShardFile released_shard(const ckptdb::Dir &dir, const std::string &name, const std::string &bytes) {
    ckptdb::ShardFile f;
    f.name = name;
    f.temp_name = ckptdb::random_temp_name();
    ckptdb::UniqueFd fd = ckptdb::create_locked_temp(dir, f.temp_name);
    ckptdb::DurableWriter out(dir.join(f.temp_name));
    out.write(fd.get(), bytes.data(), bytes.size());
    out.sync(fd.get());
    f.size = out.size();
    f.checksum = out.checksum();
    ckptdb::UniqueFd sidecar = ckptdb::write_seal(dir, fd.get(), f);
    return f;
}

const char *g_point = nullptr;
std::function<void()> g_at_point;

void at_point(const char *point) {
    if (!g_point || std::strcmp(point, g_point) != 0 || !g_at_point) return;
    std::function<void()> fn = std::move(g_at_point);
    g_at_point = nullptr;
    fn();
}

}  // namespace

TEST_CASE("a sharded commit that a recovery finished while it stalled stays complete, with every file") {
    t::TempDir d;
    auto cat = ckptdb::Catalog::open(d.path, ckptdb::OpenOptions());
    const std::string a = t::pattern(100000, 1), b = t::pattern(50000, 2);
    std::vector<ckptdb::ShardFile> files = {released_shard(cat->dir(), "step_0_rank0.pt", a),
                                            released_shard(cat->dir(), "step_0_rank1.pt", b)};
    // After the renames and the directory fsync, before the complete
    // transaction, the committer looks gone to another process: its run is
    // another host's and its files' mtimes are an hour old. That process's
    // recovery finds every file whole and finishes the commit.
    std::string recovered;
    g_point = "dir_synced";
    g_at_point = [&] {
        t::exec(d,
                "UPDATE runs SET host = 'node-b', boot_id = 'boot-of-node-b' WHERE id = "
                "(SELECT run_id FROM checkpoints ORDER BY id DESC LIMIT 1)");
        for (const ckptdb::ShardFile &f : files) set_mtime_ago(d / f.name, 3600);
        auto other = ckptdb::Catalog::open(d.path, ckptdb::OpenOptions());
        recovered = t::query1(t::catalog_path(d), "SELECT status FROM checkpoints ORDER BY id DESC LIMIT 1");
    };
    ckptdb::g_test_hook = at_point;
    ckptdb::Entry e;
    try {
        e = ckptdb::commit_shards(cat, "step", 0, 0, std::nullopt, files);
    } catch (const ckptdb::Error &ex) {
        ckptdb::g_test_hook = nullptr;
        FAIL_CHECK("the commit failed: " << std::string(ex.what()));
    }
    ckptdb::g_test_hook = nullptr;
    REQUIRE(recovered == "complete");  // the other process did finish it
    CHECK(e.status == CKPTDB_STATUS_COMPLETE);
    CHECK(e.file_count == 2);
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints ORDER BY id DESC LIMIT 1") == "complete");
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM events WHERE event = 'aborted'") == "0");
    CHECK(t::read_file(d / "step_0_rank0.pt") == a);
    CHECK(t::read_file(d / "step_0_rank1.pt") == b);
}

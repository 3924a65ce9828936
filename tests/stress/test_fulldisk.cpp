// Real full disks. A small tmpfs and a loop-mounted ext4 image (root only,
// where the machine lets us mount) are filled up while a helper process
// saves: a save that does not fit fails with CKPTDB_ENOSPC and a message
// naming its file, leaves no temp file, its row aborted and the previous
// checkpoint intact and resumable; the catalog stays usable (and passes
// SQLite's integrity check) when even SQLite cannot grow; once space is
// freed, saves work again. RLIMIT_FSIZE (EFBIG) runs everywhere.
//
// This suite has its own main: where a case cannot run here (not root, no
// mount permission in a container, no mkfs.ext4) it says so and the process
// exits 77, which meson reports as SKIP.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstring>

#include "stress.hpp"

static stress::Figures g_fig("stress-fulldisk");
static bool g_skipped = false;

int main(int argc, char **argv) {
    doctest::Context ctx(argc, argv);
    int rc = ctx.run();
    if (ctx.shouldExit()) return rc;
    return rc == 0 && g_skipped ? 77 : rc;
}

namespace {

void skip(const std::string &why) {
    std::printf("SKIP: %s\n", why.c_str());
    std::fflush(stdout);
    g_skipped = true;
}

// A file system mounted for one case, unmounted at the end.
struct Mount {
    t::TempDir base;
    std::string path = base / "mnt";
    bool mounted = false;
    std::string why_not;

    static bool run(const std::string &cmd) { return std::system((cmd + " > /dev/null 2>&1").c_str()) == 0; }

    explicit Mount(const std::string &type) {
        if (::geteuid() != 0) {
            why_not = "mounting a " + type + " needs root (running as uid " + std::to_string(::geteuid()) + ")";
            return;
        }
        ::mkdir(path.c_str(), 0755);
        if (type == "tmpfs") {
            if (::mount("tmpfs", path.c_str(), "tmpfs", 0, "size=8m,mode=0755") != 0) {
                why_not = std::string("mount -t tmpfs failed: ") + std::strerror(errno) +
                          " (a container without CAP_SYS_ADMIN?)";
                return;
            }
        } else {
            // 4 KiB blocks, as on real disks: with 1 KiB blocks SQLite's
            // -shm file (grown one byte per 4 KiB page, then mmapped) has
            // holes that a full disk turns into SIGBUS inside SQLite.
            std::string img = base / "disk.img";
            if (!run("command -v mkfs.ext4")) {
                why_not = "mkfs.ext4 is not installed (Debian: e2fsprogs)";
                return;
            }
            if (!run("truncate -s 12M '" + img + "'") || !run("mkfs.ext4 -q -F -m 0 -b 4096 '" + img + "'")) {
                why_not = "mkfs.ext4 failed on " + img;
                return;
            }
            if (!run("mount -t ext4 -o loop '" + img + "' '" + path + "'")) {
                why_not = "mount -o loop of an ext4 image failed (no loop devices, or no mount permission here)";
                return;
            }
        }
        mounted = true;
    }
    ~Mount() {
        if (mounted && ::umount2(path.c_str(), 0) != 0) ::umount2(path.c_str(), MNT_DETACH);
    }
};

// Writes `path` until the file system is full, then gives back `slack`
// bytes. Returns the file's size.
off_t fill(const std::string &path, off_t slack) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    std::string chunk(1 << 16, 'f');
    for (size_t len : {size_t(1) << 16, size_t(4096), size_t(512), size_t(1)}) {
        while (::write(fd, chunk.data(), len) == static_cast<ssize_t>(len)) {
        }
    }
    ::fsync(fd);
    struct stat st;
    REQUIRE(::fstat(fd, &st) == 0);
    if (slack > 0) REQUIRE(::ftruncate(fd, st.st_size > slack ? st.st_size - slack : 0) == 0);
    ::fsync(fd);
    REQUIRE(::fstat(fd, &st) == 0);
    ::close(fd);
    return st.st_size;
}

std::vector<std::string> saves(const std::string &dir, const std::vector<std::string> &sizes) {
    std::vector<std::string> args{"saves", dir};
    args.insert(args.end(), sizes.begin(), sizes.end());
    stress::Helper h(args);
    auto lines = h.lines();
    INFO(stress::join(lines));
    CHECK(h.exit_code() == (lines.empty() || lines[0].rfind("ERR", 0) != 0 ? 0 : 1));
    return lines;
}

void check_case(const std::string &dir, harness::Expect &expect, const char *phase) {
    expect.newest_complete_seq = std::max(expect.newest_complete_seq, stress::max_seq_of(dir, {expect.acknowledged.begin(), expect.acknowledged.end()}));
    auto bad = stress::all_checks(dir, expect);
    g_fig.cases++;
    g_fig.violations += static_cast<long>(bad.size());
    CHECK_MESSAGE(bad.empty(), phase << ":\n" << stress::join(bad));
    expect.newest_complete_seq = stress::newest_complete_seq(dir);
}

// Still full: the catalog opens (recovery that cannot record its work waits
// for the next open) and a resume finds an acknowledged checkpoint.
void resume_on_full_disk(const std::string &dir, const harness::Expect &expect) {
    ckptdb_catalog *db = nullptr;
    REQUIRE_MESSAGE(ckptdb_open(&db, dir.c_str(), nullptr) == CKPTDB_OK, ckptdb_last_error());
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    CHECK_MESSAGE(ckptdb_latest(&e, db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK, ckptdb_last_error());
    CHECK(expect.acknowledged.count(e.id) == 1);
    ckptdb_close(db);
}

void full_disk(const std::string &mnt) {
    const std::string dir = mnt + "/ckpt", filler = mnt + "/filler";
    harness::Expect expect;

    // Two good checkpoints first.
    auto l = saves(dir, {"1048576", "524288"});
    REQUIRE(l.size() == 3);
    for (int64_t id : stress::acks(l)) expect.acknowledged.insert(id);
    REQUIRE(expect.acknowledged.size() == 2);
    g_fig.acknowledged += 2;
    const int64_t newest = *expect.acknowledged.rbegin();

    // Full but for a little room (enough for the catalog): the checkpoint's
    // own write fails.
    fill(filler, 320 << 10);
    l = saves(dir, {"2097152"});
    REQUIRE(l.size() == 2);
    CHECK_MESSAGE(l[0].rfind("FAIL 7 ", 0) == 0, l[0]);
    CHECK_MESSAGE(l[0].find(dir + "/.ckptdb-tmp-") != std::string::npos, l[0]);  // names the file
    CHECK_MESSAGE(l[0].find(std::strerror(ENOSPC)) != std::string::npos, l[0]);
    g_fig.disk_full_failures++;
    const std::string cat = dir + "/ckptdb.sqlite";
    CHECK(t::temp_files(dir).empty());
    CHECK(t::query1(cat, "SELECT status FROM checkpoints ORDER BY id DESC LIMIT 1") == "aborted");
    CHECK(t::query1(cat, "SELECT count(*) FROM events WHERE event = 'aborted'") == "1");
    CHECK(stress::query_i64(cat, "SELECT id FROM latest_complete") == newest);
    check_case(dir, expect, "after a save that did not fit");

    // The disk runs out at every place of a save in turn: in the file's
    // writes, the catalog's WAL, the directory. Each save works or fails
    // with CKPTDB_ENOSPC, and each leaves a consistent directory.
    REQUIRE(::unlink(filler.c_str()) == 0);
    for (off_t slack = 0; slack <= (192 << 10); slack += 16 << 10) {
        CAPTURE(slack);
        fill(filler, slack);
        l = saves(dir, {"1", std::to_string(slack / 2 + 1), std::to_string(slack + 1)});
        REQUIRE(l.size() == 4);
        CHECK_MESSAGE(l[2].rfind("FAIL 7 ", 0) == 0, l[2]);  // more than the free space
        for (size_t i = 0; i < 3; i++) {
            if (l[i].rfind("ACK ", 0) == 0) {
                expect.acknowledged.insert(std::stoll(l[i].substr(4)));
                g_fig.acknowledged++;
            } else {
                CHECK_MESSAGE(l[i].rfind("FAIL 7 ", 0) == 0, l[i]);
                g_fig.disk_full_failures++;
            }
        }
        resume_on_full_disk(dir, expect);
        REQUIRE(::unlink(filler.c_str()) == 0);
        check_case(dir, expect, "running out of space");
    }

    // Completely full: even SQLite cannot grow. Every save either works or
    // fails with CKPTDB_ENOSPC; nothing is left behind; the catalog is whole.
    fill(filler, 0);
    l = saves(dir, {"1", "4096", "65536", "1048576"});
    REQUIRE(l.size() == 5);
    for (size_t i = 0; i < 4; i++) {
        if (l[i].rfind("ACK ", 0) == 0) {
            expect.acknowledged.insert(std::stoll(l[i].substr(4)));
            g_fig.acknowledged++;
        } else {
            CHECK_MESSAGE(l[i].rfind("FAIL 7 ", 0) == 0, l[i]);
            g_fig.disk_full_failures++;
        }
    }
    CHECK(l[3].rfind("FAIL 7 ", 0) == 0);  // 1 MiB cannot fit in nothing
    // Every connection is closed now: the catalog must still open.
    resume_on_full_disk(dir, expect);
    CHECK(t::temp_files(dir).empty());
    // A new catalog cannot be made on a full disk: a clear error, nothing half-made that a later open trips on.
    auto fresh = saves(mnt + "/fresh", {"100"});
    REQUIRE(!fresh.empty());
    CHECK_MESSAGE((fresh[0].rfind("ERR 7 ", 0) == 0 || fresh[0].rfind("FAIL 7 ", 0) == 0 || fresh[0].rfind("ACK", 0) == 0),
                  fresh[0]);
    if (fresh[0].rfind("ACK", 0) != 0) g_fig.disk_full_failures++;
    // (The invariants are checked once space is back: the checker's own
    // read-only SQLite connection cannot always open a WAL catalog on a
    // completely full ext4, the library's connection can, as above.)

    // Space back: saves work again, in both directories.
    REQUIRE(::unlink(filler.c_str()) == 0);
    l = saves(dir, {"1048576", "1048576"});
    REQUIRE(l.size() == 3);
    CHECK(l[0].rfind("ACK ", 0) == 0);
    CHECK(l[1].rfind("ACK ", 0) == 0);
    for (int64_t id : stress::acks(l)) expect.acknowledged.insert(id);
    g_fig.acknowledged += 2;
    CHECK(stress::query_i64(cat, "SELECT id FROM latest_complete") == *expect.acknowledged.rbegin());
    check_case(dir, expect, "after space was freed");
    fresh = saves(mnt + "/fresh", {"100"});
    REQUIRE(!fresh.empty());
    CHECK_MESSAGE(fresh[0].rfind("ACK ", 0) == 0, fresh[0]);
    harness::Expect fe;
    auto fresh_ids = stress::acks(fresh);
    fe.acknowledged.insert(fresh_ids.begin(), fresh_ids.end());
    check_case(mnt + "/fresh", fe, "a new catalog after space was freed");
}

}  // namespace

TEST_CASE("a full tmpfs: saves fail cleanly with ENOSPC, the catalog stays whole, and work again once space is freed") {
    Mount m("tmpfs");
    if (!m.mounted) return skip("tmpfs case: " + m.why_not);
    full_disk(m.path);
}

TEST_CASE("a full loop-mounted ext4: saves fail cleanly with ENOSPC, the catalog stays whole, and work again") {
    Mount m("ext4");
    if (!m.mounted) return skip("ext4 case: " + m.why_not);
    full_disk(m.path);
}

TEST_CASE("RLIMIT_FSIZE: a save past the limit fails with EFBIG as CKPTDB_ENOSPC and changes nothing else") {
    t::TempDir d;
    harness::Expect expect;
    stress::Helper h({"fsize", d.path, std::to_string(2 << 20), "100000", std::to_string(3 << 20)});
    auto l = h.lines();
    INFO(stress::join(l));
    CHECK(h.exit_code() == 0);
    REQUIRE(l.size() == 4);
    CHECK(l[0].rfind("ACK ", 0) == 0);
    CHECK(l[1].rfind("FAIL 7 ", 0) == 0);
    CHECK(l[1].find(d.path + "/.ckptdb-tmp-") != std::string::npos);
    CHECK(l[1].find(std::strerror(EFBIG)) != std::string::npos);
    CHECK(l[2].rfind("ACK ", 0) == 0);
    g_fig.disk_full_failures++;
    auto ids = stress::acks(l);
    g_fig.acknowledged += static_cast<long>(ids.size());
    expect.acknowledged.insert(ids.begin(), ids.end());
    const std::string cat = t::catalog_path(d);
    CHECK(t::query1(cat, "SELECT group_concat(status, ',') FROM (SELECT status FROM checkpoints ORDER BY id)") ==
          "complete,aborted,complete");
    CHECK(t::temp_files(d.path).empty());
    check_case(d.path, expect, "after EFBIG");
}

// Real full disks. A small tmpfs and a loop-mounted ext4 image (root only,
// where the machine lets us mount) are filled up while a helper process
// saves: a save that does not fit fails with CKPTDB_ENOSPC and a message
// naming its file, leaves no temp file, its row aborted and the previous
// checkpoint intact and resumable; the catalog stays usable (and passes
// SQLite's integrity check) when even SQLite cannot grow; once space is
// freed, saves work again. RLIMIT_FSIZE (EFBIG) runs everywhere.
//
// The directory's reserve (test suite "reserve"): on a disk so full that
// not even SQLite can write, `ckptdb prune` and `ckptdb fsck --repair` (the
// real command, fork+exec'd) still do their work through the reserve
// (.ckptdb-ballast), and it comes back; a writable open makes it again, a
// read-only open never does, and a file size limit below its size leaves
// the catalog working without it.
//
// This suite has its own main: where a case cannot run here (not root, no
// mount permission in a container, no mkfs.ext4) it says so and the process
// exits 77, which meson reports as SKIP.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstring>
#include <functional>

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

// A file system mounted for one case, unmounted at the end: 16 MiB, room
// for the reserves (4 MiB each) of the two catalogs a case may make.
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
            if (::mount("tmpfs", path.c_str(), "tmpfs", 0, "size=16m,mode=0755") != 0) {
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
            if (!run("truncate -s 24M '" + img + "'") || !run("mkfs.ext4 -q -F -m 0 -b 4096 '" + img + "'")) {
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
        while (::write(fd, chunk.data(), len) == static_cast<ssize_t>(len)) {}
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
    expect.newest_complete_seq = std::max(
        expect.newest_complete_seq, stress::max_seq_of(dir, {expect.acknowledged.begin(), expect.acknowledged.end()}));
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
    CHECK_MESSAGE(
        (fresh[0].rfind("ERR 7 ", 0) == 0 || fresh[0].rfind("FAIL 7 ", 0) == 0 || fresh[0].rfind("ACK", 0) == 0),
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

// ---------------------------------------------------------------------------
// The directory's reserve
// ---------------------------------------------------------------------------

namespace {

constexpr int64_t kReserveBytes = int64_t(4) << 20;  // the documented size of .ckptdb-ballast

struct ReserveFile {
    bool present = false, whole = false;
    ino_t ino = 0;
};

ReserveFile reserve_of(const std::string &dir) {
    ReserveFile r;
    struct stat st;
    if (::lstat((dir + "/.ckptdb-ballast").c_str(), &st) != 0) return r;
    r.present = true;
    r.ino = st.st_ino;
    // Its blocks really allocated: a sparse file would reserve nothing.
    r.whole =
        S_ISREG(st.st_mode) && st.st_size == kReserveBytes && static_cast<int64_t>(st.st_blocks) * 512 >= kReserveBytes;
    return r;
}

struct Run {
    int code = -1;
    std::string out;  // stdout and stderr
};

// The ckptdb command (CKPTDB_CLI) in a child process (posix_spawn: fork+exec).
Run ckptdb(const std::vector<std::string> &args) {
    const char *path = std::getenv("CKPTDB_CLI");
    REQUIRE_MESSAGE(path != nullptr, "CKPTDB_CLI is not set (run through meson test)");
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    std::vector<std::string> all{path};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char *> argv;
    for (auto &a : all) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, path, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    REQUIRE(rc == 0);
    Run r;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        r.out.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

int64_t events_named(const std::string &dir, const std::string &event) {
    return stress::query_i64(dir + "/ckptdb.sqlite", "SELECT count(*) FROM events WHERE event = '" + event + "'");
}

// The filler takes every byte still free: fill() again until it grows no
// more (ext4 gives back what its delayed allocation held in reserve once
// the filler is fsynced).
void fill_up(const std::string &filler) {
    for (off_t last = -1, now = fill(filler, 0); now != last; last = now, now = fill(filler, 0)) {}
}

// Saves of 1 MiB until one fails with CKPTDB_ENOSPC (the reserve, made by the
// first open, is left); then the filler takes every byte still free, so
// that not even SQLite can grow its WAL. Returns the acknowledged ids.
std::vector<int64_t> fill_with_checkpoints(const std::string &dir, const std::string &filler,
                                           const std::function<void()> &before_full = {}) {
    auto l = saves(dir, std::vector<std::string>(24, "1048576"));
    INFO(stress::join(l));
    auto ids = stress::acks(l);
    REQUIRE(ids.size() >= 3);
    bool refused = false;
    for (const auto &line : l) refused = refused || line.rfind("FAIL 7 ", 0) == 0;
    REQUIRE_MESSAGE(refused, "the disk never filled up");
    CHECK(reserve_of(dir).whole);
    if (before_full) before_full();
    fill_up(filler);
    // Not even a one-byte save fits now.
    auto one = saves(dir, {"1"});
    REQUIRE(!one.empty());
    // CKPTDB_ENOSPC from the save, or from its open (ext4 may refuse even
    // the -shm a first connection grows; a trainer's open never uses the
    // reserve).
    CHECK_MESSAGE((one[0].rfind("FAIL 7 ", 0) == 0 || one[0].rfind("ERR 7 ", 0) == 0), one[0]);
    g_fig.disk_full_failures += 2;
    g_fig.acknowledged += static_cast<long>(ids.size());
    return ids;
}

// Nobody holds the catalog open while the disk is full: the CLI's own open
// is the first connection, which must grow SQLite's -shm file again, and a
// completely full ext4 sometimes refuses that; the reserve serves the open
// then, and the prune or repair after it puts the reserve back (either way
// one release and one restore).
void prune_on_full_disk(const std::string &mnt) {
    const std::string dir = mnt + "/ckpt", filler = mnt + "/filler", cat = dir + "/ckptdb.sqlite";
    auto ids = fill_with_checkpoints(dir, filler);
    harness::Expect expect;
    expect.acknowledged.insert(ids.begin(), ids.end());

    Run r = ckptdb({"prune", dir, "--keep", "epoch=2"});
    INFO(r.out);
    REQUIRE(r.code == 0);
    CHECK(r.out.find("pruned " + std::to_string(ids.size() - 2) + " checkpoints") != std::string::npos);
    CHECK(stress::query_i64(cat, "SELECT count(*) FROM checkpoints WHERE status = 'pruned'") ==
          static_cast<int64_t>(ids.size() - 2));
    CHECK(stress::query_i64(cat, "SELECT count(*) FROM checkpoints WHERE status = 'pruned' AND deleted_at IS NULL") ==
          0);
    for (const auto &name : t::query(cat, "SELECT name FROM checkpoints WHERE status = 'pruned'"))
        CHECK_MESSAGE(!t::exists(dir + "/" + name), name << " is still there");
    CHECK(t::query1(cat, "PRAGMA integrity_check") == "ok");
    CHECK(events_named(dir, "reserve_released") == 1);
    CHECK(events_named(dir, "reserve_restored") == 1);
    CHECK(reserve_of(dir).whole);

    // The next save works, with the filler still there.
    auto l = saves(dir, {"1048576"});
    REQUIRE(!l.empty());
    CHECK_MESSAGE(l[0].rfind("ACK ", 0) == 0, l[0]);
    for (int64_t id : stress::acks(l)) expect.acknowledged.insert(id);
    check_case(dir, expect, "after a prune through a full disk");
}

void repair_on_full_disk(const std::string &mnt) {
    const std::string dir = mnt + "/ckpt", filler = mnt + "/filler", cat = dir + "/ckptdb.sqlite";
    // This case reads the catalog itself (sqlite3) while the disk is full;
    // a connection held open from before keeps SQLite's -shm in place for
    // those reads, as a trainer still running would (the prune case above
    // runs with nobody holding it).
    ckptdb_catalog *held = nullptr;
    std::string lost;
    auto ids = fill_with_checkpoints(dir, filler, [&] {
        ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
        o.flags = CKPTDB_OPEN_READONLY;
        REQUIRE_MESSAGE(ckptdb_open(&held, dir.c_str(), &o) == CKPTDB_OK, ckptdb_last_error());
        lost = t::query1(cat, "SELECT name FROM checkpoints WHERE status = 'complete' ORDER BY id LIMIT 1");
    });
    struct Close {
        ckptdb_catalog *&db;
        ~Close() { ckptdb_close(db); }
    } close_held{held};
    // A checkpoint file deleted by hand (the oldest): the repair must record
    // it as corrupt, a catalog write, before anything else can happen.
    REQUIRE(t::query1(cat, "SELECT id FROM checkpoints WHERE name = '" + lost + "'") == std::to_string(ids[0]));
    REQUIRE(::unlink((dir + "/" + lost).c_str()) == 0);
    fill_up(filler);  // the room it gave back, taken too
    harness::Expect expect;
    expect.acknowledged.insert(ids.begin() + 1, ids.end());

    Run r = ckptdb({"fsck", "--repair", dir});
    INFO(r.out);
    CHECK(r.code == 3);  // problems found (and repaired)
    CHECK(r.out.find("marked corrupt") != std::string::npos);
    CHECK(t::query1(cat, "SELECT status FROM checkpoints WHERE id = " + std::to_string(ids[0])) == "corrupt");
    CHECK(t::query1(cat, "PRAGMA integrity_check") == "ok");
    CHECK(events_named(dir, "reserve_released") == 1);
    // The repair deleted nothing, so the reserve is back only where there is
    // room for it; where there is not, an event says so.
    ReserveFile after = reserve_of(dir);
    CHECK((after.whole || events_named(dir, "reserve_unavailable") >= 1));

    // The operator frees room with a prune; the next writable open (the
    // save's) makes the reserve again, and the save works.
    Run p = ckptdb({"prune", dir, "--keep", "epoch=2"});
    INFO(p.out);
    CHECK(p.code == 0);
    auto l = saves(dir, {"1048576"});
    REQUIRE(!l.empty());
    CHECK_MESSAGE(l[0].rfind("ACK ", 0) == 0, l[0]);
    for (int64_t id : stress::acks(l)) expect.acknowledged.insert(id);
    CHECK(reserve_of(dir).whole);
    check_case(dir, expect, "after a repair through a full disk");
}

// A prune of many checkpoints at once through a completely full disk: the
// room it needs (its WAL, and the catalog file's growth when the WAL is
// folded in) is measured and printed, the figure behind the reserve's size.
void big_prune_on_full_disk(const std::string &mnt, int count) {
    const std::string dir = mnt + "/ckpt", filler = mnt + "/filler", cat = dir + "/ckptdb.sqlite";
    auto l = saves(dir, std::vector<std::string>(static_cast<size_t>(count), "0"));
    REQUIRE(stress::acks(l).size() == static_cast<size_t>(count));
    fill_up(filler);
    struct Seen {
        std::string dir;
        int64_t wal = -1, catalog = -1;
    } seen{dir};
    auto size_of = [](const std::string &p) {
        struct stat st;
        return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : int64_t(-1);
    };
    const int64_t catalog_before = size_of(cat);
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.event_payload = &seen;
    o.on_event = [](const char *event, int64_t, const char *, void *p) {
        auto *s = static_cast<Seen *>(p);
        // Right after the commit that marked the victims: the WAL has every
        // frame of it (a WAL never shrinks before the next write restarts it).
        if (s->wal < 0 && std::strcmp(event, "pruned") == 0) {
            struct stat st;
            if (::stat((s->dir + "/ckptdb.sqlite-wal").c_str(), &st) == 0) s->wal = st.st_size;
            if (::stat((s->dir + "/ckptdb.sqlite").c_str(), &st) == 0) s->catalog = st.st_size;
        }
    };
    ckptdb_catalog *db = nullptr;
    REQUIRE_MESSAGE(ckptdb_open(&db, dir.c_str(), &o) == CKPTDB_OK, ckptdb_last_error());
    ckptdb_keep_kind keep = CKPTDB_KEEP_KIND("epoch", 1);
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = &keep;
    r.keep_last_count = 1;
    int64_t pruned = 0;
    CHECK_MESSAGE(ckptdb_prune(&pruned, nullptr, db, &r, 0, nullptr, nullptr) == CKPTDB_OK, ckptdb_last_error());
    ckptdb_close(db);
    CHECK(pruned == count - 1);
    CHECK(events_named(dir, "reserve_released") == 1);
    CHECK(t::query1(cat, "PRAGMA integrity_check") == "ok");
    REQUIRE(seen.wal > 0);
    const int64_t need = seen.wal + std::max<int64_t>(0, seen.catalog - catalog_before);
    std::printf(
        "reserve: a prune of %lld checkpoints through a full disk wrote %lld bytes of WAL and grew the "
        "catalog by %lld bytes: %.0f bytes each; the %lld-byte reserve covers about %lld at once\n",
        static_cast<long long>(pruned), static_cast<long long>(seen.wal),
        static_cast<long long>(seen.catalog - catalog_before), double(need) / double(pruned),
        static_cast<long long>(kReserveBytes), static_cast<long long>(kReserveBytes * pruned / need));
    std::fflush(stdout);
    CHECK(need < kReserveBytes);
}

}  // namespace

TEST_SUITE("reserve") {
    TEST_CASE("reserve on a full tmpfs: ckptdb prune frees space through it, and it comes back") {
        Mount m("tmpfs");
        if (!m.mounted) return skip("tmpfs case: " + m.why_not);
        prune_on_full_disk(m.path);
    }

    TEST_CASE("reserve on a full loop-mounted ext4: ckptdb prune frees space through it, and it comes back") {
        Mount m("ext4");
        if (!m.mounted) return skip("ext4 case: " + m.why_not);
        prune_on_full_disk(m.path);
    }

    TEST_CASE("reserve on a full tmpfs: ckptdb fsck --repair records a lost file through it") {
        Mount m("tmpfs");
        if (!m.mounted) return skip("tmpfs case: " + m.why_not);
        repair_on_full_disk(m.path);
    }

    TEST_CASE("reserve on a full loop-mounted ext4: ckptdb fsck --repair records a lost file through it") {
        Mount m("ext4");
        if (!m.mounted) return skip("ext4 case: " + m.why_not);
        repair_on_full_disk(m.path);
    }

    TEST_CASE("reserve on a full tmpfs: a prune of 5000 checkpoints at once fits in it") {
        Mount m("tmpfs");
        if (!m.mounted) return skip("tmpfs case: " + m.why_not);
        big_prune_on_full_disk(m.path, 5000);
    }

    TEST_CASE(
        "reserve in a local directory: deleted or cut short by hand, made again by the next writable open, "
        "never by a read-only one") {
        t::TempDir d;
        auto l = saves(d.path, {"100", "200"});
        REQUIRE(stress::acks(l).size() == 2);
        ReserveFile first = reserve_of(d.path);
        REQUIRE(first.whole);

        // Opening again keeps it as it is (recovery's temp cleanup never takes it).
        ckptdb_catalog *db = nullptr;
        REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
        ckptdb_close(db);
        CHECK(reserve_of(d.path).ino == first.ino);

        REQUIRE(::unlink((d / ".ckptdb-ballast").c_str()) == 0);
        ckptdb_open_options ro = CKPTDB_OPEN_OPTIONS_INIT;
        ro.flags = CKPTDB_OPEN_READONLY;
        REQUIRE(ckptdb_open(&db, d.path.c_str(), &ro) == CKPTDB_OK);
        ckptdb_close(db);
        CHECK(!reserve_of(d.path).present);
        Run r = ckptdb({"ls", d.path});
        CHECK(r.code == 0);
        CHECK(!reserve_of(d.path).present);  // ls opens read-only

        REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
        ckptdb_close(db);
        CHECK(reserve_of(d.path).whole);

        // Cut short (and a sparse file of the full size reserves nothing either).
        REQUIRE(::truncate((d / ".ckptdb-ballast").c_str(), 4096) == 0);
        REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
        ckptdb_close(db);
        CHECK(reserve_of(d.path).whole);
        REQUIRE(::unlink((d / ".ckptdb-ballast").c_str()) == 0);
        {
            int fd = ::open((d / ".ckptdb-ballast").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
            REQUIRE(fd >= 0);
            REQUIRE(::ftruncate(fd, kReserveBytes) == 0);
            ::close(fd);
        }
        CHECK(!reserve_of(d.path).whole);
        REQUIRE(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_OK);
        ckptdb_close(db);
        CHECK(reserve_of(d.path).whole);

        // Never a checkpoint: fsck does not report it, and a rebuild of a lost
        // catalog neither adopts it nor calls it an unknown file.
        r = ckptdb({"fsck", d.path});
        INFO(r.out);
        CHECK(r.code == 0);
        CHECK(r.out.find(".ckptdb-ballast") == std::string::npos);
        for (const char *suffix : {"", "-wal", "-shm"}) ::unlink((d / (std::string("ckptdb.sqlite") + suffix)).c_str());
        r = ckptdb({"fsck", "--repair", d.path});
        INFO(r.out);
        CHECK(r.out.find("rebuilt (2 checkpoints)") != std::string::npos);
        CHECK(r.out.find(".ckptdb-ballast") == std::string::npos);
        CHECK(stress::query_i64(t::catalog_path(d), "SELECT count(*) FROM checkpoints") == 2);
        CHECK(reserve_of(d.path).whole);
        CHECK(t::temp_files(d.path).empty());
    }

    TEST_CASE(
        "reserve in a local directory: RLIMIT_FSIZE below its size leaves none, an event says why, and saves "
        "that fit still work") {
        t::TempDir d;
        // 1 MiB: below the reserve's 4 MiB, above the catalog and the small saves.
        stress::Helper h({"fsize", d.path, std::to_string(1 << 20), "100000", std::to_string(2 << 20)});
        auto l = h.lines();
        INFO(stress::join(l));
        CHECK(h.exit_code() == 0);
        REQUIRE(l.size() == 4);
        CHECK(l[0].rfind("ACK ", 0) == 0);
        CHECK(l[1].rfind("FAIL 7 ", 0) == 0);
        CHECK(l[2].rfind("ACK ", 0) == 0);
        CHECK(!reserve_of(d.path).present);
        CHECK(t::temp_files(d.path).empty());
        const std::string cat = t::catalog_path(d);
        CHECK(t::query1(cat,
                        "SELECT count(*) FROM events WHERE event = 'reserve_unavailable' AND detail LIKE "
                        "'%RLIMIT_FSIZE%'") == "1");
        harness::Expect expect;
        auto ids = stress::acks(l);
        expect.acknowledged.insert(ids.begin(), ids.end());
        // (The checks open the directory without the limit: the reserve appears.)
        check_case(d.path, expect, "after RLIMIT_FSIZE below the reserve");
        CHECK(reserve_of(d.path).whole);
    }

}  // TEST_SUITE("reserve")

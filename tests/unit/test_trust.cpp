// Ownership checks, like ssh's StrictModes (core/trust.hpp): a checkpoint
// directory writable by every user without the sticky bit, and a directory,
// catalog or checkpoint file owned by another user than this one or root,
// are refused with CKPTDB_EUNTRUSTED (naming the path, owner and mode)
// before anything is read or changed, unless CKPTDB_OPEN_TRUST_SHARED.
//
// Other users are real processes: uid 65534 (nobody) in a forked child that
// drops its privileges and execs (cp, mv, touch, the crash helper). Those
// cases need root; elsewhere each says so (MESSAGE) and passes, and the
// cases that need no root run for any user.
#include <doctest/doctest.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

constexpr uid_t kNobody = 65534;

bool root() { return ::geteuid() == 0; }

#define NEEDS_ROOT()                                                                                             \
    if (!root()) {                                                                                               \
        MESSAGE("skipped: this case needs root (to chown files and run a process as uid 65534); running as uid " \
                << ::geteuid());                                                                                 \
        return;                                                                                                  \
    }

// Runs argv (argv[0] an absolute path) as uid and gid 65534 in a forked
// child that execs at once; returns its exit status.
int run_as_nobody(const std::vector<std::string> &argv) {
    std::vector<char *> args;
    for (const auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(126);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Every entry of dir: name, owner, mode, size and a hash of the contents.
// Taken before and after a refused call: nothing on disk may change.
// Without the catalog's files (their bytes move while a handle is open)
// when checkpoints_only.
std::string listing(const std::string &dir, bool checkpoints_only = false) {
    std::string out;
    for (const auto &n : t::names(dir)) {
        if (checkpoints_only && n.rfind("ckptdb.sqlite", 0) == 0) continue;
        struct stat st;
        REQUIRE(::lstat((dir + "/" + n).c_str(), &st) == 0);
        char line[512];
        std::snprintf(line, sizeof line, "%s uid=%u mode=%o size=%lld hash=%zx\n", n.c_str(),
                      static_cast<unsigned>(st.st_uid), static_cast<unsigned>(st.st_mode),
                      static_cast<long long>(st.st_size),
                      S_ISREG(st.st_mode) ? std::hash<std::string>()(t::read_file(dir + "/" + n)) : size_t(0));
        out += line;
    }
    return out;
}

std::string octal(const std::string &path) {
    struct stat st;
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return buf;
}

// The owner as the message writes it: "uid 65534 (nobody)" or "uid 65534".
std::string owner_text(uid_t uid) {
    struct passwd *pw = ::getpwuid(uid);
    return "uid " + std::to_string(uid) + (pw ? " (" + std::string(pw->pw_name) + ")" : std::string());
}

ckptdb_open_options flags(unsigned f) {
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = f;
    return o;
}

// ckptdb_open's status and message; a handle that opened is closed.
std::pair<int, std::string> try_open(const std::string &dir, unsigned f) {
    ckptdb_open_options o = flags(f);
    ckptdb_catalog *db = nullptr;
    int rc = ckptdb_open(&db, dir.c_str(), &o);
    std::string msg = ckptdb_last_error();
    ckptdb_close(db);
    return {rc, msg};
}

// A base directory others may enter (0755) and a checkpoint directory in
// it holding two checkpoints of this user.
struct Saved {
    t::TempDir base;
    std::string dir = base / "ck";
    ckptdbxx::entry older, newer;
    Saved() {
        REQUIRE(::chmod(base.path.c_str(), 0755) == 0);
        ckptdbxx::catalog c(dir);
        older = c.save_bytes("epoch", 1, 10, t::pattern(5000, 1));
        newer = c.save_bytes("epoch", 2, 20, t::pattern(5000, 2));
    }
};

const char *const kCp = "/bin/cp", *const kMv = "/bin/mv", *const kTouch = "/usr/bin/touch";

}  // namespace

TEST_CASE("a directory writable by every user without the sticky bit is refused, read-only too, changing nothing") {
    Saved s;
    REQUIRE(::chmod(s.dir.c_str(), 0777) == 0);
    std::string before = listing(s.dir);
    for (unsigned f : {0u, unsigned(CKPTDB_OPEN_READONLY)}) {
        auto [rc, msg] = try_open(s.dir, f);
        CHECK(rc == CKPTDB_EUNTRUSTED);
        CHECK_MESSAGE(msg.find("checkpoint directory '" + s.dir + "'") != std::string::npos, msg);
        CHECK_MESSAGE(msg.find("mode 0777") != std::string::npos, msg);
        CHECK_MESSAGE(msg.find("sticky") != std::string::npos, msg);
        CHECK_MESSAGE(msg.find("CKPTDB_OPEN_TRUST_SHARED") != std::string::npos, msg);
    }
    CHECK(listing(s.dir) == before);
    CHECK(std::string(ckptdb_strerror(CKPTDB_EUNTRUSTED)) != "unknown status code");
    // Shared on purpose: the override opens it and resumes.
    ckptdb_open_options o = flags(CKPTDB_OPEN_READONLY | CKPTDB_OPEN_TRUST_SHARED);
    ckptdbxx::catalog c(s.dir, &o);
    auto l = c.latest();
    REQUIRE(l.has_value());
    CHECK(l->id == s.newer.id);
}

TEST_CASE("a world-writable directory with the sticky bit (like /tmp) and files of this user works") {
    Saved s;
    REQUIRE(::chmod(s.dir.c_str(), 01777) == 0);
    {
        ckptdbxx::catalog c(s.dir);
        auto third = c.save_bytes("epoch", 3, 30, t::pattern(100, 3));
        CHECK(c.latest()->id == third.id);
    }
    NEEDS_ROOT();
    // Another user may add files there (not replace ours): one the library
    // never reads leaves the catalog usable.
    CHECK(run_as_nobody({kTouch, s.dir + "/notes.txt"}) == 0);
    {
        ckptdbxx::catalog c(s.dir);
        CHECK(c.latest()->epoch == 3);
    }
    // One under a catalog file's name is refused before SQLite could roll
    // it back into the catalog: a journal another user planted (the name a
    // catalog on a network file system uses; the -wal and -shm of a WAL
    // catalog stay in place, and the sticky bit keeps them ours).
    CHECK(run_as_nobody({kTouch, s.dir + "/ckptdb.sqlite-journal"}) == 0);
    std::string before = listing(s.dir);
    for (unsigned f : {unsigned(CKPTDB_OPEN_READONLY), 0u}) {
        auto [rc, msg] = try_open(s.dir, f);
        CHECK(rc == CKPTDB_EUNTRUSTED);
        CHECK_MESSAGE(msg.find("catalog file '" + s.dir + "/ckptdb.sqlite-journal' (owner " + owner_text(kNobody)) !=
                          std::string::npos,
                      msg);
    }
    CHECK(listing(s.dir) == before);
}

TEST_CASE("root's resume refuses a catalog another user put in place of its own in a world-writable directory") {
    NEEDS_ROOT();
    Saved s;
    REQUIRE(::chmod(s.dir.c_str(), 0777) == 0);
    const std::string cat = s.dir + "/ckptdb.sqlite";
    // nobody replaces the catalog: a copy of their own, renamed over it.
    REQUIRE(run_as_nobody({kCp, cat, s.dir + "/theirs.sqlite"}) == 0);
    REQUIRE(run_as_nobody({kMv, "-f", s.dir + "/theirs.sqlite", cat}) == 0);
    struct stat st;
    REQUIRE(::stat(cat.c_str(), &st) == 0);
    REQUIRE(st.st_uid == kNobody);
    std::string before = listing(s.dir);
    for (unsigned f : {unsigned(CKPTDB_OPEN_READONLY), 0u}) {
        ckptdb_open_options o = flags(f);
        ckptdb_catalog *db = nullptr;
        CHECK(ckptdb_open(&db, s.dir.c_str(), &o) == CKPTDB_EUNTRUSTED);
        CHECK(db == nullptr);  // no handle: no ckptdb_latest, nothing resumed
        std::string msg = ckptdb_last_error();
        CHECK_MESSAGE(msg.find("the catalog '" + cat + "' (owner " + owner_text(kNobody) + ", mode " + octal(cat) +
                               ")") != std::string::npos,
                      msg);
        CHECK_MESSAGE(msg.find("not to this user (" + owner_text(0) + ") or root") != std::string::npos, msg);
        CHECK_MESSAGE(msg.find("checkpoint directory '" + s.dir + "' (owner " + owner_text(0) + ", mode 0777)") !=
                          std::string::npos,
                      msg);
    }
    CHECK(listing(s.dir) == before);

    SUBCASE("CKPTDB_OPEN_TRUST_SHARED opens the same directory and resumes") {
        ckptdb_open_options o = flags(CKPTDB_OPEN_READONLY | CKPTDB_OPEN_TRUST_SHARED);
        ckptdbxx::catalog c(s.dir, &o);
        auto l = c.latest();
        REQUIRE(l.has_value());
        CHECK(l->id == s.newer.id);
        CHECK(c.read(l->id) == t::pattern(5000, 2));
    }
}

TEST_CASE("a checkpoint file another user owns stops the resume with its name; no older one is taken instead") {
    NEEDS_ROOT();
    Saved s;
    REQUIRE(::chown(s.newer.path.c_str(), kNobody, kNobody) == 0);
    {
        ckptdbxx::catalog c(s.dir);
        std::string before = listing(s.dir, true);
        for (unsigned v : {unsigned(CKPTDB_VERIFY_FULL), unsigned(CKPTDB_VERIFY_SIZE)}) {
            ckptdb_entry e = CKPTDB_ENTRY_INIT;
            CHECK(ckptdb_latest(&e, c.handle(), nullptr, v) == CKPTDB_EUNTRUSTED);
            std::string msg = ckptdb_last_error();
            CHECK_MESSAGE(msg.find("the file '" + s.newer.path + "' (owner " + owner_text(kNobody) + ", mode " +
                                   octal(s.newer.path) + ")") != std::string::npos,
                          msg);
        }
        CHECK(ckptdb_verify(c.handle(), s.newer.id) == CKPTDB_EUNTRUSTED);
        ckptdb_reader *r = nullptr;
        CHECK(ckptdb_reader_open(&r, c.handle(), s.newer.id) == CKPTDB_EUNTRUSTED);
        CHECK(r == nullptr);
        CHECK(std::string(ckptdb_last_error()).find(s.newer.path) != std::string::npos);
        CHECK(c.read(s.older.id) == t::pattern(5000, 1));           // the files of this user still read
        CHECK(c.get(s.newer.id).status == CKPTDB_STATUS_COMPLETE);  // refused, not marked corrupt
        CHECK(listing(s.dir, true) == before);                      // every checkpoint file as it was
    }
    CHECK(t::query1(s.dir + "/ckptdb.sqlite", "SELECT count(*) FROM events WHERE event = 'corrupt'") == "0");

    SUBCASE("CKPTDB_OPEN_TRUST_SHARED trusts it") {
        ckptdb_open_options o = flags(CKPTDB_OPEN_TRUST_SHARED);
        ckptdbxx::catalog c(s.dir, &o);
        CHECK(c.latest()->id == s.newer.id);
        CHECK(c.read(s.newer.id) == t::pattern(5000, 2));
    }
}

TEST_CASE("another user resumes read-only from root's directory: root's files are trusted") {
    NEEDS_ROOT();
    Saved s;  // 0755, root's catalog and files
    int code = -1;
    std::string line = t::run_helper({"latest", s.dir, "--drop-privs"}, &code);
    CHECK_MESSAGE(code == 0, line);
    CHECK(line == "LATEST " + std::to_string(s.newer.id) + " " + s.newer.name);
    // The same process refuses a file of a third user.
    REQUIRE(::chown(s.newer.path.c_str(), 4242, 4242) == 0);
    line = t::run_helper({"latest", s.dir, "--drop-privs"}, &code);
    CHECK(code == CKPTDB_EUNTRUSTED);
    CHECK_MESSAGE(line.find("ERR 16 ") == 0, line);
    CHECK_MESSAGE(line.find(s.newer.path + "' (owner uid 4242") != std::string::npos, line);
    CHECK_MESSAGE(line.find("not to this user (" + owner_text(kNobody) + ")") != std::string::npos, line);
    line = t::run_helper({"latest", s.dir, "--drop-privs", "--trust-shared"}, &code);
    CHECK(line == "LATEST " + std::to_string(s.newer.id) + " " + s.newer.name);
}

TEST_CASE("root refuses a directory another user owns") {
    NEEDS_ROOT();
    t::TempDir base;
    REQUIRE(::chmod(base.path.c_str(), 0755) == 0);
    const std::string dir = base / "theirs";
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    REQUIRE(::chown(dir.c_str(), kNobody, kNobody) == 0);
    int code = -1;
    std::string line = t::run_helper({"open", dir, "--drop-privs"}, &code);  // nobody makes its catalog
    REQUIRE_MESSAGE(code == 0, line);
    std::string before = listing(dir);
    for (unsigned f : {unsigned(CKPTDB_OPEN_READONLY), 0u}) {
        auto [rc, msg] = try_open(dir, f);
        CHECK(rc == CKPTDB_EUNTRUSTED);
        CHECK_MESSAGE(msg.find("checkpoint directory '" + dir + "' (owner " + owner_text(kNobody) + ", mode 0755)") !=
                          std::string::npos,
                      msg);
        CHECK_MESSAGE(msg.find("the catalog '" + dir + "/ckptdb.sqlite'") != std::string::npos, msg);
    }
    CHECK(listing(dir) == before);
    auto [rc, msg] = try_open(dir, CKPTDB_OPEN_READONLY | CKPTDB_OPEN_TRUST_SHARED);
    CHECK_MESSAGE(rc == CKPTDB_OK, msg);
}

TEST_CASE("ckptdb_check_trusted_fd: the rule for a file a caller opens itself") {
    t::TempDir d;
    const std::string f = d / "a.pt";
    t::write_file(f, "x");
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(ckptdb_check_trusted_fd(fd, f.c_str(), 0) == CKPTDB_OK);
    CHECK(ckptdb_check_trusted_fd(fd, nullptr, 0) == CKPTDB_OK);
    CHECK(ckptdb_check_trusted_fd(fd, f.c_str(), 0x100) == CKPTDB_EINVAL);
    int dfd = ::open(d.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(ckptdb_check_trusted_fd(dfd, d.path.c_str(), 0) == CKPTDB_EINVAL);
    CHECK(std::string(ckptdb_last_error()).find("not a regular file") != std::string::npos);
    ::close(dfd);
    CHECK(ckptdb_check_trusted_fd(-1, f.c_str(), 0) == CKPTDB_EINVAL);
    if (root()) {
        REQUIRE(::fchown(fd, kNobody, kNobody) == 0);
        CHECK(ckptdb_check_trusted_fd(fd, f.c_str(), 0) == CKPTDB_EUNTRUSTED);
        std::string msg = ckptdb_last_error();
        CHECK_MESSAGE(
            msg.find("the file '" + f + "' (owner " + owner_text(kNobody) + ", mode 0644)") != std::string::npos, msg);
        CHECK(ckptdb_check_trusted_fd(fd, f.c_str(), CKPTDB_OPEN_TRUST_SHARED) == CKPTDB_OK);
    } else {
        MESSAGE("skipped: a file of another user needs root to chown it");
    }
    ::close(fd);
}

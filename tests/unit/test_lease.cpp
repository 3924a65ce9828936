// Writers on other hosts (a job requeued from node A onto node B of a shared
// file system): their rows are judged by a lease, the mtime of their temp
// file, and by the lock a live writer holds on it. A second host is faked:
// a real save is begun by a child process (killed, paused or stopped), then
// its run row is rewritten to belong to "node-b" and its files' mtimes are
// set explicitly. No assertion depends on how long anything takes.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <ctime>
#include <optional>
#include <sstream>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

int64_t newest_id(const t::TempDir &d) {
    return std::stoll(t::query1(t::catalog_path(d), "SELECT max(id) FROM checkpoints"));
}

std::string status_of(const t::TempDir &d, int64_t id) {
    return t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(id));
}

std::string recovered_detail(const t::TempDir &d, int64_t id) {
    return t::query1(t::catalog_path(d),
                     "SELECT detail FROM events WHERE event = 'recovered' AND checkpoint_id = " + std::to_string(id));
}

// The run that began checkpoint id now belongs to another host (and boot).
void move_to_node_b(const t::TempDir &d, int64_t id) {
    t::exec(d,
            "UPDATE runs SET host = 'node-b', boot_id = 'boot-of-node-b' WHERE id = "
            "(SELECT run_id FROM checkpoints WHERE id = " +
                std::to_string(id) + ")");
}

// Sets the mtime of path to `ago` seconds before now (atime untouched).
void set_mtime_ago(const std::string &path, int64_t ago) {
    struct timespec ts[2];
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_sec = ::time(nullptr) - ago;
    ts[1].tv_nsec = 0;
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

std::string only_temp(const t::TempDir &d) {
    auto temps = t::temp_files(d.path);
    REQUIRE(temps.size() == 1);
    return *temps.begin();
}

// Starts a save in a child, waits until it reaches `point`, kills it.
void kill_save_at(const t::TempDir &d, const std::string &point, size_t bytes = 1 << 20) {
    t::Child c({"save", d.path, std::to_string(bytes), "--pause-at", point, "--epoch", "2", "--chunk", "65536"});
    std::string l = c.line();
    REQUIRE_MESSAGE(l == "PAUSED " + point, l);
    c.kill9();
}

// Sets an environment variable for one scope.
struct Env {
    std::string name;
    Env(const char *n, const char *value) : name(n) {
        if (value)
            ::setenv(n, value, 1);
        else
            ::unsetenv(n);
    }
    ~Env() { ::unsetenv(name.c_str()); }
};

struct Item {
    std::string kind, name, detail, action;
};

std::vector<Item> fsck(const ckptdbxx::catalog &c, bool repair) {
    std::vector<Item> items;
    auto cb = [](const ckptdb_fsck_item *it, void *p) {
        static_cast<std::vector<Item> *>(p)->push_back({it->kind, it->name, it->detail, it->action});
        return 0;
    };
    REQUIRE_MESSAGE(ckptdb_fsck(nullptr, c.handle(), repair ? 1 : 0, cb, &items) == CKPTDB_OK, ckptdb_last_error());
    return items;
}

const Item *find_item(const std::vector<Item> &items, const std::string &name) {
    auto it = std::find_if(items.begin(), items.end(), [&](const Item &i) { return i.name == name; });
    return it == items.end() ? nullptr : &*it;
}

ckptdbxx::catalog open_readonly(const t::TempDir &d) {
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = CKPTDB_OPEN_READONLY;
    return ckptdbxx::catalog(d.path, &o);
}

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

// Start time of this process (field 22 of /proc/self/stat), as a run row records it.
std::string own_start_time() {
    std::string all = t::read_file("/proc/self/stat");
    std::istringstream rest(all.substr(all.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 22; i++) rest >> field;
    return field;
}

// A budget of max_bytes over epoch checkpoints, every one kept by its rule.
void set_budget(const ckptdbxx::catalog &c, int64_t max_bytes) {
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", -1)};
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = keep;
    r.keep_last_count = 1;
    r.max_bytes = max_bytes;
    REQUIRE(ckptdb_set_retention(c.handle(), &r) == CKPTDB_OK);
}

}  // namespace

TEST_CASE("lease expired: the next open aborts another host's save and removes its temp file") {
    t::TempDir d;
    Env lease("CKPTDB_LEASE_SECONDS", nullptr);  // the default, 15 minutes
    kill_save_at(d, "wrote");
    int64_t id = newest_id(d);
    std::string temp = only_temp(d);
    move_to_node_b(d, id);
    set_mtime_ago(d / temp, 3600);

    {
        // A plain check on a read-only handle says why, and changes nothing.
        std::string before = t::snapshot(d);
        auto ro = open_readonly(d);
        auto items = fsck(ro, false);
        const Item *it = find_item(items, temp);
        REQUIRE(it != nullptr);
        CHECK(it->kind == "temp_file");
        CHECK_MESSAGE(contains(it->detail, "lease expired: host node-b last heartbeat"), it->detail);
        CHECK(t::snapshot(d) == before);
    }

    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "aborted");
    CHECK(t::temp_files(d.path).empty());
    std::string detail = recovered_detail(d, id);
    CHECK_MESSAGE(contains(detail, "lease expired: host node-b last heartbeat"), detail);
    CHECK_MESSAGE(contains(detail, "its file's mtime"), detail);
}

TEST_CASE("lease expired: fsck --repair aborts the save where recovery on open did not") {
    t::TempDir d;
    kill_save_at(d, "wrote");
    int64_t id = newest_id(d);
    std::string temp = only_temp(d);
    move_to_node_b(d, id);
    set_mtime_ago(d / temp, 3600);
    std::optional<ckptdbxx::catalog> c;
    {
        // Opened under a lease of three years: recovery leaves the save alone.
        Env lease("CKPTDB_LEASE_SECONDS", "100000000");
        c.emplace(d.path);
        CHECK(status_of(d, id) == "writing");
        CHECK(t::exists(d / temp));
    }
    // Back to the default lease: the repair judges it expired.
    auto items = fsck(*c, true);
    const Item *it = find_item(items, temp);
    REQUIRE(it != nullptr);
    CHECK(it->kind == "temp_file");
    CHECK(it->action == "removed");
    CHECK(status_of(d, id) == "aborted");
    CHECK_FALSE(t::exists(d / temp));
    CHECK(contains(recovered_detail(d, id), "lease expired: host node-b"));
}

TEST_CASE("lease valid: open and fsck --repair leave another host's save and its temp file alone") {
    t::TempDir d;
    kill_save_at(d, "wrote");
    int64_t id = newest_id(d);
    std::string temp = only_temp(d);
    move_to_node_b(d, id);
    set_mtime_ago(d / temp, 0);
    std::string size_before = std::to_string(t::read_file(d / temp).size());

    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "writing");
    REQUIRE(t::exists(d / temp));
    auto items = fsck(c, true);
    const Item *it = find_item(items, temp);
    REQUIRE(it != nullptr);
    CHECK(it->kind == "writing");
    CHECK_MESSAGE(contains(it->detail, "within its lease"), it->detail);
    CHECK(it->action.empty());
    CHECK(status_of(d, id) == "writing");
    CHECK(std::to_string(t::read_file(d / temp).size()) == size_before);
}

TEST_CASE("a temp file its live writer holds locked is never touched, however old its mtime") {
    t::TempDir d;
    // A live writer paused mid-save: it holds the flock on its temp file.
    t::Child w({"save", d.path, "1048576", "--pause-at", "wrote", "--epoch", "2", "--chunk", "65536"});
    REQUIRE(w.line() == "PAUSED wrote");
    int64_t id = newest_id(d);
    std::string temp = only_temp(d);
    move_to_node_b(d, id);
    set_mtime_ago(d / temp, 3600);
    {
        ckptdbxx::catalog c(d.path);
        CHECK(status_of(d, id) == "writing");
        REQUIRE(t::exists(d / temp));
        auto items = fsck(c, true);
        const Item *it = find_item(items, temp);
        REQUIRE(it != nullptr);
        CHECK(it->kind == "writing");
        CHECK_MESSAGE(contains(it->detail, "holds its file locked"), it->detail);
        CHECK(t::exists(d / temp));
        CHECK(status_of(d, id) == "writing");
    }
    // The writer gone (its lock with it), the expired lease decides.
    w.kill9();
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "aborted");
    CHECK(t::temp_files(d.path).empty());
}

TEST_CASE("no temp file yet: the row's begin time is the heartbeat") {
    t::TempDir d;
    kill_save_at(d, "begun");  // the row is recorded, the temp file not created
    int64_t id = newest_id(d);
    REQUIRE(t::temp_files(d.path).empty());
    move_to_node_b(d, id);
    {
        ckptdbxx::catalog c(d.path);  // begun moments ago: within its lease
        CHECK(status_of(d, id) == "writing");
    }
    t::exec(d, "UPDATE checkpoints SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour') WHERE id = " +
                   std::to_string(id));
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "aborted");
    std::string detail = recovered_detail(d, id);
    CHECK_MESSAGE(contains(detail, "lease expired: host node-b"), detail);
    CHECK_MESSAGE(contains(detail, "begin time"), detail);
}

TEST_CASE("the byte budget counts the temp files of saves in flight") {
    const std::string four_k(4000, 'k');
    SUBCASE("a save that fits without them is refused, changing nothing") {
        t::TempDir d;
        { ckptdbxx::catalog(d.path).save_bytes("epoch", 1, 1, four_k); }
        t::Child w({"save", d.path, "6000", "--pause-at", "wrote", "--epoch", "9", "--chunk", "6000"});
        REQUIRE(w.line() == "PAUSED wrote");
        REQUIRE(t::read_file(d / only_temp(d)).size() == 6000);
        ckptdbxx::catalog c(d.path);
        // 4000 complete + 4000 expected fits 12000; with the 6000 in flight it does not.
        set_budget(c, 12000);
        std::string before = t::snapshot(d);
        ckptdb_save *sv = nullptr;
        CHECK(ckptdb_save_begin(&sv, c.handle(), "epoch", 2, 2, nullptr) == CKPTDB_ENOSPC);
        CHECK(sv == nullptr);
        std::string msg = ckptdb_last_error();
        CHECK_MESSAGE(contains(msg, "in the temp files of 1 save(s) in flight"), msg);
        CHECK(t::snapshot(d) == before);
    }
    SUBCASE("room is made by deleting what the budget would otherwise keep") {
        t::TempDir d;
        {
            ckptdbxx::catalog c(d.path);
            c.save_bytes("epoch", 1, 1, four_k);
            c.save_bytes("epoch", 2, 2, four_k);
        }
        t::Child w({"save", d.path, "6000", "--pause-at", "wrote", "--epoch", "9", "--chunk", "6000"});
        REQUIRE(w.line() == "PAUSED wrote");
        ckptdbxx::catalog c(d.path);
        // 8000 complete + 4000 expected fits 16000; with the 6000 in flight
        // the oldest must go.
        set_budget(c, 16000);
        auto s = c.begin("epoch", 3, 3);
        CHECK_FALSE(t::exists(d / "epoch_001.pt"));
        CHECK(t::query1(t::catalog_path(d), "SELECT prune_rule FROM checkpoints WHERE name = 'epoch_001.pt'") ==
              "budget");
        CHECK(t::exists(d / "epoch_002.pt"));
        s.write(four_k);
        s.commit();
        CHECK(t::exists(d / "epoch_002.pt"));
        CHECK(t::exists(d / "epoch_003.pt"));
    }
}

TEST_CASE("a live writer on this host is judged by its pid, never by the lease") {
    t::TempDir d;
    kill_save_at(d, "wrote");
    int64_t id = newest_id(d);
    std::string temp = only_temp(d);
    // The row's run is now this (live) test process, which holds no lock on
    // the file: only the pid speaks for it.
    t::exec(d, "UPDATE runs SET pid = " + std::to_string(::getpid()) + ", proc_start = " + own_start_time() +
                   " WHERE id = (SELECT run_id FROM checkpoints WHERE id = " + std::to_string(id) + ")");
    t::exec(d, "UPDATE checkpoints SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day') WHERE id = " +
                   std::to_string(id));
    set_mtime_ago(d / temp, 24 * 3600);
    Env lease("CKPTDB_LEASE_SECONDS", "1");
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "writing");
    CHECK(t::exists(d / temp));
    auto items = fsck(c, true);
    const Item *it = find_item(items, temp);
    REQUIRE(it != nullptr);
    CHECK(it->kind == "writing");
    CHECK(t::exists(d / temp));
    CHECK(status_of(d, id) == "writing");
}

TEST_CASE("a bad CKPTDB_LEASE_SECONDS fails the open with CKPTDB_EINVAL naming it, and changes nothing") {
    t::TempDir d;
    kill_save_at(d, "wrote");  // a dead writer recovery would otherwise resolve
    int64_t id = newest_id(d);
    std::string before = t::snapshot(d);
    for (const char *bad : {"abc", "0", "-5", "", "15m", "99999999999999999999", "400000000"}) {
        CAPTURE(bad);
        Env lease("CKPTDB_LEASE_SECONDS", bad);
        ckptdb_catalog *db = nullptr;
        CHECK(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_EINVAL);
        CHECK(db == nullptr);
        std::string msg = ckptdb_last_error();
        CHECK_MESSAGE(contains(msg, "CKPTDB_LEASE_SECONDS"), msg);
        CHECK(t::snapshot(d) == before);
    }
    Env lease("CKPTDB_LEASE_SECONDS", "30");
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "aborted");
}

TEST_CASE("a writer judged gone while stalled after its rename still commits, and its file stays") {
    t::TempDir d;
    // Stopped (SIGSTOP) after the rename and the directory fsync, before the
    // catalog says complete: a writer that stalled past its lease.
    t::Child w({"save", d.path, "1048576", "--stop-at", "dir_synced", "--epoch", "2", "--chunk", "65536"});
    REQUIRE(w.line() == "STOPPED dir_synced");
    int st = 0;
    REQUIRE(::waitpid(w.pid, &st, WUNTRACED) == w.pid);
    REQUIRE(WIFSTOPPED(st));
    int64_t id = newest_id(d);
    REQUIRE(t::exists(d / "epoch_002.pt"));
    move_to_node_b(d, id);
    set_mtime_ago(d / "epoch_002.pt", 3600);
    {
        ckptdbxx::catalog c(d.path);  // recovery finds the file whole and adopts it
        CHECK(status_of(d, id) == "complete");
        CHECK(contains(recovered_detail(d, id), "lease expired: host node-b"));
    }
    ::kill(w.pid, SIGCONT);
    std::string l = w.line();
    CHECK_MESSAGE(l.rfind("COMMITTED " + std::to_string(id) + " epoch_002.pt", 0) == 0, l);
    CHECK(w.exit_code() == 0);
    CHECK(status_of(d, id) == "complete");
    CHECK(t::read_file(d / "epoch_002.pt") == t::pattern(1 << 20));
}

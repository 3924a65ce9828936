// Directory saves in place through the C ABI: the catalog records the save,
// makes the directory `name/` itself (never one that is there), the caller
// writes its files into it by any means, and the commit takes what the
// directory holds. Until the commit the directory is the save's: an abort
// removes it whole; a writer killed at any point leaves, after the next
// open, either no directory and the row aborted, or a complete checkpoint
// whose files verify; a directory the catalog did not make is never removed.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "ckptdb.h"
#include "support.hpp"

namespace {

using t::Cat;

struct InPlace {
    ckptdb_dir_save *s = nullptr;
    ckptdb_dir_info info = CKPTDB_DIR_INFO_INIT;
    int rc = CKPTDB_OK;
    InPlace(Cat &c, const char *name, int64_t step = 100, const char *metadata = nullptr) {
        ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
        o.name = name;
        o.metadata = metadata;
        rc = ckptdb_dir_begin_in_place(&s, c.db, "step", 1, step, &o);
        if (rc == CKPTDB_OK) REQUIRE(ckptdb_dir_get_info(&info, s) == CKPTDB_OK);
    }
    ~InPlace() { ckptdb_dir_free(s); }
};

int commit(InPlace &s, const char *metadata = nullptr, ckptdb_entry *out = nullptr) {
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    return ckptdb_dir_commit_in_place(out ? out : &e, s.s, metadata);
}

bool is_dir(const std::string &p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string last_error() { return ckptdb_last_error(); }

// The bytes crash_helper's inplace mode writes for FILE:BYTES:SEED.
std::string helper_bytes(size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 31 + seed) & 0xff);
    return s;
}

std::string status_of(const t::TempDir &d, int64_t id) {
    return t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(id));
}

}  // namespace

TEST_CASE("an in-place save takes the files written into its directory; latest, verify, reader, prune as any") {
    t::TempDir d;
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("step", 1)};
    r.keep_last = keep;
    r.keep_last_count = 1;
    Cat c(d.path, &r);
    InPlace s(c, "checkpoint-100", 100, "{\"loss\": 3}");
    REQUIRE(s.rc == CKPTDB_OK);
    CHECK(std::string(s.info.name) == "checkpoint-100");
    CHECK(std::string(s.info.temp_name) == "checkpoint-100");
    CHECK(is_dir(d / "checkpoint-100"));
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    CHECK(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_ENOTFOUND);  // not before the commit
    t::write_file(d / "checkpoint-100/model.safetensors", t::pattern(70000, 1));
    t::write_file(d / "checkpoint-100/config.json", "{}");
    // The commit for files reported by writers is not for it.
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    CHECK(ckptdb_dir_commit(&e, s.s, nullptr, 0) == CKPTDB_EMISUSE);
    CHECK(last_error().find("in place") != std::string::npos);
    REQUIRE(commit(s, "{\"eval_loss\": 0.5}", &e) == CKPTDB_OK);
    CHECK(e.layout == CKPTDB_LAYOUT_DIR);
    CHECK(e.status == CKPTDB_STATUS_COMPLETE);
    CHECK(std::string(e.path) == d / "checkpoint-100");
    CHECK(e.size == 70000 + 2);
    CHECK(e.file_count == 2);
    CHECK(std::string(e.metadata) == "{\"eval_loss\":0.5}");  // replaced at the commit
    CHECK(commit(s) == CKPTDB_EMISUSE);                       // once
    CHECK(t::query(t::catalog_path(d),
                   "SELECT rank || ':' || name || ':' || size || ':' || length(checksum) FROM "
                   "files WHERE checkpoint_id = " +
                       std::to_string(e.id) + " ORDER BY name") ==
          std::vector<std::string>{"0:config.json:2:32", "0:model.safetensors:70000:32"});
    CHECK(t::query1(t::catalog_path(d),
                    "SELECT coalesce(temp_name, '-') FROM checkpoints WHERE id = " + std::to_string(e.id)) == "-");
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(l.id == e.id);
    CHECK(ckptdb_verify(c.db, e.id) == CKPTDB_OK);
    // The checksum is the bytes': a flipped byte is found.
    {
        std::string b = t::read_file(d / "checkpoint-100/model.safetensors");
        b[1000] ^= 1;
        t::write_file(d / "checkpoint-100/model.safetensors", b);
        CHECK(ckptdb_verify(c.db, e.id) == CKPTDB_ECORRUPT);
        b[1000] ^= 1;
        t::write_file(d / "checkpoint-100/model.safetensors", b);
        CHECK(ckptdb_verify(c.db, e.id) == CKPTDB_OK);  // whole again: restored
    }
    // A normal directory save is not committed in place.
    {
        ckptdb_dir_save *n = nullptr;
        REQUIRE(ckptdb_dir_begin(&n, c.db, "step", 1, 150, nullptr) == CKPTDB_OK);
        CHECK(ckptdb_dir_commit_in_place(&l, n, nullptr) == CKPTDB_EMISUSE);
        CHECK(last_error().find("not begun in place") != std::string::npos);
        ckptdb_dir_free(n);
    }
    // Rotation removes it whole once a newer one is kept.
    InPlace s2(c, "checkpoint-200", 200);
    REQUIRE(s2.rc == CKPTDB_OK);
    t::write_file(d / "checkpoint-200/model.safetensors", "x");
    REQUIRE(commit(s2) == CKPTDB_OK);
    CHECK_FALSE(t::exists(d / "checkpoint-100"));
    CHECK(status_of(d, e.id) == "pruned");
}

TEST_CASE("in-place: a name is required, and bad entries are refused before anything changes") {
    t::TempDir d;
    Cat c(d.path);
    ckptdb_dir_save *s = nullptr;
    CHECK(ckptdb_dir_begin_in_place(&s, c.db, "step", 1, 1, nullptr) == CKPTDB_EINVAL);
    CHECK(last_error().find("needs a name") != std::string::npos);
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.name = "../out";
    CHECK(ckptdb_dir_begin_in_place(&s, c.db, "step", 1, 1, &o) == CKPTDB_EINVAL);
    o.name = "ckptdb.sqlite";
    CHECK(ckptdb_dir_begin_in_place(&s, c.db, "step", 1, 1, &o) == CKPTDB_EINVAL);
    CHECK(s == nullptr);
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints") == "0");

    InPlace p(c, "checkpoint-1");
    REQUIRE(p.rc == CKPTDB_OK);
    const std::string dir = d / "checkpoint-1";
    CHECK(commit(p) == CKPTDB_EINVAL);  // no file
    CHECK(last_error().find("holds no file") != std::string::npos);
    t::write_file(dir + "/model.safetensors", "m");
    struct Bad {
        const char *name;
        std::function<void(const std::string &)> make;
        std::function<void(const std::string &)> undo;
    };
    Bad bad[] = {
        {"sub", [](const std::string &x) { REQUIRE(::mkdir(x.c_str(), 0755) == 0); },
         [](const std::string &x) { ::rmdir(x.c_str()); }},
        {"link", [](const std::string &x) { REQUIRE(::symlink("/etc/hostname", x.c_str()) == 0); },
         [](const std::string &x) { ::unlink(x.c_str()); }},
        {"fifo", [](const std::string &x) { REQUIRE(::mkfifo(x.c_str(), 0644) == 0); },
         [](const std::string &x) { ::unlink(x.c_str()); }},
        {"bad\nname", [](const std::string &x) { t::write_file(x, "n"); },
         [](const std::string &x) { ::unlink(x.c_str()); }},
    };
    for (const Bad &b : bad) {
        CAPTURE(b.name);
        b.make(dir + "/" + b.name);
        std::string before = t::snapshot(d);
        CHECK(commit(p, "{\"eval_loss\": 1}") == CKPTDB_EINVAL);
        CHECK(last_error().find(std::string(b.name) == "bad\nname" ? "bad\\x0aname" : b.name) != std::string::npos);
        CHECK(t::snapshot(d) == before);  // nothing changed, the catalog neither
        CHECK(status_of(d, p.info.id) == "writing");
        CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM files") == "0");
        b.undo(dir + "/" + b.name);
    }
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(commit(p, nullptr, &e) == CKPTDB_OK);  // the save stayed open
    CHECK(e.file_count == 1);
    CHECK(std::string(e.metadata) == "{}");  // NULL keeps the begin's
    CHECK(ckptdb_verify(c.db, e.id) == CKPTDB_OK);
}

TEST_CASE("in-place: an abort removes the directory whole; a directory the catalog did not make is never touched") {
    t::TempDir d;
    Cat c(d.path);
    {
        InPlace p(c, "checkpoint-1");
        REQUIRE(p.rc == CKPTDB_OK);
        t::write_file(d / "checkpoint-1/model.safetensors", t::pattern(5000));
        t::write_file(d / "checkpoint-1/optimizer.pt", t::pattern(3000));
        REQUIRE(ckptdb_dir_abort(p.s) == CKPTDB_OK);
        CHECK_FALSE(t::exists(d / "checkpoint-1"));
        CHECK(status_of(d, p.info.id) == "aborted");
    }
    {
        InPlace p(c, "checkpoint-2");
        REQUIRE(p.rc == CKPTDB_OK);
        t::write_file(d / "checkpoint-2/model.safetensors", "m");
    }  // freed without a commit
    CHECK_FALSE(t::exists(d / "checkpoint-2"));
    // Something already there.
    REQUIRE(::mkdir((d / "checkpoint-3").c_str(), 0755) == 0);
    t::write_file(d / "checkpoint-3/model.safetensors", "theirs");
    {
        InPlace p(c, "checkpoint-3");
        CHECK(p.rc == CKPTDB_EEXISTS);
        CHECK(last_error().find("checkpoint-3") != std::string::npos);
    }
    CHECK(t::names(d / "checkpoint-3") == std::set<std::string>{"model.safetensors"});
    CHECK(t::read_file(d / "checkpoint-3/model.safetensors") == "theirs");
    // Made between the row and the mkdir: the row is aborted, the directory left as it is.
    t::Child a({"inplace", d.path, "checkpoint-4", "--stop-at", "begun", "model.safetensors:100:1"});
    REQUIRE(a.line() == "STOPPED begun");
    int st = 0;
    REQUIRE(::waitpid(a.pid, &st, WUNTRACED) == a.pid);
    REQUIRE(WIFSTOPPED(st));
    REQUIRE(::mkdir((d / "checkpoint-4").c_str(), 0755) == 0);
    t::write_file(d / "checkpoint-4/mine.txt", "theirs");
    ::kill(a.pid, SIGCONT);
    std::string l = a.line();
    CHECK(l.rfind("ERR " + std::to_string(CKPTDB_EEXISTS) + " ", 0) == 0);
    CHECK(l.find("checkpoint-4") != std::string::npos);
    CHECK(a.exit_code() == CKPTDB_EEXISTS);
    CHECK(t::names(d / "checkpoint-4") == std::set<std::string>{"mine.txt"});
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE name = 'checkpoint-4'") == "aborted");
}

TEST_CASE("in-place: the writer killed at each point leaves no directory and the row aborted, or a whole checkpoint") {
    for (const std::string point :
         {"begun", "dir_created", "inplace_file_written", "sealed", "dir_synced", "committed"}) {
        CAPTURE(point);
        t::TempDir d;
        { Cat c(d.path); }
        t::Child w({"inplace", d.path, "checkpoint-100", "--pause-at", point, "--metadata", "{\"eval_loss\": 2}",
                    "model.safetensors:40000:1", "trainer_state.json:300:2"});
        std::string first = w.line();
        if (point != "begun" && point != "dir_created") {  // before these the save has not printed its name
            REQUIRE(first.rfind("BEGUN ", 0) == 0);
            first = w.line();
        }
        REQUIRE(first == "PAUSED " + point);
        w.kill9();
        Cat c(d.path);  // recovery
        const bool whole = point == "sealed" || point == "dir_synced" || point == "committed";
        ckptdb_entry l = CKPTDB_ENTRY_INIT;
        if (whole) {
            REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
            CHECK(std::string(l.name) == "checkpoint-100");
            CHECK(l.file_count == 2);
            CHECK(ckptdb_verify(c.db, l.id) == CKPTDB_OK);
            CHECK(t::names(d / "checkpoint-100") == std::set<std::string>{"model.safetensors", "trainer_state.json"});
            CHECK(t::read_file(d / "checkpoint-100/trainer_state.json") == helper_bytes(300, 2));
        } else {
            CHECK(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_ENOTFOUND);
            CHECK_FALSE(t::exists(d / "checkpoint-100"));
            CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints") == "aborted");
        }
        CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints WHERE status = 'writing'") == "0");
        // Never a directory the catalog does not call complete.
        for (const std::string &n : t::names(d.path))
            if (is_dir(d / n))
                CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE name = '" + n + "'") ==
                      "complete");
    }
}

TEST_CASE("in-place: a live save's directory is neither foreign to fsck nor removed by another open") {
    t::TempDir d;
    { Cat c(d.path); }
    t::Child w({"inplace", d.path, "checkpoint-7", "--pause-at", "inplace_file_written", "model.safetensors:100:1",
                "b.bin:10:2"});
    REQUIRE(w.line().rfind("BEGUN ", 0) == 0);
    REQUIRE(w.line() == "PAUSED inplace_file_written");
    {
        Cat other(d.path);  // recovery: the writer lives
        CHECK(t::names(d / "checkpoint-7") == std::set<std::string>{"model.safetensors"});
        std::vector<std::string> named;
        int64_t problems = -1;
        REQUIRE(ckptdb_fsck(
                    &problems, other.db, 0,
                    [](const ckptdb_fsck_item *it, void *p) {
                        static_cast<std::vector<std::string> *>(p)->push_back(std::string(it->kind) + " " + it->name);
                        return 0;
                    },
                    &named) == CKPTDB_OK);
        CHECK(problems == 0);
        for (const std::string &f : named) CHECK(f.find("checkpoint-7") == std::string::npos);
    }
    w.kill9();
    { Cat c(d.path); }
    CHECK_FALSE(t::exists(d / "checkpoint-7"));
}

TEST_CASE("a complete in-place save is an ordinary directory checkpoint: the last link, sync, a second open") {
    t::TempDir d, dst;
    int64_t id = 0;
    {
        Cat c(d.path);
        InPlace s(c, "checkpoint-300", 300);
        REQUIRE(s.rc == CKPTDB_OK);
        t::write_file(d / "checkpoint-300/model.safetensors", t::pattern(9000, 4));
        t::write_file(d / "checkpoint-300/rng_state.pth", t::pattern(100, 5));
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        REQUIRE(commit(s, "{\"eval_loss\": 0.1}", &e) == CKPTDB_OK);
        id = e.id;
    }
    char target[256] = {0};
    REQUIRE(::readlink((d / "last.pt").c_str(), target, sizeof target - 1) > 0);
    CHECK(std::string(target) == "checkpoint-300");
    {
        Cat c(d.path);  // recovery leaves it as it is
        CHECK(ckptdb_verify(c.db, id) == CKPTDB_OK);
        CHECK(t::names(d / "checkpoint-300") == std::set<std::string>{"model.safetensors", "rng_state.pth"});
    }
    const std::string to = dst / "copy";
    int64_t copied = 0, bytes = 0;
    REQUIRE(ckptdb_sync(&copied, &bytes, d.path.c_str(), to.c_str(), nullptr) == CKPTDB_OK);
    CHECK(copied == 1);
    CHECK(bytes == 9100);
    CHECK(t::read_file(to + "/checkpoint-300/model.safetensors") == t::pattern(9000, 4));
    Cat c(to);
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(std::string(l.name) == "checkpoint-300");
    CHECK(l.layout == CKPTDB_LAYOUT_DIR);
    CHECK(std::string(l.metadata).find("eval_loss") != std::string::npos);
}

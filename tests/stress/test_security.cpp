// Hostile directories and catalogs: symlinks planted at a save's temp or
// final name, catalog rows tampered (with sqlite3) to name a path outside the
// directory, and files the catalog does not know. Nothing outside the
// directory is ever read, written or deleted; nothing unknown is deleted
// unless it is one of the library's own temp names. Each case ends with the
// invariants.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include "ckptdb.hpp"
#include "stress.hpp"

static stress::Figures g_fig("stress-security");

namespace {

void sql(const std::string &db_path, const std::string &statements) {
    sqlite3 *db = nullptr;
    REQUIRE(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK);
    char *err = nullptr;
    int rc = sqlite3_exec(db, statements.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    REQUIRE_MESSAGE(rc == SQLITE_OK, msg);
}

// Quoted as an SQL string literal.
std::string lit(const std::string &s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
}

std::string status_of(const t::TempDir &d, int64_t id) {
    return t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(id));
}

harness::Expect expect_acked(const std::set<int64_t> &ids) {
    harness::Expect e;
    e.acknowledged = ids;
    return e;
}

void end_case(const t::TempDir &d, harness::Expect expect) {
    expect.newest_complete_seq = std::max(expect.newest_complete_seq, stress::newest_complete_seq(d.path));
    auto bad = stress::all_checks(d.path, expect);
    g_fig.cases++;
    g_fig.violations += static_cast<long>(bad.size());
    CHECK_MESSAGE(bad.empty(), stress::join(bad));
}

// What an outside directory holds: every name with its bytes.
std::string contents(const t::TempDir &d) {
    std::string out;
    for (const auto &n : t::names(d.path)) out += n + "=" + t::read_file(d / n) + "\n";
    return out;
}

struct Fsck {
    std::vector<std::string> lines;
    static int cb(const ckptdb_fsck_item *it, void *p) {
        static_cast<Fsck *>(p)->lines.push_back(std::string(it->kind) + " " + it->name +
                                                (it->action && *it->action ? std::string(" ") + it->action : ""));
        return 0;
    }
    bool has_prefix(const std::string &p) const {
        for (const auto &l : lines)
            if (l.rfind(p, 0) == 0) return true;
        return false;
    }
    std::string all() const {
        std::string s;
        for (const auto &l : lines) s += l + "; ";
        return s;
    }
};

}  // namespace

TEST_CASE("a symlink planted at the final name before the rename is not followed: the commit fails with EEXISTS") {
    t::TempDir d, outside;
    t::write_file(outside / "target", "outside bytes");
    ckptdbxx::catalog c(d.path);
    auto first = c.save_bytes("epoch", 0, 0, "first");
    auto s = c.begin("epoch", 1, 1);  // epoch_001.pt
    s.write(t::pattern(100000));
    REQUIRE(::symlink((outside / "target").c_str(), (d / "epoch_001.pt").c_str()) == 0);
    try {
        s.commit();
        FAIL("the commit replaced or followed a planted symlink");
    } catch (const ckptdbxx::error &e) {
        CHECK(e.code() == CKPTDB_EEXISTS);
        CHECK_MESSAGE(std::string(e.what()).find(d / "epoch_001.pt") != std::string::npos, e.what());
    }
    CHECK(contents(outside) == "target=outside bytes\n");
    // The planted link is not ours: left alone, still a link.
    struct stat st;
    REQUIRE(::lstat((d / "epoch_001.pt").c_str(), &st) == 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK(t::temp_files(d.path).empty());
    CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE name = 'epoch_001.pt'") == "aborted");
    CHECK(c.latest()->id == first.id);
    // A save begun after the link was planted picks another name.
    auto again = c.save_bytes("epoch", 1, 1, "again");
    CHECK(again.name == "epoch_001-2.pt");
    CHECK(contents(outside) == "target=outside bytes\n");
    end_case(d, expect_acked(std::set<int64_t>{first.id, again.id}));
}

TEST_CASE("a temp file swapped for a symlink (or another file) before the rename is never committed") {
    // mode 0: streamed through ckptdb_save_write; 1: written through the
    // library's descriptor; 2: written by the caller through the temp path.
    for (int mode = 0; mode < 3; mode++) {
        // A hard link swapped in is a legitimate replacement where the caller
        // writes the file (modes 1 and 2); only a streamed save owns its bytes.
        for (bool hardlink : {false, true}) {
            if (hardlink && mode != 0) continue;
            CAPTURE(mode);
            CAPTURE(hardlink);
            t::TempDir d, outside;
            t::write_file(outside / "target", "outside bytes");
            ckptdbxx::catalog c(d.path);
            auto first = c.save_bytes("epoch", 0, 0, "first");
            auto s = c.begin("epoch", 1, 1);
            std::string temp;
            if (mode == 0) {
                s.write(t::pattern(5000));
                temp = t::temp_files(d.path).empty() ? "" : d / *t::temp_files(d.path).begin();
            } else if (mode == 1) {
                int fd = s.fd();
                std::string b = t::pattern(5000);
                REQUIRE(::write(fd, b.data(), b.size()) == static_cast<ssize_t>(b.size()));
                temp = t::temp_files(d.path).empty() ? "" : d / *t::temp_files(d.path).begin();
            } else {
                temp = s.temp_path();
                t::write_file(temp, t::pattern(5000));
            }
            REQUIRE(!temp.empty());
            REQUIRE(::unlink(temp.c_str()) == 0);
            if (hardlink)
                REQUIRE(::link((outside / "target").c_str(), temp.c_str()) == 0);
            else
                REQUIRE(::symlink((outside / "target").c_str(), temp.c_str()) == 0);
            try {
                auto e = s.commit();
                FAIL("committed a temp file that is not the save's own: " << e.name);
            } catch (const ckptdbxx::error &e) {
                CHECK_MESSAGE(std::string(e.what()).find(temp) != std::string::npos, e.what());
            }
            CHECK(contents(outside) == "target=outside bytes\n");
            CHECK_FALSE(t::exists(d / "epoch_001.pt"));
            CHECK(t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE epoch = 1") == "aborted");
            CHECK(c.latest()->id == first.id);
            // The swapped-in link had the library's own temp name: it is gone
            // (the link only; its target stays).
            end_case(d, expect_acked(std::set<int64_t>{first.id}));
            CHECK(contents(outside) == "target=outside bytes\n");
        }
    }
}

TEST_CASE("a tampered row naming '../x', an absolute path or a name with '/' is never read, written or deleted") {
    t::TempDir outside;
    t::write_file(outside / "victim", "abc");
    const std::string rel = "../" + outside.path.substr(outside.path.rfind('/') + 1) + "/victim";
    for (const std::string &evil : {rel, outside / "victim", std::string("sub/victim"), std::string("..")}) {
        CAPTURE(evil);
        t::TempDir d, dst;
        REQUIRE(::mkdir((d / "sub").c_str(), 0755) == 0);
        t::write_file(d / "sub/victim", "abc");
        int64_t good, bad;
        {
            ckptdbxx::catalog c(d.path);
            good = c.save_bytes("epoch", 1, 1, "good").id;
            bad = c.save_bytes("epoch", 2, 2, "abc").id;  // the same bytes as the victims
        }
        sql(t::catalog_path(d), "UPDATE checkpoints SET name = " + lit(evil) + " WHERE id = " + std::to_string(bad) +
                                    "; UPDATE files SET name = " + lit(evil) +
                                    " WHERE checkpoint_id = " + std::to_string(bad) + ";");
        const std::string before = contents(outside), sub_before = t::read_file(d / "sub/victim");
        {
            ckptdbxx::catalog c(d.path);
            CHECK(c.get(bad).path.empty());  // never turned into a path
            ckptdb_reader *r = nullptr;
            CHECK(ckptdb_reader_open(&r, c.handle(), bad) == CKPTDB_ECORRUPT);
            ckptdb_reader_close(r);
            CHECK(ckptdb_verify(c.handle(), bad) != CKPTDB_OK);
            CHECK(c.latest()->id == good);  // skipped, marked corrupt
            CHECK(status_of(d, bad) == "corrupt");
            CHECK(t::query1(t::catalog_path(d),
                            "SELECT count(*) FROM events WHERE event = 'corrupt' AND checkpoint_id = " +
                                std::to_string(bad)) != "0");
            int64_t checked = 0, corrupt = 0;
            CHECK(ckptdb_verify_all(&checked, &corrupt, c.handle(), nullptr, nullptr) == CKPTDB_OK);
            CHECK(corrupt == 0);  // already corrupt: no longer among the complete ones
            // Back to complete by hand: fsck must report it, and a repair
            // must not act on the path.
            sql(t::catalog_path(d), "UPDATE checkpoints SET status = 'complete' WHERE id = " + std::to_string(bad));
            Fsck check, repair;
            int64_t problems = 0;
            REQUIRE(ckptdb_fsck(&problems, c.handle(), 0, Fsck::cb, &check) == CKPTDB_OK);
            CHECK_MESSAGE(problems >= 1, check.all());
            CHECK_MESSAGE(check.has_prefix("size_mismatch " + evil), check.all());
            REQUIRE(ckptdb_fsck(&problems, c.handle(), 1, Fsck::cb, &repair) == CKPTDB_OK);
            CHECK(status_of(d, bad) == "corrupt");
            // Sync: the row is refused, nothing is read from its path.
            ckptdb_sync_options so = CKPTDB_SYNC_OPTIONS_INIT;
            so.delete_pruned = 1;
            int64_t copied = 0;
            CHECK(ckptdb_sync(&copied, nullptr, d.path.c_str(), dst.path.c_str(), &so) == CKPTDB_OK);
            CHECK(copied == 1);  // the good one only
            CHECK(t::names(dst.path).count("victim") == 0);
            // Prune (asked to take corrupt ones): pruned, but a tampered name is never unlinked.
            ckptdb_retention keep = CKPTDB_RETENTION_INIT;
            keep.prune_corrupt = 1;
            int64_t count = 0;
            CHECK(ckptdb_prune(&count, nullptr, c.handle(), &keep, 0, nullptr, nullptr) == CKPTDB_OK);
            CHECK(count == 1);
            CHECK(status_of(d, bad) == "pruned");
        }
        {
            ckptdbxx::catalog again(d.path);  // recovery finishing a "pending" prune must not touch it either
        }
        CHECK(contents(outside) == before);
        CHECK(t::read_file(d / "sub/victim") == sub_before);
        CHECK(t::exists(outside / "victim"));
        end_case(d, expect_acked(std::set<int64_t>{good}));
        CHECK(contents(outside) == before);
    }
}

TEST_CASE("a tampered temp name in a dead writer's row is never unlinked by recovery") {
    t::TempDir d, outside;
    t::write_file(outside / "victim", "abc");
    t::write_file(outside / ".ckptdb-tmp-00000000000000000000000000000000", "looks like ours, but outside");
    const std::string base = "../" + outside.path.substr(outside.path.rfind('/') + 1);
    int64_t good;
    {
        ckptdbxx::catalog c(d.path);
        good = c.save_bytes("epoch", 1, 1, "good").id;
    }
    // Two saves killed mid-write, their rows then tampered.
    for (const std::string &evil : {base + "/victim", base + "/.ckptdb-tmp-00000000000000000000000000000000"}) {
        t::Child k({"save", d.path, "100000", "--pause-at", "wrote", "--epoch", "5"});
        REQUIRE(k.line() == "PAUSED wrote");
        k.kill9();
        sql(t::catalog_path(d), "UPDATE files SET temp_name = " + lit(evil) + ", name = " + lit(evil) +
                                    " WHERE checkpoint_id = (SELECT max(checkpoint_id) FROM files);");
    }
    const std::string before = contents(outside);
    ckptdbxx::catalog c(d.path);  // recovery: both aborted, their real temp files removed as orphans
    CHECK(t::query1(t::catalog_path(d), "SELECT count(*) FROM checkpoints WHERE status = 'aborted'") == "2");
    CHECK(t::temp_files(d.path).empty());
    CHECK(contents(outside) == before);
    CHECK(c.latest()->id == good);
    end_case(d, expect_acked(std::set<int64_t>{good}));
    CHECK(contents(outside) == before);
}

TEST_CASE("files the catalog does not know are reported and never deleted; only the library's temp names are") {
    t::TempDir d, outside, dst;
    t::write_file(outside / "target", "outside bytes");
    std::set<int64_t> acked;
    {
        ckptdbxx::catalog c(d.path);
        acked.insert(c.save_bytes("epoch", 0, 0, "zero").id);
    }
    t::write_file(d / "notes.txt", "mine");
    t::write_file(d / "epoch_777.pt", "a checkpoint of the old recipe");
    REQUIRE(::symlink((outside / "target").c_str(), (d / "outside-link").c_str()) == 0);
    REQUIRE(::mkdir((d / "logs").c_str(), 0755) == 0);
    t::write_file(d / "logs/run.log", "log");
    REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
    t::write_file(d / ".ckptdb-tmp-leftover", "ours: a temp name of the library");
    const std::set<std::string> unknown{"notes.txt", "epoch_777.pt", "outside-link", "logs", "fifo"};
    {
        ckptdbxx::catalog c(d.path);  // recovery removes the temp name only
        CHECK_FALSE(t::exists(d / ".ckptdb-tmp-leftover"));
        ckptdb_retention keep = CKPTDB_RETENTION_INIT;
        keep.keep_last_default = 1;
        REQUIRE(ckptdb_set_retention(c.handle(), &keep) == CKPTDB_OK);
        for (int i = 1; i <= 12; i++)
            acked.insert(c.save_bytes(i % 2 ? "epoch" : "step", i, i, "bytes " + std::to_string(i)).id);
        REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &keep, 0, nullptr, nullptr) == CKPTDB_OK);
        Fsck check, repair;
        int64_t problems = 0;
        REQUIRE(ckptdb_fsck(&problems, c.handle(), 0, Fsck::cb, &check) == CKPTDB_OK);
        for (const auto &n : unknown) CHECK_MESSAGE(check.has_prefix("unknown_file " + n), check.all());
        CHECK(problems == static_cast<int64_t>(unknown.size()));
        REQUIRE(ckptdb_fsck(&problems, c.handle(), 1, Fsck::cb, &repair) == CKPTDB_OK);
        int64_t checked = 0, corrupt = 0;
        CHECK(ckptdb_verify_all(&checked, &corrupt, c.handle(), nullptr, nullptr) == CKPTDB_OK);
        CHECK(corrupt == 0);
    }
    // The destination's own files survive a sync with delete.
    t::write_file(dst / "dst-notes.txt", "dst");
    ckptdb_sync_options so = CKPTDB_SYNC_OPTIONS_INIT;
    so.delete_pruned = 1;
    REQUIRE(ckptdb_sync(nullptr, nullptr, d.path.c_str(), dst.path.c_str(), &so) == CKPTDB_OK);
    REQUIRE(ckptdb_sync(nullptr, nullptr, d.path.c_str(), dst.path.c_str(), &so) == CKPTDB_OK);
    CHECK(t::read_file(dst / "dst-notes.txt") == "dst");
    auto present = t::names(d.path);
    for (const auto &n : unknown) CHECK_MESSAGE(present.count(n) == 1, n);
    CHECK(t::read_file(d / "notes.txt") == "mine");
    CHECK(t::read_file(d / "epoch_777.pt") == "a checkpoint of the old recipe");
    CHECK(t::read_file(d / "logs/run.log") == "log");
    CHECK(contents(outside) == "target=outside bytes\n");
    end_case(d, expect_acked(acked));
    CHECK(t::names(d.path).count("notes.txt") == 1);
}

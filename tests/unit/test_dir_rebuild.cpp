// Rebuild (fsck --repair) and adopt take in directory checkpoints: a flat
// subdirectory that looks like a checkpoint becomes one row of layout dir
// with a files row per file, hashed; a DCP directory without its metadata
// is quarantined; a nested directory or a link is reported and left alone,
// and nothing outside the checkpoint directory is opened. The rows then
// work like any other: latest, verify, the reader, and a prune that removes
// the directory whole, keeping files the catalog did not write.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

using t::Cat;

// Sets a file's times (no following of a link), so that the order a rebuild
// assumes never depends on the clock.
void set_mtime(const std::string &path, time_t when) {
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

void set_dir_mtime(const std::string &dir, time_t when) {
    for (const std::string &n : t::names(dir)) set_mtime(dir + "/" + n, when);
}

// A committed directory checkpoint "epoch_<epoch>" of three files, as
// ckptdb.dcp writes one (two ranks' data and the coordinator's metadata).
int64_t save_dir(const std::string &dir, ckptdb_catalog *c, int64_t epoch) {
    ckptdb_dir_save *s = nullptr;
    ckptdb_dir_info info = CKPTDB_DIR_INFO_INIT;
    REQUIRE(ckptdb_dir_begin(&s, c, "epoch", epoch, epoch * 10, nullptr) == CKPTDB_OK);
    REQUIRE(ckptdb_dir_get_info(&info, s) == CKPTDB_OK);
    std::vector<ckptdb_shard *> shards;
    std::vector<ckptdb_shard_info> infos(3, CKPTDB_SHARD_INFO_INIT);
    std::vector<ckptdb_dir_file> files;
    const char *names[] = {"__0_0.distcp", ".metadata", "__1_0.distcp"};
    const int64_t ranks[] = {0, 0, 1};
    const size_t sizes[] = {3000, 100, 2000};
    for (int i = 0; i < 3; i++) {
        ckptdb_shard *sh = nullptr;
        std::string bytes = t::pattern(sizes[i], static_cast<unsigned>(epoch * 3 + i));
        REQUIRE(ckptdb_dir_file_begin(&sh, dir.c_str(), info.temp_name, names[i], ranks[i]) == CKPTDB_OK);
        REQUIRE(ckptdb_shard_write(sh, bytes.data(), bytes.size()) == CKPTDB_OK);
        REQUIRE(ckptdb_shard_finish(&infos[i], sh) == CKPTDB_OK);
        shards.push_back(sh);
    }
    for (int i = 0; i < 3; i++)
        files.push_back({CKPTDB_DIR_FILE_VERSION, infos[i].name, ranks[i], infos[i].size, infos[i].checksum});
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_dir_commit(&e, s, files.data(), files.size()) == CKPTDB_OK);
    for (ckptdb_shard *sh : shards) ckptdb_shard_free(sh);
    ckptdb_dir_free(s);
    return e.id;
}

std::string read_named(Cat &c, int64_t id, const char *name) {
    ckptdb_reader *r = nullptr;
    REQUIRE(ckptdb_reader_open_file(&r, c.db, id, name) == CKPTDB_OK);
    std::string out;
    char buf[65536];
    for (;;) {
        size_t n = 0;
        REQUIRE(ckptdb_reader_read(&n, r, buf, sizeof buf) == CKPTDB_OK);
        if (n == 0) break;
        out.append(buf, n);
    }
    ckptdb_reader_close(r);
    return out;
}

// Every name under dir (and its subdirectories) with its bytes, links as
// their targets, but for the catalog's own files and the last link: what
// "nothing deleted, nothing changed" compares.
std::map<std::string, std::string> tree(const std::string &dir) {
    std::map<std::string, std::string> out;
    for (const std::string &n : t::names(dir)) {
        if (n.rfind("ckptdb.sqlite", 0) == 0 || n == ".ckptdb-ballast" || n == "last.pt") continue;
        std::string p = dir + "/" + n;
        struct stat st;
        REQUIRE(::lstat(p.c_str(), &st) == 0);
        if (S_ISLNK(st.st_mode)) {
            char buf[4096];
            ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
            out[n] = "-> " + std::string(buf, k > 0 ? static_cast<size_t>(k) : 0);
        } else if (S_ISDIR(st.st_mode)) {
            out[n + "/"] = "";
            for (const auto &inner : tree(p)) out[n + "/" + inner.first] = inner.second;
        } else {
            out[n] = t::read_file(p);
        }
    }
    return out;
}

// A zip archive's first bytes without its end: torn as a torch.save cut short.
std::string torn_zip() { return std::string("PK\x03\x04", 4) + t::pattern(500, 9); }

std::string db(const t::TempDir &d) { return t::catalog_path(d); }

}  // namespace

TEST_CASE("a lost catalog beside a directory checkpoint and a file: fsck --repair brings both back") {
    t::TempDir d;
    int64_t dir_id = 0;
    std::vector<std::string> before;
    {
        ckptdbxx::catalog c(d.path);
        c.save_bytes("epoch", 1, 10, t::pattern(4000, 1));  // epoch_001.pt
        dir_id = save_dir(d.path, c.handle(), 2);           // epoch_002/
        before = t::query(db(d),
                          "SELECT name || ':' || rank || ':' || size || ':' || checksum FROM files WHERE "
                          "checkpoint_id = " +
                              std::to_string(dir_id) + " ORDER BY name");
    }
    REQUIRE(before.size() == 3);
    // The file is older than every file of the directory, explicitly.
    set_mtime(d / "epoch_001.pt", 1700000000);
    set_dir_mtime(d / "epoch_002", 1700000100);
    for (const char *f : {"ckptdb.sqlite", "ckptdb.sqlite-wal", "ckptdb.sqlite-shm"}) ::unlink((d / f).c_str());

    ckptdbxx::fsck_report rep = ckptdbxx::fsck_dir(d.path, nullptr, true);
    CHECK(rep.rebuilt);
    std::string all;
    for (const auto &f : rep.findings) all += f.kind + " " + f.name + " " + f.action + "; ";
    CHECK_MESSAGE(all.find("rebuilt epoch_002 added") != std::string::npos, all);
    CHECK_MESSAGE(all.find("rebuilt epoch_001.pt added") != std::string::npos, all);
    CHECK_MESSAGE(all.find("unknown_file") == std::string::npos, all);

    // The directory's row: layout dir, its kind and epoch from the name, the
    // newer of the two, and the same files rows as the commit recorded.
    CHECK(
        t::query(db(d),
                 "SELECT name || ':' || layout || ':' || kind || ':' || epoch || ':' || status || ':' || "
                 "size || ':' || pinned FROM checkpoints ORDER BY commit_seq") ==
        std::vector<std::string>{"epoch_001.pt:file:epoch:1:complete:4000:1", "epoch_002:dir:epoch:2:complete:5100:1"});
    const std::string id = t::query1(db(d), "SELECT id FROM checkpoints WHERE name = 'epoch_002'");
    CHECK(t::query(db(d),
                   "SELECT name || ':' || rank || ':' || size || ':' || checksum FROM files WHERE "
                   "checkpoint_id = " +
                       id + " ORDER BY name") == before);

    Cat c(d.path);
    // latest does not look at pins: the directory is the newest.
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(std::string(l.name) == "epoch_002");
    CHECK(l.layout == CKPTDB_LAYOUT_DIR);
    CHECK(l.file_count == 3);
    CHECK(ckptdb_verify(c.db, l.id) == CKPTDB_OK);
    CHECK(read_named(c, l.id, "__1_0.distcp") == t::pattern(2000, 2 * 3 + 2));
    CHECK(read_named(c, l.id, ".metadata") == t::pattern(100, 2 * 3 + 1));
    // The repaired directory checks clean.
    CHECK(ckptdbxx::fsck_dir(d.path).problems == 0);
}

TEST_CASE("adopt takes in flat directories, quarantines a DCP directory without metadata, leaves the rest alone") {
    t::TempDir d, outside;
    auto mk = [&](const std::string &sub) { REQUIRE(::mkdir((d / sub).c_str(), 0755) == 0); };
    // Written by hand: plain files.
    mk("epoch_002");
    t::write_file(d / "epoch_002/model.pt", t::pattern(1000, 1));
    t::write_file(d / "epoch_002/notes.json", "{}");
    // The Hugging Face Trainer's layout.
    mk("checkpoint-500");
    t::write_file(d / "checkpoint-500/model.safetensors", t::pattern(700, 2));
    t::write_file(d / "checkpoint-500/trainer_state.json", "{\"global_step\": 500}");
    // torch.distributed.checkpoint's: a data file that starts like a zip
    // archive (an item saved by torch.save) is not judged as one.
    mk("dcp_run");
    t::write_file(d / "dcp_run/__0_0.distcp", torn_zip());
    t::write_file(d / "dcp_run/__1_0.distcp", t::pattern(300, 3));
    t::write_file(d / "dcp_run/.metadata", t::pattern(50, 4));
    // The same, its coordinator gone before the metadata.
    mk("dcp_torn");
    t::write_file(d / "dcp_torn/__0_0.distcp", t::pattern(300, 5));
    // A torn zip archive in an ordinary directory.
    mk("step_000700");
    t::write_file(d / "step_000700/optimizer.pt", torn_zip());
    // Not flat, or links: reported, left alone.
    mk("nested");
    t::write_file(d / "nested/model.pt", t::pattern(10, 6));
    mk("nested/inner");
    t::write_file(d / "nested/inner/x.pt", "x");
    mk("withlink");
    t::write_file(d / "withlink/model.pt", t::pattern(10, 7));
    t::write_file(outside / "secret.pt", "outside");
    REQUIRE(::symlink((outside / "secret.pt").c_str(), (d / "withlink/other.pt").c_str()) == 0);
    t::write_file(outside / "model.pt", t::pattern(10, 8));
    REQUIRE(::symlink(outside.path.c_str(), (d / "linked").c_str()) == 0);
    // The files outside: accessed long before their last change, so that a
    // read would move their access time (relatime; strictatime too).
    auto atime = [](const std::string &p) {
        struct stat st;
        REQUIRE(::stat(p.c_str(), &st) == 0);
        return st.st_atim.tv_sec;
    };
    for (const char *f : {"secret.pt", "model.pt"}) {
        struct timespec ts[2] = {{1000000000, 0}, {1700000000, 0}};
        REQUIRE(::utimensat(AT_FDCWD, (outside / f).c_str(), ts, 0) == 0);
    }
    // Not a checkpoint at all.
    mk("data");
    t::write_file(d / "data/train.csv", "a,b");
    set_dir_mtime(d / "epoch_002", 1700000000);
    set_dir_mtime(d / "checkpoint-500", 1700000100);
    set_dir_mtime(d / "dcp_run", 1700000200);
    set_dir_mtime(d / "dcp_torn", 1700000300);
    set_dir_mtime(d / "step_000700", 1700000400);
    set_mtime(d / "dcp_run/.metadata", 1700000250);  // the newest file sets the directory's time
    const auto tree_before = tree(d.path);

    ckptdbxx::rebuild_report rep = ckptdbxx::adopt(d.path);
    // Nothing outside was opened to read: the access times stand.
    CHECK(atime(outside / "secret.pt") == 1000000000);
    CHECK(atime(outside / "model.pt") == 1000000000);
    CHECK(rep.rows == 5);
    std::map<std::string, std::string> items;  // name -> "kind action: detail"
    for (const auto &f : rep.findings) items[f.name] = f.kind + " " + f.action + ": " + f.detail;
    CHECK(items["epoch_002"].rfind("adopted added:", 0) == 0);
    CHECK(items["dcp_torn"].rfind("adopted added, quarantined:", 0) == 0);
    CHECK(items["step_000700"].rfind("adopted added, quarantined:", 0) == 0);
    CHECK_MESSAGE(items["nested"].find("unknown_file") == 0, items["nested"]);
    CHECK(items["nested"].find("directory ('inner')") != std::string::npos);
    CHECK(items["withlink"].find("symbolic link ('other.pt')") != std::string::npos);
    CHECK(items["linked"].find("unknown_file") == 0);
    CHECK(items["linked"].find("symbolic link") != std::string::npos);
    CHECK(items["data"].find("unknown_file") == 0);

    // Rows ordered by the newest file of each directory.
    CHECK(t::query(db(d),
                   "SELECT name || ':' || layout || ':' || kind || ':' || epoch || ':' || step || ':' || "
                   "status || ':' || size || ':' || pinned FROM checkpoints ORDER BY commit_seq") ==
          std::vector<std::string>{
              "epoch_002:dir:epoch:2:0:complete:1002:1",
              "checkpoint-500:dir:step:0:500:complete:" +
                  std::to_string(700 + t::read_file(d / "checkpoint-500/trainer_state.json").size()) + ":1",
              "dcp_run:dir:adopted:0:0:complete:" + std::to_string(torn_zip().size() + 350) + ":1",
              "dcp_torn:dir:adopted:0:0:corrupt:300:1",
              "step_000700:dir:step:0:700:corrupt:" + std::to_string(torn_zip().size()) + ":1"});
    CHECK(t::query1(db(d),
                    "SELECT json_extract(metadata, '$.adopted.check') FROM checkpoints WHERE name = "
                    "'dcp_torn'")
              .find("without its metadata") != std::string::npos);
    // A files row per file, the rank from DCP's names.
    CHECK(t::query(db(d),
                   "SELECT f.name || ':' || f.rank || ':' || f.size FROM files f JOIN checkpoints c ON c.id = "
                   "f.checkpoint_id WHERE c.name = 'dcp_run' ORDER BY f.name") ==
          std::vector<std::string>{".metadata:0:50", "__0_0.distcp:0:" + std::to_string(torn_zip().size()),
                                   "__1_0.distcp:1:300"});
    // Nothing outside was taken in, nothing deleted or changed.
    CHECK(t::query1(db(d),
                    "SELECT count(*) FROM checkpoints WHERE name IN ('nested', 'withlink', 'linked', "
                    "'data')") == "0");
    CHECK(t::query1(db(d), "SELECT count(*) FROM files") == "9");
    CHECK(tree(d.path) == tree_before);
    CHECK(t::read_file(outside / "secret.pt") == "outside");
    CHECK(t::read_file(outside / "model.pt") == t::pattern(10, 8));
    char target[64] = {0};
    CHECK(::readlink((d / "last.pt").c_str(), target, sizeof target - 1) > 0);
    CHECK(std::string(target) == "dcp_run");

    Cat c(d.path);
    ckptdb_entry l = CKPTDB_ENTRY_INIT;
    REQUIRE(ckptdb_latest(&l, c.db, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
    CHECK(std::string(l.name) == "dcp_run");  // the newest complete one; corrupt ones never resume
    CHECK(ckptdb_verify(c.db, l.id) == CKPTDB_OK);
    CHECK(read_named(c, l.id, "__1_0.distcp") == t::pattern(300, 3));
}

TEST_CASE("an adopted directory, unpinned, is pruned whole; a file put in it after the adoption stays") {
    t::TempDir d;
    for (int e = 1; e <= 3; e++) {
        std::string sub = d / ("epoch_00" + std::to_string(e));
        REQUIRE(::mkdir(sub.c_str(), 0755) == 0);
        t::write_file(sub + "/model.pt", t::pattern(100, static_cast<unsigned>(e)));
        t::write_file(sub + "/optim.pt", t::pattern(200, static_cast<unsigned>(e)));
        set_dir_mtime(sub, 1700000000 + e);
    }
    REQUIRE(ckptdbxx::adopt(d.path).rows == 3);
    t::write_file(d / "epoch_001/notes.txt", "mine");
    Cat c(d.path);
    for (const std::string &id : t::query(db(d), "SELECT id FROM checkpoints"))
        REQUIRE(ckptdb_pin(c.db, std::stoll(id), 0) == CKPTDB_OK);
    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", 1)};
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = keep;
    r.keep_last_count = 1;
    int64_t count = 0, bytes = 0;
    REQUIRE(ckptdb_prune(&count, &bytes, c.db, &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(count == 2);
    CHECK(bytes == 600);
    CHECK_FALSE(t::exists(d / "epoch_002"));  // removed whole
    CHECK(t::names(d / "epoch_001") == std::set<std::string>{"notes.txt"});
    CHECK(t::read_file(d / "epoch_001/notes.txt") == "mine");
    CHECK(t::names(d / "epoch_003") == std::set<std::string>{"model.pt", "optim.pt"});
    CHECK(t::query1(db(d),
                    "SELECT count(*) FROM events WHERE event = 'prune_kept_unknown' AND detail LIKE "
                    "'%notes.txt%'") == "1");
    CHECK(t::query(db(d), "SELECT name || ':' || status FROM checkpoints ORDER BY commit_seq") ==
          std::vector<std::string>{"epoch_001:pruned", "epoch_002:pruned", "epoch_003:complete"});
}

TEST_CASE("directory names: DirSave's default names and checkpoint-<N> parse, DCP file names give the rank") {
    // Through adopt, the only user of the rules: a dir named like a default
    // name with a suffix, and names that are not default names.
    t::TempDir d;
    for (const char *sub : {"step_000100-2", "checkpoint-12x", "time_1700000000"}) {
        REQUIRE(::mkdir((d / sub).c_str(), 0755) == 0);
        t::write_file(d / sub + "/model.pt", "m");
        t::write_file(d / sub + "/__7_3.distcp", "r");
        t::write_file(d / sub + "/__x_3.distcp", "r");
        t::write_file(d / sub + "/.metadata.json", "{}");
    }
    REQUIRE(ckptdbxx::adopt(d.path).rows == 3);
    CHECK(t::query(db(d),
                   "SELECT name || ':' || kind || ':' || epoch || ':' || step || ':' || status FROM "
                   "checkpoints ORDER BY name") == std::vector<std::string>{"checkpoint-12x:adopted:0:0:complete",
                                                                            "step_000100-2:step:0:100:complete",
                                                                            "time_1700000000:time:0:0:complete"});
    CHECK(t::query(db(d), "SELECT DISTINCT f.name || ':' || f.rank FROM files f ORDER BY 1") ==
          std::vector<std::string>{".metadata.json:0", "__7_3.distcp:7", "__x_3.distcp:0", "model.pt:0"});
}

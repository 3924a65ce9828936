// Never lose a good checkpoint (issue 17): each case an operator hit with
// sync, prune, rebuild and a lost catalog, as a regression test.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

struct Items {
    std::vector<std::string> lines;  // "kind name"
    // fsck, rebuild/adopt and sync items: each has its own type.
    template <class Item>
    static int cb(const Item *it, void *p) {
        static_cast<Items *>(p)->lines.push_back(std::string(it->kind) + " " + it->name);
        return 0;
    }
    bool has(const std::string &line) const { return std::find(lines.begin(), lines.end(), line) != lines.end(); }
    std::string all() const {
        std::string out;
        for (const auto &l : lines) out += l + "; ";
        return out;
    }
};

int sync(const std::string &src, const std::string &dst, bool del, Items *items = nullptr) {
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    o.delete_pruned = del ? 1 : 0;
    if (items) {
        o.on_item = Items::cb;
        o.item_payload = items;
    }
    return ckptdb_sync(nullptr, nullptr, src.c_str(), dst.c_str(), &o);
}

// Epochs 1..n saved in dir, each t::pattern(bytes, e).
void save_epochs(const t::TempDir &dir, int n, size_t bytes) {
    ckptdbxx::catalog c(dir.path);
    for (int e = 1; e <= n; e++) c.save_bytes("epoch", e, e, t::pattern(bytes, e));
}

void flip_byte(const std::string &path, size_t at) {
    std::string b = t::read_file(path);
    b[at] = static_cast<char>(b[at] ^ 0x55);
    t::write_file(path, b);
}

// How many rows that a prune or recovery could act on name the file.
std::string live_rows_naming(const t::TempDir &d, const std::string &name) {
    return t::query1(t::catalog_path(d),
                     "SELECT count(*) FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id WHERE f.name = '" +
                         name +
                         "' AND (c.status IN ('writing', 'complete', 'corrupt') OR "
                         "(c.status = 'pruned' AND c.deleted_at IS NULL))");
}

ckptdb_retention keep_epochs(ckptdb_keep_kind *k, int n) {
    k->version = CKPTDB_KEEP_KIND_VERSION;
    k->kind = "epoch";
    k->count = n;
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = k;
    r.keep_last_count = 1;
    return r;
}

}  // namespace

TEST_CASE("case 1: sync --delete keeps the destination's good copy of what is corrupt or missing in the source") {
    t::TempDir src, dst;
    save_epochs(src, 3, 5000);
    REQUIRE(sync(src.path, dst.path, false) == CKPTDB_OK);
    flip_byte(src / "epoch_003.pt", 100);
    REQUIRE(::unlink((src / "epoch_002.pt").c_str()) == 0);
    {
        ckptdbxx::catalog s(src.path);
        REQUIRE(s.latest()->name == "epoch_001.pt");  // 3 and 2 are marked corrupt
        CHECK(s.get(std::string("epoch_003.pt")).status == CKPTDB_STATUS_CORRUPT);
        CHECK(s.get(std::string("epoch_002.pt")).status == CKPTDB_STATUS_CORRUPT);
    }
    Items items;
    sync(src.path, dst.path, true, &items);
    for (int e = 1; e <= 3; e++)
        CHECK_MESSAGE(t::read_file(dst / ("epoch_00" + std::to_string(e) + ".pt")) == t::pattern(5000, e), items.all());
    ckptdbxx::catalog d(dst.path);
    auto l = d.latest();
    REQUIRE(l.has_value());
    CHECK(l->name == "epoch_003.pt");
    CHECK(d.read(l->id) == t::pattern(5000, 3));
}

TEST_CASE("case 1: sync --delete mirrors what the source pruned by a rule, never its explicit corrupt prune") {
    t::TempDir src, dst;
    ckptdbxx::catalog s(src.path);
    for (int e = 1; e <= 4; e++) s.save_bytes("epoch", e, e, t::pattern(3000, e));
    REQUIRE(sync(src.path, dst.path, false) == CKPTDB_OK);
    flip_byte(src / "epoch_002.pt", 10);
    CHECK_FALSE(s.verify(s.get(std::string("epoch_002.pt")).id));
    ckptdb_keep_kind k;
    ckptdb_retention r = keep_epochs(&k, 2);  // lets epoch 1 go by a rule; epoch 2 is corrupt
    REQUIRE(ckptdb_prune(nullptr, nullptr, s.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    REQUIRE(sync(src.path, dst.path, true) == CKPTDB_OK);
    CHECK_FALSE(t::exists(dst / "epoch_001.pt"));                      // pruned by the user's rule: mirrored
    CHECK(t::read_file(dst / "epoch_002.pt") == t::pattern(3000, 2));  // the last good copy anywhere
    ckptdbxx::catalog d(dst.path);
    CHECK(d.get(std::string("epoch_002.pt")).status == CKPTDB_STATUS_COMPLETE);
    CHECK(d.latest()->name == "epoch_004.pt");
}

TEST_CASE("case 2: a destination file no catalog owns is left alone and never becomes a row prune could delete") {
    t::TempDir src, dst;
    save_epochs(src, 3, 4000);
    t::write_file(dst / "epoch_002.pt", "the user's own file");
    // A directory with checkpoint files and no catalog: sync refuses, naming
    // them, and starts no catalog there.
    CHECK(sync(src.path, dst.path, false) == CKPTDB_ENOTCATALOG);
    CHECK(std::string(ckptdb_last_error()).find("epoch_002.pt") != std::string::npos);
    CHECK_FALSE(t::exists(t::catalog_path(dst)));
    CHECK(t::read_file(dst / "epoch_002.pt") == "the user's own file");
    // Beside a catalog (one that exists before the file came), the file is left alone.
    REQUIRE(::rename((dst / "epoch_002.pt").c_str(), (dst / "aside").c_str()) == 0);
    { ckptdbxx::catalog d(dst.path); }
    REQUIRE(::rename((dst / "aside").c_str(), (dst / "epoch_002.pt").c_str()) == 0);
    Items items;
    int rc = sync(src.path, dst.path, false, &items);
    CHECK(rc == CKPTDB_OK);
    CHECK_MESSAGE(items.has("failed epoch_002.pt"), items.all());
    CHECK(t::read_file(dst / "epoch_002.pt") == "the user's own file");
    CHECK(live_rows_naming(dst, "epoch_002.pt") == "0");
    {
        ckptdbxx::catalog d(dst.path);
        ckptdb_retention r = CKPTDB_RETENTION_INIT;
        REQUIRE(ckptdb_prune(nullptr, nullptr, d.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
        Items fix;
        REQUIRE(ckptdb_fsck(nullptr, d.handle(), 1, Items::cb, &fix) == CKPTDB_OK);
        CHECK(d.latest()->name == "epoch_003.pt");
    }
    REQUIRE(sync(src.path, dst.path, true) == CKPTDB_OK);
    CHECK(t::read_file(dst / "epoch_002.pt") == "the user's own file");
}

TEST_CASE("case 7: checkpoints committed directly in the destination are never dropped from its catalog") {
    t::TempDir src, dst;
    save_epochs(src, 3, 2000);
    REQUIRE(sync(src.path, dst.path, false) == CKPTDB_OK);
    {
        ckptdbxx::catalog d(dst.path);
        d.save_bytes("epoch", 4, 4, "trained in the destination");
    }
    {
        ckptdbxx::catalog s(src.path);
        s.save_bytes("epoch", 5, 5, t::pattern(2000, 5));
    }
    int rc = sync(src.path, dst.path, false);
    if (rc != CKPTDB_OK) CHECK(std::string(ckptdb_last_error()).find("epoch_004.pt") != std::string::npos);
    ckptdbxx::catalog d(dst.path);
    auto own = d.get(std::string("epoch_004.pt"));
    CHECK(own.status == CKPTDB_STATUS_COMPLETE);
    CHECK(d.read(own.id) == "trained in the destination");
    // Resume in the destination does not go back to the source's newest.
    CHECK(d.latest()->name == (rc == CKPTDB_OK ? "epoch_005.pt" : "epoch_004.pt"));
    CHECK(d.latest()->name != "epoch_003.pt");
}

TEST_CASE("case 10: sync into a directory where a save is in flight leaves that save's temp file alone") {
    t::TempDir src, dst;
    save_epochs(src, 2, 2000);
    REQUIRE(sync(src.path, dst.path, false) == CKPTDB_OK);
    {
        ckptdbxx::catalog s(src.path);
        s.save_bytes("epoch", 3, 3, t::pattern(2000, 3));
    }
    t::Child trainer({"save", dst.path, "100000", "--pause-at", "wrote", "--epoch", "9"});
    REQUIRE(trainer.line() == "PAUSED wrote");
    auto temps = t::temp_files(dst.path);
    REQUIRE(temps.size() == 1);
    int rc = sync(src.path, dst.path, false);
    if (rc != CKPTDB_OK) {
        CHECK(rc == CKPTDB_EBUSY);
        CHECK(std::string(ckptdb_last_error()).find("in flight") != std::string::npos);
    }
    CHECK(t::temp_files(dst.path) == temps);
    CHECK(t::query1(t::catalog_path(dst), "SELECT count(*) FROM checkpoints WHERE status = 'writing'") == "1");
    trainer.kill9();
    REQUIRE(sync(src.path, dst.path, false) == CKPTDB_OK);  // the writer is gone: recovery, then the sync
    ckptdbxx::catalog d(dst.path);
    CHECK(d.latest()->name == "epoch_003.pt");
    CHECK(t::temp_files(dst.path).empty());
}

TEST_CASE("case 11: a file the source prunes during the sync is skipped and reported, not fatal") {
    t::TempDir src, dst;
    save_epochs(src, 4, 3000);
    struct Ctx {
        std::string src;
        bool pruned = false;
        Items items;
    } ctx{src.path, false, Items()};
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    o.on_item = [](const ckptdb_sync_item *it, void *p) {
        auto *c = static_cast<Ctx *>(p);
        Items::cb(it, &c->items);
        if (!c->pruned && std::string(it->kind) == "copied") try {
                // The source's trainer rotates right after the first copy.
                c->pruned = true;
                ckptdbxx::catalog s(c->src);
                ckptdb_keep_kind k;
                ckptdb_retention r = keep_epochs(&k, 1);
                ckptdb_prune(nullptr, nullptr, s.handle(), &r, 0, nullptr, nullptr);
            } catch (const std::exception &e) {
                c->items.lines.push_back(std::string("callback failed: ") + e.what());
            }
        return 0;
    };
    o.item_payload = &ctx;
    int64_t copied = 0;
    int rc = ckptdb_sync(&copied, nullptr, src.path.c_str(), dst.path.c_str(), &o);
    CHECK_MESSAGE(rc == CKPTDB_OK, ckptdb_last_error());
    REQUIRE(ctx.pruned);
    CHECK_MESSAGE(ctx.items.has("skipped epoch_002.pt"), ctx.items.all());
    CHECK_MESSAGE(ctx.items.has("copied epoch_004.pt"), ctx.items.all());
    ckptdbxx::catalog d(dst.path);
    CHECK(d.latest()->name == "epoch_004.pt");
    CHECK(live_rows_naming(dst, "epoch_002.pt") == "0");
}

TEST_CASE("case 12: a catalog left with a hot rollback journal still opens read-only") {
    t::TempDir src, dst;
    save_epochs(src, 2, 2000);
    REQUIRE(sync(src.path, dst.path, false) == CKPTDB_OK);
    // What a kill inside a journal-mode switch leaves: a writer killed with
    // its rollback journal on disk (a real process, killed for real).
    std::string db = t::catalog_path(dst);
    int in[2], out[2];
    REQUIRE(::pipe(in) == 0);
    REQUIRE(::pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    pid_t pid = 0;
    const char *argv[] = {"sqlite3", db.c_str(), nullptr};
    REQUIRE(::posix_spawnp(&pid, "sqlite3", &fa, nullptr, const_cast<char **>(argv), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    // A small cache spills the transaction's pages into the catalog file,
    // after syncing the journal's header: the journal is hot from then on.
    std::string cmds =
        "PRAGMA journal_mode=DELETE;\nPRAGMA cache_size=2;\nBEGIN IMMEDIATE;\n"
        "UPDATE checkpoints SET kind = kind || 'x';\n"
        "INSERT INTO events (at, event, detail) VALUES ('x', 'x', randomblob(300000));\n"
        "SELECT 'ready';\n";
    REQUIRE(::write(in[1], cmds.data(), cmds.size()) == static_cast<ssize_t>(cmds.size()));
    auto hot = [&] {
        std::string j = t::read_file(db + "-journal");
        return j.size() >= 8 && j.compare(0, 8, "\xd9\xd5\x05\xf9\x20\xa1\x63\xd7") == 0;
    };
    FILE *from = ::fdopen(out[0], "r");
    REQUIRE(from != nullptr);
    std::string ready;
    char line[64];
    while (ready != "ready\n" && std::fgets(line, sizeof line, from)) ready = line;
    REQUIRE(ready == "ready\n");  // the statements ran; the transaction is open
    REQUIRE(hot());
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(in[1]);
    std::fclose(from);
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = CKPTDB_OPEN_READONLY | CKPTDB_OPEN_NO_CREATE;
    ckptdb_catalog *h = nullptr;
    int rc = ckptdb_open(&h, dst.path.c_str(), &o);
    CHECK_MESSAGE(rc == CKPTDB_OK, ckptdb_last_error());
    if (h) {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        CHECK(ckptdb_latest(&e, h, nullptr, CKPTDB_VERIFY_FULL) == CKPTDB_OK);
        CHECK(std::string(e.kind) == "epoch");  // the killed transaction was rolled back
    }
    ckptdb_close(h);
    REQUIRE(sync(src.path, dst.path, false) == CKPTDB_OK);
}

TEST_CASE("case 3: a prune stopped between its check and its unlink never deletes a save acknowledged meanwhile") {
    t::TempDir d;
    {
        ckptdbxx::catalog c(d.path);
        for (int e = 1; e <= 6; e++) c.save_bytes("epoch", e, e, t::pattern(1000, e));  // default policy: epoch 1 goes
    }
    t::Child prune({"prune", d.path, "--stop-at", "prune_checked"});
    REQUIRE(prune.line() == "STOPPED prune_checked");
    // Another process recovers and saves the same default name again.
    bool acked = false;
    try {
        ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
        o.busy_timeout_ms = 300;
        ckptdbxx::catalog c(d.path, &o);
        if (!t::exists(d / "epoch_001.pt")) {
            auto e = c.save_bytes("epoch", 1, 1, "acknowledged after the prune began");
            REQUIRE(e.name == "epoch_001.pt");
            acked = true;
        }
    } catch (const ckptdbxx::error &e) {
        CHECK(e.code() == CKPTDB_EBUSY);  // refused while the prune holds the catalog: not acknowledged
    }
    ::kill(prune.pid, SIGCONT);
    CHECK(prune.exit_code() == 0);
    ckptdbxx::catalog c(d.path);
    if (!acked) {
        auto e = c.save_bytes("epoch", 1, 1, "acknowledged after the prune began");
        REQUIRE(e.name == "epoch_001.pt");
    }
    CHECK(t::read_file(d / "epoch_001.pt") == "acknowledged after the prune began");
    auto e = c.get(std::string("epoch_001.pt"));
    CHECK(e.status == CKPTDB_STATUS_COMPLETE);
    CHECK(c.verify(e.id));
}

TEST_CASE("case 4: a corrupt checkpoint is quarantined; only an explicit corrupt prune deletes it, confirmed first") {
    t::TempDir d;
    ckptdbxx::catalog c(d.path);
    for (int e = 1; e <= 3; e++) c.save_bytes("epoch", e, e, t::pattern(2000, e));
    // A damaged hex digit in the catalog's checksum: the file is intact.
    {
        sqlite3 *db = nullptr;
        REQUIRE(sqlite3_open(t::catalog_path(d).c_str(), &db) == SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        REQUIRE(
            sqlite3_exec(db,
                         "UPDATE checkpoints SET checksum = CASE substr(checksum, 1, 1) WHEN 'a' THEN 'b' ELSE 'a' "
                         "END || substr(checksum, 2) WHERE name = 'epoch_003.pt'; "
                         "UPDATE files SET checksum = (SELECT checksum FROM checkpoints WHERE name = 'epoch_003.pt') "
                         "WHERE name = 'epoch_003.pt'",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    REQUIRE(c.latest()->name == "epoch_002.pt");  // 3 is marked corrupt (a false verdict)
    REQUIRE(c.get(std::string("epoch_003.pt")).status == CKPTDB_STATUS_CORRUPT);
    // An ordinary prune (the rotation's policy) keeps the corrupt one's file.
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    int64_t count = 0;
    REQUIRE(ckptdb_prune(&count, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(count == 0);
    CHECK(t::read_file(d / "epoch_003.pt") == t::pattern(2000, 3));
    CHECK(c.get(std::string("epoch_003.pt")).status == CKPTDB_STATUS_CORRUPT);
    // Pruning corrupt ones explicitly hashes each again first: one whose
    // bytes are back (a transient fault) is complete again and kept.
    flip_byte(d / "epoch_001.pt", 7);  // truly damaged
    REQUIRE_FALSE(c.verify(c.get(std::string("epoch_001.pt")).id));
    flip_byte(d / "epoch_002.pt", 7);
    REQUIRE_FALSE(c.verify(c.get(std::string("epoch_002.pt")).id));
    flip_byte(d / "epoch_002.pt", 7);
    REQUIRE(ckptdb_pin_by_name(c.handle(), "epoch_003.pt", 1) == CKPTDB_OK);  // the user keeps that one
    r.prune_corrupt = 1;
    REQUIRE(ckptdb_prune(&count, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    CHECK(count == 1);
    CHECK_FALSE(t::exists(d / "epoch_001.pt"));  // confirmed corrupt: deleted
    CHECK(t::read_file(d / "epoch_002.pt") == t::pattern(2000, 2));
    CHECK(c.get(std::string("epoch_002.pt")).status == CKPTDB_STATUS_COMPLETE);
    CHECK(t::exists(d / "epoch_003.pt"));
}

TEST_CASE("sync carries the runs of the checkpoints it copies: a pull, a resume and a push keep the run history") {
    t::TempDir shared, local;
    save_epochs(shared, 2, 3000);
    REQUIRE(sync(shared.path, local.path, false) == CKPTDB_OK);  // the pull
    {
        ckptdbxx::catalog l(local.path);  // the next job resumes there and saves
        auto from = l.latest();
        REQUIRE(from);
        CHECK(from->name == "epoch_002.pt");
        l.mark_resumed(from->id);
        l.save_bytes("epoch", 3, 3, t::pattern(3000, 3));
    }
    REQUIRE(sync(local.path, shared.path, true) == CKPTDB_OK);  // the push
    REQUIRE(sync(local.path, shared.path, true) == CKPTDB_OK);  // again: nothing to copy, nothing new
    const std::string db = t::catalog_path(shared);
    CHECK(t::query1(db, "SELECT count(*) FROM runs WHERE exit_reason IS NOT 'synced'") == "2");
    CHECK(t::query1(db, "SELECT count(*) FROM runs WHERE exit_reason = 'synced'") == "1");
    CHECK(t::query1(db,
                    "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id "
                    "WHERE r.exit_reason = 'synced'") == "0");
    std::string first = t::query1(db, "SELECT run_id FROM checkpoints WHERE name = 'epoch_001.pt'");
    CHECK(t::query1(db, "SELECT run_id FROM checkpoints WHERE name = 'epoch_002.pt'") == first);
    std::string second = t::query1(db, "SELECT run_id FROM checkpoints WHERE name = 'epoch_003.pt'");
    CHECK(second != first);
    CHECK(t::query1(db, "SELECT resumed_from FROM runs WHERE id = " + second) ==
          t::query1(db, "SELECT id FROM checkpoints WHERE name = 'epoch_002.pt'"));
    CHECK(t::query1(db, "SELECT exit_reason FROM runs WHERE id = " + second) == "clean");
    CHECK(t::query1(db, "SELECT count(*) FROM runs WHERE ended_at IS NULL") == "0");
}

TEST_CASE("a catalog creation a kill stopped leaves nothing behind once nobody holds it") {
    t::TempDir d;
    { ckptdbxx::catalog c(d.path); }
    const std::string dead = "ckptdb.sqlite.new-0123456789abcdef0123456789abcdef";
    const std::string live = "ckptdb.sqlite.new-fedcba9876543210fedcba9876543210";
    t::write_file(d / dead, "half a catalog");
    t::write_file(d / (dead + "-wal"), "its wal");
    t::write_file(d / "ckptdb.sqlite.new-00000000000000000000000000000000-shm", "a lone shm");
    t::write_file(d / live, "being built");
    t::write_file(d / (live + "-wal"), "its wal");
    t::write_file(d / "ckptdb.sqlite.new-user-notes", "not ours");
    int fd = ::open((d / live).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX) == 0);  // as the creator holds it
    { ckptdbxx::catalog c(d.path); }
    CHECK_FALSE(t::exists(d / dead));
    CHECK_FALSE(t::exists(d / (dead + "-wal")));
    CHECK_FALSE(t::exists(d / "ckptdb.sqlite.new-00000000000000000000000000000000-shm"));
    CHECK(t::exists(d / live));
    CHECK(t::exists(d / (live + "-wal")));
    CHECK(t::exists(d / "ckptdb.sqlite.new-user-notes"));
    ::close(fd);
    { ckptdbxx::catalog c(d.path); }
    CHECK_FALSE(t::exists(d / live));
    CHECK_FALSE(t::exists(d / (live + "-wal")));
}

namespace {

// A small zip archive (one stored entry), laid out as torch.save's files are:
// local header, data, central directory, end-of-central-directory record.
std::string make_zip(const std::string &payload) {
    auto u16 = [](std::string &s, uint32_t v) {
        s += char(v & 0xff);
        s += char((v >> 8) & 0xff);
    };
    auto u32 = [&](std::string &s, uint32_t v) {
        u16(s, v & 0xffff);
        u16(s, v >> 16);
    };
    const std::string name = "archive/data.pkl";
    std::string z = "PK\x03\x04";
    u16(z, 20);
    u16(z, 0);
    u16(z, 0);
    u16(z, 0);
    u16(z, 0);
    u32(z, 0);
    u32(z, uint32_t(payload.size()));
    u32(z, uint32_t(payload.size()));
    u16(z, uint16_t(name.size()));
    u16(z, 0);
    z += name + payload;
    const uint32_t cd_off = uint32_t(z.size());
    std::string cd = "PK\x01\x02";
    u16(cd, 20);
    u16(cd, 20);
    u16(cd, 0);
    u16(cd, 0);
    u16(cd, 0);
    u16(cd, 0);
    u32(cd, 0);
    u32(cd, uint32_t(payload.size()));
    u32(cd, uint32_t(payload.size()));
    u16(cd, uint16_t(name.size()));
    u16(cd, 0);
    u16(cd, 0);
    u16(cd, 0);
    u16(cd, 0);
    u32(cd, 0);
    u32(cd, 0);
    cd += name;
    z += cd;
    z += "PK\x05\x06";
    u16(z, 0);
    u16(z, 0);
    u16(z, 1);
    u16(z, 1);
    u32(z, uint32_t(cd.size()));
    u32(z, cd_off);
    u16(z, 0);
    return z;
}

void touch_order(const std::string &path, int second) {  // a distinct modification time per file
    struct timespec ts[2] = {{1700000000 + second, 0}, {1700000000 + second, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, 0) == 0);
}

}  // namespace

TEST_CASE("case 5: a lost catalog (deleted or emptied) is never silently recreated beside good checkpoints") {
    for (bool emptied : {false, true}) {
        t::TempDir d;
        {
            ckptdbxx::catalog c(d.path);
            for (int e = 1; e <= 3; e++) c.save_bytes("epoch", e, e * 10, t::pattern(2000, e));
        }
        for (const char *suffix : {"", "-wal", "-shm"}) ::unlink((t::catalog_path(d) + suffix).c_str());
        if (emptied) t::write_file(t::catalog_path(d), "");
        ckptdb_catalog *db = nullptr;
        CHECK(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_ENOTCATALOG);
        std::string why = ckptdb_last_error();
        CHECK_MESSAGE(why.find(emptied ? "empty" : "epoch_001.pt") != std::string::npos, why);
        CHECK(why.find("fsck --repair") != std::string::npos);
        CHECK(t::exists(t::catalog_path(d)) == emptied);  // nothing made, nothing changed
        if (emptied) CHECK(t::read_file(t::catalog_path(d)).empty());
        // The explicit repair takes every file back; resume finds the newest.
        int64_t rows = 0;
        REQUIRE(ckptdb_rebuild(&rows, d.path.c_str(), nullptr, nullptr, nullptr) == CKPTDB_OK);
        CHECK(rows == 3);
        ckptdbxx::catalog c(d.path);
        CHECK(c.latest()->name == "epoch_003.pt");
        if (emptied) {
            bool aside = false;
            for (const auto &n : t::names(d.path)) aside = aside || n.rfind("ckptdb.sqlite.broken-", 0) == 0;
            CHECK(aside);
        }
    }
}

TEST_CASE("case 9: adopting is conservative: torn archives quarantined, everything pinned, the order recorded") {
    t::TempDir d;
    const std::string whole1 = make_zip(t::pattern(3000, 1)), whole2 = make_zip(t::pattern(3000, 2));
    t::write_file(d / "epoch_001.pt", whole1);
    t::write_file(d / "epoch_002.pt", whole2);
    for (int m = 1; m <= 8; m++) t::write_file(d / ("manual_00" + std::to_string(m) + ".pt"), whole1);
    std::string torn = make_zip(t::pattern(3000, 7));
    t::write_file(d / "epoch_007.pt", torn.substr(0, torn.size() - 30));  // cut short
    t::write_file(d / "last.pt", whole2);                                 // the recipe's copy of the newest state
    t::write_file(d / "notes.txt", "not a checkpoint");
    touch_order(d / "epoch_001.pt", 1);
    for (int m = 1; m <= 8; m++) touch_order(d / ("manual_00" + std::to_string(m) + ".pt"), 1 + m);
    touch_order(d / "epoch_002.pt", 20);
    touch_order(d / "last.pt", 21);
    touch_order(d / "epoch_007.pt", 30);  // the newest file is the torn one

    ckptdb_catalog *db = nullptr;
    CHECK(ckptdb_open(&db, d.path.c_str(), nullptr) == CKPTDB_ENOTCATALOG);
    CHECK(std::string(ckptdb_last_error()).find("ckptdb adopt") != std::string::npos);
    Items items;
    int64_t rows = 0;
    REQUIRE(ckptdb_adopt(&rows, d.path.c_str(), nullptr, Items::cb, &items) == CKPTDB_OK);
    CHECK(rows == 12);
    CHECK(items.has("unknown_file notes.txt"));
    CHECK(ckptdb_adopt(&rows, d.path.c_str(), nullptr, nullptr, nullptr) == CKPTDB_EEXISTS);
    {
        ckptdbxx::catalog c(d.path);
        CHECK(c.get(std::string("epoch_007.pt")).status == CKPTDB_STATUS_CORRUPT);
        CHECK(c.latest()->name == "last.pt");        // not the torn newest file
        ckptdb_retention r = CKPTDB_RETENTION_INIT;  // the default rules
        REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    }
    for (int m = 1; m <= 8; m++) CHECK(t::read_file(d / ("manual_00" + std::to_string(m) + ".pt")) == whole1);
    CHECK(t::read_file(d / "epoch_001.pt") == whole1);
    CHECK(t::exists(d / "epoch_007.pt"));
    const std::string cat = t::catalog_path(d);
    CHECK(t::query1(cat, "SELECT count(*) FROM checkpoints WHERE pinned = 1") == "12");
    CHECK(t::query1(cat, "SELECT group_concat(name, ' ') FROM (SELECT name FROM checkpoints ORDER BY commit_seq)") ==
          "epoch_001.pt manual_001.pt manual_002.pt manual_003.pt manual_004.pt manual_005.pt manual_006.pt "
          "manual_007.pt manual_008.pt epoch_002.pt last.pt epoch_007.pt");
    CHECK(t::query1(cat, "SELECT json_extract(metadata, '$.adopted.order') FROM checkpoints WHERE name = 'last.pt'")
              .find("modification time") != std::string::npos);
    CHECK(t::query1(cat, "SELECT count(*) FROM events WHERE event = 'adopted'") == "12");
    // Released by the user, an adopted checkpoint is rotated like any other.
    {
        ckptdbxx::catalog c(d.path);
        REQUIRE(ckptdb_pin(c.handle(), c.get(std::string("manual_001.pt")).id, 0) == CKPTDB_OK);
        ckptdb_keep_kind k = CKPTDB_KEEP_KIND("manual", 0);
        k.count = 0;
        ckptdb_retention r = CKPTDB_RETENTION_INIT;
        r.keep_last = &k;
        r.keep_last_count = 1;
        REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
    }
    CHECK_FALSE(t::exists(d / "manual_001.pt"));
    CHECK(t::exists(d / "manual_002.pt"));
}

TEST_CASE("case 8: the WAL is folded into the catalog file as it goes, and files newer than the catalog are reported") {
    t::TempDir d, lost;
    std::set<std::string> files;
    {
        ckptdbxx::catalog c(d.path);  // kept open: no close folds the WAL in
        for (int i = 1; i <= 39; i++) files.insert(c.save_bytes("step", 0, i, t::pattern(1000, i)).name);
        // The catalog file alone, as a crash that loses the -wal leaves it.
        t::write_file(t::catalog_path(lost), t::read_file(t::catalog_path(d)));
        for (const auto &n : files) t::write_file(lost / n, t::read_file(d / n));
    }
    const int kept =
        std::stoi(t::query1(t::catalog_path(lost), "SELECT count(*) FROM checkpoints WHERE status = 'complete'"));
    CHECK_MESSAGE(kept >= 39 - 6, "the catalog file alone holds ", kept, " of 39 commits");
    // What the lost WAL held is newer than anything the catalog knows: reported on open and by fsck.
    struct Seen {
        std::string detail;
        static void cb(const char *event, int64_t, const char *detail, void *p) {
            if (std::string(event) == "catalog_behind") static_cast<Seen *>(p)->detail = detail;
        }
    } seen;
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.on_event = Seen::cb;
    o.event_payload = &seen;
    // Rows of any status own their names (a save the WAL had begun is in flight,
    // or recovery finishes it); the files no row names are the unknown ones,
    // and one more is put there by hand.
    const int unknown = 39 - std::stoi(t::query1(t::catalog_path(lost), "SELECT count(*) FROM checkpoints")) + 1;
    t::write_file(lost / "step_000040.pt", "put here behind the catalog's back");
    ckptdbxx::catalog c(lost.path, &o);
    CHECK_MESSAGE(seen.detail.find("step_000040.pt") != std::string::npos, seen.detail);
    Items items;
    REQUIRE(ckptdb_fsck(nullptr, c.handle(), 0, Items::cb, &items) == CKPTDB_OK);
    int newer = 0;
    for (const auto &l : items.lines) newer += l.rfind("newer_than_catalog ", 0) == 0;
    CHECK_MESSAGE(newer == unknown, items.all());
    CHECK(items.has("newer_than_catalog step_000040.pt"));
    // Nothing is reported where the catalog knows every file.
    Seen quiet;
    o.event_payload = &quiet;
    { ckptdbxx::catalog again(d.path, &o); }
    CHECK(quiet.detail.empty());
}

TEST_CASE("property: no checkpoint complete and whole in either directory before a sync is lost from both after it") {
    // Random saves, prunes, corruption, deletions and killed syncs on both
    // sides (a fixed seed per run; CKPTDB_PROPERTY_SEED replays one).
    const char *env_seed = std::getenv("CKPTDB_PROPERTY_SEED");
    const unsigned seed0 = env_seed ? static_cast<unsigned>(std::atoi(env_seed)) : 20261130u;
    unsigned seed = seed0;
    INFO("seed ", seed0, " (CKPTDB_PROPERTY_SEED replays it)");
    auto rnd = [&](unsigned n) {
        seed = seed * 1103515245u + 12345u;
        return (seed >> 16) % n;
    };
    t::TempDir src, dst;
    std::map<std::string, std::string> content;  // name -> the bytes its save wrote
    int next = 1;
    // The checkpoints whose catalog row is complete and whose file holds its bytes.
    auto good = [&](const t::TempDir &d) {
        std::set<std::string> out;
        if (!t::exists(t::catalog_path(d))) return out;
        for (const auto &r : t::query(t::catalog_path(d), "SELECT name FROM checkpoints WHERE status = 'complete'")) {
            const std::string &n = r;
            if (content.count(n) && t::exists(d / n) && t::read_file(d / n) == content[n]) out.insert(n);
        }
        return out;
    };
    auto some_file = [&](const t::TempDir &d) -> std::string {
        std::vector<std::string> c;
        for (const auto &n : t::names(d.path))
            if (content.count(n)) c.push_back(n);
        return c.empty() ? std::string() : c[rnd(static_cast<unsigned>(c.size()))];
    };
    int syncs = 0, killed = 0, refused = 0;
    for (int round = 0; round < 60; round++) {
        unsigned op = rnd(10);
        if (op <= 2) {  // a save in the source (with its rotation: keep 3 epochs)
            ckptdbxx::catalog s(src.path);
            std::string bytes = t::pattern(1500 + next * 7, next);
            auto e = s.save_bytes("epoch", next, next, bytes);
            content[e.name] = bytes;
            next++;
            ckptdb_keep_kind k;
            ckptdb_retention r = keep_epochs(&k, 3);
            REQUIRE(ckptdb_prune(nullptr, nullptr, s.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
        } else if (op == 3 && rnd(4) == 0 && t::exists(t::catalog_path(dst))) {  // a save made in the destination
            ckptdbxx::catalog d(dst.path);
            std::string bytes = t::pattern(900 + next * 5, next);
            auto e = d.save_bytes("manual", 0, next, bytes);
            content[e.name] = bytes;
            next++;
        } else if (op == 4) {  // one byte of a file flipped, on either side
            const t::TempDir &d = rnd(2) ? src : dst;
            std::string n = some_file(d);
            if (!n.empty() && t::read_file(d / n).size() > 10) flip_byte(d / n, 10);
        } else if (op == 5) {  // a file removed by hand, on either side
            const t::TempDir &d = rnd(2) ? src : dst;
            std::string n = some_file(d);
            if (!n.empty()) ::unlink((d / n).c_str());
        } else if (op == 6 && t::exists(t::catalog_path(src))) {  // a resume in the source finds corruption
            ckptdbxx::catalog s(src.path);
            (void)s.latest();
        } else {  // a sync, sometimes with --delete, sometimes killed after its first copy
            if (!t::exists(t::catalog_path(src))) continue;
            std::set<std::string> before = good(src), in_dst = good(dst);
            before.insert(in_dst.begin(), in_dst.end());
            bool del = rnd(2) == 0;
            if (rnd(3) == 0) {
                std::vector<std::string> args{"sync", src.path, dst.path};
                if (del) args.push_back("--delete");
                args.push_back("--pause-at");
                args.push_back("sync_copied");
                t::Child child(args);
                std::string l = child.line();
                if (l.rfind("PAUSED", 0) == 0) {
                    child.kill9();
                    killed++;
                } else {
                    child.wait();
                }
            } else {
                int rc = sync(src.path, dst.path, del);
                if (rc != CKPTDB_OK) refused++;
            }
            syncs++;
            std::set<std::string> after = good(src), a_dst = good(dst);
            after.insert(a_dst.begin(), a_dst.end());
            // Only the user's own rules let a checkpoint go: one the source
            // pruned by a retention rule may leave the destination with --delete.
            std::set<std::string> let_go;
            if (del)
                for (const auto &n : t::query(t::catalog_path(src),
                                              "SELECT name FROM checkpoints WHERE status = "
                                              "'pruned' AND prune_rule NOT LIKE 'corrupt%'"))
                    let_go.insert(n);
            for (const auto &n : before)
                CHECK_MESSAGE((after.count(n) || let_go.count(n)), "round ", round, ": ", n, " was lost from both");
        }
    }
    CHECK(syncs > 5);
    MESSAGE("syncs ", syncs, ", killed ", killed, ", refused ", refused);
}

// Recovery on open, proved with real kills: a helper process (fork+exec)
// stops at a named point of the save protocol and is SIGKILLed there; the
// catalog is then reopened and must be consistent.
#include <doctest/doctest.h>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

// Starts a save of `bytes` in a child, waits until it reaches `point`, kills it.
void kill_save_at(const t::TempDir &d, const std::string &point, size_t bytes = 1 << 20, int epoch = 2) {
    t::Child c({"save", d.path, std::to_string(bytes), "--pause-at", point, "--epoch", std::to_string(epoch), "--chunk",
                "65536"});
    std::string l = c.line();
    REQUIRE_MESSAGE(l == "PAUSED " + point, l);
    c.kill9();
}

std::string status_of(const t::TempDir &d, int64_t id) {
    return t::query1(t::catalog_path(d), "SELECT status FROM checkpoints WHERE id = " + std::to_string(id));
}

int64_t newest_id(const t::TempDir &d) {
    return std::stoll(t::query1(t::catalog_path(d), "SELECT max(id) FROM checkpoints"));
}

// One good checkpoint saved by a child that exits normally.
ckptdbxx::entry good_checkpoint(const t::TempDir &d) {
    int code = 0;
    std::string l = t::run_helper({"save", d.path, "4096", "--epoch", "1", "--seed", "3"}, &code);
    REQUIRE_MESSAGE(code == 0, l);
    ckptdbxx::catalog c(d.path);
    return *c.latest();
}

// Two saves killed at once, so that both are left for the same recovery.
void kill_two_saves(const t::TempDir &d, const std::string &first, const std::string &second) {
    t::Child a({"save", d.path, "1048576", "--pause-at", first, "--epoch", "2"});
    REQUIRE(a.line() == "PAUSED " + first);
    t::Child b({"save", d.path, "1048576", "--pause-at", second, "--epoch", "3"});
    REQUIRE(b.line() == "PAUSED " + second);
    a.kill9();
    b.kill9();
}

}  // namespace

TEST_CASE("killed mid-write: the next open aborts the save, removes its temp file, keeps the previous checkpoint") {
    t::TempDir d;
    auto good = good_checkpoint(d);
    kill_save_at(d, "wrote");
    int64_t id = newest_id(d);
    CHECK(status_of(d, id) == "writing");
    CHECK(t::temp_files(d.path).size() == 1);
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "aborted");
    CHECK(t::temp_files(d.path).empty());
    CHECK(c.latest()->id == good.id);
    CHECK(t::query1(t::catalog_path(d), "SELECT detail FROM events WHERE event = 'recovered'").find("aborted") !=
          std::string::npos);
}

TEST_CASE("killed at each point before the seal: aborted, no temp file left, no final file appears") {
    for (const char *point : {"begun", "created", "synced"}) {
        CAPTURE(point);
        t::TempDir d;
        auto good = good_checkpoint(d);
        kill_save_at(d, point);
        ckptdbxx::catalog c(d.path);
        CHECK(status_of(d, newest_id(d)) == "aborted");
        CHECK(t::temp_files(d.path).empty());
        CHECK_FALSE(t::exists(d / "epoch_002.pt"));
        CHECK(c.latest()->id == good.id);
    }
}

TEST_CASE("killed after the seal, before the rename: recovery finishes the rename and adopts the file") {
    t::TempDir d;
    good_checkpoint(d);
    kill_save_at(d, "sealed", 3 << 20);
    int64_t id = newest_id(d);
    CHECK(t::temp_files(d.path).size() == 1);
    CHECK_FALSE(t::exists(d / "epoch_002.pt"));
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "complete");
    CHECK(t::temp_files(d.path).empty());
    auto l = c.latest();
    REQUIRE(l.has_value());
    CHECK(l->id == id);
    CHECK(t::read_file(l->path) == t::pattern(3 << 20));
    CHECK(t::query1(t::catalog_path(d), "SELECT detail FROM events WHERE event = 'recovered'")
              .find("commit was finished") != std::string::npos);
}

TEST_CASE("killed after the seal with the temp file torn afterwards: aborted, nothing adopted") {
    t::TempDir d;
    auto good = good_checkpoint(d);
    kill_save_at(d, "sealed", 1 << 20);
    auto temps = t::temp_files(d.path);
    REQUIRE(temps.size() == 1);
    std::string tp = d / *temps.begin();
    std::string b = t::read_file(tp);
    t::write_file(tp, b.substr(0, b.size() / 2));
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, newest_id(d)) == "aborted");
    CHECK(t::temp_files(d.path).empty());
    CHECK_FALSE(t::exists(d / "epoch_002.pt"));
    CHECK(c.latest()->id == good.id);
}

TEST_CASE("killed between rename and commit: the whole final file is adopted as complete") {
    for (const char *point : {"renamed", "dir_synced"}) {
        CAPTURE(point);
        t::TempDir d;
        good_checkpoint(d);
        kill_save_at(d, point, 3 << 20);
        int64_t id = newest_id(d);
        CHECK(status_of(d, id) == "writing");
        ckptdbxx::catalog c(d.path);
        CHECK(status_of(d, id) == "complete");
        auto l = c.latest();
        REQUIRE(l.has_value());
        CHECK(l->id == id);
        CHECK(l->name == "epoch_002.pt");
        CHECK(t::read_file(l->path) == t::pattern(3 << 20));
        CHECK(t::query1(t::catalog_path(d), "SELECT detail FROM events WHERE event = 'recovered'").find("adopted") !=
              std::string::npos);
    }
}

TEST_CASE("a final file that does not match the sealed checksum is not adopted and not deleted") {
    t::TempDir d;
    good_checkpoint(d);
    kill_save_at(d, "renamed");
    std::string final_path = d / "epoch_002.pt";
    std::string b = t::read_file(final_path);
    b[100] = static_cast<char>(b[100] ^ 1);
    t::write_file(final_path, b);
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, newest_id(d)) == "aborted");
    CHECK(t::exists(final_path));  // a file we cannot prove is ours is reported, never deleted
    CHECK(c.latest()->name == "epoch_001.pt");
}

TEST_CASE("recovery is idempotent: a second open changes nothing") {
    t::TempDir d;
    good_checkpoint(d);
    kill_two_saves(d, "wrote", "renamed");
    { ckptdbxx::catalog c(d.path); }
    std::string after_first = t::query1(t::catalog_path(d), "SELECT group_concat(id || status, ',') FROM checkpoints") +
                              t::query1(t::catalog_path(d), "SELECT count(*) FROM events");
    { ckptdbxx::catalog c(d.path); }
    std::string after_second =
        t::query1(t::catalog_path(d), "SELECT group_concat(id || status, ',') FROM checkpoints") +
        t::query1(t::catalog_path(d), "SELECT count(*) FROM events");
    CHECK(after_first == after_second);
    CHECK(t::query(t::catalog_path(d), "SELECT status FROM checkpoints ORDER BY id") ==
          std::vector<std::string>{"complete", "aborted", "complete"});
}

TEST_CASE("a crash inside recovery itself is recovered by the next open") {
    t::TempDir d;
    good_checkpoint(d);
    kill_two_saves(d, "wrote", "renamed");
    CHECK(t::query(t::catalog_path(d), "SELECT status FROM checkpoints ORDER BY id") ==
          std::vector<std::string>{"complete", "writing", "writing"});
    for (const char *point : {"recover_abort", "recover_adopt"}) {
        t::Child c({"recover", d.path, "--pause-at", point});
        std::string l = c.line();
        REQUIRE_MESSAGE(l == std::string("PAUSED ") + point, l);
        c.kill9();
    }
    ckptdbxx::catalog c(d.path);
    CHECK(t::query(t::catalog_path(d), "SELECT status FROM checkpoints ORDER BY id") ==
          std::vector<std::string>{"complete", "aborted", "complete"});
    CHECK(t::temp_files(d.path).empty());
    CHECK(c.latest()->name == "epoch_003.pt");
}

TEST_CASE("the save of a live process is left alone by another process's recovery") {
    t::TempDir d;
    good_checkpoint(d);
    t::Child writer({"save", d.path, "1048576", "--pause-at", "wrote", "--epoch", "2"});
    REQUIRE(writer.line() == "PAUSED wrote");
    int64_t id = newest_id(d);
    {
        ckptdbxx::catalog c(d.path);  // recovery runs here
        CHECK(status_of(d, id) == "writing");
        CHECK(t::temp_files(d.path).size() == 1);
        CHECK(c.latest()->name == "epoch_001.pt");  // latest never sees a save in flight
    }
    writer.kill9();
    ckptdbxx::catalog c(d.path);
    CHECK(status_of(d, id) == "aborted");
    CHECK(t::temp_files(d.path).empty());
}

TEST_CASE("orphan temp files are removed on open; files the catalog does not know are kept") {
    t::TempDir d;
    good_checkpoint(d);
    t::write_file(d / ".ckptdb-tmp-00000000000000000000000000000000", "orphan");
    t::write_file(d / "mystery.pt", "not ours");
    ckptdbxx::catalog c(d.path);
    CHECK(t::temp_files(d.path).empty());
    CHECK(t::read_file(d / "mystery.pt") == "not ours");
}

TEST_CASE("a helper that completes its save normally commits one checkpoint") {
    t::TempDir d;
    int code = 0;
    std::string l = t::run_helper({"save", d.path, "100000", "--epoch", "5"}, &code);
    CHECK(code == 0);
    CHECK(l.rfind("COMMITTED ", 0) == 0);
    ckptdbxx::catalog c(d.path);
    CHECK(c.latest()->name == "epoch_005.pt");
    CHECK(t::query1(t::catalog_path(d), "SELECT exit_reason FROM runs") == "clean");
}

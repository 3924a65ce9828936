// The conventions of the C ABI (ckptdb.h CONVENTIONS), asserted for every
// function they cover: one callback rule (a non-zero return stops the call
// with CKPTDB_ECALLBACK, the callback's value stays readable and the last
// error says a callback stopped it) and a version on every struct the caller
// fills (an unknown one is refused with CKPTDB_EINVAL naming the struct,
// changing nothing).
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "ckptdb.hpp"
#include "support.hpp"

namespace {

// The value every stopping callback here returns: CKPTDB_ENOTFOUND's number,
// which a caller must never mistake for that status.
constexpr int kStop = 4;
static_assert(kStop == CKPTDB_ENOTFOUND, "the callback's value collides with a status code on purpose");

int calls = 0;

template <class Item>
int stop_at_first(const Item *, void *) {
    ++calls;
    return kStop;
}

// rc is what the call returned; function names the call in the message.
void check_stopped(int rc, const char *function) {
    CAPTURE(function);
    CHECK(rc == CKPTDB_ECALLBACK);
    CHECK(rc != CKPTDB_ENOTFOUND);
    CHECK(ckptdb_last_error_code() == CKPTDB_ECALLBACK);
    CHECK(ckptdb_last_callback_value() == kStop);
    std::string msg = ckptdb_last_error();
    CHECK(msg.find(function) != std::string::npos);
    CHECK(msg.find("callback") != std::string::npos);
    CHECK(msg.find("returned 4") != std::string::npos);
    CHECK(calls == 1);  // stopped at the first call: no second one
    calls = 0;
}

// A directory with three complete checkpoints, a pruned one and an unknown file.
struct Dir {
    t::TempDir d;
    Dir() {
        ckptdbxx::catalog c(d.path);
        for (int i = 1; i <= 4; i++) c.save_bytes("epoch", i, i * 10, t::pattern(4096, i));
        ckptdb_keep_kind keep = CKPTDB_KEEP_KIND("epoch", 3);
        ckptdb_retention r = CKPTDB_RETENTION_INIT;
        r.keep_last = &keep;
        r.keep_last_count = 1;
        REQUIRE(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_OK);
        t::write_file(d / "notes.txt", "not a checkpoint");
    }
};

}  // namespace

TEST_CASE("every row callback that returns non-zero stops its call with CKPTDB_ECALLBACK, its value readable") {
    Dir dir;
    ckptdbxx::catalog c(dir.d.path);
    int64_t first = c.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE)).front().id;

    check_stopped(ckptdb_list(c.handle(), nullptr, stop_at_first<ckptdb_entry>, nullptr), "ckptdb_list");
    check_stopped(ckptdb_files(c.handle(), first, stop_at_first<ckptdb_file>, nullptr), "ckptdb_files");
    check_stopped(ckptdb_events(c.handle(), 0, 0, stop_at_first<ckptdb_event>, nullptr), "ckptdb_events");
    check_stopped(ckptdb_events(c.handle(), first, 0, stop_at_first<ckptdb_event>, nullptr), "ckptdb_events");
    check_stopped(ckptdb_runs(c.handle(), stop_at_first<ckptdb_run>, nullptr), "ckptdb_runs");
    int64_t checked = -1, corrupt = -1;
    check_stopped(ckptdb_verify_all(
                      &checked, &corrupt, c.handle(),
                      [](const ckptdb_entry *, int, void *) {
                          ++calls;
                          return kStop;
                      },
                      nullptr),
                  "ckptdb_verify_all");
    CHECK(checked == 1);  // the totals counted until the stop
    CHECK(corrupt == 0);
    int64_t problems = -1;
    check_stopped(ckptdb_fsck(&problems, c.handle(), 0, stop_at_first<ckptdb_fsck_item>, nullptr), "ckptdb_fsck");
    CHECK(problems == 1);  // notes.txt, counted before the report
    check_stopped(ckptdb_disk_usage(c.handle(), stop_at_first<ckptdb_usage>, nullptr), "ckptdb_disk_usage");
    int rebuilt = -1;
    problems = -1;
    check_stopped(
        ckptdb_fsck_dir(&problems, &rebuilt, dir.d.path.c_str(), nullptr, 0, stop_at_first<ckptdb_fsck_item>, nullptr),
        "ckptdb_fsck_dir");
    CHECK(problems == 1);
    CHECK(rebuilt == 0);
    check_stopped(ckptdb_verify_progress(
                      c.handle(), first,
                      [](int64_t, int64_t, void *) {
                          ++calls;
                          return kStop;
                      },
                      nullptr),
                  "ckptdb_verify_progress");
    CHECK(c.get(first).status == CKPTDB_STATUS_COMPLETE);  // stopping is not corruption

    // A call that was not stopped clears the value.
    CHECK(ckptdb_list(
              c.handle(), nullptr, [](const ckptdb_entry *, void *) { return 0; }, nullptr) == CKPTDB_OK);
    CHECK(ckptdb_last_callback_value() == 0);
    CHECK(std::string(ckptdb_last_error()).empty());
}

TEST_CASE("a prune's callback stops the report, not the prune it already did") {
    Dir dir;
    ckptdbxx::catalog c(dir.d.path);
    ckptdbxx::entry newest = c.save_bytes("epoch", 5, 50, t::pattern(4096, 5));
    ckptdb_keep_kind keep = CKPTDB_KEEP_KIND("epoch", 1);
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = &keep;
    r.keep_last_count = 1;
    int64_t count = 0, bytes = 0;
    check_stopped(ckptdb_prune(&count, &bytes, c.handle(), &r, 0, stop_at_first<ckptdb_prune_item>, nullptr),
                  "ckptdb_prune");
    CHECK(count == 3);
    CHECK(bytes == 3 * 4096);
    std::vector<ckptdbxx::entry> left = c.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE));
    REQUIRE(left.size() == 1);
    CHECK(left[0].id == newest.id);
}

TEST_CASE("a stopped rebuild or adopt installs no catalog; a stopped sync keeps what it committed") {
    SUBCASE("rebuild") {
        Dir dir;
        std::string before = t::read_file(t::catalog_path(dir.d));
        int64_t rows = -1;
        check_stopped(ckptdb_rebuild(&rows, dir.d.path.c_str(), nullptr, stop_at_first<ckptdb_rebuild_item>, nullptr),
                      "ckptdb_rebuild");
        CHECK(rows == 0);
        CHECK(t::read_file(t::catalog_path(dir.d)) == before);  // the old catalog, not a new one
        CHECK(t::temp_files(dir.d.path).empty());
    }
    SUBCASE("adopt") {
        t::TempDir d;
        t::write_file(d / "epoch_001.pt", t::pattern(4096, 1));
        t::write_file(d / "epoch_002.pt", t::pattern(4096, 2));
        int64_t rows = -1;
        check_stopped(ckptdb_adopt(&rows, d.path.c_str(), nullptr, stop_at_first<ckptdb_rebuild_item>, nullptr),
                      "ckptdb_adopt");
        CHECK(rows == 0);
        CHECK_FALSE(t::exists(t::catalog_path(d)));
        CHECK(t::names(d.path) == std::set<std::string>{"epoch_001.pt", "epoch_002.pt"});
        // Nothing was half done: adopting again works.
        REQUIRE(ckptdb_adopt(&rows, d.path.c_str(), nullptr, nullptr, nullptr) == CKPTDB_OK);
        CHECK(rows == 2);
    }
    SUBCASE("sync, by its item callback and by its progress callback") {
        Dir src;
        t::TempDir dst;
        ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
        o.on_item = stop_at_first<ckptdb_sync_item>;
        int64_t copied = -1, bytes = -1;
        check_stopped(ckptdb_sync(&copied, &bytes, src.d.path.c_str(), dst.path.c_str(), &o), "ckptdb_sync");
        CHECK(copied == 0);
        {
            ckptdbxx::catalog m(dst.path);
            CHECK(m.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE)).size() == 1);  // the one copied before the stop
        }
        ckptdb_sync_options p = CKPTDB_SYNC_OPTIONS_INIT;
        p.progress = [](int64_t, int64_t, void *) {
            ++calls;
            return kStop;
        };
        check_stopped(ckptdb_sync(&copied, &bytes, src.d.path.c_str(), dst.path.c_str(), &p), "ckptdb_sync");
        CHECK(t::temp_files(dst.path).empty());
        // The next run goes on and finishes.
        REQUIRE(ckptdb_sync(&copied, nullptr, src.d.path.c_str(), dst.path.c_str(), nullptr) == CKPTDB_OK);
        CHECK(copied == 2);
    }
}

TEST_CASE("a struct the caller fills with an unknown version is refused, naming the struct, changing nothing") {
    Dir dir;
    ckptdbxx::catalog c(dir.d.path);
    std::string before = t::snapshot(dir.d);

    ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", 1), CKPTDB_KEEP_KIND("time", 1)};
    keep[1].version = CKPTDB_KEEP_KIND_VERSION + 1;
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = keep;
    r.keep_last_count = 2;
    CHECK(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 0, nullptr, nullptr) == CKPTDB_EINVAL);
    std::string msg = ckptdb_last_error();
    CHECK(msg.find("ckptdb_keep_kind") != std::string::npos);
    CHECK(msg.find("keep_last[1]") != std::string::npos);
    CHECK(ckptdb_set_retention(c.handle(), &r) == CKPTDB_EINVAL);
    keep[1].version = 0;  // a struct never initialised
    CHECK(ckptdb_prune(nullptr, nullptr, c.handle(), &r, 1, nullptr, nullptr) == CKPTDB_EINVAL);
    CHECK(std::string(ckptdb_last_error()).find("ckptdb_keep_kind") != std::string::npos);
    CHECK(t::snapshot(dir.d) == before);

    ckptdb_shard_file f = CKPTDB_SHARD_FILE_INIT;
    f.name = "e.rank0.pt";
    f.temp_name = ".ckptdb-tmp-00000000000000000000000000000000";
    f.checksum = "00000000000000000000000000000000";
    f.version = 7;
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    CHECK(ckptdb_commit_shards(&e, c.handle(), "epoch", 9, 90, nullptr, &f, 1) == CKPTDB_EINVAL);
    msg = ckptdb_last_error();
    CHECK(msg.find("ckptdb_shard_file") != std::string::npos);
    CHECK(msg.find("files[0]") != std::string::npos);
    CHECK(msg.find("version 7") != std::string::npos);
    CHECK(t::snapshot(dir.d) == before);
}

TEST_CASE("structs handed to callbacks carry their size") {
    Dir dir;
    ckptdbxx::catalog c(dir.d.path);
    c.save_bytes("epoch", 5, 50, t::pattern(4096, 5));
    ckptdb_keep_kind keep = CKPTDB_KEEP_KIND("epoch", 1);
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    r.keep_last = &keep;
    r.keep_last_count = 1;
    std::vector<size_t> sizes;
    REQUIRE(ckptdb_prune(
                nullptr, nullptr, c.handle(), &r, 1,
                [](const ckptdb_prune_item *it, void *p) {
                    static_cast<std::vector<size_t> *>(p)->push_back(it->struct_size);
                    return 0;
                },
                &sizes) == CKPTDB_OK);
    REQUIRE(sizes.size() == 3);
    for (size_t s : sizes) CHECK(s == sizeof(ckptdb_prune_item));
    t::TempDir dst;
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    o.on_item = [](const ckptdb_sync_item *it, void *p) {
        static_cast<std::vector<size_t> *>(p)->push_back(it->struct_size);
        return 0;
    };
    o.item_payload = &sizes;
    sizes.clear();
    REQUIRE(ckptdb_sync(nullptr, nullptr, dir.d.path.c_str(), dst.path.c_str(), &o) == CKPTDB_OK);
    REQUIRE(sizes.size() >= 4);
    for (size_t s : sizes) CHECK(s == sizeof(ckptdb_sync_item));
}

// The invariant checker itself: quiet on a healthy directory, and each check
// reports what it exists to catch (a torn file, a lost acknowledged save, a
// missing newest checkpoint, an unknown file kept and listed).
#include <doctest/doctest.h>

#include "invariants.hpp"
#include "support.hpp"

namespace {

int64_t save(const t::TempDir &d, int epoch, size_t bytes = 4096) {
    int code = 0;
    std::string l = t::run_helper({"save", d.path, std::to_string(bytes), "--epoch", std::to_string(epoch)}, &code);
    REQUIRE_MESSAGE(code == 0, l);
    return std::stoll(l.substr(std::string("COMMITTED ").size()));
}

}  // namespace

TEST_CASE("a healthy directory has no violations; unknown files are listed and kept") {
    t::TempDir d;
    harness::Expect x;
    x.acknowledged.insert(save(d, 1));
    x.acknowledged.insert(save(d, 2));
    x.newest_complete_seq = harness::newest_complete_seq(d.path);
    CHECK(x.newest_complete_seq == 2);
    t::write_file(d / "notes.txt", "mine");
    harness::Report r;
    auto v = harness::check_invariants(d.path, x, &r);
    CHECK_MESSAGE(v.empty(), harness::join(v));
    CHECK(r.complete == 2);
    CHECK(r.unknown_files == std::vector<std::string>{"notes.txt"});
    CHECK(t::exists(d / "notes.txt"));
    CHECK(r.latest_id == *x.acknowledged.rbegin());
}

TEST_CASE("a torn file of a complete row is an I1 violation and latest skips it (I5 sees the next)") {
    t::TempDir d;
    save(d, 1);
    int64_t id = save(d, 2);
    std::string path =
        d / t::query1(t::catalog_path(d), "SELECT name FROM checkpoints WHERE id = " + std::to_string(id));
    ::truncate(path.c_str(), 100);
    auto v = harness::check_invariants(d.path, harness::Expect());
    REQUIRE_FALSE(v.empty());
    CHECK(v[0].find("I1") == 0);
}

TEST_CASE("an acknowledged id that is not complete is an I4 violation; a lost newest is an I2 violation") {
    t::TempDir d;
    save(d, 1);
    harness::Expect x;
    x.acknowledged.insert(99);
    x.newest_complete_seq = 5;
    auto v = harness::check_invariants(d.path, x);
    std::string all = harness::join(v);
    CHECK(all.find("I4: acknowledged checkpoint 99 has no row") != std::string::npos);
    CHECK(all.find("I2: no row has commit_seq 5") != std::string::npos);
}

TEST_CASE("a checkpoint file deleted behind the catalog's back is reported") {
    t::TempDir d;
    harness::Expect x;
    x.acknowledged.insert(save(d, 1));
    x.newest_complete_seq = harness::newest_complete_seq(d.path);
    ::unlink((d / "epoch_001.pt").c_str());
    auto v = harness::check_invariants(d.path, x);
    REQUIRE_FALSE(v.empty());
    CHECK(harness::join(v).find("I1: complete checkpoint") != std::string::npos);
}

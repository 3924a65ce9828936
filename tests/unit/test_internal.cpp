// Engine internals that the C ABI cannot reach directly: name rules (a C
// string cannot carry a NUL), default names, process liveness, the hasher.
#include <doctest/doctest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.hpp"
#include "hash.hpp"
#include "names.hpp"
#include "proc.hpp"

extern char **environ;

using namespace ckptdb;

TEST_CASE("name rules") {
    CHECK(name_problem("epoch_001.pt").empty());
    CHECK(name_problem(std::string("a\0b", 3)) == "contains a NUL byte");
    CHECK(name_problem("a/b") == "contains '/'");
    CHECK(name_problem("..") == "is '.' or '..'");
    CHECK(name_problem("x\x7f") == "contains a control character");
    CHECK(name_problem(".ckptdb-tmp-1").find("reserved") != std::string::npos);
    CHECK(name_problem(".hidden.pt").empty());
    CHECK_THROWS_AS(check_name("a/b"), Error);
    CHECK(kind_problem("epoch").empty());
    CHECK(kind_problem("my-kind.v2").empty());
    CHECK_FALSE(kind_problem(std::string("a\0b", 3)).empty());
}

TEST_CASE("default names and suffixes") {
    CHECK(default_name("epoch", 7, 0, 0) == "epoch_007.pt");
    CHECK(default_name("epoch", 1234, 0, 0) == "epoch_1234.pt");
    CHECK(default_name("step", 0, 42, 0) == "step_000042.pt");
    CHECK(default_name("time", 0, 42, 1700000000) == "time_1700000000.pt");
    CHECK(default_name("preempt", 0, 42, 0) == "preempt_000042.pt");
    CHECK(default_name("best", 0, 42, 0) == "best_000042.pt");
    CHECK(with_suffix("epoch_007.pt", 2) == "epoch_007-2.pt");
    CHECK(with_suffix("noext", 3) == "noext-3");
    std::string t1 = random_temp_name(), t2 = random_temp_name();
    CHECK(t1 != t2);
    CHECK(is_temp_name(t1));
    CHECK(t1.size() == 12 + 32);
}

TEST_CASE("liveness: this process is alive; a dead pid, a reused pid or a reboot is dead; another host is unknown") {
    ProcIdentity me = self_identity();
    CHECK(me.proc_start > 0);
    CHECK_FALSE(me.boot_id.empty());
    CHECK(liveness(me, me.host, me.boot_id, me.pid, me.proc_start) == Liveness::alive);
    CHECK(liveness(me, me.host, me.boot_id, me.pid, me.proc_start + 1) == Liveness::dead);
    CHECK(liveness(me, me.host, "another-boot", me.pid, me.proc_start) == Liveness::dead);
    CHECK(liveness(me, "another-host", me.boot_id, me.pid, me.proc_start) == Liveness::unknown);
    pid_t child = 0;  // a process that exits at once: only its pid is used
    char arg0[] = "true";
    char *argv[] = {arg0, nullptr};
    REQUIRE(::posix_spawnp(&child, "true", nullptr, nullptr, argv, environ) == 0);
    int st;
    ::waitpid(child, &st, 0);
    CHECK(liveness(me, me.host, me.boot_id, child, 12345) == Liveness::dead);
}

TEST_CASE("the hasher prints XXH3-128 in xxh128sum's canonical hex, across split updates") {
    Hasher a;
    a.update("abc", 3);
    CHECK(a.hex() == "06b05ab6733a618578af5f94892f3950");
    Hasher b;
    b.update("a", 1);
    b.update("", 0);
    b.update("bc", 2);
    CHECK(b.hex() == a.hex());
    Hasher e;
    CHECK(e.hex() == "99aa06d3014798d86001c324468d497f");
}

// The engine's Slurm helpers without a cluster: which job ids are handed to
// scontrol, and how a command is run (argv only, bounded wait, exit status
// and the first stderr line in the failure text).
#include <doctest/doctest.h>

#include <signal.h>
#include <time.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "slurm.hpp"

using ckptdb::slurm::run_command;
using ckptdb::slurm::valid_job_id;

TEST_CASE("job ids: digits and underscores only, beginning with a digit, at most 32 characters") {
    CHECK(valid_job_id("1"));
    CHECK(valid_job_id("4242"));
    CHECK(valid_job_id("123_7"));
    CHECK(valid_job_id(std::string(32, '9')));
    CHECK_FALSE(valid_job_id(""));
    CHECK_FALSE(valid_job_id(std::string(33, '9')));
    CHECK_FALSE(valid_job_id("_1"));
    CHECK_FALSE(valid_job_id("12a"));
    CHECK_FALSE(valid_job_id("1;reboot"));
    CHECK_FALSE(valid_job_id("1 2"));
    CHECK_FALSE(valid_job_id("-1"));
    CHECK_FALSE(valid_job_id("1\n2"));
    CHECK_FALSE(valid_job_id("$(id)"));
}

TEST_CASE("a command that exits 0 succeeds") {
    auto r = run_command({"true"}, 5000);
    CHECK(r.ok);
    CHECK(r.failure.empty());
}

TEST_CASE("arguments reach the command as they are, without a shell") {
    // sh -c SCRIPT NAME ARG: the script checks its one argument verbatim.
    auto r =
        run_command({"sh", "-c", "[ \"$#\" = 1 ] && [ \"$1\" = '1;exit 9 $(x) *' ]", "sh", "1;exit 9 $(x) *"}, 5000);
    CHECK_MESSAGE(r.ok, r.failure);
}

TEST_CASE("a failing command: its exit status and the first non-empty line of its stderr") {
    auto r = run_command({"sh", "-c", "echo out; printf '\\n  first line\\nsecond line\\n' >&2; exit 4"}, 5000);
    CHECK_FALSE(r.ok);
    CHECK(r.failure ==
          "'sh -c echo out; printf '\\n  first line\\nsecond line\\n' >&2; exit 4' exited with status 4: "
          "first line");
}

TEST_CASE("a command killed by a signal says which") {
    auto r = run_command({"sh", "-c", "kill -KILL $$"}, 5000);
    CHECK_FALSE(r.ok);
    CHECK(r.failure.find("was killed by signal 9") != std::string::npos);
}

TEST_CASE("a command not on PATH is reported, not thrown") {
    auto r = run_command({"ckptdb-no-such-command-here"}, 5000);
    CHECK_FALSE(r.ok);
    CHECK(r.failure ==
          "cannot run 'ckptdb-no-such-command-here': No such file or directory "
          "(is ckptdb-no-such-command-here on PATH?)");
}

TEST_CASE("a command that outlives the timeout is killed and reported") {
    auto t0 = std::chrono::steady_clock::now();
    auto r = run_command({"sleep", "30"}, 300);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK_FALSE(r.ok);
    CHECK(r.failure == "'sleep 30' did not finish within 300 ms and was killed");
    CHECK(s < 10.0);  // bounded by the timeout, not by the command
}

TEST_CASE("a command that closes stderr early is still waited for, up to the timeout") {
    auto r = run_command({"sh", "-c", "exec 2>&-; sleep 0.2; exit 5"}, 5000);
    CHECK_FALSE(r.ok);
    CHECK(r.failure == "'sh -c exec 2>&-; sleep 0.2; exit 5' exited with status 5");
}

TEST_CASE("the caller's ignored and blocked signals do not reach the command") {
    struct sigaction ign {
    }, old_term{};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    REQUIRE(sigaction(SIGTERM, &ign, &old_term) == 0);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    REQUIRE(sigprocmask(SIG_BLOCK, &block, &old_mask) == 0);
    // With SIGTERM ignored or SIGUSR1 blocked the command would outlive its own kill.
    auto term = run_command({"sh", "-c", "kill -TERM $$; sleep 5; exit 0"}, 5000);
    auto usr1 = run_command({"sh", "-c", "kill -USR1 $$; sleep 5; exit 0"}, 5000);
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    CHECK(term.failure.find("was killed by signal " + std::to_string(SIGTERM)) != std::string::npos);
    CHECK(usr1.failure.find("was killed by signal " + std::to_string(SIGUSR1)) != std::string::npos);
}

TEST_CASE("requeue: nothing without SIGUSR1 or without SLURM_JOB_ID") {
    ::setenv("SLURM_JOB_ID", "4242", 1);
    CHECK_FALSE(ckptdb::slurm::requeue_after_preempt(SIGTERM).has_value());
    CHECK_FALSE(ckptdb::slurm::requeue_after_preempt(SIGINT).has_value());
    CHECK_FALSE(ckptdb::slurm::requeue_after_preempt(0).has_value());
    ::unsetenv("SLURM_JOB_ID");
    CHECK_FALSE(ckptdb::slurm::requeue_after_preempt(SIGUSR1).has_value());
}

TEST_CASE("requeue: once per process; a bad SLURM_JOB_ID runs nothing") {
    ::setenv("SLURM_JOB_ID", "12;x", 1);
    auto first = ckptdb::slurm::requeue_after_preempt(SIGUSR1);
    REQUIRE(first.has_value());
    CHECK_FALSE(first->ok);
    CHECK(first->detail == "SLURM_JOB_ID '12;x' is not a Slurm job id (digits and '_'); scontrol was not run");
    ::setenv("SLURM_JOB_ID", "12", 1);
    CHECK_FALSE(ckptdb::slurm::requeue_after_preempt(SIGUSR1).has_value());  // already attempted
    ::unsetenv("SLURM_JOB_ID");
}

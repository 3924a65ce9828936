// Slurm: asking Slurm to requeue the job once its preempt checkpoint is
// committed (the CKPTDB_OPEN_REQUEUE open flag), and running the one command
// that takes (scontrol, without a shell).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ckptdb::slurm {

// A job id as Slurm puts it in SLURM_JOB_ID: 1-32 characters, digits and
// '_', beginning with a digit.  Anything else is never handed to a command.
bool valid_job_id(const std::string &id);

struct CommandResult {
    bool ok = false;      // ran and exited with status 0
    std::string failure;  // why not, for people ("" when ok)
};

// Runs argv (argv[0] found through PATH by posix_spawnp; no shell) with
// stdin and stdout on /dev/null, the signal mask cleared and every signal at
// its default action, and waits for it at most timeout_ms, then kills it
// (SIGKILL).  The failure text names the command and gives its exit status
// or signal and the first line it wrote to stderr.  Never throws for the
// command's own failures; throws Error only when no pipe can be made.
CommandResult run_command(const std::vector<std::string> &argv, int timeout_ms);

// What a requeue attempt came to: the event to log and its detail.
struct Requeue {
    bool ok = false;
    std::string detail;
};

// Called once a preempt checkpoint is committed through a handle opened with
// CKPTDB_OPEN_REQUEUE.  When signo (the preemption signal received) is
// SIGUSR1, SLURM_JOB_ID is set and this process has not asked before, runs
// `scontrol requeue <SLURM_JOB_ID>` and says how it went; otherwise nothing
// (an empty optional).  A SLURM_JOB_ID that is not a job id is a failed
// attempt and runs nothing.  Thread-safe; never throws.
std::optional<Requeue> requeue_after_preempt(int signo) noexcept;

}  // namespace ckptdb::slurm

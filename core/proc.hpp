// Who is running: the identity of this process as recorded in a run row,
// and whether the process of an older run still lives.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace ckptdb {

struct ProcIdentity {
    std::string host;
    std::string boot_id;
    int64_t pid = 0;
    int64_t proc_start = 0;  // clock ticks since boot, from /proc/<pid>/stat
};

ProcIdentity self_identity();

// Start time of pid (field 22 of /proc/<pid>/stat), or -1 if it has none.
int64_t proc_start_time(int64_t pid);

enum class Liveness { alive, dead, unknown };

// dead: same host and boot, and the pid is gone or belongs to a newer
// process; or same host after a reboot. unknown: another host (a save of
// another host is judged by its lock and lease: lease.hpp).
Liveness liveness(const ProcIdentity &self, const std::string &host, const std::string &boot_id, int64_t pid,
                  int64_t proc_start);

}  // namespace ckptdb

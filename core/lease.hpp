// Writers on other hosts. A row left "writing" by a process of this host is
// judged by its pid (proc.hpp); a process on another host cannot be asked,
// so its save holds a lease instead: the heartbeat is the mtime of its temp
// file, which every write advances and the writer renews explicitly (at
// most every kRenewSeconds while it streams, and right before its fsync and
// its commit). A save whose temp file is held under its writer's flock is
// alive whatever its lease says, where the file system has such locks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "proc.hpp"

namespace ckptdb {

// The default lease, 15 minutes. It must exceed the longest gap between two
// renewals of a live writer: kRenewSeconds while streaming, plus the longest
// fsync of a large file on a loaded shared file system (minutes, seen on
// Lustre and NFS under load), plus the clock skew between the node that
// judges and the file server that stamps the mtime, plus the attribute
// caching of a network client (NFS caches mtimes up to 60 s). A requeued job
// waits this long at most before a dead writer's temp file is reclaimed.
inline constexpr int64_t kDefaultLeaseSeconds = 15 * 60;
// Operators and tests override it (a positive whole number of seconds).
inline constexpr const char *kLeaseEnv = "CKPTDB_LEASE_SECONDS";
inline constexpr int64_t kMaxLeaseSeconds = 10LL * 365 * 24 * 3600;
// A streaming writer renews its heartbeat at most this often: on a network
// file system each renewal is a round trip to the server.
inline constexpr int64_t kRenewSeconds = 10;

// The lease length: CKPTDB_LEASE_SECONDS, else kDefaultLeaseSeconds. A value
// that is not a whole number from 1 to kMaxLeaseSeconds throws CKPTDB_EINVAL
// naming the variable.
int64_t lease_seconds();

// The writer's side: sets the mtime of the file behind fd to now when
// kRenewSeconds have passed since last (a lease_clock() reading), or at once
// with force. Best effort: a file system that refuses the update still sees
// the writes' own mtimes.
void renew_lease(int fd, int64_t &last, bool force);
// Seconds of a coarse monotonic clock (one cheap read): when a writer last
// renewed, or created its file (which stamps the mtime itself).
int64_t lease_clock();
// On in the library; a benchmark linking the engine statically turns it off
// to measure what the renewals cost.
extern bool g_renew_leases;
// Takes an exclusive flock on the writer's fresh temp file behind fd, held
// while fd stays open: a recovery on any host that shares the lock sees the
// writer alive (temp_in_use). Where the file system has no such locks
// (ENOLCK, EOPNOTSUPP, ENOSYS) the lease alone speaks for the writer.
void hold_writer_lock(int fd);

// Every row still "writing", with its files.
std::vector<WriterRow> writer_rows(Catalog &cat);

struct WriterVerdict {
    bool dead = false;
    // For a writer on another host, what the verdict rests on: "lease
    // expired: host X last heartbeat T (...)" when dead; empty for a writer
    // of this host (its pid decides).
    std::string why;
};

// The one rule for "is the writer of this row gone". Dead: no run row; the
// run ended; a process of this host that is gone (liveness()); a process of
// another host whose files no process holds locked and whose heartbeat (the
// newest mtime of its temp or final files, else the row's begin time) is
// more than lease seconds older than now (Unix seconds).
WriterVerdict judge_writer(const ProcIdentity &self, const Dir &dir, const WriterRow &w, int64_t lease, double now);

}  // namespace ckptdb

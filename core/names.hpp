// What may be stored as a checkpoint name or kind, and the default names.
// Every name read back from the catalog is checked again before it is used,
// so a tampered row can never reach outside the directory.
#pragma once

#include <cstdint>
#include <string>

namespace ckptdb {

// Prefix of every file the library itself creates in the directory; user
// names may not start with ".ckptdb".
inline constexpr const char *kTempPrefix = ".ckptdb-tmp-";
// The directory's reserve of free space (ballast.hpp): never a checkpoint,
// never a temp file.
inline constexpr const char *kBallastName = ".ckptdb-ballast";

// Empty string when valid, else why not ("contains '/'", ...).
std::string name_problem(const std::string &name);
std::string kind_problem(const std::string &kind);

// Throws CKPTDB_EINVAL naming the problem.
void check_name(const std::string &name);
void check_kind(const std::string &kind);

// epoch_010.pt, step_000500.pt, time_<unix>.pt, preempt_000500.pt, <kind>_<step>.pt
std::string default_name(const std::string &kind, int64_t epoch, int64_t step, int64_t unix_seconds);
// epoch_010.pt, 2 -> epoch_010-2.pt
std::string with_suffix(const std::string &name, int n);
// .ckptdb-tmp-<32 random hex digits>
std::string random_temp_name();
bool is_temp_name(const std::string &name);
// Exactly a name random_temp_name() makes (prefix and 32 hex digits): safe to
// open, rename or remove when a catalog row names it.
bool is_exact_temp_name(const std::string &name);
// Exactly 32 lower-case hex digits from offset `from` to the end (an XXH3-128
// checksum as xxh128sum prints it, or the random part of a temp name).
bool is_hex32(const std::string &s, size_t from = 0);

}  // namespace ckptdb

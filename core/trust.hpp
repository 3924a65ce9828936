// Who may have put there what the library reads, like ssh's StrictModes.
// The rule, in this one place:
//   - a checkpoint directory writable by every user (S_IWOTH) must have the
//     sticky bit (like /tmp): there only a file's owner may replace it;
//   - the directory, the catalog and every file read from it must belong to
//     this process's effective user or to root.
// A group-writable directory is trusted: a group member who replaces a file
// becomes its owner, which the second rule catches.
// Always judged on what was actually opened: the fstat of the descriptor, or
// fstatat without following links relative to the directory's descriptor,
// never a path looked up again. Catalog::open applies it unless
// OpenOptions::trust_shared (CKPTDB_OPEN_TRUST_SHARED).
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

namespace ckptdb {

// Why what st describes (a directory or a file) is not to be trusted by
// this process, for people; "" when it is.
std::string trust_problem(const struct stat &st);

// "" when st is trusted; else "the <what> '<path>' (owner uid N (name), mode
// 0NNN): <why>", what naming the kind ("checkpoint directory", "catalog",
// "file").
std::string distrust(const struct stat &st, const std::string &what, const std::string &path);

// Throws CKPTDB_EUNTRUSTED with every distrust() text given (none empty)
// and how to override.
[[noreturn]] void fail_untrusted(const std::vector<std::string> &found);

// fail_untrusted() when distrust() has an answer.
void require_trusted(const struct stat &st, const std::string &what, const std::string &path);

}  // namespace ckptdb

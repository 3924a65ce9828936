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

// The catalog's own files, one list (docs/DESIGN.md, "Which file owns which
// rule"). What SQLite keeps beside a catalog file, the catalog itself first:
// creating, keeping aside and removing a catalog handle all of them.
inline constexpr const char *kCatalogSuffixes[] = {"", "-wal", "-shm", "-journal"};
// A file of the catalog named `catalog`, never a checkpoint: the catalog or
// a kCatalogSuffixes companion, a copy kept aside (<catalog>.broken-...), a
// catalog being built (<catalog>.new-...), and the reserve. A save may not
// take such a name, and fsck, rebuild and adopt never count one.
bool is_catalog_file(const std::string &name, const std::string &catalog);

// Empty string when valid, else why not ("contains '/'", ...).
std::string name_problem(const std::string &name);
std::string kind_problem(const std::string &kind);

// Throws CKPTDB_EINVAL naming the problem.
void check_name(const std::string &name);
void check_kind(const std::string &kind);

// The default-name rule and its inverse (docs/DESIGN.md, "Which file owns
// which rule"). Every name the library or a binding gives a checkpoint
// without being told one comes from default_name or shard_name, and
// parse_default_name recognises every one of them (rebuild and adopt).
//
// epoch_010.pt, step_000500.pt, time_<unix>.pt, preempt_000500.pt, <kind>_<step>.pt
std::string default_name(const std::string &kind, int64_t epoch, int64_t step, int64_t unix_seconds);
// default_name without its ".pt": the stem a suffix and a rank are added to.
std::string default_stem(const std::string &kind, int64_t epoch, int64_t step, int64_t unix_seconds);
// epoch_010.pt, 2 -> epoch_010-2.pt
std::string with_suffix(const std::string &name, int n);
// The whole rule, every input checked (CKPTDB_EINVAL naming it): the stem,
// "-<suffix>" when suffix >= 2, then ".pt" (world 0) or shard_name's
// ".rank<R>-of-<N>.pt". What ckptdb_default_name returns.
std::string default_name(const std::string &kind, int64_t epoch, int64_t step, int suffix, int rank, int world,
                         int64_t unix_seconds);
// The file of rank `rank` of a sharded checkpoint of `world` ranks:
// epoch_010, 3, 8 -> epoch_010.rank3-of-8.pt. Throws CKPTDB_EINVAL unless
// 0 <= rank < world.
std::string shard_name(const std::string &stem, int rank, int world);

// What a default name says; world is 0 for a single-file checkpoint.
struct DefaultName {
    std::string kind;
    int64_t epoch = 0, step = 0;
    int rank = 0, world = 0;
    std::string stem;  // the name without ".pt" or ".rank<R>-of-<N>.pt" (suffix kept)
};
// The inverse of default_name (with or without a with_suffix suffix) and of
// shard_name over a default stem; false for any other name.
bool parse_default_name(const std::string &name, DefaultName &out);
// What the name of a directory checkpoint says (rebuild and adopt): the
// inverse of the default name a directory save gets (default_stem, with or
// without a with_suffix suffix: "epoch_003", "step_000100-2"), and the
// Hugging Face Trainer's "checkpoint-<N>" (kind "step", step N); false for
// any other name. world is 0.
bool parse_dir_name(const std::string &name, DefaultName &out);
// The writing rank in the name of a torch.distributed.checkpoint data file,
// "__<R>_<n>.distcp"; false for any other name.
bool parse_dcp_file_name(const std::string &name, int64_t &rank);
// .ckptdb-tmp-<32 random hex digits>
std::string random_temp_name();
bool is_temp_name(const std::string &name);
// Exactly a name random_temp_name() makes (prefix and 32 hex digits): safe to
// open, rename or remove when a catalog row names it.
bool is_exact_temp_name(const std::string &name);
// A directory save's temp directory: a temp name with ".d" appended.
inline constexpr const char *kTempDirSuffix = ".d";
bool is_temp_dir_name(const std::string &name);
// Exactly 32 lower-case hex digits from offset `from` to the end (an XXH3-128
// checksum as xxh128sum prints it, or the random part of a temp name).
bool is_hex32(const std::string &s, size_t from = 0);

}  // namespace ckptdb

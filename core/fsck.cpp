// Checking a directory against its catalog (names and sizes), safe repairs,
// and rebuilding a lost catalog from the files present.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

#include "ballast.hpp"
#include "catalog.hpp"
#include "ckptdb.h"
#include "db.hpp"
#include "error.hpp"
#include "fsio.hpp"
#include "hash.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "lease.hpp"
#include "dirsave.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace ckptdb {

std::vector<FsckItem> Catalog::fsck(bool repair) {
    if (repair && readonly()) fail(CKPTDB_EREADONLY, "cannot repair: the catalog was opened read-only");
    std::vector<FsckItem> out;
    // Listing first, then the catalog: a save that starts in between has its
    // row before its temp file, so its temp file is never called an orphan.
    std::vector<std::string> names = list_names(dir_);
    // Saves in flight, each judged alive or gone by the rule recovery uses.
    struct Owner {
        int64_t id;
        bool alive;
        std::string why;  // a writer on another host: its lease, or its lock
    };
    std::map<std::string, Owner> owned_temps;
    {
        const int64_t lease = lease_seconds();
        const double now = static_cast<double>(::time(nullptr));
        for (const WriterRow &w : writer_rows(*this)) {
            WriterVerdict v = judge_writer(self_, dir_, w, lease, now);
            for (const FileRow &f : w.files)
                if (!f.temp_name.empty()) owned_temps[f.temp_name] = {w.id, !v.dead, v.why};
            if (!w.temp_dir.empty()) owned_temps[w.temp_dir] = {w.id, !v.dead, v.why};
        }
    }
    std::map<std::string, std::pair<int64_t, std::string>> known;  // file name -> (checkpoint, status)
    std::vector<KnownFile> known_files;
    read([&](Store &db) { known_files = db.file_names_known(); });
    for (const KnownFile &k : known_files) {
        // A pruned row whose deletion is recorded no longer owns the name: a
        // file there now is someone else's.
        if (k.status == "pruned" && !k.deleted_at.empty()) continue;
        auto &slot = known[k.name];
        // A live row wins over the pruned history of the same name.
        if (slot.second.empty() || slot.second == "pruned") slot = {k.checkpoint_id, k.status};
    }

    std::vector<std::string> newer_list = newer_than_catalog();
    std::set<std::string> newer(newer_list.begin(), newer_list.end());
    for (const std::string &n : names) {
        if (reserved_name(n)) continue;
        if (is_temp_name(n)) {
            auto o = owned_temps.find(n);
            if (o != owned_temps.end() && o->second.alive) {
                out.push_back({"writing", n, o->second.id,
                               "the temp file of a save in flight" +
                                   (o->second.why.empty() ? std::string() : " (" + o->second.why + ")"),
                               ""});
                continue;
            }
            if (o == owned_temps.end() && temp_in_use(dir_, n)) {
                out.push_back({"writing", n, 0, "the temp file of a shard being written", ""});
                continue;
            }
            FsckItem it{"temp_file", n, o != owned_temps.end() ? o->second.id : 0,
                        o == owned_temps.end() ? "a leftover temp file of the library"
                        : o->second.why.empty()
                            ? "left by a save whose process is gone (recovery aborts it)"
                            : "left by a save whose writer is gone: " + o->second.why + " (recovery aborts it)",
                        ""};
            out.push_back(it);
            continue;
        }
        auto k = known.find(n);
        if (k == known.end() && newer.count(n)) {
            out.push_back({"newer_than_catalog", n, 0,
                           "a checkpoint file the catalog does not know, newer than its newest commit (commits "
                           "lost with the catalog's WAL? a file put here by hand?); never deleted. 'ckptdb adopt' "
                           "does not apply to a catalog that exists; compare with 'ckptdb ls' before resuming",
                           ""});
        } else if (k == known.end()) {
            out.push_back({"unknown_file", n, 0, "the catalog does not know this file; it is never deleted", ""});
        } else if (k->second.second == "pruned") {
            out.push_back({"pending_prune", n, k->second.first, "pruned, but the file is still there", ""});
        }
    }

    // Complete checkpoints: every file present with its recorded size.
    int64_t after = 0;
    for (;;) {
        std::vector<Entry> page = entries_page(after, 1u << CKPTDB_STATUS_COMPLETE, std::nullopt, 256);
        for (const Entry &e : page) {
            after = e.id;
            Check c = check_files(e, false);
            if (c.ok) continue;
            bool missing = c.reason.find("is missing") != std::string::npos;
            out.push_back({missing ? "missing_file" : "size_mismatch", e.name, e.id, c.reason, ""});
        }
        if (page.size() < 256) break;
    }
    if (!repair) return out;

    // Repair: recovery first (saves of dead processes are resolved and their
    // temp files removed, as the next open would), then each finding. Each
    // step that writes the catalog may use the reserve on a full disk; it
    // comes back once the repair's deletions freed room.
    Reserve reserve(dir_, [this](const std::string &ev, const std::string &d) { log_event_noexcept(ev, d); });
    if (reserve_used_by_open_) reserve.take_over(), reserve_used_by_open_ = false;
    reserve.run("the repair", [&] { recover(); });
    for (FsckItem &it : out) {
        if (it.kind == "temp_file") {
            if (it.checkpoint_id != 0 && entry(it.checkpoint_id).status == CKPTDB_STATUS_WRITING) {
                // Judged again by recovery just now and found alive (a writer
                // on another host renewed its lease meanwhile): its file stays.
                it.action = "kept: its writer is alive";
                continue;
            }
            if (!name_exists(dir_, it.name) && it.checkpoint_id != 0 &&
                entry(it.checkpoint_id).status == CKPTDB_STATUS_COMPLETE) {
                it.action = "adopted: recovery finished its commit";
                continue;
            }
            if (is_temp_dir_name(it.name)) {
                // A directory save's: its files no live writer holds, then it.
                it.action = remove_temp_dir(dir_, it.name) ? "removed" : "could not remove";
                continue;
            }
            int err = name_exists(dir_, it.name) ? unlink_name(dir_, it.name) : 0;
            it.action = err == 0 ? "removed" : "could not remove";
        } else if (it.kind == "pending_prune") {
            reserve.run("the repair", [&] { finish_prunes({it.checkpoint_id}); });
            it.action = name_exists(dir_, it.name) ? "could not remove" : "removed";
        } else if (it.kind == "missing_file" || it.kind == "size_mismatch") {
            Check c = check_files(entry(it.checkpoint_id), false);  // still so after recovery?
            bool marked = false;
            if (!c.ok) reserve.run("the repair", [&] { marked = mark_corrupt(it.checkpoint_id, c.reason); });
            if (marked) it.action = "marked corrupt";
        }
    }
    reserve.restore();
    return out;
}

int64_t count_problems(const std::vector<FsckItem> &items) {
    int64_t n = 0;
    for (const FsckItem &it : items) n += it.is_problem();
    return n;
}

FsckReport Catalog::fsck_dir(const std::string &path, const OpenOptions &opts, bool repair) {
    FsckReport rep;
    std::vector<FsckItem> &rows = rep.items;
    OpenOptions ro = opts, rw = opts;
    ro.readonly = true;
    ro.create = rw.create = false;
    rw.readonly = false;
    int code = CKPTDB_OK;
    std::string why;
    try {
        open(path, ro);
    } catch (const Error &e) {
        code = e.code();
        why = e.what();
    }
    if (code != CKPTDB_OK) {
        // The catalog is lost or unreadable (but the directory is there).
        struct stat st {};
        bool lost = ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
                    (code == CKPTDB_ENOTFOUND || code == CKPTDB_ENOTCATALOG || code == CKPTDB_EDB);
        if (!lost) throw Error(code, why);
        rows.push_back(
            {code == CKPTDB_ENOTFOUND ? "catalog_missing" : "catalog_unreadable", opts.catalog_name, 0, why, ""});
        if (!repair) {
            rep.problems = 1;
            return rep;
        }
        std::vector<FsckItem> items;
        int64_t n = rebuild(path, rw, [&](const FsckItem &it) { items.push_back(it); });
        rows.back().action = "rebuilt (" + std::to_string(n) + " checkpoints)";
        for (FsckItem &it : items) {
            if (it.kind == "rebuilt" && it.action.empty()) it.action = "added";
            rows.push_back(std::move(it));
        }
        rep.rebuilt = true;
    }

    std::vector<FsckItem> found = open(path, ro)->fsck(false);
    int64_t problems = count_problems(found);
    if (repair) {
        // The repair pass; an ordinary open first runs recovery, which may
        // already settle what the check pass found (saves of dead writers).
        std::shared_ptr<Catalog> cat = open(path, rw);
        std::vector<FsckItem> fixed = cat->fsck(true);
        std::vector<bool> used(fixed.size(), false);
        for (FsckItem &f : found) {
            for (size_t i = 0; i < fixed.size(); ++i)
                if (!used[i] && fixed[i].kind == f.kind && fixed[i].name == f.name) {
                    used[i] = true;
                    f.action = fixed[i].action;
                    break;
                }
            if (!f.action.empty()) continue;
            // Not in the repair pass: the recovery of the read-write open may
            // have settled it (a save whose writer is gone: aborted, its temp
            // file removed).
            bool gone = !name_exists(cat->dir(), f.name);
            if ((f.kind == "temp_file" || f.kind == "writing" || f.kind == "pending_prune") && gone) {
                f.action = "removed by recovery on open";
                if (f.kind == "writing") ++problems;  // its writer was gone after all
            } else if (f.kind != "unknown_file" && f.kind != "writing") {
                f.action = "settled by recovery on open";
            }
        }
        for (size_t i = 0; i < fixed.size(); ++i)
            if (!used[i]) {
                found.push_back(fixed[i]);
                if (fixed[i].is_problem()) ++problems;
            }
    }
    if (rep.rebuilt) {
        // Files the rebuild already reported as unknown are not repeated.
        std::set<std::string> unknown;
        for (const FsckItem &r : rows)
            if (r.kind == "unknown_file") unknown.insert(r.name);
        for (FsckItem &f : found)
            if (!(f.kind == "unknown_file" && unknown.count(f.name)))
                rows.push_back(std::move(f));
            else
                --problems;
        problems += 1 + static_cast<int64_t>(unknown.size());
    } else {
        rows = std::move(found);
    }
    rep.problems = problems;
    return rep;
}

namespace {

bool checkpoint_extension(const std::string &n) {
    for (const char *ext : {".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".distcp"}) {
        size_t l = std::strlen(ext);
        if (n.size() > l && n.compare(n.size() - l, l, ext) == 0) return true;
    }
    return false;
}

bool catalog_own(const std::string &n, const OpenOptions &opts) {
    return is_catalog_file(n, opts.catalog_name) || is_temp_name(n);
}

uint64_t le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

bool pread_all(int fd, unsigned char *buf, size_t len, int64_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = io::ops().pread(fd, buf + got, len - got, static_cast<off_t>(off + static_cast<int64_t>(got)));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        got += static_cast<size_t>(n);
    }
    return true;
}

// Whether a file that is a zip archive (torch.save's format since 1.6) is
// whole: its end-of-central-directory record (zip64 too) is at the end and
// names a central directory that ends where the record begins. A torn write
// loses the end first. *zip says whether the file is a zip archive at all.
std::string zip_problem(int fd, int64_t size, bool *zip) {
    unsigned char head[4];
    *zip = size >= 4 && pread_all(fd, head, 4, 0) && std::memcmp(head, "PK\x03\x04", 4) == 0;
    if (!*zip) return "";
    const int64_t n = std::min<int64_t>(size, 22 + 65535);
    std::vector<unsigned char> tail(static_cast<size_t>(n));
    if (!pread_all(fd, tail.data(), tail.size(), size - n)) return "cannot read its end";
    int64_t at = -1;
    for (int64_t i = n - 22; i >= 0; i--)
        if (std::memcmp(&tail[static_cast<size_t>(i)], "PK\x05\x06", 4) == 0 &&
            static_cast<int64_t>(le(&tail[static_cast<size_t>(i) + 20], 2)) == n - i - 22) {
            at = i;
            break;
        }
    if (at < 0) return "a zip archive (torch's format) with no end-of-central-directory record: it was cut short";
    const int64_t eocd = size - n + at;
    uint64_t cd_size = le(&tail[static_cast<size_t>(at) + 12], 4), cd_off = le(&tail[static_cast<size_t>(at) + 16], 4);
    int64_t cd_end = eocd;
    // A zip64 archive (torch writes one always) has its zip64 end record
    // and locator between the central directory and the end record.
    unsigned char loc[20];
    bool zip64 = eocd >= 20 && pread_all(fd, loc, 20, eocd - 20) && std::memcmp(loc, "PK\x06\x07", 4) == 0;
    if (!zip64 && (cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu))
        return "a zip64 archive whose zip64 locator is missing";
    if (zip64) {
        unsigned char rec[56];
        int64_t rec_off = static_cast<int64_t>(le(loc + 8, 8));
        if (rec_off < 0 || rec_off + 56 > eocd - 20 || !pread_all(fd, rec, 56, rec_off) ||
            std::memcmp(rec, "PK\x06\x06", 4) != 0)
            return "a zip64 archive whose zip64 end record is missing";
        cd_size = le(rec + 40, 8);
        cd_off = le(rec + 48, 8);
        cd_end = rec_off;
    }
    if (cd_off > static_cast<uint64_t>(cd_end) || cd_off + cd_size != static_cast<uint64_t>(cd_end))
        return "a zip archive whose central directory does not end where its end record begins";
    unsigned char sig[4];
    if (cd_size > 0 && (!pread_all(fd, sig, 4, static_cast<int64_t>(cd_off)) || std::memcmp(sig, "PK\x01\x02", 4) != 0))
        return "a zip archive whose central directory is not where its end record says";
    return "";
}

std::string utc(const struct timespec &t) {
    char buf[40];
    std::tm tm{};
    gmtime_r(&t.tv_sec, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    int ms = static_cast<int>((t.tv_nsec / 1000000) % 1000);
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03dZ", ms < 0 ? 0 : ms);
    return std::string(buf) + frac;
}

}  // namespace

namespace {

// The checkpoint-looking files of dir with their stat (one fstatat each).
std::vector<std::pair<std::string, struct stat>> checkpoint_looking(const Dir &dir, const OpenOptions &opts) {
    std::vector<std::pair<std::string, struct stat>> out;
    for (const std::string &n : list_names(dir)) {
        if (catalog_own(n, opts) || !name_problem(n).empty()) continue;
        if (!checkpoint_extension(n) && n != opts.last_link) continue;
        struct stat st;
        if (io::ops().fstatat(dir.fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        out.emplace_back(n, st);
    }
    std::sort(out.begin(), out.end(), [](const auto &x, const auto &y) { return x.first < y.first; });
    return out;
}

}  // namespace

namespace {

// The metadata files of a torch.distributed.checkpoint directory: the stock
// pickle and the JSON that ckptdb.dcp writes beside it.
bool dcp_metadata(const std::string &n) { return n == ".metadata" || n == ".metadata.json"; }
// A DCP data file (the writers' "__<R>_<n>.distcp").
bool distcp(const std::string &n) { return n.size() > 7 && n.compare(n.size() - 7, 7, ".distcp") == 0; }

// What a subdirectory of the checkpoint directory is to open, rebuild and
// adopt: the one rule. It looks like a checkpoint when it holds a file with
// a checkpoint's extension or DCP's metadata; it can be taken in as one
// (checkpoint) when, moreover, it is flat: regular files only, each a valid
// name (unusable otherwise: reported and left alone). A temp directory of
// the library, a link (never followed), anything not a directory, an empty
// directory and one of other files are none of these.
struct SubdirLook {
    enum class What { other, checkpoint, unusable } what = What::other;
    std::string why;                 // unusable: why it is left alone
    Dir dir;                         // checkpoint: opened without following a link
    std::vector<std::string> files;  // checkpoint: its files, sorted
    bool dcp = false;                // a DCP checkpoint: has a .distcp file or the metadata
    bool dcp_metadata = false;       // the metadata is there
};

SubdirLook look_at_subdir(const Dir &dir, const std::string &n, const OpenOptions &opts) {
    SubdirLook out;
    if (catalog_own(n, opts) || is_temp_dir_name(n) || !name_problem(n).empty()) return out;
    struct stat st;
    if (io::ops().fstatat(dir.fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) return out;
    int err = 0;
    Dir sub = open_subdir(dir, n, err);
    if (!sub.fd) return out;  // replaced by a link or a file since
    bool looks = false;
    std::string problem;
    std::vector<std::string> inner = list_names(sub);
    std::sort(inner.begin(), inner.end());
    for (const std::string &f : inner) {
        looks = looks || checkpoint_extension(f) || dcp_metadata(f);
        out.dcp = out.dcp || dcp_metadata(f) || distcp(f);
        out.dcp_metadata = out.dcp_metadata || dcp_metadata(f);
        if (!problem.empty()) continue;
        std::string p = name_problem(f);
        struct stat fs;
        if (!p.empty())
            problem = "holds a file whose name " + p;
        else if (io::ops().fstatat(sub.fd.get(), f.c_str(), &fs, AT_SYMLINK_NOFOLLOW) != 0)
            problem = "holds '" + f + "', which cannot be examined: " + std::strerror(errno);
        else if (S_ISDIR(fs.st_mode))
            problem = "holds a directory ('" + f + "'): only flat directories are taken in";
        else if (S_ISLNK(fs.st_mode))
            problem = "holds a symbolic link ('" + f + "'), which is never followed";
        else if (!S_ISREG(fs.st_mode))
            problem = "holds '" + f + "', which is not a regular file";
    }
    if (!looks) return out;
    if (!problem.empty()) {
        out.what = SubdirLook::What::unusable;
        out.why = "a directory that looks like a checkpoint but " + problem + "; left alone";
        return out;
    }
    out.what = SubdirLook::What::checkpoint;
    out.dir = std::move(sub);
    out.files = std::move(inner);
    return out;
}

}  // namespace

std::vector<std::string> checkpoint_looking_dirs(const Dir &dir, const OpenOptions &opts) {
    std::vector<std::string> out;
    for (const std::string &n : list_names(dir))
        if (look_at_subdir(dir, n, opts).what != SubdirLook::What::other) out.push_back(n + "/");
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> checkpoint_looking_files(const Dir &dir, const OpenOptions &opts) {
    std::vector<std::string> out;
    for (auto &f : checkpoint_looking(dir, opts)) out.push_back(std::move(f.first));
    return out;
}

std::vector<std::string> Catalog::newer_than_catalog() {
    // Runs on every read-write open: the files' times are compared first, and
    // only a file newer than the newest commit is looked up (by index).
    auto files = checkpoint_looking(dir_, opts_);
    if (files.empty()) return {};
    std::vector<std::string> out;
    read([&](Store &db) {
        const double newest = db.newest_commit_unix();
        for (const auto &f : files) {
            const struct stat &st = f.second;
            double mtime = static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9;
            if (mtime <= newest || f.first == opts_.last_link) continue;
            if (!db.file_name_known(f.first)) out.push_back(f.first);
        }
    });
    return out;
}

void keep_catalog_aside(const Dir &dir, const std::string &catalog) {
    const bool main = name_exists(dir, catalog);
    bool extras = false;
    for (const char *suffix : kCatalogSuffixes) extras = extras || (*suffix && name_exists(dir, catalog + suffix));
    if (!main && !extras) return;
    char stamp[32];
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    std::string aside = catalog + ".broken-" + stamp;
    auto taken = [&](const std::string &a) {
        for (const char *suffix : kCatalogSuffixes)
            if (name_exists(dir, a + suffix)) return true;
        return false;
    };
    for (int i = 2; taken(aside); i++) aside = catalog + ".broken-" + stamp + "-" + std::to_string(i);
    if (main && ::linkat(dir.fd.get(), catalog.c_str(), dir.fd.get(), aside.c_str(), 0) != 0)
        fail_os("cannot keep the old catalog as", dir.join(aside), errno);
    for (const char *suffix : kCatalogSuffixes)
        if (*suffix && name_exists(dir, catalog + suffix)) rename_noreplace(dir, catalog + suffix, aside + suffix);
    sync_dir(dir);
}

std::vector<UsageRow> Catalog::disk_usage() {
    std::vector<UsageRow> out;
    read([&](Store &db) { out = db.disk_usage(); });
    return out;
}

// Rebuild and adopt build the whole new catalog under a temp name, held
// locked (remove_dead_creations takes it once its builder is gone), and
// install it by one rename: killed at any point, the directory has its old
// catalog or the whole new one. Every file is hashed; a zip archive must be
// whole by its end record, else its row is corrupt (quarantined: never
// resumed, never deleted by a rule). Every adopted row is pinned (out of
// rotation until the user releases it: ckptdb unpin) and records, in its
// metadata and its event, the order assumed and why.
int64_t Catalog::rebuild(const std::string &path, const OpenOptions &opts,
                         const std::function<void(const FsckItem &)> &report, Adoption how) {
    if (opts.readonly) fail(CKPTDB_EINVAL, "cannot rebuild a catalog read-only");
    {
        std::string p = name_problem(opts.catalog_name);
        if (!p.empty()) fail(CKPTDB_EINVAL, "invalid catalog file name '" + opts.catalog_name + "': it " + p);
    }
    const bool adopt = how == Adoption::adopt;
    const char *verb = adopt ? "adopted" : "rebuilt";
    Dir dir = open_dir(path, false);
    remove_dead_creations(dir, opts.catalog_name);
    const bool had_catalog = name_exists(dir, opts.catalog_name);
    if (adopt && had_catalog)
        fail(CKPTDB_EEXISTS, "'" + dir.path + "' already has a catalog ('" + opts.catalog_name +
                                 "'): adopt is for directories written without ckptdb, and changed nothing. "
                                 "'ckptdb fsck --repair' rebuilds a catalog that is lost or unreadable");

    struct File {
        std::string name, checksum, problem;  // problem: why the file is torn ("" when whole)
        int64_t size = 0, rank = 0;
        bool zip = false;
        DefaultName dn;  // kind "" when not a default name
        struct timespec mtime {};
    };
    // One row per checkpoint: a single file, every rank file of a sharded
    // checkpoint (default names "<stem>.rank<R>-of-<N>.pt"), or a directory.
    struct Found {
        std::string name, kind, checksum, status, check;
        int64_t epoch = 0, step = 0, size = 0;
        struct timespec mtime {};
        std::vector<File> files;  // in rank order; a directory's by name
        bool dir = false;
    };
    auto later = [](const struct timespec &a, const struct timespec &b) {
        return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
    };
    std::vector<Found> found;
    std::map<std::pair<std::string, int>, std::vector<File>> sharded;  // (stem, world) -> its rank files
    std::vector<std::string> files = checkpoint_looking_files(dir, opts);
    std::set<std::string> taken(files.begin(), files.end());
    std::vector<std::pair<std::string, SubdirLook>> dirs;  // directory checkpoints, by name
    for (const std::string &n : list_names(dir)) {
        if (catalog_own(n, opts) || taken.count(n)) continue;
        SubdirLook look = look_at_subdir(dir, n, opts);
        if (look.what == SubdirLook::What::checkpoint) {
            dirs.emplace_back(n, std::move(look));
            continue;
        }
        struct stat st;
        const bool link =
            io::ops().fstatat(dir.fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
        // The last link is the library's (refreshed once the catalog is in).
        if (link && !opts.last_link.empty() && n == opts.last_link) continue;
        if (report)
            report({"unknown_file", n, 0,
                    look.what == SubdirLook::What::unusable ? look.why
                    : link                                  ? "a symbolic link, never followed; left alone"
                           : "not a checkpoint file or directory by its name or type; left alone",
                    ""});
    }
    std::sort(dirs.begin(), dirs.end(), [](const auto &x, const auto &y) { return x.first < y.first; });
    // One file hashed; a zip archive checked whole by its end record.
    auto take = [&](const Dir &in, const std::string &n, bool zip_check) {
        int err = 0;
        UniqueFd fd = open_read(in, n, err);
        if (!fd) fail_os("cannot read", in.join(n), err);
        struct stat st;
        if (io::ops().fstat(fd.get(), &st) != 0) fail_os("cannot stat", in.join(n), errno);
        File f;
        f.name = n;
        f.mtime = st.st_mtim;
        Hasher h;
        f.size = hash_fd(fd.get(), h, in.join(n));
        f.checksum = h.hex();
        if (zip_check) f.problem = zip_problem(fd.get(), f.size, &f.zip);
        return f;
    };
    for (const std::string &n : files) {
        File f = take(dir, n, true);
        if (!parse_default_name(n, f.dn)) f.dn = DefaultName{};
        f.rank = f.dn.rank;
        if (f.dn.world > 0) {
            sharded[{f.dn.stem, f.dn.world}].push_back(std::move(f));
            continue;
        }
        Found c;
        c.name = n;
        c.mtime = f.mtime;
        c.size = f.size;
        c.checksum = f.checksum;
        c.status = f.problem.empty() ? "complete" : "corrupt";
        c.check = !f.problem.empty() ? f.problem
                  : f.zip            ? "a whole zip archive (its end-of-central-directory record is in place)"
                                     : "not a zip archive: hashed, but its wholeness could not be checked";
        c.kind = f.dn.kind.empty() ? "adopted" : f.dn.kind;
        c.epoch = f.dn.epoch;
        c.step = f.dn.step;
        c.files.push_back(std::move(f));
        found.push_back(std::move(c));
    }
    // A sharded checkpoint is one row when every rank of one world is
    // present; a partial set is left alone (resuming it would load a model
    // with ranks missing) and reported.
    for (auto &g : sharded) {
        std::vector<File> &fs = g.second;
        std::sort(fs.begin(), fs.end(), [](const File &a, const File &b) { return a.dn.rank < b.dn.rank; });
        bool whole = static_cast<size_t>(g.first.second) == fs.size();
        for (size_t r = 0; whole && r < fs.size(); r++) whole = fs[r].dn.rank == static_cast<int>(r);
        if (!whole) {
            for (const File &f : fs)
                if (report)
                    report({"unknown_file", f.name, 0,
                            "rank " + std::to_string(f.dn.rank) + " of a sharded checkpoint of " +
                                std::to_string(f.dn.world) + " ranks ('" + g.first.first +
                                "') whose other rank files are not all here; left alone",
                            ""});
            continue;
        }
        Found c;
        c.name = fs.front().name;
        c.kind = fs.front().dn.kind;
        c.epoch = fs.front().dn.epoch;
        c.step = fs.front().dn.step;
        c.checksum = fs.size() == 1 ? fs.front().checksum : "";  // several files: each has its own checksum
        std::string torn;
        bool all_zip = true;
        for (const File &f : fs) {
            c.size += f.size;
            if (later(f.mtime, c.mtime)) c.mtime = f.mtime;
            all_zip = all_zip && f.zip;
            if (torn.empty() && !f.problem.empty()) torn = "rank " + std::to_string(f.dn.rank) + ": " + f.problem;
        }
        c.status = torn.empty() ? "complete" : "corrupt";
        c.check = !torn.empty() ? torn
                  : all_zip     ? "all " + std::to_string(fs.size()) + " rank files are whole zip archives"
                                : "all " + std::to_string(fs.size()) +
                                  " rank files present and hashed; the wholeness of those that are not zip archives "
                                  "could not be checked";
        c.files = std::move(fs);
        found.push_back(std::move(c));
    }
    // A directory checkpoint is one row, a files row per file (its rank
    // from DCP's "__<R>_<n>.distcp", else 0). A DCP directory is whole only
    // with its metadata, which its coordinator writes last; a zip archive in
    // any directory must be whole. A DCP data file is not checked as one: it
    // holds items one after another, and one may be a zip archive at offset 0.
    for (auto &d : dirs) {
        const SubdirLook &look = d.second;
        Found c;
        c.name = d.first;
        c.dir = true;
        DefaultName dn;
        if (parse_dir_name(c.name, dn)) {
            c.kind = dn.kind;
            c.epoch = dn.epoch;
            c.step = dn.step;
        } else {
            c.kind = "adopted";
        }
        std::string torn;
        int64_t zips = 0;
        for (const std::string &n : look.files) {
            File f = take(look.dir, n, !distcp(n));
            if (!parse_dcp_file_name(n, f.rank)) f.rank = 0;
            c.size += f.size;
            if (later(f.mtime, c.mtime)) c.mtime = f.mtime;
            zips += f.zip;
            if (torn.empty() && !f.problem.empty()) torn = "'" + n + "': " + f.problem;
            c.files.push_back(std::move(f));
        }
        const std::string count = std::to_string(c.files.size()) + " file" + (c.files.size() == 1 ? "" : "s");
        if (look.dcp && !look.dcp_metadata)
            torn =
                "a DCP checkpoint without its metadata ('.metadata' or '.metadata.json'), which its coordinator "
                "writes last: its save did not finish";
        c.status = torn.empty() ? "complete" : "corrupt";
        if (!torn.empty())
            c.check = torn;
        else if (look.dcp)
            c.check = "a DCP checkpoint with its metadata; " + count + " present and hashed" +
                      (zips ? ", its zip archives whole" : "");
        else if (zips == static_cast<int64_t>(c.files.size()))
            c.check = "a directory of " + count + ", all whole zip archives";
        else
            c.check = "a directory of " + count +
                      " present and hashed; the wholeness of those that are not zip archives could not be checked";
        found.push_back(std::move(c));
    }
    // Oldest first, so that the newest file becomes the newest commit.
    std::sort(found.begin(), found.end(), [&](const Found &a, const Found &b) {
        if (later(b.mtime, a.mtime) || later(a.mtime, b.mtime)) return later(b.mtime, a.mtime);
        return a.name < b.name;
    });

    DbOptions dbo;
    dbo.busy_timeout_ms = opts.busy_timeout_ms;
    dbo.rollback_journal = on_network_fs(dir.fd.get());
    UniqueFd held;
    const std::string tmp = build_catalog_temp(
        dir, opts.catalog_name, dbo,
        [&](Store &db) {
            int64_t seq = 0;
            for (const Found &f : found) {
                nlohmann::json meta = {{"adopted",
                                        {{"by", adopt ? "ckptdb adopt" : "ckptdb fsck --repair (rebuild)"},
                                         {"order",
                                          "file modification time, then name: the only order left "
                                          "without a catalog"},
                                         {"mtime", utc(f.mtime)},
                                         {"position", seq + 1},
                                         {"check", f.check},
                                         {"pinned", "kept out of rotation until released (ckptdb unpin)"}}}};
                AdoptedRow row;
                row.name = f.name;
                row.kind = f.kind;
                row.epoch = f.epoch;
                row.step = f.step;
                row.size = f.size;
                row.checksum = f.checksum;
                row.status = f.status;
                row.created_at = utc(f.mtime);
                row.metadata = meta.dump();
                row.commit_seq = ++seq;
                row.layout = f.dir ? "dir" : "file";
                int64_t id = db.checkpoint_insert_adopted(row);
                for (const File &file : f.files)
                    db.file_insert_sealed(id, file.rank, file.name, file.size, file.checksum);
                // No run: a rebuild is not a run of the catalog it builds.
                db.event_insert(0, id, verb,
                                std::string(verb) + " from the directory, position " + std::to_string(seq) +
                                    " by modification time (" + utc(f.mtime) + "), then name; " +
                                    std::to_string(f.size) + " bytes, " +
                                    (f.dir ? std::to_string(f.files.size()) + " files in directory " + f.name + "/"
                                     : f.files.size() == 1 ? "xxh128 " + f.checksum
                                                           : std::to_string(f.files.size()) + " rank files") +
                                    "; " + f.check + "; pinned until released");
                if (report)
                    report({verb, f.name, id,
                            f.status == "corrupt" ? "corrupt: " + f.check
                                                  : "kind " + f.kind + ", epoch " + std::to_string(f.epoch) +
                                                        ", step " + std::to_string(f.step) + ", pinned",
                            f.status == "corrupt" ? "added, quarantined" : "added"});
                hook("rebuild_row");
            }
        },
        held);
    try {
        hook("rebuild_built");
        keep_catalog_aside(dir, opts.catalog_name);
        hook("rebuild_aside");
        if (had_catalog) {
            if (io::ops().renameat(dir.fd.get(), tmp.c_str(), dir.fd.get(), opts.catalog_name.c_str()) != 0)
                fail_os("cannot install the rebuilt catalog as", dir.join(opts.catalog_name), errno);
        } else {
            rename_noreplace(dir, tmp, opts.catalog_name);
        }
        sync_dir(dir);
        hook("rebuild_installed");
    } catch (...) {
        remove_catalog_temp(dir, tmp);
        throw;
    }
    held.reset();
    std::shared_ptr<Catalog> cat = open(path, opts);
    cat->refresh_link();
    return static_cast<int64_t>(found.size());
}

}  // namespace ckptdb

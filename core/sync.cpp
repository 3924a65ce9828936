// sync: merges a source directory's complete checkpoints into a destination
// catalog, which stays the destination's own (opened like any catalog: WAL,
// recovery, busy timeout; never replaced, never switched to another journal
// mode). Each checkpoint the destination lacks is copied file by file:
// locked temp files, hashed while copied, fsynced, read back and hashed
// again, sealed, then committed through the save protocol of a sharded
// commit (commit_shards: rows sealed, renamed, directory fsynced, complete)
// or, for a directory checkpoint, of a directory save (DirSave: the files
// copied into its temp directory, then its commit). Killed at any point,
// the destination is a catalog like any other: the next open's recovery
// finishes or aborts the copy in flight. Then, in one transaction, the
// destination's order follows the source's commit order, and with --delete
// the checkpoints the source pruned by one of its rules are pruned in the
// destination too.
//
// What sync never does: replace a checkpoint the destination holds (a
// different file under the same name, one the catalog does not own, one
// committed in the destination directly), delete anything but the
// destination's own verified copy of a checkpoint the source let go by a
// rule, or delete anything while a copy failed.
#include "sync.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "ckptdb.h"
#include "error.hpp"
#include "fsio.hpp"
#include "hash.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "commit.hpp"
#include "dirsave.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace ckptdb {

namespace {

// A checkpoint row with its files, from either side (sync_rows).
struct Row : SyncRow {
    // The identity of a checkpoint across directories: its files' names and
    // checksums (a directory's with its name: its files' names are the same
    // in every directory a job saves).
    std::string sig() const {
        std::string s = dir ? "dir:" + name + "/|" : "";
        for (const FileRow &f : files) s += std::to_string(f.rank) + ":" + f.name + ":" + f.checksum + "|";
        return s;
    }
    int64_t bytes() const {
        int64_t n = 0;
        for (const FileRow &f : files) n += f.size > 0 ? f.size : 0;
        return n;
    }
    // What the report names: a directory's name, else its (first) file's.
    const std::string &label() const { return dir ? name : files.front().name; }
    // The names it takes in the checkpoint directory.
    std::vector<std::string> top_names() const {
        if (dir) return {name};
        std::vector<std::string> out;
        for (const FileRow &f : files) out.push_back(f.name);
        return out;
    }
};

std::vector<Row> rows_of(Store &db) {
    std::vector<Row> out;
    for (SyncRow &r : db.sync_rows()) out.push_back(Row{std::move(r)});
    return out;
}

std::string real_dir(const std::string &p) {
    char buf[PATH_MAX];
    if (!::realpath(p.c_str(), buf)) fail_os("cannot resolve", p, errno);
    return buf;
}

bool inside(const std::string &a, const std::string &b) {  // a is b or below it
    return a == b || (a.size() > b.size() && a.compare(0, b.size(), b) == 0 && (b == "/" || a[b.size()] == '/'));
}

bool known_in_source(const std::string &status) {
    return status == "complete" || status == "corrupt" || status == "pruned";
}

// Why a copy did not happen, for the report: "skipped" (the source let it go
// meanwhile: not a failure) or "failed".
struct NotCopied {
    std::string kind, why;
    int err = 0;  // an OS error reading the source (not a checksum mismatch)
};

// A copy's temp file in the destination: removed unless a commit took it,
// its sidecar seal (if any) with it.
struct Temp {
    const Dir *dir = nullptr;
    std::string name;
    UniqueFd fd, seal;
    bool taken = false;
    Temp() = default;
    Temp(const Temp &) = delete;
    Temp &operator=(const Temp &) = delete;
    ~Temp() {
        if (!dir) return;  // nothing made
        if (!taken && fd) unlink_name(*dir, name);
        drop_seal(*dir, name, seal);
    }
};

using InCommit = std::function<void(Store &, int64_t)>;

}  // namespace

SyncResult sync_dirs(const std::string &src, const std::string &dst, const SyncOptions &opts) {
    if (src.empty() || dst.empty()) fail(CKPTDB_EINVAL, "sync needs a source and a destination directory");
    OpenOptions so;
    so.readonly = true;
    so.create = false;
    so.catalog_name = opts.catalog_name;
    so.last_link = "";
    std::shared_ptr<Catalog> scat = Catalog::open(src, so);
    std::string s_real = scat->dir().path.empty() ? "/" : scat->dir().path;
    {
        struct stat st;
        if (::stat(dst.c_str(), &st) == 0) {
            std::string d_real = real_dir(dst);
            if (inside(d_real, s_real) || inside(s_real, d_real))
                fail(CKPTDB_EINVAL, "cannot sync '" + s_real + "' to '" + d_real + "': one is inside the other");
        } else {
            // Not there yet: judge by its parent, then create it.
            std::string parent = dst.find('/') == std::string::npos ? "." : dst.substr(0, dst.rfind('/'));
            std::string p_real = real_dir(parent.empty() ? "/" : parent);
            if (inside(p_real, s_real))
                fail(CKPTDB_EINVAL, "cannot sync '" + s_real + "' into '" + dst + "', which is inside it");
        }
    }

    // 1. The source's rows, from one statement: a consistent view.
    std::vector<Row> srows;
    std::map<int64_t, CarriedRun> sruns;
    scat->read_snapshot([&](Store &db) {
        srows = rows_of(db);
        sruns = db.sync_runs();
    });
    std::set<std::string> s_sigs;
    for (const Row &r : srows)
        if (known_in_source(r.status)) s_sigs.insert(r.sig());

    // 2. The destination's catalog, opened like any other (recovery of dead
    // writers included, which never touches a live save's temp file); then,
    // under its write lock, refuse what sync must not run over.
    OpenOptions dopts;
    dopts.catalog_name = opts.catalog_name;
    dopts.last_link = opts.last_link;
    std::shared_ptr<Catalog> dcat = Catalog::open(dst, dopts);
    dcat->set_exit_reason("synced");  // this process writes copies; it is not a training run
    const Dir &dd = dcat->dir();
    std::vector<Row> drows;
    dcat->write([&](Store &db) {
        drows = rows_of(db);
        // Every row left writing, a directory save's before its files have
        // rows too (sync_rows lists a checkpoint with its files).
        for (const WriterRow &w : db.writing_rows()) {
            std::string what;
            for (const Row &r : drows)
                if (r.id == w.id) what = "'" + r.label() + (r.dir ? "/" : "") + "'";
            if (what.empty() && !w.temp_dir.empty()) what = "a directory save into '" + w.temp_dir + "'";
            fail(CKPTDB_EBUSY, "a save is in flight in '" + dd.path + "' (checkpoint " + std::to_string(w.id) +
                                   (what.empty() ? "" : ", " + what) +
                                   "): a process is saving there; sync changed nothing. Run it again once "
                                   "that process has ended");
        }
        std::string own;
        for (const Row &r : drows)
            if (r.status == "complete" && !s_sigs.count(r.sig()))
                own += (own.empty() ? "" : ", ") + r.label() + (r.dir ? "/" : "");
        if (!own.empty())
            fail(CKPTDB_EEXISTS, "'" + dd.path + "' holds checkpoints that '" + s_real +
                                     "' does not know (committed there directly?): " + own +
                                     "; sync would put the source's older checkpoints above them, so it changed "
                                     "nothing. Move them out of the destination, or sync into another directory");
    });

    // 3. What the destination lacks.
    std::map<std::string, const Row *> d_by_sig;
    std::map<std::string, const Row *> d_by_name;  // live rows, by every file name
    for (const Row &r : drows) {
        if (r.status == "pruned") continue;
        d_by_sig[r.sig()] = &r;
        for (const std::string &n : r.top_names()) d_by_name[n] = &r;
    }
    SyncResult res;
    auto report = [&](const std::string &kind, const Row &r, const std::string &detail) {
        if (opts.on_item) opts.on_item({kind, r.label(), r.id, detail, ""});
    };
    std::vector<const Row *> to_copy;
    std::vector<const Row *> scomplete;
    for (const Row &r : srows) {
        if (r.status != "complete") continue;  // a save in flight in the source is not copied
        scomplete.push_back(&r);
        std::string bad;
        if (r.dir && (!name_problem(r.name).empty() || dcat->reserved_name(r.name))) bad = "an invalid directory name";
        for (const FileRow &f : r.files) {
            if (!bad.empty()) break;
            if (!name_problem(f.name).empty() || (!r.dir && dcat->reserved_name(f.name)))
                bad = "an invalid file name";
            else if (f.size < 0 || !is_hex32(f.checksum))
                bad = "no size and checksum";
            else if (r.dir && f.rank < 0)
                bad = "a negative rank";
        }
        if (!bad.empty()) {
            res.left_alone++;
            report("failed", r, "the source catalog's row has " + bad + "; not copied");
            continue;
        }
        auto same = d_by_sig.find(r.sig());
        if (same != d_by_sig.end()) {
            if (same->second->status == "complete") {
                report("present", r, "already in the destination");
            } else {
                res.left_alone++;
                report("failed", r, "the destination's copy is marked " + same->second->status + "; left alone");
            }
            continue;
        }
        std::string clash;
        for (const std::string &n : r.top_names()) {
            if (d_by_name.count(n))
                clash = "a different checkpoint named '" + n + "' is in the destination; left alone";
            else if (name_exists(dd, n))
                clash = std::string(r.dir ? "an entry" : "a file") + " named '" + n +
                        "' that the destination's catalog does not own is there; left alone";
            if (!clash.empty()) break;
        }
        if (!clash.empty()) {
            res.left_alone++;
            report("failed", r, clash);
            continue;
        }
        to_copy.push_back(&r);
    }

    // 4. Copy, one checkpoint at a time, each committed on its own.
    int64_t total = 0, done = 0;
    for (const Row *r : to_copy) total += r->bytes();
    std::map<int64_t, int64_t> copied_ids;  // source id -> destination id
    // The source's runs, by source id -> the destination's run: the same
    // process's row (host, boot, pid, start time) if the destination has it,
    // else a copy made in the transaction that completes the first copy of
    // one of its checkpoints.
    std::map<int64_t, int64_t> run_map;
    auto dest_run = [&](Store &db, int64_t src_run, std::map<int64_t, int64_t> &made) -> int64_t {
        if (src_run == 0) return 0;
        if (auto m = run_map.find(src_run); m != run_map.end()) return m->second;
        if (auto m = made.find(src_run); m != made.end()) return m->second;
        auto s = sruns.find(src_run);
        if (s == sruns.end()) return 0;
        const CarriedRun &rr = s->second;
        int64_t id = db.run_find_identity(rr, dcat->run_id_in_tx(db));
        if (id != 0)
            db.run_update_end(id, rr);  // it may have ended in the source since it was carried
        else
            id = db.run_insert_copy(rr);
        made[src_run] = id;
        return id;
    };
    std::unique_ptr<char[]> buf(new char[4 << 20]);
    std::string read_error;  // the first source file that could not be read: the sync fails, after the rest
    int read_errno = 0;
    auto still_complete = [&](int64_t id) {
        try {
            return scat->entry(id).status == CKPTDB_STATUS_COMPLETE;
        } catch (const Error &) {
            return false;
        }
    };
    // One file of the source (in from) copied into a temp file of into,
    // named by make_name: created exclusively and held under an exclusive
    // flock (so that recovery in another process never takes it for an
    // orphan), hashed while copied, compared with the source's row, fsynced,
    // read back and hashed again, then sealed like a shard's (a commit takes
    // it only for the name, size and checksum it was sealed with). got: what
    // was sealed; nullopt when it was copied.
    auto copy_file = [&](const Dir &from, const FileRow &f, const Dir &into,
                         const std::function<std::string()> &make_name, Temp &tmp,
                         ShardFile &got) -> std::optional<NotCopied> {
        const int64_t settled = done;
        const std::string src_path = from.join(f.name);
        int err = 0;
        UniqueFd in = open_read(from, f.name, err);  // no link followed
        if (!in) return NotCopied{"failed", "cannot read '" + src_path + "': " + std::strerror(err), err};
        tmp.dir = &into;
        tmp.fd = create_locked_traced(into, make_name, tmp.name);
        int out = tmp.fd.get();
        const std::string tmp_path = into.join(tmp.name);
        DurableWriter copy(tmp_path);
        for (;;) {
            ssize_t n = io::ops().read(in.get(), buf.get(), 4 << 20);
            if (n < 0) {
                if (errno == EINTR) continue;
                return NotCopied{"failed", "cannot read '" + src_path + "': " + std::strerror(errno), errno};
            }
            if (n == 0) break;
            copy.write(out, buf.get(), static_cast<size_t>(n));
            done += n / 2;  // half for the copy, half for the read-back
            if (opts.progress && !opts.progress(done, total)) fail(CKPTDB_ERROR, "sync interrupted by the caller");
        }
        if (copy.size() != f.size || copy.checksum() != f.checksum)
            return NotCopied{"failed", "the source file '" + src_path + "' does not match its checksum; not copied"};
        copy.sync(out);
        Hasher back;
        int64_t m = hash_fd(out, back, tmp_path);
        if (m != f.size || back.hex() != f.checksum)
            fail(CKPTDB_EIO, "the copy of '" + src_path + "' in '" + into.path + "' read back with another checksum");
        done = settled + f.size;
        if (opts.progress && !opts.progress(done, total)) fail(CKPTDB_ERROR, "sync interrupted by the caller");
        got = ShardFile{f.name, tmp.name, m, back.hex(), f.rank};
        tmp.seal = write_seal(into, out, got);
        return std::nullopt;
    };
    // A file checkpoint: its files copied into temp files beside the
    // destination's checkpoints, then committed by commit_shards.
    auto copy_files = [&](const Row &r, const InCommit &in_commit, Entry &e) -> std::optional<NotCopied> {
        std::vector<std::unique_ptr<Temp>> temps;
        std::vector<ShardFile> files;
        for (const FileRow &f : r.files) {
            temps.push_back(std::make_unique<Temp>());
            ShardFile got;
            if (auto why = copy_file(scat->dir(), f, dd, random_temp_name, *temps.back(), got)) return why;
            got.rank = -1;  // a shard's rank is its index
            files.push_back(got);
        }
        e = commit_shards(dcat, r.kind, r.epoch, r.step, r.metadata, files, in_commit);
        for (auto &t : temps) t->taken = true;  // renamed to their final names by the commit
        return std::nullopt;
    };
    // A directory checkpoint: a directory save in the destination under the
    // same name, each file copied under its own name into its temp
    // directory, then its commit (every seal checked, nothing else there).
    // Not copied: the save is aborted, its temp directory removed.
    auto copy_dir = [&](const Row &r, const InCommit &in_commit, Entry &e) -> std::optional<NotCopied> {
        int err = 0;
        Dir from = open_subdir(scat->dir(), r.name, err);  // no link followed
        if (!from.fd)
            return NotCopied{
                "failed", "cannot open the directory '" + scat->dir().join(r.name) + "': " + std::strerror(err), err};
        std::unique_ptr<DirSave> save = DirSave::begin(dcat, r.kind, r.epoch, r.step, r.name, r.metadata);
        Dir into = open_subdir(dd, save->temp_name(), err);
        if (!into.fd) fail_os("cannot open the temp directory", dd.join(save->temp_name()), err);
        std::vector<DirFileInfo> infos;
        for (const FileRow &f : r.files) {
            std::optional<NotCopied> why;
            {
                Temp tmp;
                ShardFile got;
                why = copy_file(
                    from, f, into, [&] { return f.name; }, tmp, got);
                if (!why) {
                    // The save's now, as a writer's finished file: unlocked,
                    // its seal kept for the commit.
                    tmp.taken = true;
                    tmp.seal.reset();
                    tmp.fd.reset();
                    infos.push_back(DirFileInfo{f.name, f.rank, got.size, got.checksum});
                }
            }  // a partial copy is removed before the abort removes the temp directory
            if (why) {
                save->abort("sync: " + why->why);
                return why;
            }
            hook("sync_dir_file_copied");
        }
        e = save->commit(infos, in_commit);
        return std::nullopt;
    };
    for (const Row *r : to_copy) {
        const int64_t base = done;
        std::map<int64_t, int64_t> made;
        InCommit in_commit = [&](Store &db, int64_t id) {
            made.clear();
            if (int64_t run = dest_run(db, r->run, made)) db.checkpoint_set_run(id, run);
        };
        Entry e;
        std::optional<NotCopied> why;
        try {
            why = r->dir ? copy_dir(*r, in_commit, e) : copy_files(*r, in_commit, e);
        } catch (const Error &ex) {
            if (ex.code() != CKPTDB_EEXISTS) throw;
            res.left_alone++;  // the name was taken in the destination meanwhile
            report("failed", *r, std::string(ex.what()) + "; left alone");
            done = base + r->bytes();
            continue;
        }
        if (why) {
            // The source may have let it go meanwhile (a rotation): skipped, not a failure.
            if (!still_complete(r->id)) why = NotCopied{"skipped", "pruned in the source during the sync"};
            if (why->kind == "failed")
                res.failed++;
            else
                res.skipped++;
            if (why->kind == "failed" && why->err != 0 && why->err != ENOENT && read_error.empty()) {
                read_error = why->why;
                read_errno = why->err;
            }
            report(why->kind, *r, why->why);
            done = base + r->bytes();
            continue;
        }
        run_map.insert(made.begin(), made.end());
        copied_ids[r->id] = e.id;
        res.copied++;
        res.bytes += r->bytes();
        hook("sync_copied");
        report("copied", *r, std::to_string(r->bytes()) + " bytes, verified");
    }

    // 5. One transaction: the copies keep the source's times and pins, the
    // destination's order follows the source's commits, and with delete the
    // checkpoints the source pruned by a rule are marked pruned here.
    hook("sync_installing");
    std::vector<int64_t> to_delete;
    std::map<int64_t, const Row *> delete_src;
    bool deletes_held = opts.delete_pruned && (res.failed > 0 || res.left_alone > 0);
    dcat->write([&](Store &db) {
        for (const auto &c : copied_ids) {
            const Row *r = nullptr;
            for (const Row *s : scomplete)
                if (s->id == c.first) r = s;
            db.sync_adjust(c.second, r->created_at, r->committed_at, r->pinned);
            dcat->log_event(
                db, c.second, "synced",
                "copied from '" + s_real + "' (checkpoint " + std::to_string(c.first) + " there), verified");
        }
        std::vector<Row> now = rows_of(db);
        std::map<std::string, const Row *> now_by_sig;
        for (const Row &r : now)
            if (r.status == "complete" || r.status == "corrupt") now_by_sig[r.sig()] = &r;
        // The runs carried: which checkpoint each resumed from, in the
        // destination's ids, where the destination does not know it yet.
        std::map<std::string, int64_t> any_by_sig;
        for (const Row &r : now) any_by_sig.emplace(r.sig(), r.id);
        for (const Row &r : now)
            if (r.status == "complete" || r.status == "corrupt") any_by_sig[r.sig()] = r.id;
        std::map<int64_t, const Row *> src_by_id;
        for (const Row &r : srows) src_by_id[r.id] = &r;
        for (const auto &m : run_map) {
            const CarriedRun &rr = sruns.at(m.first);
            auto from = src_by_id.find(rr.resumed_from);
            if (from == src_by_id.end()) continue;
            auto d = any_by_sig.find(from->second->sig());
            if (d != any_by_sig.end()) db.run_set_resumed_if_unknown(m.second, d->second);
        }
        // The source's order first, then checkpoints only the destination
        // has (committed there while the sync ran: the newest), in theirs.
        std::vector<const Row *> src_order;
        for (const Row &r : srows)
            if (known_in_source(r.status) && r.seq > 0) src_order.push_back(&r);
        std::sort(src_order.begin(), src_order.end(), [](const Row *a, const Row *b) { return a->seq < b->seq; });
        // A mirror keeps the source's commit_seq values where none of the
        // destination's other rows holds them, else they move above all.
        std::vector<std::pair<int64_t, int64_t>> placed_seq;  // destination id, source seq
        std::set<int64_t> placed;
        for (const Row *s : src_order) {
            auto d = now_by_sig.find(s->sig());
            if (d != now_by_sig.end() && placed.insert(d->second->id).second)
                placed_seq.push_back({d->second->id, s->seq});
        }
        std::vector<const Row *> rest;
        std::set<int64_t> other_seqs;
        int64_t top = 0;
        for (const Row &r : now) {
            top = std::max(top, r.seq);
            if (placed.count(r.id) || r.seq <= 0) continue;
            if (r.status == "complete" || r.status == "corrupt")
                rest.push_back(&r);
            else
                other_seqs.insert(r.seq);
        }
        top = std::max(top, db.max_commit_seq());
        int64_t offset = 0;
        for (const auto &p : placed_seq)
            if (other_seqs.count(p.second)) offset = top;
        std::sort(rest.begin(), rest.end(), [](const Row *a, const Row *b) { return a->seq < b->seq; });
        std::vector<int64_t> order;
        for (const auto &p : placed_seq) order.push_back(p.first);
        for (const Row *r : rest) order.push_back(r->id);
        for (int64_t id : order) db.set_commit_seq(id, -id);
        int64_t next = 0;
        for (const auto &p : placed_seq) {
            next = p.second + offset;
            db.set_commit_seq(p.first, next);
        }
        next = std::max(next, other_seqs.empty() ? 0 : *other_seqs.rbegin()) + 1;
        for (const Row *r : rest) db.set_commit_seq(r->id, next++);

        if (!opts.delete_pruned || deletes_held) return;
        // Mirror only what the source let go by one of its rules; never the
        // destination's newest complete checkpoint, never a pinned one, never
        // one the source found corrupt (ours may be the last good copy).
        int64_t newest = 0;
        for (auto it = order.rbegin(); it != order.rend() && newest == 0; ++it)
            for (const Row &r : now)
                if (r.id == *it && r.status == "complete") newest = r.id;
        for (const Row &s : srows) {
            if (s.status != "pruned" || s.prune_rule.empty() || s.prune_rule.compare(0, 7, "corrupt") == 0) continue;
            auto d = now_by_sig.find(s.sig());
            if (d == now_by_sig.end() || d->second->status != "complete" || d->second->pinned ||
                d->second->id == newest)
                continue;
            if (!db.checkpoint_prune(d->second->id, "source:" + s.prune_rule)) continue;
            dcat->log_event(db, d->second->id, "pruned", "source:" + s.prune_rule);
            to_delete.push_back(d->second->id);
            delete_src[d->second->id] = &s;
        }
    });
    if (deletes_held && opts.on_item)
        opts.on_item(
            {"kept", "", 0, "nothing deleted: not every checkpoint of the source reached the destination", ""});

    // 6. With delete: unlink what was marked (the catalog's own deletion
    // path: the exact file it wrote, and only while no live row names it).
    if (!to_delete.empty()) {
        dcat->finish_prunes(to_delete);
        for (int64_t id : to_delete) {
            const Row *s = delete_src[id];
            bool gone = true;
            for (const std::string &n : s->top_names()) gone = gone && !name_exists(dd, n);
            if (gone && opts.on_item)
                opts.on_item({"deleted", s->label(), s->id, "pruned in the source (" + s->prune_rule + ")", ""});
        }
    }
    dcat->refresh_link();
    if (!read_error.empty()) {
        int code = code_for_errno(read_errno);
        throw Error(code == CKPTDB_ENOTFOUND ? CKPTDB_EIO : code,
                    "sync: " + read_error + " (the other checkpoints were copied; nothing was deleted)");
    }
    return res;
}

}  // namespace ckptdb

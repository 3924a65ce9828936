// Recovery on open: saves left "writing" by processes that no longer run
// (judge_writer: by pid on this host, by lease on another) are
// adopted when every file is sealed (its size and checksum recorded after its
// fsync) and whole, under its final name or still under its temp name, which
// is then renamed: the commit is rolled forward. Otherwise they are aborted,
// with their temp files removed. Then temp files that neither a live save
// nor a live shard writer (which holds a lock on its file) owns are removed.
// Every step re-checks the catalog, so two processes recovering at once, or
// a crash inside recovery, leave the same result.
#include <ctime>
#include <set>

#include "catalog.hpp"
#include "ckptdb.h"
#include "dirsave.hpp"
#include "error.hpp"
#include "hash.hpp"
#include "hooks.hpp"
#include "lease.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace ckptdb {

void Catalog::recover() {
    // Moves a row still "writing" to complete or aborted; a row another
    // process resolved meanwhile is left as it is (the update matches only
    // "writing").
    auto resolve = [this](int64_t id, bool complete, const std::string &detail) {
        write([&](Store &db) {
            if (!(complete ? db.checkpoint_complete(id) : db.checkpoint_abort(id))) return;
            db.files_clear_temp(id);
            run_id_in_tx(db);  // the event names the run that recovered
            log_event(db, id, "recovered", detail);
        });
    };
    // Read first: a bad CKPTDB_LEASE_SECONDS fails the open before recovery
    // changes anything.
    const int64_t lease = lease_seconds();
    struct Stale {
        int64_t id;
        std::string why;  // for a writer on another host: its lease expired
    };
    std::vector<Stale> stale;
    const double now = static_cast<double>(::time(nullptr));
    for (const WriterRow &w : writer_rows(*this)) {
        WriterVerdict v = judge_writer(self_, dir_, w, lease, now);
        if (v.dead) stale.push_back({w.id, v.why});
    }

    // Whether the file under name has exactly the sealed size and checksum
    // (check_file). A read error decides nothing: recovery stops with
    // CKPTDB_EIO and the next open tries again, rather than abort a save
    // whose files may be whole.
    auto matches = [this](const std::string &name, const FileRow &f) {
        Check c = check_file(dir_, name, f.size, f.checksum, true);
        if (c.io_error) fail(CKPTDB_EIO, "recovery cannot read a file of a save left writing: " + c.reason);
        return c.ok;
    };
    auto usable_temp = [](const FileRow &f) { return is_exact_temp_name(f.temp_name); };
    auto with_writer = [](const std::string &writer_why, const std::string &why) {
        return writer_why.empty() ? why : writer_why + "; " + why;
    };
    // A directory save (dirsave.hpp): its files are in its temp directory
    // until the rename, in its final directory after it. Whole (every file
    // recorded at the seal, and each matching): the commit is rolled
    // forward. Otherwise its files go, and the directory when nothing else
    // is in it.
    // A save in place has no temp directory: its files are in its final
    // directory from the start, made by the save after its row; whole, the
    // commit is rolled forward without a rename; otherwise the directory
    // goes whole, as a temp directory does.
    auto recover_dir = [&](const Entry &e, const std::string &writer_why) {
        std::vector<FileRow> fs = files(e.id);
        const bool in_place = is_in_place(e.name, e.temp_name);
        int err = 0;
        Dir tmp, fin;
        if (is_temp_dir_name(e.temp_name)) tmp = open_subdir(dir_, e.temp_name, err);
        // Renamed: the temp directory is gone and the final one is there
        // (the rename never replaces, so it is this save's).
        bool renamed = false;
        if (!tmp.fd && (in_place || !fs.empty()) && name_problem(e.name).empty()) {
            fin = open_subdir(dir_, e.name, err);
            renamed = static_cast<bool>(fin.fd);
        }
        std::string why;
        if (!name_problem(e.name).empty())
            why = "invalid directory name in the catalog";
        else if (in_place && !renamed)
            why = "its directory (saved in place) is not there";
        else if (fs.empty())
            why = "killed before its files were sealed";
        else if (!tmp.fd && !renamed)
            why = "neither the directory nor its temp directory is there";
        const Dir &where = renamed ? fin : tmp;
        std::set<std::string> names;
        for (const FileRow &f : fs) {
            if (!why.empty()) break;
            names.insert(f.name);
            if (!name_problem(f.name).empty()) {
                why = "invalid file name in the catalog";
                break;
            }
            Check c = check_file(where, f.name, f.size, f.checksum, true);
            if (c.io_error) fail(CKPTDB_EIO, "recovery cannot read a file of a save left writing: " + c.reason);
            if (!c.ok) why = c.reason;
        }
        if (why.empty()) {
            if (in_place) sync_dir(fin);  // its files' entries, as the commit would have
            if (!renamed) {
                // Seals the commit had not removed yet go first: the
                // directory holds only its files.
                for (const FileRow &f : fs)
                    if (!names.count(seal_sidecar_name(f.name))) unlink_name(tmp, seal_sidecar_name(f.name));
                sync_dir(tmp);
                rename_noreplace(dir_, e.temp_name, e.name);
            }
            sync_dir(dir_);
            hook("recover_adopt");
            resolve(
                e.id, true,
                with_writer(writer_why,
                            in_place  ? "adopted: the writer died after recording every file of its directory "
                                        "(saved in place); every file is whole, the commit was finished"
                            : renamed ? "adopted: the writer died after renaming the directory; every file is whole"
                                      : "adopted: the writer died after sealing every file; the commit was finished"));
            return;
        }
        if (in_place && renamed)
            remove_in_place_dir(dir_, e.name);
        else if (renamed)
            remove_dir_checkpoint(dir_, e.name, fs);
        if (tmp.fd) remove_temp_dir(dir_, e.temp_name);
        hook("recover_abort");
        resolve(e.id, false, "aborted: " + with_writer(writer_why, why));
    };
    for (const Stale &s : stale) {
        Entry se = entry(s.id);
        if (se.dir) {
            recover_dir(se, s.why);
            continue;
        }
        std::vector<FileRow> fs = files(s.id);
        bool whole = !fs.empty();
        std::string why = fs.empty() ? "the catalog lists no file for it" : "";
        std::vector<const FileRow *> to_rename, at_final;
        for (const FileRow &f : fs) {
            if (!name_problem(f.name).empty()) {
                whole = false;
                why = "invalid file name in the catalog";
                break;
            }
            if (f.size < 0) {
                whole = false;
                why = "killed before the file was sealed";
                break;
            }
            if (matches(f.name, f)) {
                at_final.push_back(&f);
            } else if (!name_exists(dir_, f.name) && usable_temp(f) && matches(f.temp_name, f)) {
                to_rename.push_back(&f);
            } else {
                whole = false;
                why = name_exists(dir_, f.name) ? "the final file does not match the sealed checksum"
                                                : "neither the final nor the temp file is whole";
                break;
            }
        }
        if (whole) {
            // Finish the renames, and make them durable before the catalog
            // says complete.
            for (const FileRow *f : to_rename) rename_noreplace(dir_, f->temp_name, f->name);
            sync_dir(dir_);
            hook("recover_adopt");
            resolve(s.id, true,
                    std::string(to_rename.empty()
                                    ? "adopted: the writer died after the rename; every file is whole"
                                    : "adopted: the writer died after sealing every file; the commit was finished") +
                        (s.why.empty() ? "" : "; " + s.why));
            continue;
        }
        for (const FileRow &f : fs)
            if (usable_temp(f)) unlink_name(dir_, f.temp_name);
        // Files of a sharded commit already renamed are this save's own (the
        // rename never replaces): without the others they are useless.
        if (fs.size() > 1)
            for (const FileRow &f : fs)
                if (name_problem(f.name).empty() && f.size >= 0 && matches(f.name, f)) unlink_name(dir_, f.name);
        hook("recover_abort");
        resolve(s.id, false, "aborted: " + (s.why.empty() ? why : s.why + "; " + why));
    }

    // Prunes that marked their victims but died before unlinking them.
    std::vector<int64_t> pending;
    read([&](Store &db) { pending = db.prune_pending(); });
    finish_prunes(pending);

    // Runs whose process is gone without closing the catalog crashed.
    std::vector<int64_t> crashed;
    std::vector<OpenRun> open;
    read([&](Store &db) { open = db.open_runs(); });
    for (const OpenRun &r : open)
        if (r.id != run_id_ && liveness(self_, r.host, r.boot_id, r.pid, r.proc_start) == Liveness::dead)
            crashed.push_back(r.id);
    for (int64_t run : crashed) {
        write([&](Store &db) {
            if (!db.run_crashed(run)) return;
            // The event belongs to the run that crashed, not to this one.
            db.event_insert(
                run, 0, "run_ended",
                "crashed: pid gone without closing the catalog (found by pid " + std::to_string(self_.pid) + ")");
            pending_.push_back({"run_ended", 0, "crashed"});
        });
    }

    // Orphan temp files: list the directory first, then read which temp
    // names live saves own. A save records its row before it creates its
    // temp file, so any temp file in the listing whose row is still writing
    // shows up in the read that follows.
    std::vector<std::string> temps;
    for (const std::string &n : list_names(dir_))
        if (is_temp_name(n)) temps.push_back(n);
    if (!temps.empty()) {
        std::set<std::string> owned;
        read([&](Store &db) {
            for (std::string &t : db.writing_temp_names()) owned.insert(std::move(t));
        });
        for (const std::string &t : temps) {
            if (owned.count(t)) continue;
            if (is_temp_dir_name(t))
                remove_temp_dir(dir_, t);
            else
                remove_unheld(dir_, t);
        }
    }
    refresh_link();
    std::vector<std::string> newer = newer_than_catalog();
    if (!newer.empty()) {
        std::string list;
        for (size_t i = 0; i < newer.size() && i < 5; i++) list += (i ? ", " : "") + newer[i];
        if (newer.size() > 5) list += " and " + std::to_string(newer.size() - 5) + " more";
        pending_.push_back({"catalog_behind", 0,
                            "'" + dir_.path +
                                "' holds checkpoint files newer than the catalog's newest commit that "
                                "it does not know: " +
                                list + " (commits lost with its WAL?); 'ckptdb fsck' lists them"});
        emit_pending();
    }
    // Removing a temp file needs no directory fsync: one that reappears
    // after a power loss is removed by the next recovery.
}

}  // namespace ckptdb

// ckptdb.hpp - a header-only C++17 RAII wrapper over the C ABI (ckptdb.h).
//
// Its names live in namespace ckptdbxx (as libpqxx's in pqxx), apart from
// anything named ckptdb: ckptdbxx::catalog, ckptdbxx::save, ckptdbxx::entry.
// Failures throw ckptdbxx::error, which carries the status code and the
// library's detailed message. Entries (and files, events, runs, findings) are
// copied into owning values, so no borrowed string outlives its call. A
// callback given as a std::function may throw: the call stops and the
// exception reaches the caller.
#ifndef CKPTDB_HPP
#define CKPTDB_HPP

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ckptdb.h"

namespace ckptdbxx {

class error : public std::runtime_error {
public:
    error(int code, const std::string &msg) : std::runtime_error(msg), code_(code), detail_(msg) {}
    // what() is "<code's name>: <detail>"; detail() is the library's message
    // alone (the code's name when the library gave none).
    error(int code, const std::string &msg, const std::string &detail)
        : std::runtime_error(msg), code_(code), detail_(detail) {}
    int code() const noexcept { return code_; }
    const std::string &detail() const noexcept { return detail_; }

private:
    int code_;
    std::string detail_;
};

namespace detail {
inline error make_error(int rc) {
    const char *m = ckptdb_last_error();
    std::string name = ckptdb_strerror(rc);
    if (!m || !*m) return error(rc, name, name);
    return error(rc, name + ": " + m, m);
}
inline void check(int rc) {
    if (rc != CKPTDB_OK && rc != CKPTDB_DONE) throw make_error(rc);
}
inline std::string str(const char *s) { return s ? std::string(s) : std::string(); }

// Runs a std::function callback for the C ABI: an exception it throws is kept
// and the call is stopped (non-zero, CKPTDB_ECALLBACK); finish() rethrows it
// in place of the library's status.
struct guard {
    std::exception_ptr thrown;
    template <class F>
    int run(F &&f) noexcept {
        try {
            f();
            return 0;
        } catch (...) {
            thrown = std::current_exception();
            return 1;
        }
    }
    void finish(int rc) const {
        if (thrown) std::rethrow_exception(thrown);
        check(rc);
    }
};

}  // namespace detail

// The library's version string ("1.2.3").
inline std::string version() { return ckptdb_version(); }
// The name of a CKPTDB_STATUS_* value ("complete", "corrupt", ...).
inline std::string status_name(int status) { return ckptdb_status_name(status); }

// One file of a checkpoint (one per rank for a sharded save).
struct file {
    int64_t rank = 0, size = -1;
    std::string name, path, checksum;
};

// One row of the catalog's event log.
struct event {
    int64_t id = 0, run_id = 0, checkpoint_id = 0;
    std::string at, name, detail;
};

// One process that wrote to the catalog (ckptdb_run).
struct run {
    int64_t id = 0, pid = 0, slurm_restart_count = -1, resumed_from = 0, last_step = -1, last_saved_step = -1,
            saves = 0, steps_lost = 0;
    std::string host, started_at, ended_at, exit_reason, slurm_job_id, slurm_array_job_id, slurm_array_task_id;
};

// Disk usage of one kind and status.
struct usage {
    std::string kind;
    int status = 0;
    int64_t checkpoints = 0, bytes = 0;
};

// One checkpoint a prune deletes (or would delete).
struct prune_item {
    int64_t id = 0, size = -1;
    std::string name, rule;
};

struct prune_result {
    int64_t count = 0, bytes = 0;
    std::vector<prune_item> items;
};

// One finding of fsck, rebuild, adopt or sync (action is "" for sync).
struct finding {
    std::string kind, name;
    int64_t checkpoint_id = 0;
    std::string detail, action;
};

struct fsck_report {
    int64_t problems = 0;
    bool rebuilt = false;
    std::vector<finding> findings;
};

struct rebuild_report {
    int64_t rows = 0;
    std::vector<finding> findings;
};

using progress_fn = std::function<void(int64_t done, int64_t total)>;

struct sync_options {
    bool delete_pruned = false;
    progress_fn progress;                          // may be empty
    std::function<void(const finding &)> on_item;  // every checkpoint as it is done; may be empty
};

struct sync_result {
    int64_t copied = 0, bytes = 0;
    // Some checkpoint of src failed its checksum (an item "failed"; the
    // others were copied): the library's CKPTDB_ECORRUPT, not thrown.
    bool corrupt = false;
};

// Options of a catalog's open: CKPTDB_OPEN_* flags and the recovery/verify
// events it reports ("rolled_forward", "corrupt", ...). on_event must not
// throw: the library cannot stop on it (an escaping exception ends the
// program).
struct open_options {
    unsigned flags = 0;
    std::function<void(const std::string &event, int64_t checkpoint_id, const std::string &detail)> on_event;
};

struct entry {
    int64_t id = 0;
    std::string name, path, kind;
    int64_t epoch = 0, step = 0, size = -1;
    std::string checksum;
    int status = 0;
    bool pinned = false;
    int64_t run_id = 0, file_count = 0;
    std::string created_at, committed_at, deleted_at, metadata;
    int layout = CKPTDB_LAYOUT_FILE;  // CKPTDB_LAYOUT_DIR: path is the directory of its files
    int64_t commit_seq = 0;           // the commit order, larger is newer; 0 if never committed

    static entry from(const ckptdb_entry &e) {
        entry o;
        o.id = e.id;
        o.name = detail::str(e.name);
        o.path = detail::str(e.path);
        o.kind = detail::str(e.kind);
        o.epoch = e.epoch;
        o.step = e.step;
        o.size = e.size;
        o.checksum = detail::str(e.checksum);
        o.status = e.status;
        o.pinned = e.pinned != 0;
        o.run_id = e.run_id;
        o.file_count = e.file_count;
        o.created_at = detail::str(e.created_at);
        o.committed_at = detail::str(e.committed_at);
        o.deleted_at = detail::str(e.deleted_at);
        o.metadata = detail::str(e.metadata);
        o.layout = e.layout;
        o.commit_seq = e.commit_seq;
        return o;
    }
    const char *status_name() const { return ckptdb_status_name(status); }
    bool is_dir() const { return layout == CKPTDB_LAYOUT_DIR; }
};

// One save in progress; aborted on destruction unless committed.
class save {
public:
    explicit save(ckptdb_save *s) : s_(s) {}
    save(save &&) noexcept = default;
    save &operator=(save &&) noexcept = default;

    void write(const void *data, size_t len) { detail::check(ckptdb_save_write(s_.get(), data, len)); }
    void write(const std::string &bytes) { write(bytes.data(), bytes.size()); }
    std::string temp_path() {
        const char *p = nullptr;
        detail::check(ckptdb_save_temp_path(&p, s_.get()));
        return p;
    }
    int fd() {
        int f = -1;
        detail::check(ckptdb_save_fd(&f, s_.get()));
        return f;
    }
    entry commit() {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        detail::check(ckptdb_save_commit(&e, s_.get()));
        return entry::from(e);
    }
    void abort() { detail::check(ckptdb_save_abort(s_.get())); }

private:
    struct free_save {
        void operator()(ckptdb_save *s) const { ckptdb_save_free(s); }
    };
    std::unique_ptr<ckptdb_save, free_save> s_;
};

class catalog {
public:
    explicit catalog(const std::string &dir, const ckptdb_open_options *opts = nullptr) {
        ckptdb_catalog *db = nullptr;
        detail::check(ckptdb_open(&db, dir.c_str(), opts));
        db_.reset(db);
    }

    catalog(const std::string &dir, const open_options &opts) {
        ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
        o.flags = opts.flags;
        if (opts.on_event) {
            on_event_ = std::make_unique<event_fn>(opts.on_event);
            o.on_event = [](const char *ev, int64_t id, const char *det, void *p) noexcept {
                (*static_cast<event_fn *>(p))(detail::str(ev), id, detail::str(det));
            };
            o.event_payload = on_event_.get();
        }
        ckptdb_catalog *db = nullptr;
        detail::check(ckptdb_open(&db, dir.c_str(), &o));
        db_.reset(db);
    }

    ckptdb_catalog *handle() const { return db_.get(); }
    std::string dir() const { return ckptdb_dir(db_.get()); }

    save begin(const std::string &kind, int64_t epoch, int64_t step, const std::optional<std::string> &name = {},
               const std::optional<std::string> &metadata = {}) {
        ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
        o.name = name ? name->c_str() : nullptr;
        o.metadata = metadata ? metadata->c_str() : nullptr;
        ckptdb_save *s = nullptr;
        detail::check(ckptdb_save_begin(&s, db_.get(), kind.c_str(), epoch, step, &o));
        return save(s);
    }

    // One call: begin, write all bytes, commit.
    entry save_bytes(const std::string &kind, int64_t epoch, int64_t step, const std::string &bytes,
                     const std::optional<std::string> &name = {}, const std::optional<std::string> &metadata = {}) {
        save s = begin(kind, epoch, step, name, metadata);
        s.write(bytes);
        return s.commit();
    }

    // The newest complete checkpoint that verifies, or nullopt.
    std::optional<entry> latest(const std::optional<std::string> &kind = {},
                                unsigned verify_flags = CKPTDB_VERIFY_FULL) {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        int rc = ckptdb_latest(&e, db_.get(), kind ? kind->c_str() : nullptr, verify_flags);
        if (rc == CKPTDB_ENOTFOUND) return std::nullopt;
        detail::check(rc);
        return entry::from(e);
    }

    entry get(int64_t id) {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        detail::check(ckptdb_get(&e, db_.get(), id));
        return entry::from(e);
    }

    entry get(const std::string &name) {
        ckptdb_entry e = CKPTDB_ENTRY_INIT;
        detail::check(ckptdb_get_by_name(&e, db_.get(), name.c_str()));
        return entry::from(e);
    }

    std::vector<entry> list(unsigned status_mask = 0, const std::optional<std::string> &kind = {}) {
        ckptdb_filter f = CKPTDB_FILTER_INIT;
        f.status_mask = status_mask;
        f.kind = kind ? kind->c_str() : nullptr;
        std::vector<entry> out;
        detail::check(ckptdb_list(
            db_.get(), &f,
            [](const ckptdb_entry *e, void *p) {
                static_cast<std::vector<entry> *>(p)->push_back(entry::from(*e));
                return 0;
            },
            &out));
        return out;
    }

    // True when checkpoint id verifies; false when it is corrupt (and now marked so).
    bool verify(int64_t id) {
        int rc = ckptdb_verify(db_.get(), id);
        if (rc == CKPTDB_ECORRUPT) return false;
        detail::check(rc);
        return true;
    }

    void mark_resumed(int64_t id) { detail::check(ckptdb_mark_resumed(db_.get(), id)); }

    // Verify checkpoint id, reporting bytes read; every failure throws, a
    // corrupt checkpoint (now marked so) as CKPTDB_ECORRUPT saying what did
    // not match.
    void verify(int64_t id, const progress_fn &progress) {
        struct ctx {
            detail::guard g;
            const progress_fn *fn;
        } c{{}, &progress};
        int rc = ckptdb_verify_progress(
            db_.get(), id,
            [](int64_t done, int64_t total, void *p) {
                auto *x = static_cast<ctx *>(p);
                return x->g.run([&] { (*x->fn)(done, total); });
            },
            &c);
        c.g.finish(rc);
    }

    // Apply policy (nullptr: the catalog's, else the default); dry_run
    // returns the same plan and changes nothing.
    prune_result prune(const ckptdb_retention *policy = nullptr, bool dry_run = false) {
        prune_result r;
        int rc = ckptdb_prune(
            &r.count, &r.bytes, db_.get(), policy, dry_run ? 1 : 0,
            [](const ckptdb_prune_item *it, void *p) {
                static_cast<prune_result *>(p)->items.push_back(
                    prune_item{it->id, it->size, detail::str(it->name), detail::str(it->rule)});
                return 0;
            },
            &r);
        detail::check(rc);
        return r;
    }

    void pin(int64_t id, bool pinned = true) { detail::check(ckptdb_pin(db_.get(), id, pinned ? 1 : 0)); }
    void remove(int64_t id) { detail::check(ckptdb_remove(db_.get(), id)); }

    // Every file of checkpoint id, by rank.
    std::vector<file> files(int64_t id) {
        std::vector<file> out;
        detail::check(ckptdb_files(
            db_.get(), id,
            [](const ckptdb_file *f, void *p) {
                static_cast<std::vector<file> *>(p)->push_back(
                    file{f->rank, f->size, detail::str(f->name), detail::str(f->path), detail::str(f->checksum)});
                return 0;
            },
            &out));
        return out;
    }

    // Events, oldest first; checkpoint_id / run_id 0 means any.
    std::vector<event> events(int64_t checkpoint_id = 0, int64_t run_id = 0) {
        std::vector<event> out;
        detail::check(ckptdb_events(
            db_.get(), checkpoint_id, run_id,
            [](const ckptdb_event *e, void *p) {
                static_cast<std::vector<event> *>(p)->push_back(event{e->id, e->run_id, e->checkpoint_id,
                                                                      detail::str(e->at), detail::str(e->event),
                                                                      detail::str(e->detail)});
                return 0;
            },
            &out));
        return out;
    }

    // Every run, oldest first.
    std::vector<run> runs() {
        std::vector<run> out;
        detail::check(ckptdb_runs(
            db_.get(),
            [](const ckptdb_run *r, void *p) {
                static_cast<std::vector<run> *>(p)->push_back(
                    run{r->id, r->pid, r->slurm_restart_count, r->resumed_from, r->last_step, r->last_saved_step,
                        r->saves, r->steps_lost, detail::str(r->host), detail::str(r->started_at),
                        detail::str(r->ended_at), detail::str(r->exit_reason), detail::str(r->slurm_job_id),
                        detail::str(r->slurm_array_job_id), detail::str(r->slurm_array_task_id)});
                return 0;
            },
            &out));
        return out;
    }

    // Disk usage per kind and status, by kind then status.
    std::vector<usage> disk_usage() {
        std::vector<usage> out;
        detail::check(ckptdb_disk_usage(
            db_.get(),
            [](const ckptdb_usage *u, void *p) {
                static_cast<std::vector<usage> *>(p)->push_back(
                    usage{detail::str(u->kind), u->status, u->checkpoints, u->bytes});
                return 0;
            },
            &out));
        return out;
    }

    // The whole first file of checkpoint id, checked against its checksum.
    std::string read(int64_t id) {
        ckptdb_reader *r = nullptr;
        detail::check(ckptdb_reader_open(&r, db_.get(), id));
        std::unique_ptr<ckptdb_reader, void (*)(ckptdb_reader *)> guard(r, ckptdb_reader_close);
        std::string out;
        char buf[1 << 16];
        for (;;) {
            size_t n = 0;
            detail::check(ckptdb_reader_read(&n, r, buf, sizeof buf));
            if (n == 0) return out;
            out.append(buf, n);
        }
    }

private:
    using event_fn = std::function<void(const std::string &, int64_t, const std::string &)>;
    struct close_db {
        void operator()(ckptdb_catalog *d) const { ckptdb_close(d); }
    };
    std::unique_ptr<event_fn> on_event_;  // outlives db_, which may report until closed
    std::unique_ptr<ckptdb_catalog, close_db> db_;
};

namespace detail {
template <class Item>
int collect_finding(const Item *it, void *p) {
    static_cast<std::vector<finding> *>(p)->push_back(finding{detail::str(it->kind), detail::str(it->name),
                                                              it->checkpoint_id, detail::str(it->detail),
                                                              detail::str(it->action)});
    return 0;
}
}  // namespace detail

// Check (and with repair, fix) directory dir whole, a lost catalog included
// (ckptdb_fsck_dir).
inline fsck_report fsck_dir(const std::string &dir, const ckptdb_open_options *opts = nullptr, bool repair = false) {
    fsck_report r;
    int rebuilt = 0;
    detail::check(ckptdb_fsck_dir(&r.problems, &rebuilt, dir.c_str(), opts, repair ? 1 : 0,
                                  detail::collect_finding<ckptdb_fsck_item>, &r.findings));
    r.rebuilt = rebuilt != 0;
    return r;
}

// Rebuild dir's catalog from the checkpoint files present (ckptdb_rebuild).
inline rebuild_report rebuild(const std::string &dir, const ckptdb_open_options *opts = nullptr) {
    rebuild_report r;
    detail::check(
        ckptdb_rebuild(&r.rows, dir.c_str(), opts, detail::collect_finding<ckptdb_rebuild_item>, &r.findings));
    return r;
}

// Build a catalog for a directory written without ckptdb (ckptdb_adopt).
inline rebuild_report adopt(const std::string &dir, const ckptdb_open_options *opts = nullptr) {
    rebuild_report r;
    detail::check(ckptdb_adopt(&r.rows, dir.c_str(), opts, detail::collect_finding<ckptdb_rebuild_item>, &r.findings));
    return r;
}

// Merge every complete checkpoint of src that dst lacks into dst (ckptdb_sync).
inline sync_result sync(const std::string &src, const std::string &dst, const sync_options &opts = {}) {
    struct ctx {
        detail::guard g;
        const sync_options *o;
    } c{{}, &opts};
    ckptdb_sync_options o = CKPTDB_SYNC_OPTIONS_INIT;
    o.delete_pruned = opts.delete_pruned ? 1 : 0;
    if (opts.progress) {
        o.progress = [](int64_t done, int64_t total, void *p) {
            auto *x = static_cast<ctx *>(p);
            return x->g.run([&] { x->o->progress(done, total); });
        };
        o.progress_payload = &c;
    }
    if (opts.on_item) {
        o.on_item = [](const ckptdb_sync_item *it, void *p) {
            auto *x = static_cast<ctx *>(p);
            return x->g.run([&] {
                x->o->on_item(finding{detail::str(it->kind), detail::str(it->name), it->checkpoint_id,
                                      detail::str(it->detail), std::string()});
            });
        };
        o.item_payload = &c;
    }
    sync_result r;
    int rc = ckptdb_sync(&r.copied, &r.bytes, src.c_str(), dst.c_str(), &o);
    r.corrupt = rc == CKPTDB_ECORRUPT && !c.g.thrown;
    c.g.finish(r.corrupt ? CKPTDB_OK : rc);
    return r;
}

}  // namespace ckptdbxx

#endif  // CKPTDB_HPP

// The extern "C" shims: every function catches everything and turns it into
// a status code plus the thread's last-error message.
#include <sys/stat.h>

#include <cstddef>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "capi_internal.hpp"
#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"
#include "sql_embedded.hpp"
#include "names.hpp"
#include "dirsave.hpp"
#include "shard.hpp"
#include "sync.hpp"
#include "trust.hpp"
#include "reader.hpp"
#include "writer.hpp"

using ckptdb::Entry;
using ckptdb::Error;
using namespace ckptdb::capi;

struct ckptdb_catalog {
    std::shared_ptr<ckptdb::Catalog> cat;
    Entry slot;
};

struct ckptdb_save {
    std::unique_ptr<ckptdb::Save> save;
    Entry slot;
};

struct ckptdb_reader {
    std::unique_ptr<ckptdb::Reader> reader;
};

struct ckptdb_shard {
    std::unique_ptr<ckptdb::Shard> shard;
};

struct ckptdb_dir_save {
    std::unique_ptr<ckptdb::DirSave> save;
    Entry slot;
};

struct ckptdb_cursor {
    std::shared_ptr<ckptdb::Catalog> cat;
    unsigned mask = 0;
    std::optional<std::string> kind;
    int64_t after = 0;
    std::vector<Entry> page;
    size_t pos = 0;
    bool exhausted = false;
    Entry slot;
};

namespace {

void need_entry(const ckptdb_entry *out) {
    if (out && out->struct_size < offsetof(ckptdb_entry, name))
        throw Error(CKPTDB_EMISUSE, "ckptdb_entry.struct_size is not set (use CKPTDB_ENTRY_INIT)");
}

// Fills what fits into the caller's struct; strings point into e.
void fill(ckptdb_entry *out, const Entry &e) {
    if (!out) return;
    size_t n = out->struct_size;
#define CKPTDB_FILL(field, value) \
    if (offsetof(ckptdb_entry, field) + sizeof(out->field) <= n) out->field = (value)
    CKPTDB_FILL(id, e.id);
    CKPTDB_FILL(name, e.name.c_str());
    CKPTDB_FILL(path, e.path.c_str());
    CKPTDB_FILL(kind, e.kind.c_str());
    CKPTDB_FILL(epoch, e.epoch);
    CKPTDB_FILL(step, e.step);
    CKPTDB_FILL(size, e.size);
    CKPTDB_FILL(checksum, e.checksum.c_str());
    CKPTDB_FILL(status, e.status);
    CKPTDB_FILL(pinned, e.pinned ? 1 : 0);
    CKPTDB_FILL(run_id, e.run_id);
    CKPTDB_FILL(file_count, e.file_count);
    CKPTDB_FILL(created_at, e.created_at.c_str());
    CKPTDB_FILL(committed_at, e.committed_at.c_str());
    CKPTDB_FILL(deleted_at, e.deleted_at.c_str());
    CKPTDB_FILL(metadata, e.metadata.c_str());
    CKPTDB_FILL(layout, e.dir ? CKPTDB_LAYOUT_DIR : CKPTDB_LAYOUT_FILE);
    CKPTDB_FILL(commit_seq, e.commit_seq);
#undef CKPTDB_FILL
    out->struct_size = n < sizeof(ckptdb_entry) ? n : sizeof(ckptdb_entry);
}

// On failure an entry keeps no pointers into freed storage.
void clear(ckptdb_entry *out) {
    if (!out || out->struct_size <= sizeof(size_t)) return;
    size_t n = out->struct_size < sizeof(ckptdb_entry) ? out->struct_size : sizeof(ckptdb_entry);
    std::memset(reinterpret_cast<char *>(out) + sizeof(size_t), 0, n - sizeof(size_t));
}

std::optional<std::string> opt_str(const char *s) {
    if (!s) return std::nullopt;
    return std::string(s);
}

ckptdb::Catalog::Verify verify_mode(unsigned flags) {
    if (flags & ~(CKPTDB_VERIFY_SIZE | CKPTDB_VERIFY_NONE))
        throw Error(CKPTDB_EINVAL, "unknown verify flags " + std::to_string(flags));
    if (flags & CKPTDB_VERIFY_NONE) return ckptdb::Catalog::Verify::none;
    if (flags & CKPTDB_VERIFY_SIZE) return ckptdb::Catalog::Verify::size;
    return ckptdb::Catalog::Verify::full;
}

}  // namespace

static ckptdb::OpenOptions open_options(const ckptdb_open_options *opts) {
    ckptdb::OpenOptions o;
    if (!opts) return o;
    check_version(opts->version, CKPTDB_OPEN_OPTIONS_VERSION, "ckptdb_open_options");
    if (opts->flags & ~(CKPTDB_OPEN_NO_CREATE | CKPTDB_OPEN_READONLY | CKPTDB_OPEN_REQUEUE | CKPTDB_OPEN_TRUST_SHARED |
                        CKPTDB_OPEN_RESERVE))
        throw Error(CKPTDB_EINVAL, "unknown open flags " + std::to_string(opts->flags));
    o.requeue = (opts->flags & CKPTDB_OPEN_REQUEUE) != 0;
    o.trust_shared = (opts->flags & CKPTDB_OPEN_TRUST_SHARED) != 0;
    o.open_with_reserve = (opts->flags & CKPTDB_OPEN_RESERVE) != 0;
    o.create = !(opts->flags & CKPTDB_OPEN_NO_CREATE);
    o.readonly = (opts->flags & CKPTDB_OPEN_READONLY) != 0;
    if (opts->catalog_name) o.catalog_name = opts->catalog_name;
    if (opts->busy_timeout_ms > 0) o.busy_timeout_ms = opts->busy_timeout_ms;
    if (opts->last_link) o.last_link = opts->last_link;
    if (opts->on_event) {
        ckptdb_event_cb ev = opts->on_event;
        void *p = opts->event_payload;
        o.on_event = [ev, p](const std::string &e, int64_t id, const std::string &detail) {
            ev(e.c_str(), id, detail.c_str(), p);
        };
    }
    return o;
}

extern "C" {

const char *ckptdb_version(void) { return CKPTDB_VERSION_STRING; }
int ckptdb_version_number(void) { return CKPTDB_VERSION_NUMBER; }
int ckptdb_schema_version(void) { return ckptdb::sql::kSchemaVersion; }

const char *ckptdb_strerror(int code) {
    switch (code) {
        case CKPTDB_OK:
            return "success";
        case CKPTDB_ERROR:
            return "error";
        case CKPTDB_EMISUSE:
            return "library misuse (NULL argument or call in the wrong state)";
        case CKPTDB_EINVAL:
            return "invalid argument";
        case CKPTDB_ENOTFOUND:
            return "not found";
        case CKPTDB_EEXISTS:
            return "name already in use";
        case CKPTDB_EIO:
            return "input/output error";
        case CKPTDB_ENOSPC:
            return "no space left on device";
        case CKPTDB_ECORRUPT:
            return "checkpoint does not match its catalog row";
        case CKPTDB_EBUSY:
            return "catalog is busy";
        case CKPTDB_EVERSION:
            return "catalog schema version not supported";
        case CKPTDB_ENOTCATALOG:
            return "not a ckptdb catalog";
        case CKPTDB_EPERM:
            return "permission denied";
        case CKPTDB_EREADONLY:
            return "catalog opened read-only";
        case CKPTDB_ENOMEM:
            return "out of memory";
        case CKPTDB_EDB:
            return "catalog database error";
        case CKPTDB_EUNTRUSTED:
            return "owned or writable by another user (not trusted)";
        case CKPTDB_ECALLBACK:
            return "stopped by a callback";
        case CKPTDB_DONE:
            return "no more rows";
        default:
            return "unknown status code";
    }
}

const char *ckptdb_last_error(void) { return t_message.c_str(); }
int ckptdb_last_error_code(void) { return t_code; }
int ckptdb_last_callback_value(void) { return t_callback_value; }

const char *ckptdb_status_name(int status) { return ckptdb::status_text(status); }

int ckptdb_open_options_init(ckptdb_open_options *opts, unsigned int version) {
    const ckptdb_open_options defaults = CKPTDB_OPEN_OPTIONS_INIT;
    return init_options(opts, version, CKPTDB_OPEN_OPTIONS_VERSION, defaults, "ckptdb_open_options");
}

int ckptdb_save_options_init(ckptdb_save_options *opts, unsigned int version) {
    const ckptdb_save_options defaults = CKPTDB_SAVE_OPTIONS_INIT;
    return init_options(opts, version, CKPTDB_SAVE_OPTIONS_VERSION, defaults, "ckptdb_save_options");
}

int ckptdb_open(ckptdb_catalog **out, const char *dir, const ckptdb_open_options *opts) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(dir, "dir");
        ckptdb::OpenOptions o = open_options(opts);
        auto h = std::make_unique<ckptdb_catalog>();
        h->cat = ckptdb::Catalog::open(dir, o);
        *out = h.release();
    });
}

int ckptdb_close(ckptdb_catalog *db) {
    delete db;  // the catalog itself goes with its last save, reader or cursor
    return CKPTDB_OK;
}

const char *ckptdb_dir(const ckptdb_catalog *db) { return db ? db->cat->dir().path.c_str() : ""; }

// The one reading of ckptdb_save_options, for a file save and a directory save.
struct SaveOptions {
    std::optional<std::string> name, metadata;
};
static SaveOptions read_save_options(const ckptdb_save_options *opts) {
    SaveOptions o;
    if (!opts) return o;
    check_version(opts->version, CKPTDB_SAVE_OPTIONS_VERSION, "ckptdb_save_options");
    o.name = opt_str(opts->name);
    o.metadata = opt_str(opts->metadata);
    return o;
}

int ckptdb_save_begin(ckptdb_save **out, ckptdb_catalog *db, const char *kind, int64_t epoch, int64_t step,
                      const ckptdb_save_options *opts) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(db, "db");
        need(kind, "kind");
        SaveOptions o = read_save_options(opts);
        auto s = std::make_unique<ckptdb_save>();
        s->save = ckptdb::Save::begin(db->cat, kind, epoch, step, o.name, o.metadata);
        *out = s.release();
    });
}

int ckptdb_default_name(char *out, size_t cap, const char *kind, int64_t epoch, int64_t step, int64_t unix_seconds,
                        int suffix, int rank, int world) {
    if (out && cap) *out = '\0';
    return guard([&] {
        need(out, "out");
        need(kind, "kind");
        if (unix_seconds < 0)
            ckptdb::fail(CKPTDB_EINVAL, "unix_seconds must be >= 0 (0: now), got " + std::to_string(unix_seconds));
        if (unix_seconds == 0) unix_seconds = static_cast<int64_t>(::time(nullptr));
        std::string n = ckptdb::default_name(kind, epoch, step, suffix, rank, world, unix_seconds);
        if (n.size() + 1 > cap)
            ckptdb::fail(CKPTDB_EINVAL, "the default name '" + n + "' needs " + std::to_string(n.size() + 1) +
                                            " bytes with its NUL; the buffer has " + std::to_string(cap));
        std::memcpy(out, n.c_str(), n.size() + 1);
    });
}

int ckptdb_save_write(ckptdb_save *save, const void *data, size_t len) {
    return guard([&] {
        need(save, "save");
        if (len) need(data, "data");
        save->save->write(data, len);
    });
}

int ckptdb_save_temp_path(const char **out_path, ckptdb_save *save) {
    if (out_path) *out_path = nullptr;
    return guard([&] {
        need(out_path, "out_path");
        need(save, "save");
        *out_path = save->save->temp_path().c_str();
    });
}

int ckptdb_save_fd(int *out_fd, ckptdb_save *save) {
    if (out_fd) *out_fd = -1;
    return guard([&] {
        need(out_fd, "out_fd");
        need(save, "save");
        *out_fd = save->save->fd();
    });
}

int ckptdb_save_commit(ckptdb_entry *out, ckptdb_save *save) {
    return guard([&] {
        need(save, "save");
        need_entry(out);
        clear(out);
        save->slot = save->save->commit();
        fill(out, save->slot);
    });
}

int ckptdb_save_abort(ckptdb_save *save) {
    return guard([&] {
        need(save, "save");
        save->save->abort();
    });
}

void ckptdb_save_free(ckptdb_save *save) {
    try {
        delete save;
    } catch (...) {}
}

int ckptdb_shard_begin(ckptdb_shard **out, const char *dir, const char *name) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(dir, "dir");
        need(name, "name");
        auto s = std::make_unique<ckptdb_shard>();
        s->shard = ckptdb::Shard::begin(dir, name);
        *out = s.release();
    });
}

int ckptdb_shard_write(ckptdb_shard *shard, const void *data, size_t len) {
    return guard([&] {
        need(shard, "shard");
        if (len) need(data, "data");
        shard->shard->write(data, len);
    });
}

int ckptdb_shard_fd(int *out_fd, ckptdb_shard *shard) {
    if (out_fd) *out_fd = -1;
    return guard([&] {
        need(out_fd, "out_fd");
        need(shard, "shard");
        *out_fd = shard->shard->fd();
    });
}

int ckptdb_shard_finish(ckptdb_shard_info *out, ckptdb_shard *shard) {
    return guard([&] {
        need(shard, "shard");
        if (out && out->struct_size < offsetof(ckptdb_shard_info, name))
            throw Error(CKPTDB_EMISUSE, "ckptdb_shard_info.struct_size is not set (use CKPTDB_SHARD_INFO_INIT)");
        const ckptdb::ShardFile &f = shard->shard->finish();
        if (!out) return;
        size_t n = out->struct_size;
#define CKPTDB_FILL(field, value) \
    if (offsetof(ckptdb_shard_info, field) + sizeof(out->field) <= n) out->field = (value)
        CKPTDB_FILL(name, f.name.c_str());
        CKPTDB_FILL(temp_name, f.temp_name.c_str());
        CKPTDB_FILL(size, f.size);
        CKPTDB_FILL(checksum, f.checksum.c_str());
#undef CKPTDB_FILL
        out->struct_size = n < sizeof(ckptdb_shard_info) ? n : sizeof(ckptdb_shard_info);
    });
}

void ckptdb_shard_free(ckptdb_shard *shard) {
    try {
        delete shard;
    } catch (...) {}
}

int ckptdb_commit_shards(ckptdb_entry *out, ckptdb_catalog *db, const char *kind, int64_t epoch, int64_t step,
                         const ckptdb_save_options *opts, const ckptdb_shard_file *files, size_t count) {
    return guard([&] {
        need(db, "db");
        need(kind, "kind");
        if (count) need(files, "files");
        need_entry(out);
        clear(out);
        std::optional<std::string> meta;
        if (opts) {
            check_version(opts->version, CKPTDB_SAVE_OPTIONS_VERSION, "ckptdb_save_options");
            if (opts->name)
                throw Error(CKPTDB_EINVAL,
                            "a sharded save takes its names from its files; ckptdb_save_options.name "
                            "must be NULL");
            meta = opt_str(opts->metadata);
        }
        std::vector<ckptdb::ShardFile> fs(count);
        for (size_t i = 0; i < count; i++) {
            std::string who = "files[" + std::to_string(i) + "]";
            check_version(files[i].version, CKPTDB_SHARD_FILE_VERSION, who + " (ckptdb_shard_file)");
            need(files[i].name, (who + ".name").c_str());
            need(files[i].temp_name, (who + ".temp_name").c_str());
            need(files[i].checksum, (who + ".checksum").c_str());
            fs[i] = {files[i].name, files[i].temp_name, files[i].size, files[i].checksum};
        }
        db->slot = ckptdb::commit_shards(db->cat, kind, epoch, step, meta, fs);
        fill(out, db->slot);
    });
}

int ckptdb_dir_begin(ckptdb_dir_save **out, ckptdb_catalog *db, const char *kind, int64_t epoch, int64_t step,
                     const ckptdb_save_options *opts) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(db, "db");
        need(kind, "kind");
        SaveOptions o = read_save_options(opts);
        auto s = std::make_unique<ckptdb_dir_save>();
        s->save = ckptdb::DirSave::begin(db->cat, kind, epoch, step, o.name, o.metadata);
        *out = s.release();
    });
}

int ckptdb_dir_get_info(ckptdb_dir_info *out, ckptdb_dir_save *save) {
    return guard([&] {
        need(out, "out");
        need(save, "save");
        if (out->struct_size < offsetof(ckptdb_dir_info, id))
            throw Error(CKPTDB_EMISUSE, "ckptdb_dir_info.struct_size is not set (use CKPTDB_DIR_INFO_INIT)");
        size_t n = out->struct_size;
#define CKPTDB_FILL(field, value) \
    if (offsetof(ckptdb_dir_info, field) + sizeof(out->field) <= n) out->field = (value)
        CKPTDB_FILL(id, save->save->id());
        CKPTDB_FILL(name, save->save->name().c_str());
        CKPTDB_FILL(temp_name, save->save->temp_name().c_str());
#undef CKPTDB_FILL
        out->struct_size = n < sizeof(ckptdb_dir_info) ? n : sizeof(ckptdb_dir_info);
    });
}

int ckptdb_dir_file_begin(ckptdb_shard **out, const char *dir, const char *temp_name, const char *name, int64_t rank) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(dir, "dir");
        need(temp_name, "temp_name");
        need(name, "name");
        auto s = std::make_unique<ckptdb_shard>();
        s->shard = ckptdb::Shard::begin_in(dir, temp_name, name, rank);
        *out = s.release();
    });
}

int ckptdb_dir_commit(ckptdb_entry *out, ckptdb_dir_save *save, const ckptdb_dir_file *files, size_t count) {
    return guard([&] {
        need(save, "save");
        if (count) need(files, "files");
        need_entry(out);
        clear(out);
        std::vector<ckptdb::DirFileInfo> fs(count);
        for (size_t i = 0; i < count; i++) {
            std::string who = "files[" + std::to_string(i) + "]";
            check_version(files[i].version, CKPTDB_DIR_FILE_VERSION, who + " (ckptdb_dir_file)");
            need(files[i].name, (who + ".name").c_str());
            need(files[i].checksum, (who + ".checksum").c_str());
            fs[i] = {files[i].name, files[i].rank, files[i].size, files[i].checksum};
        }
        save->slot = save->save->commit(fs);
        fill(out, save->slot);
    });
}

int ckptdb_dir_abort(ckptdb_dir_save *save) {
    return guard([&] {
        need(save, "save");
        save->save->abort("aborted by the caller");
    });
}

void ckptdb_dir_free(ckptdb_dir_save *save) {
    try {
        delete save;
    } catch (...) {}
}

int ckptdb_dir_begin_in_place(ckptdb_dir_save **out, ckptdb_catalog *db, const char *kind, int64_t epoch, int64_t step,
                              const ckptdb_save_options *opts) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(db, "db");
        need(kind, "kind");
        SaveOptions o = read_save_options(opts);
        if (!o.name)
            throw Error(CKPTDB_EINVAL,
                        "an in-place directory save needs a name (ckptdb_save_options.name): the directory the "
                        "caller writes into");
        auto s = std::make_unique<ckptdb_dir_save>();
        s->save = ckptdb::DirSave::begin_in_place(db->cat, kind, epoch, step, *o.name, o.metadata);
        *out = s.release();
    });
}

int ckptdb_dir_commit_in_place(ckptdb_entry *out, ckptdb_dir_save *save, const char *metadata) {
    return guard([&] {
        need(save, "save");
        need_entry(out);
        clear(out);
        std::optional<std::string> meta;
        if (metadata) meta = std::string(metadata);
        save->slot = save->save->commit_in_place(meta);
        fill(out, save->slot);
    });
}

int ckptdb_latest(ckptdb_entry *out, ckptdb_catalog *db, const char *kind, unsigned int verify_flags) {
    return guard([&] {
        need(out, "out");
        need(db, "db");
        need_entry(out);
        clear(out);
        auto mode = verify_mode(verify_flags);
        std::optional<std::string> k = opt_str(kind);
        std::optional<Entry> found = db->cat->latest(k, mode);
        if (!found)
            throw Error(CKPTDB_ENOTFOUND, std::string("no complete checkpoint") +
                                              (kind ? " of kind '" + *k + "'" : "") +
                                              (mode == ckptdb::Catalog::Verify::none ? "" : " that verifies") +
                                              " in '" + db->cat->dir().path + "'");
        db->slot = std::move(*found);
        fill(out, db->slot);
    });
}

int ckptdb_get(ckptdb_entry *out, ckptdb_catalog *db, int64_t id) {
    return guard([&] {
        need(out, "out");
        need(db, "db");
        need_entry(out);
        clear(out);
        db->slot = db->cat->entry(id);
        fill(out, db->slot);
    });
}

// The id of the newest row named name: the one lookup of the *_by_name
// calls (CKPTDB_ENOTFOUND naming the name and the directory).
static int64_t id_named(ckptdb_catalog *db, const char *name) {
    auto id = db->cat->id_by_name(name);
    if (!id)
        throw Error(CKPTDB_ENOTFOUND,
                    std::string("no checkpoint named '") + name + "' in '" + db->cat->dir().path + "'");
    return *id;
}

int ckptdb_get_by_name(ckptdb_entry *out, ckptdb_catalog *db, const char *name) {
    return guard([&] {
        need(out, "out");
        need(db, "db");
        need(name, "name");
        need_entry(out);
        clear(out);
        db->slot = db->cat->entry(id_named(db, name));
        fill(out, db->slot);
    });
}

int ckptdb_mark_resumed(ckptdb_catalog *db, int64_t id) {
    return guard([&] {
        need(db, "db");
        db->cat->mark_resumed(id);
    });
}

static void read_filter(const ckptdb_filter *f, unsigned &mask, std::optional<std::string> &kind) {
    mask = 0;
    kind.reset();
    if (!f) return;
    check_version(f->version, CKPTDB_FILTER_VERSION, "ckptdb_filter");
    const unsigned all = CKPTDB_STATUS_BIT(CKPTDB_STATUS_WRITING) | CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE) |
                         CKPTDB_STATUS_BIT(CKPTDB_STATUS_CORRUPT) | CKPTDB_STATUS_BIT(CKPTDB_STATUS_ABORTED) |
                         CKPTDB_STATUS_BIT(CKPTDB_STATUS_PRUNED);
    if (f->status_mask & ~all) throw Error(CKPTDB_EINVAL, "unknown status bits in the filter");
    mask = f->status_mask;
    kind = opt_str(f->kind);
    // A kind no save can have would match nothing, silently: refused by the
    // one kind rule (NULL is the way to ask for every kind).
    if (kind) {
        try {
            ckptdb::check_kind(*kind);
        } catch (const Error &e) {
            throw Error(e.code(), std::string("ckptdb_filter.kind: ") + e.what() + " (NULL lists every kind)");
        }
    }
}

int ckptdb_list(ckptdb_catalog *db, const ckptdb_filter *filter, ckptdb_entry_cb cb, void *payload) {
    return guard([&] {
        need(db, "db");
        if (!cb) throw Error(CKPTDB_EMISUSE, "cb is NULL");
        unsigned mask;
        std::optional<std::string> kind;
        read_filter(filter, mask, kind);
        db->cat->for_each_entry(mask, kind, [&](const Entry &e) {
            ckptdb_entry ce = CKPTDB_ENTRY_INIT;
            fill(&ce, e);
            call_back("ckptdb_list", cb, &ce, payload);
            return true;
        });
    });
}

int ckptdb_cursor_open(ckptdb_cursor **out, ckptdb_catalog *db, const ckptdb_filter *filter) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(db, "db");
        auto c = std::make_unique<ckptdb_cursor>();
        c->cat = db->cat;
        read_filter(filter, c->mask, c->kind);
        *out = c.release();
    });
}

int ckptdb_cursor_next(ckptdb_entry *out, ckptdb_cursor *c) {
    bool done = false;
    int rc = guard([&] {
        need(out, "out");
        need(c, "cursor");
        need_entry(out);
        clear(out);
        if (c->pos == c->page.size() && !c->exhausted) {
            c->page = c->cat->entries_page(c->after, c->mask, c->kind, ckptdb::kPageRows);
            c->pos = 0;
            if (c->page.size() < static_cast<size_t>(ckptdb::kPageRows)) c->exhausted = true;
        }
        if (c->pos == c->page.size()) {
            done = true;
            return;
        }
        c->slot = std::move(c->page[c->pos++]);
        c->after = c->slot.id;
        fill(out, c->slot);
    });
    return rc ? rc : (done ? CKPTDB_DONE : CKPTDB_OK);
}

void ckptdb_cursor_free(ckptdb_cursor *c) { delete c; }

int ckptdb_verify_all(int64_t *out_checked, int64_t *out_corrupt, ckptdb_catalog *db, ckptdb_verify_cb cb,
                      void *payload) {
    ckptdb::VerifyTotals totals;
    if (out_checked) *out_checked = 0;
    if (out_corrupt) *out_corrupt = 0;
    int rc = guard([&] {
        need(db, "db");
        std::function<bool(const Entry &, const ckptdb::Verdict &)> each;
        if (cb)
            each = [&](const Entry &e, const ckptdb::Verdict &v) {
                ckptdb_entry ce = CKPTDB_ENTRY_INIT;
                fill(&ce, e);
                call_back("ckptdb_verify_all", cb, &ce, v.code, payload);
                return true;
            };
        db->cat->verify_all(each, totals);
    });
    if (out_checked) *out_checked = totals.checked;
    if (out_corrupt) *out_corrupt = totals.corrupt;
    if (rc) return rc;
    if (totals.corrupt)
        return set_error(CKPTDB_ECORRUPT, std::to_string(totals.corrupt) + " of " + std::to_string(totals.checked) +
                                              " checkpoints failed verification and were marked corrupt");
    return CKPTDB_OK;
}

int ckptdb_reader_open(ckptdb_reader **out, ckptdb_catalog *db, int64_t id) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(db, "db");
        auto r = std::make_unique<ckptdb_reader>();
        r->reader = std::make_unique<ckptdb::Reader>(db->cat, id);
        *out = r.release();
    });
}

int ckptdb_reader_read(size_t *out_len, ckptdb_reader *reader, void *buf, size_t cap) {
    if (out_len) *out_len = 0;
    return guard([&] {
        need(reader, "reader");
        need(out_len, "out_len");
        if (cap) need(buf, "buf");
        *out_len = reader->reader->read(buf, cap);
    });
}

int ckptdb_reader_open_rank(ckptdb_reader **out, ckptdb_catalog *db, int64_t id, int64_t rank) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(db, "db");
        auto r = std::make_unique<ckptdb_reader>();
        r->reader = std::make_unique<ckptdb::Reader>(db->cat, id, rank);
        *out = r.release();
    });
}

int ckptdb_reader_open_file(ckptdb_reader **out, ckptdb_catalog *db, int64_t id, const char *name) {
    if (out) *out = nullptr;
    return guard([&] {
        need(out, "out");
        need(db, "db");
        need(name, "name");
        auto r = std::make_unique<ckptdb_reader>();
        r->reader = std::make_unique<ckptdb::Reader>(db->cat, id, std::string(name));
        *out = r.release();
    });
}

void ckptdb_reader_close(ckptdb_reader *reader) { delete reader; }

int ckptdb_check_trusted_fd(int fd, const char *path, unsigned int flags) {
    return guard([&] {
        if (flags & ~CKPTDB_OPEN_TRUST_SHARED) throw Error(CKPTDB_EINVAL, "unknown flags " + std::to_string(flags));
        std::string name = path ? std::string(path) : "fd " + std::to_string(fd);
        struct stat st;
        if (fd < 0 || ::fstat(fd, &st) != 0)
            throw Error(CKPTDB_EINVAL, "fd " + std::to_string(fd) + (path ? " ('" + name + "')" : std::string()) +
                                           " is not an open file descriptor");
        if (!S_ISREG(st.st_mode)) throw Error(CKPTDB_EINVAL, "'" + name + "' is not a regular file");
        if (!(flags & CKPTDB_OPEN_TRUST_SHARED)) ckptdb::require_trusted(st, "file", name);
    });
}

// Retention::defaults' keep_last as the C ABI's list, built once and kept
// while the library is loaded: what ckptdb_retention_init points at.
static const std::vector<ckptdb_keep_kind> &default_keep_last() {
    static const std::map<std::string, int> kinds = ckptdb::Retention::defaults().keep_last;
    static const std::vector<ckptdb_keep_kind> list = [] {
        std::vector<ckptdb_keep_kind> v;
        for (const auto &kv : kinds) v.push_back({CKPTDB_KEEP_KIND_VERSION, kv.first.c_str(), kv.second});
        return v;
    }();
    return list;
}

int ckptdb_retention_init(ckptdb_retention *policy, unsigned int version) {
    return guard([&] {
        need(policy, "policy");
        check_version(version, CKPTDB_RETENTION_VERSION, "ckptdb_retention");
        // A version 1 caller's struct ends before prune_corrupt.
        const ckptdb_retention defaults = CKPTDB_RETENTION_INIT;
        std::memcpy(policy, &defaults, version >= 2 ? sizeof defaults : offsetof(ckptdb_retention, prune_corrupt));
        policy->version = version;
        const std::vector<ckptdb_keep_kind> &keep = default_keep_last();
        policy->keep_last = keep.data();
        policy->keep_last_count = keep.size();
    });
}

static ckptdb::Retention to_retention(const ckptdb_retention &p) {
    check_version(p.version, CKPTDB_RETENTION_VERSION, "ckptdb_retention");
    // (prune_corrupt is read at the end, from version 2 on.)
    ckptdb::Retention r = ckptdb::Retention::defaults();
    if (p.keep_last) {
        r.keep_last.clear();
        for (size_t i = 0; i < p.keep_last_count; i++) {
            std::string who = "ckptdb_retention.keep_last[" + std::to_string(i) + "]";
            check_version(p.keep_last[i].version, CKPTDB_KEEP_KIND_VERSION, who + " (ckptdb_keep_kind)");
            need(p.keep_last[i].kind, (who + ".kind").c_str());
            if (!r.keep_last.emplace(p.keep_last[i].kind, p.keep_last[i].count).second)
                throw Error(CKPTDB_EINVAL,
                            std::string("retention keep_last lists kind '") + p.keep_last[i].kind + "' twice");
        }
    } else if (p.keep_last_count != 0) {
        throw Error(CKPTDB_EINVAL, "retention keep_last is NULL but keep_last_count is not 0");
    }
    r.keep_last_default = p.keep_last_default;
    r.keep_every_n_epochs = p.keep_every_n_epochs;
    r.keep_interval_seconds = p.keep_interval_seconds;
    if (p.best_metric) r.best_metric = std::string(p.best_metric);
    if (p.best_mode != CKPTDB_BEST_MIN && p.best_mode != CKPTDB_BEST_MAX)
        throw Error(CKPTDB_EINVAL, "retention best_mode must be CKPTDB_BEST_MIN or CKPTDB_BEST_MAX, got " +
                                       std::to_string(p.best_mode));
    r.best_max = p.best_mode == CKPTDB_BEST_MAX;
    r.best_k = p.best_k;
    r.max_bytes = p.max_bytes;
    r.prune_corrupt = p.version >= 2 && p.prune_corrupt != 0;
    r.validate();
    return r;
}

int ckptdb_set_retention(ckptdb_catalog *db, const ckptdb_retention *policy) {
    return guard([&] {
        need(db, "db");
        if (policy)
            db->cat->set_retention(to_retention(*policy));
        else
            db->cat->set_retention(std::nullopt);
    });
}

int ckptdb_prune(int64_t *out_count, int64_t *out_bytes, ckptdb_catalog *db, const ckptdb_retention *policy,
                 int dry_run, ckptdb_prune_cb cb, void *payload) {
    if (out_count) *out_count = 0;
    if (out_bytes) *out_bytes = 0;
    return guard([&] {
        need(db, "db");
        ckptdb::Retention r =
            policy ? to_retention(*policy) : db->cat->retention().value_or(ckptdb::Retention::defaults());
        std::vector<ckptdb::PruneItem> victims = db->cat->prune(r, dry_run != 0);
        if (out_count) *out_count = static_cast<int64_t>(victims.size());
        if (out_bytes) *out_bytes = ckptdb::total_size(victims);
        if (!cb) return;
        for (const auto &v : victims) {
            ckptdb_prune_item item{sizeof(ckptdb_prune_item), v.id, v.name.c_str(), v.size, v.rule.c_str()};
            call_back("ckptdb_prune", cb, &item, payload);
        }
    });
}

int ckptdb_pin(ckptdb_catalog *db, int64_t id, int pinned) {
    return guard([&] {
        need(db, "db");
        db->cat->pin(id, pinned != 0);
    });
}

int ckptdb_pin_by_name(ckptdb_catalog *db, const char *name, int pinned) {
    return guard([&] {
        need(db, "db");
        need(name, "name");
        db->cat->pin(id_named(db, name), pinned != 0);
    });
}

int ckptdb_remove(ckptdb_catalog *db, int64_t id) {
    return guard([&] {
        need(db, "db");
        db->cat->remove(id);
    });
}

int ckptdb_remove_by_name(ckptdb_catalog *db, const char *name) {
    return guard([&] {
        need(db, "db");
        need(name, "name");
        db->cat->remove(id_named(db, name));
    });
}

int ckptdb_run_progress(ckptdb_catalog *db, int64_t epoch, int64_t step) {
    return guard([&] {
        need(db, "db");
        db->cat->run_progress(epoch, step);
    });
}

int ckptdb_files(ckptdb_catalog *db, int64_t id, ckptdb_file_cb cb, void *payload) {
    return guard([&] {
        need(db, "db");
        if (!cb) throw Error(CKPTDB_EMISUSE, "cb is NULL");
        db->cat->entry(id);  // CKPTDB_ENOTFOUND for an unknown id
        for (const ckptdb::FileRow &f : db->cat->files(id)) {
            ckptdb_file out{sizeof(ckptdb_file), f.rank, f.name.c_str(), f.path.c_str(), f.size, f.checksum.c_str()};
            call_back("ckptdb_files", cb, &out, payload);
        }
    });
}

int ckptdb_disk_usage(ckptdb_catalog *db, ckptdb_usage_cb cb, void *payload) {
    return guard([&] {
        need(db, "db");
        if (!cb) throw Error(CKPTDB_EMISUSE, "cb is NULL");
        for (const ckptdb::UsageRow &u : db->cat->disk_usage()) {
            ckptdb_usage out{sizeof(ckptdb_usage), u.kind.c_str(), u.status, u.checkpoints, u.bytes};
            call_back("ckptdb_disk_usage", cb, &out, payload);
        }
    });
}

int ckptdb_events(ckptdb_catalog *db, int64_t checkpoint_id, int64_t run_id, ckptdb_event_row_cb cb, void *payload) {
    return guard([&] {
        need(db, "db");
        if (!cb) throw Error(CKPTDB_EMISUSE, "cb is NULL");
        db->cat->for_each_event(checkpoint_id, run_id, [&](const ckptdb::EventRow &e) {
            ckptdb_event out{sizeof(ckptdb_event), e.id, e.at.c_str(), e.run_id, e.checkpoint_id, e.event.c_str(),
                             e.detail.c_str()};
            call_back("ckptdb_events", cb, &out, payload);
            return true;
        });
    });
}

int ckptdb_runs(ckptdb_catalog *db, ckptdb_run_cb cb, void *payload) {
    return guard([&] {
        need(db, "db");
        if (!cb) throw Error(CKPTDB_EMISUSE, "cb is NULL");
        for (const ckptdb::RunRow &r : db->cat->runs()) {
            ckptdb_run out{sizeof(ckptdb_run),
                           r.id,
                           r.host.c_str(),
                           r.pid,
                           r.started_at.c_str(),
                           r.ended_at.c_str(),
                           r.exit_reason.c_str(),
                           r.slurm_job_id.c_str(),
                           r.slurm_array_job_id.c_str(),
                           r.slurm_array_task_id.c_str(),
                           r.slurm_restart_count,
                           r.resumed_from,
                           r.last_step,
                           r.last_saved_step,
                           r.saves,
                           r.steps_lost};
            call_back("ckptdb_runs", cb, &out, payload);
        }
    });
}

int ckptdb_verify_progress(ckptdb_catalog *db, int64_t id, ckptdb_progress_cb cb, void *payload) {
    return guard([&] {
        need(db, "db");
        std::function<bool(int64_t, int64_t)> progress;
        if (cb)
            progress = [&](int64_t done, int64_t total) {
                call_back("ckptdb_verify_progress", cb, done, total, payload);
                return true;
            };
        db->cat->verify(id, progress);
    });
}

int ckptdb_verify(ckptdb_catalog *db, int64_t id) { return ckptdb_verify_progress(db, id, nullptr, nullptr); }

static void emit_fsck(const char *function, ckptdb_fsck_cb cb, void *payload,
                      const std::vector<ckptdb::FsckItem> &items) {
    if (!cb) return;
    for (const ckptdb::FsckItem &it : items) {
        ckptdb_fsck_item out{sizeof(ckptdb_fsck_item), it.kind.c_str(),   it.name.c_str(),
                             it.checkpoint_id,         it.detail.c_str(), it.action.c_str()};
        call_back(function, cb, &out, payload);
    }
}

int ckptdb_fsck(int64_t *out_problems, ckptdb_catalog *db, int repair, ckptdb_fsck_cb cb, void *payload) {
    if (out_problems) *out_problems = 0;
    return guard([&] {
        need(db, "db");
        std::vector<ckptdb::FsckItem> items = db->cat->fsck(repair != 0);
        if (out_problems) *out_problems = ckptdb::count_problems(items);
        emit_fsck("ckptdb_fsck", cb, payload, items);
    });
}

int ckptdb_fsck_dir(int64_t *out_problems, int *out_rebuilt, const char *dir, const ckptdb_open_options *opts,
                    int repair, ckptdb_fsck_cb cb, void *payload) {
    if (out_problems) *out_problems = 0;
    if (out_rebuilt) *out_rebuilt = 0;
    return guard([&] {
        need(dir, "dir");
        ckptdb::FsckReport rep = ckptdb::Catalog::fsck_dir(dir, open_options(opts), repair != 0);
        if (out_problems) *out_problems = rep.problems;
        if (out_rebuilt) *out_rebuilt = rep.rebuilt ? 1 : 0;
        emit_fsck("ckptdb_fsck_dir", cb, payload, rep.items);
    });
}

// ckptdb_rebuild and ckptdb_adopt: one procedure (Catalog::rebuild), two refusals.
static int build_catalog(int64_t *out_rows, const char *dir, const ckptdb_open_options *opts, ckptdb_rebuild_cb cb,
                         void *payload, ckptdb::Catalog::Adoption how) {
    if (out_rows) *out_rows = 0;
    const char *function = how == ckptdb::Catalog::Adoption::adopt ? "ckptdb_adopt" : "ckptdb_rebuild";
    return guard([&] {
        need(dir, "dir");
        std::function<void(const ckptdb::FsckItem &)> report;
        if (cb)
            report = [&](const ckptdb::FsckItem &it) {
                ckptdb_rebuild_item out{
                    sizeof(ckptdb_rebuild_item), it.kind.c_str(),  it.name.c_str(), it.checkpoint_id,
                    it.detail.c_str(),           it.action.c_str()};
                call_back(function, cb, &out, payload);
            };
        int64_t rows = ckptdb::Catalog::rebuild(dir, open_options(opts), report, how);
        if (out_rows) *out_rows = rows;
    });
}

int ckptdb_rebuild(int64_t *out_rows, const char *dir, const ckptdb_open_options *opts, ckptdb_rebuild_cb cb,
                   void *payload) {
    return build_catalog(out_rows, dir, opts, cb, payload, ckptdb::Catalog::Adoption::rebuild);
}

int ckptdb_adopt(int64_t *out_rows, const char *dir, const ckptdb_open_options *opts, ckptdb_rebuild_cb cb,
                 void *payload) {
    return build_catalog(out_rows, dir, opts, cb, payload, ckptdb::Catalog::Adoption::adopt);
}

int ckptdb_sync(int64_t *out_copied, int64_t *out_bytes, const char *src, const char *dst,
                const ckptdb_sync_options *opts) {
    if (out_copied) *out_copied = 0;
    if (out_bytes) *out_bytes = 0;
    return guard([&] {
        need(src, "src");
        need(dst, "dst");
        ckptdb::SyncOptions so;
        if (opts) {
            check_version(opts->version, CKPTDB_SYNC_OPTIONS_VERSION, "ckptdb_sync_options");
            so.delete_pruned = opts->delete_pruned != 0;
            if (opts->progress) {
                ckptdb_progress_cb p = opts->progress;
                void *pp = opts->progress_payload;
                so.progress = [p, pp](int64_t done, int64_t total) {
                    call_back("ckptdb_sync", p, done, total, pp);
                    return true;
                };
            }
            if (opts->on_item) {
                ckptdb_sync_cb cb = opts->on_item;
                void *ip = opts->item_payload;
                so.on_item = [cb, ip](const ckptdb::FsckItem &it) {
                    ckptdb_sync_item out{sizeof(ckptdb_sync_item), it.kind.c_str(), it.name.c_str(), it.checkpoint_id,
                                         it.detail.c_str()};
                    call_back("ckptdb_sync", cb, &out, ip);
                };
            }
        }
        ckptdb::SyncResult r = ckptdb::sync_dirs(src, dst, so);
        if (out_copied) *out_copied = r.copied;
        if (out_bytes) *out_bytes = r.bytes;
        if (r.failed)
            throw Error(CKPTDB_ECORRUPT, std::to_string(r.failed) + " checkpoint(s) of '" + std::string(src) +
                                             "' failed their checksum and were not copied");
    });
}

}  // extern "C"

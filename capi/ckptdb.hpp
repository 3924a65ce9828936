// ckptdb.hpp - a header-only C++17 RAII wrapper over the C ABI (ckptdb.h).
//
// Its names live in namespace ckptdbxx (as libpqxx's in pqxx), apart from
// anything named ckptdb: ckptdbxx::catalog, ckptdbxx::save, ckptdbxx::entry.
// Failures throw ckptdbxx::error, which carries the status code and the
// library's detailed message. Entries are copied into owning ckptdbxx::entry
// values, so no borrowed string outlives its call.
#ifndef CKPTDB_HPP
#define CKPTDB_HPP

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ckptdb.h"

namespace ckptdbxx {

class error : public std::runtime_error {
public:
    error(int code, const std::string &msg) : std::runtime_error(msg), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

namespace detail {
inline void check(int rc) {
    if (rc != CKPTDB_OK && rc != CKPTDB_DONE) {
        const char *m = ckptdb_last_error();
        throw error(rc, std::string(ckptdb_strerror(rc)) + (m && *m ? std::string(": ") + m : std::string()));
    }
}
inline std::string str(const char *s) { return s ? std::string(s) : std::string(); }
}  // namespace detail

struct entry {
    int64_t id = 0;
    std::string name, path, kind;
    int64_t epoch = 0, step = 0, size = -1;
    std::string checksum;
    int status = 0;
    bool pinned = false;
    int64_t run_id = 0, file_count = 0;
    std::string created_at, committed_at, deleted_at, metadata;

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
        return o;
    }
    const char *status_name() const { return ckptdb_status_name(status); }
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
    struct close_db {
        void operator()(ckptdb_catalog *d) const { ckptdb_close(d); }
    };
    std::unique_ptr<ckptdb_catalog, close_db> db_;
};

}  // namespace ckptdbxx

#endif  // CKPTDB_HPP

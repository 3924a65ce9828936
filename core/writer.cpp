#include "writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <nlohmann/json.hpp>

#include "ckptdb.h"
#include "error.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "lease.hpp"
#include "names.hpp"

namespace ckptdb {

HookFn g_test_hook = nullptr;

std::string normalized_metadata(const std::optional<std::string> &metadata) {
    if (!metadata) return "{}";
    // Limits first, on the text: the JSON library parses, prints and frees
    // nested values recursively, so a deep enough document would overflow
    // the stack. Metadata is a row's description; data goes in the file.
    if (metadata->size() > kMaxMetadataBytes)
        fail(CKPTDB_EINVAL, "metadata is " + std::to_string(metadata->size()) + " bytes, more than the limit of " +
                                std::to_string(kMaxMetadataBytes) + " (1 MiB); put large data in the checkpoint itself");
    {
        size_t depth = 0, deepest = 0;
        bool in_string = false, escaped = false;
        for (char c : *metadata) {
            if (in_string) {
                if (escaped) escaped = false;
                else if (c == '\\') escaped = true;
                else if (c == '"') in_string = false;
                continue;
            }
            if (c == '"') in_string = true;
            else if (c == '{' || c == '[') deepest = std::max(deepest, ++depth);
            else if ((c == '}' || c == ']') && depth > 0) depth--;
            if (deepest > kMaxMetadataDepth)
                fail(CKPTDB_EINVAL, "metadata nests deeper than the limit of " + std::to_string(kMaxMetadataDepth) +
                                        " levels of objects and arrays");
        }
    }
    nlohmann::json j = nlohmann::json::parse(*metadata, nullptr, false);
    if (j.is_discarded()) fail(CKPTDB_EINVAL, "metadata is not valid JSON: '" + metadata->substr(0, 80) + "'");
    if (!j.is_object()) fail(CKPTDB_EINVAL, "metadata must be a JSON object, got " + std::string(j.type_name()));
    return j.dump();
}

static bool name_taken(Db &db, const std::string &name) {
    Db::Query q(db, sql::Stmt::name_taken);
    q.bind(1, name);
    return q.step();
}

std::unique_ptr<Save> Save::begin(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch, int64_t step,
                                  const std::optional<std::string> &name,
                                  const std::optional<std::string> &metadata) {
    // Bad input is refused before anything is written.
    if (cat->readonly()) fail(CKPTDB_EREADONLY, "cannot save: the catalog was opened read-only");
    check_kind(kind);
    if (epoch < 0) fail(CKPTDB_EINVAL, "epoch must be >= 0, got " + std::to_string(epoch));
    if (step < 0) fail(CKPTDB_EINVAL, "step must be >= 0, got " + std::to_string(step));
    if (name) {
        check_name(*name);
        if (cat->reserved_name(*name)) fail(CKPTDB_EINVAL, "checkpoint name '" + *name + "' is the catalog's own file");
    }
    std::string meta = normalized_metadata(metadata);
    cat->make_room(kind);  // with a byte budget: prune first, or refuse before anything is written

    std::unique_ptr<Save> s(new Save(cat));
    s->kind_ = kind;
    s->temp_ = random_temp_name();
    s->temp_path_ = cat->dir().join(s->temp_);
    cat->write([&](Db &db) {
        std::string chosen;
        if (name) {
            if (name_taken(db, *name))
                fail(CKPTDB_EEXISTS, "checkpoint name '" + *name + "' is already used by a live checkpoint in '" +
                                         cat->dir().path + "'");
            if (name_exists(cat->dir(), *name))
                fail(CKPTDB_EEXISTS, "a file named '" + *name + "' already exists in '" + cat->dir().path +
                                         "' and the catalog does not own it");
            chosen = *name;
        } else {
            std::string base = default_name(kind, epoch, step, static_cast<int64_t>(::time(nullptr)));
            chosen = base;
            for (int n = 2; name_taken(db, chosen) || name_exists(cat->dir(), chosen) || cat->reserved_name(chosen); n++)
                chosen = with_suffix(base, n);
        }
        int64_t run = cat->run_id_in_tx(db);
        Db::Query(db, sql::Stmt::checkpoint_insert)
            .bind(1, chosen).bind(2, kind).bind(3, epoch).bind(4, step).bind(5, run).bind(6, meta)
            .run();
        s->id_ = db.last_insert_rowid();
        Db::Query(db, sql::Stmt::file_insert).bind(1, s->id_).bind(2, int64_t(0)).bind(3, chosen).bind(4, s->temp_).run();
        cat->log_event(db, s->id_, "begun", kind + " epoch " + std::to_string(epoch) + " step " + std::to_string(step));
        s->name_ = chosen;
    });
    hook("begun");
    try {
        s->fd_ = create_exclusive(cat->dir(), s->temp_);
        hold_writer_lock(s->fd_.get());
        s->renewed_ = lease_clock();  // the creation stamped the mtime
    } catch (const Error &e) {
        s->err_code_ = e.code();
        s->err_msg_ = e.what();
        s->cleanup(e.what(), false);
        throw;
    }
    hook("created");
    return s;
}

Save::~Save() {
    if (state_ == State::streaming || state_ == State::external) cleanup("the save was released without a commit", false);
}

void Save::check_usable(const char *what) {
    if (state_ == State::failed) throw Error(err_code_, err_msg_);
    if (state_ == State::committed) fail(CKPTDB_EMISUSE, std::string("cannot ") + what + ": the save was already committed");
    if (state_ == State::aborted) fail(CKPTDB_EMISUSE, std::string("cannot ") + what + ": the save was aborted");
}

void Save::cleanup(const std::string &why, bool renamed) {
    state_ = err_code_ ? State::failed : State::aborted;
    fd_.reset();
    unlink_name(cat_->dir(), temp_);
    if (renamed) unlink_name(cat_->dir(), name_);
    try {
        cat_->write([&](Db &db) {
            Db::Query(db, sql::Stmt::checkpoint_abort).bind(1, id_).run();
            if (db.changes() == 0) return;
            Db::Query(db, sql::Stmt::files_clear_temp).bind(1, id_).run();
            cat_->log_event(db, id_, "aborted", why);
        });
    } catch (...) {
        // The row stays "writing"; recovery aborts it once this process is gone.
    }
}

void Save::write(const void *data, size_t len) {
    check_usable("write");
    if (state_ == State::external)
        fail(CKPTDB_EMISUSE, "cannot mix ckptdb_save_write with a caller-written temp file");
    if (len == 0) return;
    try {
        write_all(fd_.get(), data, len, temp_path_);
        // The disk works while the caller is still producing bytes.
        start_writeback(fd_.get(), size_ + static_cast<int64_t>(len), flushed_, temp_path_);
        renew_lease(fd_.get(), renewed_, false);
    } catch (const Error &e) {
        err_code_ = e.code();
        err_msg_ = e.what();
        cleanup(e.what(), false);
        throw;
    }
    hash_.update(data, len);
    size_ += static_cast<int64_t>(len);
    hook("wrote");
}

const std::string &Save::temp_path() {
    check_usable("hand out the temp path");
    if (state_ == State::streaming && size_ > 0)
        fail(CKPTDB_EMISUSE, "cannot hand out the temp file after bytes were streamed into it");
    state_ = State::external;
    return temp_path_;
}

int Save::fd() {
    temp_path();
    return fd_.get();
}

Entry Save::commit() {
    check_usable("commit");
    const Dir &dir = cat_->dir();
    bool renamed = false;
    std::vector<int64_t> marked;
    try {
        if (state_ == State::external) {
            // The caller wrote the file. If it replaced the temp file (write
            // to a new file, rename over), read the file that has the name now.
            struct stat by_name, by_fd;
            if (io::ops().fstatat(dir.fd.get(), temp_.c_str(), &by_name, AT_SYMLINK_NOFOLLOW) != 0)
                fail_os("the temp file vanished before commit:", temp_path_, errno);
            if (!S_ISREG(by_name.st_mode)) fail(CKPTDB_EIO, "temp file '" + temp_path_ + "' is no longer a regular file");
            if (io::ops().fstat(fd_.get(), &by_fd) != 0) fail_os("cannot stat", temp_path_, errno);
            if (by_fd.st_ino != by_name.st_ino || by_fd.st_dev != by_name.st_dev) {
                int err = 0;
                UniqueFd f = open_read(dir, temp_, err);
                if (!f) fail_os("cannot open", temp_path_, err);
                fd_ = std::move(f);
            }
            renew_lease(fd_.get(), renewed_, true);  // hashing a large file takes a while
            size_ = hash_fd(fd_.get(), hash_, temp_path_);
        }
        // The lease is renewed right before the fsync and again after it, so
        // that neither a long fsync nor the commit looks like a dead writer.
        renew_lease(fd_.get(), renewed_, true);
        sync_fd(fd_.get(), temp_path_);
        renew_lease(fd_.get(), renewed_, true);
        if (state_ == State::streaming) {
            // The bytes went through our descriptor: the temp name must still
            // be that file, or the rename would install whatever was put
            // there (a symlink out of the directory, another file).
            struct stat by_name, by_fd;
            if (io::ops().fstatat(dir.fd.get(), temp_.c_str(), &by_name, AT_SYMLINK_NOFOLLOW) != 0)
                fail_os("the temp file vanished before commit:", temp_path_, errno);
            if (io::ops().fstat(fd_.get(), &by_fd) != 0) fail_os("cannot stat", temp_path_, errno);
            if (!S_ISREG(by_name.st_mode) || by_fd.st_ino != by_name.st_ino || by_fd.st_dev != by_name.st_dev)
                fail(CKPTDB_EIO, "temp file '" + temp_path_ + "' was replaced by another " +
                                     (S_ISLNK(by_name.st_mode) ? "entry (a symbolic link)" : "file") +
                                     " before the rename; not committed");
        }
        fd_.reset();
        hook("synced");
        std::string sum = hash_.hex();
        // Seal: from here on recovery can tell a whole final file from a torn one.
        cat_->write([&](Db &db) {
            Db::Query(db, sql::Stmt::file_seal).bind(1, id_).bind(2, int64_t(0)).bind(3, size_).bind(4, sum).run();
            Db::Query(db, sql::Stmt::checkpoint_seal).bind(1, id_).bind(2, size_).bind(3, sum).run();
            if (db.changes() != 1) fail(CKPTDB_EDB, "checkpoint " + std::to_string(id_) + " is no longer being written");
        });
        hook("sealed");
        rename_noreplace(dir, temp_, name_);
        renamed = true;
        hook("renamed");
        sync_dir(dir);
        cat_->directory_synced();
        hook("dir_synced");
        cat_->write([&](Db &db) {
            Db::Query(db, sql::Stmt::checkpoint_complete).bind(1, id_).run();
            if (db.changes() != 1) {
                // A recovery judged this writer gone (it stalled past its
                // lease) and, every file being whole, finished the commit
                // itself: the checkpoint is complete and its file stays.
                Db::Query st(db, sql::Stmt::status_of);
                st.bind(1, id_);
                if (st.step() && st.text(0) == "complete") return;
                fail(CKPTDB_EDB, "checkpoint " + std::to_string(id_) + " is no longer being written");
            }
            Db::Query(db, sql::Stmt::files_clear_temp).bind(1, id_).run();
            cat_->log_event(db, id_, "committed", std::to_string(size_) + " bytes, xxh128 " + sum);
            // Rotation is chosen in the same transaction, once the new
            // checkpoint is complete (so it is the protected newest), and in a
            // savepoint: a failing rotation never fails this commit.
            marked = cat_->rotate_in_tx(db);
        });
    } catch (const Error &e) {
        err_code_ = e.code();
        err_msg_ = e.what();
        cleanup(e.what(), renamed);
        throw;
    }
    state_ = State::committed;
    hook("committed");
    cat_->after_commit(kind_, marked);  // unlink the rotation's victims, move the last-link
    return cat_->entry(id_);
}

void Save::abort() {
    if (state_ == State::committed) fail(CKPTDB_EMISUSE, "cannot abort: the save was already committed");
    if (state_ == State::streaming || state_ == State::external) cleanup("aborted by the caller", false);
}

Reader::Reader(std::shared_ptr<Catalog> cat, int64_t id, int64_t rank) : cat_(std::move(cat)), id_(id) {
    Entry e = cat_->entry(id);
    if (e.status != CKPTDB_STATUS_COMPLETE)
        fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(id) + " is " + status_text(e.status) + ", not complete");
    std::vector<FileRow> fs = cat_->files(id);
    const FileRow *f = nullptr;
    for (const FileRow &r : fs)
        if (r.rank == rank) f = &r;
    if (!f)
        fail(fs.empty() ? CKPTDB_ECORRUPT : CKPTDB_ENOTFOUND,
             "checkpoint " + std::to_string(id) + " has no file of rank " + std::to_string(rank) + " (it has " +
                 std::to_string(fs.size()) + ")");
    if (!name_problem(f->name).empty()) {
        cat_->mark_corrupt(id, "its file name in the catalog is invalid; not opened");
        fail(CKPTDB_ECORRUPT, "checkpoint " + std::to_string(id) + " names an invalid file; it was not opened");
    }
    path_ = cat_->dir().join(f->name);
    want_size_ = f->size;
    want_sum_ = f->checksum;
    int err = 0;
    fd_ = open_read(cat_->dir(), f->name, err);
    if (!fd_) {
        if (err == ENOENT || err == ELOOP || err == EINVAL) {
            std::string why = "'" + path_ + (err == ENOENT ? "' is missing" : "' is not a regular file");
            cat_->mark_corrupt(id, why);
            fail(CKPTDB_ECORRUPT, why);
        }
        fail_os("cannot open", path_, err);
    }
}

size_t Reader::read(void *buf, size_t cap) {
    if (checked_ || cap == 0) return 0;
    for (;;) {
        ssize_t n = io::ops().read(fd_.get(), buf, cap);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_os("cannot read", path_, errno);
        }
        if (n > 0) {
            hash_.update(buf, static_cast<size_t>(n));
            got_ += n;
            if (got_ > want_size_) {
                std::string why = "'" + path_ + "' is longer than the " + std::to_string(want_size_) + " bytes recorded";
                cat_->mark_corrupt(id_, why);
                fail(CKPTDB_ECORRUPT, why);
            }
            return static_cast<size_t>(n);
        }
        std::string got = hash_.hex();
        if (got_ != want_size_ || got != want_sum_) {
            std::string why = "'" + path_ + "' read back as " + std::to_string(got_) + " bytes with XXH3-128 " + got +
                              ", the catalog says " + std::to_string(want_size_) + " bytes, " + want_sum_;
            cat_->mark_corrupt(id_, why);
            fail(CKPTDB_ECORRUPT, why);
        }
        checked_ = true;
        return 0;
    }
}

}  // namespace ckptdb

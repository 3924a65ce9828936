#include "commit.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <nlohmann/json.hpp>

#include "ckptdb.h"
#include "error.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "dirsave.hpp"
#include "names.hpp"

namespace ckptdb {

void check_save_request(const Catalog &cat, const std::string &kind, int64_t epoch, int64_t step) {
    if (cat.readonly()) fail(CKPTDB_EREADONLY, "cannot save: the catalog was opened read-only");
    check_kind(kind);
    if (epoch < 0) fail(CKPTDB_EINVAL, "epoch must be >= 0, got " + std::to_string(epoch));
    if (step < 0) fail(CKPTDB_EINVAL, "step must be >= 0, got " + std::to_string(step));
}

void check_final_name(const Catalog &cat, const std::string &name, const std::string &who) {
    check_name(name);
    if (cat.reserved_name(name))
        fail(CKPTDB_EINVAL, (who.empty() ? "checkpoint name '" : who + ": '") + name + "' is the catalog's own file");
}

std::string normalized_metadata(const std::optional<std::string> &metadata) {
    if (!metadata) return "{}";
    // Limits first, on the text: the JSON library parses, prints and frees
    // nested values recursively, so a deep enough document would overflow
    // the stack. Metadata is a row's description; data goes in the file.
    if (metadata->size() > kMaxMetadataBytes)
        fail(CKPTDB_EINVAL, "metadata is " + std::to_string(metadata->size()) + " bytes, more than the limit of " +
                                std::to_string(kMaxMetadataBytes) +
                                " (1 MiB); put large data in the checkpoint itself");
    {
        size_t depth = 0, deepest = 0;
        bool in_string = false, escaped = false;
        for (char c : *metadata) {
            if (in_string) {
                if (escaped)
                    escaped = false;
                else if (c == '\\')
                    escaped = true;
                else if (c == '"')
                    in_string = false;
                continue;
            }
            if (c == '"')
                in_string = true;
            else if (c == '{' || c == '[')
                deepest = std::max(deepest, ++depth);
            else if ((c == '}' || c == ']') && depth > 0)
                depth--;
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

TempCheck check_temp(const Dir &dir, const std::string &name, int fd) {
    TempCheck t;
    struct stat by_name, by_fd;
    if (io::ops().fstatat(dir.fd.get(), name.c_str(), &by_name, AT_SYMLINK_NOFOLLOW) != 0) {
        t.err = errno;
        return t;
    }
    t.regular = S_ISREG(by_name.st_mode);
    t.symlink = S_ISLNK(by_name.st_mode);
    if (io::ops().fstat(fd, &by_fd) != 0) {
        t.fd_err = errno;
        return t;
    }
    t.ours = t.regular && by_fd.st_ino == by_name.st_ino && by_fd.st_dev == by_name.st_dev;
    return t;
}

void DurableWriter::write(int fd, const void *data, size_t len) {
    write_all(fd, data, len, path_);
    // The disk works while the caller is still producing bytes.
    start_writeback(fd, size_ + static_cast<int64_t>(len), flushed_, path_);
    hash_.update(data, len);
    size_ += static_cast<int64_t>(len);
}

void DurableWriter::hash_file(int fd) { size_ = hash_fd(fd, hash_, path_); }

void DurableWriter::sync(int fd) { sync_fd(fd, path_); }

int64_t Commit::total() const {
    int64_t n = 0;
    for (const CommitFile &f : layout_ == Layout::dir ? inner_ : files_) n += f.size;
    return n;
}

std::unique_ptr<Commit> Commit::begin(std::shared_ptr<Catalog> cat, Layout layout, const std::string &kind,
                                      int64_t epoch, int64_t step, const std::optional<std::string> &metadata,
                                      std::vector<CommitFile> files) {
    std::string meta = normalized_metadata(metadata);
    cat->make_room(kind);  // with a byte budget: prune first, or refuse before anything is written

    std::unique_ptr<Commit> c(new Commit(std::move(cat), layout));
    c->kind_ = kind;
    c->files_ = std::move(files);
    Catalog &cr = *c->cat_;
    const Dir &dir = cr.dir();
    cr.write([&](Store &db) {
        for (CommitFile &f : c->files_) {
            if (f.name.empty()) {
                // A single save without a name: the default one, suffixed
                // until free (a directory's has no extension).
                const int64_t now = static_cast<int64_t>(::time(nullptr));
                std::string base =
                    layout == Layout::dir ? default_stem(kind, epoch, step, now) : default_name(kind, epoch, step, now);
                f.name = base;
                for (int n = 2; db.name_taken(f.name) || name_exists(dir, f.name) || cr.reserved_name(f.name); n++)
                    f.name = with_suffix(base, n);
                continue;
            }
            if (db.name_taken(f.name))
                fail(CKPTDB_EEXISTS,
                     "checkpoint name '" + f.name + "' is already used by a live checkpoint in '" + dir.path + "'");
            if (name_exists(dir, f.name))
                fail(CKPTDB_EEXISTS, "a file named '" + f.name + "' already exists in '" + dir.path +
                                         "' and the catalog does not own it");
        }
        int64_t run = cr.run_id_in_tx(db);
        if (layout == Layout::dir) {
            // The temp directory is recorded before it is made: its files
            // get their rows when the save is sealed.
            c->id_ = db.checkpoint_insert(c->files_[0].name, kind, epoch, step, run, meta, c->files_[0].temp_name);
        } else {
            c->id_ = db.checkpoint_insert(c->files_[0].name, kind, epoch, step, run, meta);
            for (size_t r = 0; r < c->files_.size(); r++)
                db.file_insert(c->id_, static_cast<int64_t>(r), c->files_[r].name, c->files_[r].temp_name);
        }
        std::string what = kind + " epoch " + std::to_string(epoch) + " step " + std::to_string(step);
        if (layout == Layout::shards) {
            // Every file is already fsynced: the rows are sealed at once.
            c->seal_in_tx(db);
            what +=
                ", " + std::to_string(c->files_.size()) + " shard file(s), " + std::to_string(c->total()) + " bytes";
        }
        if (layout == Layout::dir) what += ", a directory";
        cr.log_event(db, c->id_, "begun", what);
    });
    hook(layout == Layout::shards ? "sealed" : "begun");
    return c;
}

bool Commit::in_place() const { return layout_ == Layout::dir && is_in_place(files_[0].name, files_[0].temp_name); }

void Commit::seal_in_tx(Store &db) {
    for (size_t r = 0; r < files_.size(); r++)
        db.file_seal(id_, static_cast<int64_t>(r), files_[r].size, files_[r].checksum);
    // Several files: each has its own checksum, the checkpoint none.
    if (!db.checkpoint_seal(id_, total(), files_.size() == 1 ? files_[0].checksum : std::string()))
        fail(CKPTDB_EDB, "checkpoint " + std::to_string(id_) + " is no longer being written");
}

void Commit::seal(int64_t size, const std::string &checksum) {
    files_[0].size = size;
    files_[0].checksum = checksum;
    // Seal: from here on recovery can tell a whole final file from a torn one.
    cat_->write([&](Store &db) { seal_in_tx(db); });
    hook("sealed");
}

void Commit::seal_files(std::vector<CommitFile> inner) {
    inner_ = std::move(inner);
    cat_->write([&](Store &db) {
        for (const CommitFile &f : inner_) db.file_insert_sealed(id_, f.rank, f.name, f.size, f.checksum);
        if (!db.checkpoint_seal(id_, total(), std::string()))
            fail(CKPTDB_EDB, "checkpoint " + std::to_string(id_) + " is no longer being written");
    });
    hook("sealed");
}

void Commit::install() {
    const Dir &dir = cat_->dir();
    if (!in_place()) {
        for (; renamed_ < files_.size();) {
            rename_noreplace(dir, files_[renamed_].temp_name, files_[renamed_].name);
            renamed_++;
            hook("renamed");
        }
    }
    sync_dir(dir);
    cat_->directory_synced();
    hook("dir_synced");
}

void Commit::complete(const std::function<void(Store &, int64_t)> &in_commit) {
    cat_->write([&](Store &db) {
        if (!db.checkpoint_complete(id_)) {
            // A recovery judged this writer gone (it stalled past its
            // lease) and, every file being whole, finished the commit
            // itself: the checkpoint is complete and its files stay.
            if (db.status_of(id_) == "complete") return;
            fail(CKPTDB_EDB, "checkpoint " + std::to_string(id_) + " is no longer being written");
        }
        db.files_clear_temp(id_);
        if (in_commit) in_commit(db, id_);
        cat_->log_event(db, id_, "committed",
                        layout_ == Layout::single
                            ? std::to_string(total()) + " bytes, xxh128 " + files_[0].checksum
                            : std::to_string(total()) + " bytes in " +
                                  std::to_string(layout_ == Layout::dir ? inner_.size() : files_.size()) + " file(s)" +
                                  (layout_ == Layout::dir ? " in directory " + files_[0].name : ""));
        // Rotation is chosen in the same transaction, once the new
        // checkpoint is complete (so it is the protected newest), and in a
        // savepoint: a failing rotation never fails this commit.
        marked_ = cat_->rotate_in_tx(db);
    });
}

Entry Commit::finish() {
    hook("committed");
    cat_->after_commit(kind_, marked_);  // unlink the rotation's victims, move the last-link
    return cat_->entry(id_);
}

void Commit::abort(const std::string &why) noexcept {
    if (layout_ == Layout::dir) {
        // The directory renamed is this save's own (the rename never
        // replaces): its recorded files go, then it when empty. Not renamed:
        // the temp directory goes, except files a live writer still holds.
        // In place: the directory was made by this save (exclusively), so
        // all in it is the save's, and it goes as a temp directory does.
        try {
            if (in_place()) {
                if (dir_made_) remove_in_place_dir(cat_->dir(), files_[0].name);
            } else if (renamed_)
                remove_dir_checkpoint(cat_->dir(), files_[0].name, inner_);
            else
                remove_temp_dir(cat_->dir(), files_[0].temp_name);
        } catch (...) {
            // What stays is found by recovery (a temp directory) or by fsck.
        }
    } else {
        for (size_t r = 0; r < renamed_; r++) unlink_name(cat_->dir(), files_[r].name);
    }
    renamed_ = 0;
    try {
        cat_->write([&](Store &db) {
            if (!db.checkpoint_abort(id_)) return;
            db.files_clear_temp(id_);
            cat_->log_event(db, id_, "aborted", why);
        });
    } catch (...) {
        // The row stays "writing"; recovery aborts it once this process is gone.
    }
}

}  // namespace ckptdb

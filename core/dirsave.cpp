#include "dirsave.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>

#include "ckptdb.h"
#include "error.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace ckptdb {

namespace {

template <class File>
DirRemoval remove_recorded(const Dir &dir, const std::string &name, const std::vector<File> &files) {
    DirRemoval out;
    int err = 0;
    Dir sub = open_subdir(dir, name, err);
    if (!sub.fd) {
        if (err == ENOENT) {
            out.dir_gone = true;
            return out;
        }
        // A file or a link under the name: not the directory the catalog wrote.
        out.files_gone = false;
        out.kept.push_back(name);
        return out;
    }
    for (const File &f : files) {
        if (!name_problem(f.name).empty()) continue;  // a tampered name is never touched
        UniqueFd fd = open_read(sub, f.name, err);
        if (!fd) {
            if (err != ENOENT) out.files_gone = false;
            continue;
        }
        struct stat st;
        if (io::ops().fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != f.size) {
            out.files_gone = false;
            continue;
        }
        fd.reset();
        err = unlink_name(sub, f.name);
        if (err != 0 && err != ENOENT) out.files_gone = false;
    }
    out.kept = list_names(sub);
    if (out.kept.empty()) {
        err = remove_dir(dir, name);
        out.dir_gone = err == 0 || err == ENOENT;
    } else {
        // The directory stays: its unlinks are made durable here (the
        // caller's fsync of the parent covers only a removed directory).
        try {
            sync_dir(sub);
        } catch (const Error &) {
            out.files_gone = false;  // tried again by the next prune
        }
    }
    return out;
}

}  // namespace

DirRemoval remove_dir_checkpoint(const Dir &dir, const std::string &name, const std::vector<FileRow> &files) {
    return remove_recorded(dir, name, files);
}

DirRemoval remove_dir_checkpoint(const Dir &dir, const std::string &name, const std::vector<CommitFile> &files) {
    return remove_recorded(dir, name, files);
}

bool remove_temp_dir(const Dir &dir, const std::string &temp_name) {
    int err = 0;
    Dir sub = open_subdir(dir, temp_name, err);
    if (!sub.fd) return err == ENOENT;
    bool all = true;
    for (const std::string &n : list_names(sub))
        if (!remove_unheld(sub, n)) all = false;
    if (!all) return false;
    err = remove_dir(dir, temp_name);
    return err == 0 || err == ENOENT;
}

bool remove_in_place_dir(const Dir &dir, const std::string &name) {
    if (!remove_temp_dir(dir, name)) return false;
    sync_dir(dir);
    return true;
}

bool is_in_place(const std::string &name, const std::string &temp_name) {
    return !name.empty() && temp_name == name && !is_temp_dir_name(temp_name);
}

std::unique_ptr<DirSave> DirSave::begin(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch,
                                        int64_t step, const std::optional<std::string> &name,
                                        const std::optional<std::string> &metadata) {
    check_save_request(*cat, kind, epoch, step);
    if (name) check_final_name(*cat, *name, "");
    std::unique_ptr<DirSave> s(new DirSave());
    s->cat_ = cat;
    std::string temp = random_temp_name() + kTempDirSuffix;
    s->commit_ = Commit::begin(cat, Commit::Layout::dir, kind, epoch, step, metadata,
                               {CommitFile{name.value_or(std::string()), temp, -1, std::string(), -1}});
    try {
        make_dir(cat->dir(), temp);
    } catch (const Error &e) {
        s->commit_->abort(e.what());
        s->state_ = State::aborted;
        throw;
    }
    hook("dir_created");
    return s;
}

std::unique_ptr<DirSave> DirSave::begin_in_place(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch,
                                                 int64_t step, const std::string &name,
                                                 const std::optional<std::string> &metadata) {
    check_save_request(*cat, kind, epoch, step);
    check_final_name(*cat, name, "");
    std::unique_ptr<DirSave> s(new DirSave());
    s->cat_ = cat;
    // The row first, naming the directory as its own temp directory: from
    // the moment the directory exists, the catalog knows it is a save's.
    s->commit_ = Commit::begin(cat, Commit::Layout::dir, kind, epoch, step, metadata,
                               {CommitFile{name, name, -1, std::string(), -1}});
    try {
        make_dir(cat->dir(), name);
    } catch (const Error &e) {
        // Not made by this save (EEXIST: whatever has the name is someone
        // else's and stays as it is).
        s->commit_->abort(e.what());
        s->state_ = State::aborted;
        if (e.code() == CKPTDB_EEXISTS || name_exists(cat->dir(), name))
            fail(CKPTDB_EEXISTS, "cannot save in place: '" + cat->dir().join(name) +
                                     "' already exists and the catalog does not own it; it was left untouched");
        throw;
    }
    s->commit_->made_in_place_dir();
    hook("dir_created");
    return s;
}

DirSave::~DirSave() {
    if (state_ == State::open && commit_) commit_->abort("the directory save was released without a commit");
}

int64_t DirSave::id() const { return commit_->id(); }
const std::string &DirSave::name() const { return commit_->files()[0].name; }
const std::string &DirSave::temp_name() const { return commit_->files()[0].temp_name; }
bool DirSave::in_place() const { return commit_->in_place(); }

void DirSave::check_open() const {
    if (state_ != State::open)
        fail(CKPTDB_EMISUSE, std::string("cannot commit: the directory save was already ") +
                                 (state_ == State::committed ? "committed" : "aborted"));
}

Entry DirSave::commit(const std::vector<DirFileInfo> &files, const std::function<void(Store &, int64_t)> &in_commit) {
    check_open();
    if (in_place())
        fail(CKPTDB_EMISUSE, "the directory save '" + name() +
                                 "' was begun in place: commit it with commit_in_place (ckptdb_dir_commit_in_place), "
                                 "which takes the files its directory holds");
    // Everything is checked before anything changes.
    if (files.empty()) fail(CKPTDB_EINVAL, "a directory checkpoint needs at least one file");
    std::set<std::string> names;
    for (const DirFileInfo &f : files) {
        std::string bad = name_problem(f.name);
        if (!bad.empty()) check_name(f.name);  // throws, naming it
        std::string who = "file '" + f.name + "'";
        if (!names.insert(f.name).second) fail(CKPTDB_EINVAL, who + " is given twice");
        if (f.rank < 0) fail(CKPTDB_EINVAL, who + ": rank must be >= 0, got " + std::to_string(f.rank));
        if (f.size < 0) fail(CKPTDB_EINVAL, who + ": size must be >= 0, got " + std::to_string(f.size));
        if (!is_hex32(f.checksum))
            fail(CKPTDB_EINVAL, who + ": checksum must be 32 lower-case hex digits, got '" + f.checksum + "'");
    }
    const Dir &dir = cat_->dir();
    int err = 0;
    Dir tmp = open_subdir(dir, temp_name(), err);
    if (!tmp.fd) fail_os("cannot open the save's temp directory", dir.join(temp_name()), err);
    std::set<std::string> expected = names;
    std::vector<bool> sidecars(files.size(), false);
    for (size_t i = 0; i < files.size(); i++) {
        const DirFileInfo &f = files[i];
        UniqueFd fd = open_read(tmp, f.name, err);
        if (!fd && err == ENOENT)
            fail(CKPTDB_EINVAL, "'" + tmp.join(f.name) + "' is missing: no writer of the save finished it");
        if (!fd && (err == EINVAL || err == ELOOP))
            fail(CKPTDB_EINVAL, "'" + tmp.join(f.name) + "' is not a regular file");
        if (!fd) fail_os("cannot open", tmp.join(f.name), err);
        struct stat st;
        if (io::ops().fstat(fd.get(), &st) != 0) fail_os("cannot stat", tmp.join(f.name), errno);
        // Only the seal is read, never the bytes.
        sidecars[i] = check_seal(tmp, fd.get(), st, ShardFile{f.name, f.name, f.size, f.checksum, f.rank},
                                 static_cast<size_t>(f.rank));
        if (st.st_size != f.size)
            fail(CKPTDB_EINVAL, "'" + tmp.join(f.name) + "' has " + std::to_string(st.st_size) +
                                    " bytes, its writer reported " + std::to_string(f.size));
        if (sidecars[i]) expected.insert(seal_sidecar_name(f.name));
    }
    for (const std::string &n : list_names(tmp))
        if (!expected.count(n))
            fail(CKPTDB_EINVAL, "'" + tmp.join(n) +
                                    "' is in the save's temp directory but not among the files committed: a "
                                    "directory checkpoint holds exactly the files its writers reported");

    return finish_commit([&] {
        std::vector<CommitFile> inner;
        for (const DirFileInfo &f : files) inner.push_back(CommitFile{f.name, f.name, f.size, f.checksum, f.rank});
        commit_->seal_files(std::move(inner));
        // The sidecar seals have served; the directory holds only its files.
        for (size_t i = 0; i < files.size(); i++)
            if (sidecars[i]) unlink_name(tmp, seal_sidecar_name(files[i].name));
        sync_dir(tmp);  // every file's entry durable before the directory takes its name
        commit_->install();
        commit_->complete(in_commit);
    });
}

Entry DirSave::finish_commit(const std::function<void()> &steps) {
    try {
        steps();
    } catch (const Error &e) {
        commit_->abort(e.what());
        state_ = State::aborted;
        throw;
    }
    state_ = State::committed;
    return commit_->finish();
}

Entry DirSave::commit_in_place(const std::optional<std::string> &metadata) {
    check_open();
    if (!in_place())
        fail(CKPTDB_EMISUSE, "the directory save '" + name() +
                                 "' was not begun in place: commit it with the files its writers reported "
                                 "(ckptdb_dir_commit)");
    // Everything is checked before anything changes.
    std::optional<std::string> meta;
    if (metadata) meta = normalized_metadata(metadata);
    const Dir &dir = cat_->dir();
    int err = 0;
    Dir sub = open_subdir(dir, name(), err);
    if (!sub.fd && (err == ENOTDIR || err == ELOOP))
        fail(CKPTDB_EINVAL, "'" + dir.join(name()) + "' is no longer a directory (links are not followed)");
    if (!sub.fd) fail_os("cannot open the save's directory", dir.join(name()), err);
    std::vector<std::string> names = list_names(sub);
    std::sort(names.begin(), names.end());
    if (names.empty())
        fail(CKPTDB_EINVAL, "'" + sub.path + "' holds no file: a directory checkpoint needs at least one");
    std::vector<UniqueFd> fds;
    for (const std::string &n : names) {
        if (!name_problem(n).empty()) {
            try {
                check_name(n);  // the message, with the name made printable
            } catch (const Error &e) {
                fail(CKPTDB_EINVAL,
                     "'" + sub.path + "' holds a file that cannot be part of a directory checkpoint: " + e.what());
            }
        }
        UniqueFd fd = open_read(sub, n, err);
        if (!fd && (err == EINVAL || err == ELOOP))
            fail(CKPTDB_EINVAL, "'" + sub.join(n) +
                                    "' is not a regular file (a directory, a link, a fifo...): a directory "
                                    "checkpoint holds regular files only, and no subdirectory");
        if (!fd) fail_os("cannot open", sub.join(n), err);
        fds.push_back(std::move(fd));
    }

    std::function<void(Store &, int64_t)> in_commit;
    if (meta) in_commit = [&meta](Store &db, int64_t id) { db.checkpoint_set_metadata(id, *meta); };
    return finish_commit([&] {
        // The disk starts on every file at once; hashing them (through the
        // page cache) overlaps that writeback, and the fsyncs then wait only
        // for what is left of it.
        std::vector<std::unique_ptr<DurableWriter>> ws;
        for (size_t i = 0; i < names.size(); i++) {
            ws.push_back(std::make_unique<DurableWriter>(sub.join(names[i])));
            struct stat st;
            if (io::ops().fstat(fds[i].get(), &st) != 0) fail_os("cannot stat", sub.join(names[i]), errno);
            int64_t flushed = 0;
            start_writeback(fds[i].get(), st.st_size, flushed, sub.join(names[i]), 1);
        }
        for (size_t i = 0; i < names.size(); i++) ws[i]->hash_file(fds[i].get());  // from offset 0
        std::vector<CommitFile> inner;
        for (size_t i = 0; i < names.size(); i++) {
            ws[i]->sync(fds[i].get());
            inner.push_back(CommitFile{names[i], names[i], ws[i]->size(), ws[i]->checksum(), 0});
            fds[i].reset();
        }
        commit_->seal_files(std::move(inner));
        sync_dir(sub);       // every file's entry durable
        commit_->install();  // no rename; the checkpoint directory fsynced (the mkdir)
        commit_->complete(in_commit);
    });
}

void DirSave::abort(const std::string &why) {
    if (state_ == State::committed) fail(CKPTDB_EMISUSE, "cannot abort: the directory save was already committed");
    if (state_ == State::aborted) return;
    commit_->abort(why);
    state_ = State::aborted;
}

}  // namespace ckptdb

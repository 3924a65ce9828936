#include "writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "ckptdb.h"
#include "error.hpp"
#include "hooks.hpp"
#include "lease.hpp"
#include "names.hpp"

namespace ckptdb {

HookFn g_test_hook = nullptr;

std::unique_ptr<Save> Save::begin(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch, int64_t step,
                                  const std::optional<std::string> &name, const std::optional<std::string> &metadata) {
    // Bad input is refused before anything is written.
    check_save_request(*cat, kind, epoch, step);
    if (name) check_final_name(*cat, *name, "");

    CommitFile f;
    f.name = name.value_or("");  // empty: the default name, chosen in the intent's transaction
    f.temp_name = random_temp_name();
    std::unique_ptr<Commit> c = Commit::begin(cat, Commit::Layout::single, kind, epoch, step, metadata, {f});
    std::unique_ptr<Save> s(new Save(cat, std::move(c)));
    try {
        s->fd_ = create_exclusive(cat->dir(), s->temp_);
        hold_writer_lock(s->fd_.get());
        s->renewed_ = lease_clock();  // the creation stamped the mtime
    } catch (const Error &e) {
        s->fail_with(e);
        throw;
    }
    hook("created");
    return s;
}

Save::~Save() {
    if (state_ == State::streaming || state_ == State::external) cleanup("the save was released without a commit");
}

void Save::check_usable(const char *what) {
    if (state_ == State::failed) throw Error(err_code_, err_msg_);
    if (state_ == State::committed)
        fail(CKPTDB_EMISUSE, std::string("cannot ") + what + ": the save was already committed");
    if (state_ == State::aborted) fail(CKPTDB_EMISUSE, std::string("cannot ") + what + ": the save was aborted");
}

void Save::cleanup(const std::string &why) {
    state_ = err_code_ ? State::failed : State::aborted;
    fd_.reset();
    unlink_name(cat_->dir(), temp_);
    commit_->abort(why);
}

void Save::fail_with(const Error &e) {
    err_code_ = e.code();
    err_msg_ = e.what();
    cleanup(e.what());
}

void Save::write(const void *data, size_t len) {
    check_usable("write");
    if (state_ == State::external) fail(CKPTDB_EMISUSE, "cannot mix ckptdb_save_write with a caller-written temp file");
    if (len == 0) return;
    try {
        out_.write(fd_.get(), data, len);
        renew_lease(fd_.get(), renewed_, false);
    } catch (const Error &e) {
        fail_with(e);
        throw;
    }
    hook("wrote");
}

const std::string &Save::temp_path() {
    check_usable("hand out the temp path");
    if (state_ == State::streaming && out_.size() > 0)
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
    try {
        if (state_ == State::external) {
            // The caller wrote the file. If it replaced the temp file (write
            // to a new file, rename over), read the file that has the name now.
            TempCheck t = check_temp(dir, temp_, fd_.get());
            if (t.err) fail_os("the temp file vanished before commit:", temp_path_, t.err);
            if (!t.regular) fail(CKPTDB_EIO, "temp file '" + temp_path_ + "' is no longer a regular file");
            if (t.fd_err) fail_os("cannot stat", temp_path_, t.fd_err);
            if (!t.ours) {
                int err = 0;
                UniqueFd f = open_read(dir, temp_, err);
                if (!f) fail_os("cannot open", temp_path_, err);
                fd_ = std::move(f);
            }
            renew_lease(fd_.get(), renewed_, true);  // hashing a large file takes a while
            out_.hash_file(fd_.get());
        }
        // The lease is renewed right before the fsync and again after it, so
        // that neither a long fsync nor the commit looks like a dead writer.
        renew_lease(fd_.get(), renewed_, true);
        out_.sync(fd_.get());
        renew_lease(fd_.get(), renewed_, true);
        if (state_ == State::streaming) {
            // The bytes went through our descriptor: the temp name must still
            // be that file.
            TempCheck t = check_temp(dir, temp_, fd_.get());
            if (t.err) fail_os("the temp file vanished before commit:", temp_path_, t.err);
            if (t.fd_err) fail_os("cannot stat", temp_path_, t.fd_err);
            if (!t.ours)
                fail(CKPTDB_EIO, "temp file '" + temp_path_ + "' was replaced by another " +
                                     (t.symlink ? "entry (a symbolic link)" : "file") +
                                     " before the rename; not committed");
        }
        fd_.reset();
        hook("synced");
        commit_->seal(out_.size(), out_.checksum());
        commit_->install();
        commit_->complete();
    } catch (const Error &e) {
        fail_with(e);
        throw;
    }
    state_ = State::committed;
    return commit_->finish();
}

void Save::abort() {
    if (state_ == State::committed) fail(CKPTDB_EMISUSE, "cannot abort: the save was already committed");
    if (state_ == State::streaming || state_ == State::external) cleanup("aborted by the caller");
}

}  // namespace ckptdb

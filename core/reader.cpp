#include "reader.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "ckptdb.h"
#include "error.hpp"
#include "io.hpp"
#include "names.hpp"

namespace ckptdb {

namespace {

Entry complete_entry(Catalog &cat, int64_t id) {
    Entry e = cat.entry(id);
    if (e.status != CKPTDB_STATUS_COMPLETE)
        fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(id) + " is " + status_text(e.status) + ", not complete");
    return e;
}

}  // namespace

Reader::Reader(std::shared_ptr<Catalog> cat, int64_t id, int64_t rank) : cat_(std::move(cat)), id_(id) {
    Entry e = complete_entry(*cat_, id);
    std::vector<FileRow> fs = cat_->files(id);
    const FileRow *f = nullptr;
    for (const FileRow &r : fs)
        if (r.rank == rank && !f) f = &r;  // by rank, then name: a directory's first file of the rank
    open_file(e, fs, f, "file of rank " + std::to_string(rank));
}

Reader::Reader(std::shared_ptr<Catalog> cat, int64_t id, const std::string &file) : cat_(std::move(cat)), id_(id) {
    Entry e = complete_entry(*cat_, id);
    std::vector<FileRow> fs = cat_->files(id);
    const FileRow *f = nullptr;
    for (const FileRow &r : fs)
        if (r.name == file) f = &r;
    open_file(e, fs, f, "file named '" + file + "'");
}

void Reader::open_file(const Entry &e, const std::vector<FileRow> &fs, const FileRow *f, const std::string &which) {
    const int64_t id = e.id;
    if (!f)
        fail(fs.empty() ? CKPTDB_ECORRUPT : CKPTDB_ENOTFOUND,
             "checkpoint " + std::to_string(id) + " has no " + which + " (it has " + std::to_string(fs.size()) + ")");
    if (!name_problem(f->name).empty() || (e.dir && !name_problem(e.name).empty())) {
        cat_->mark_corrupt(id, "its file name in the catalog is invalid; not opened");
        fail(CKPTDB_ECORRUPT, "checkpoint " + std::to_string(id) + " names an invalid file; it was not opened");
    }
    want_size_ = f->size;
    want_sum_ = f->checksum;
    int err = 0;
    Dir sub;
    if (e.dir) {
        sub = open_subdir(cat_->dir(), e.name, err);
        if (!sub.fd) {
            if (err == ENOENT || err == ELOOP || err == ENOTDIR) {
                std::string why = "'" + cat_->dir().join(e.name) +
                                  (err == ENOENT ? "/' is missing" : "' is not a directory (links are not followed)");
                cat_->mark_corrupt(id, why);
                fail(CKPTDB_ECORRUPT, why);
            }
            fail_os("cannot open", cat_->dir().join(e.name), err);
        }
    }
    const Dir &where = e.dir ? sub : cat_->dir();
    path_ = where.join(f->name);
    fd_ = open_read(where, f->name, err);
    if (!fd_) {
        if (err == ENOENT || err == ELOOP || err == EINVAL) {
            std::string why = "'" + path_ + (err == ENOENT ? "' is missing" : "' is not a regular file");
            cat_->mark_corrupt(id, why);
            fail(CKPTDB_ECORRUPT, why);
        }
        fail_os("cannot open", path_, err);
    }
}

void Reader::judge(const Check &c) {
    if (c.ok) return;
    cat_->mark_corrupt(id_, c.reason);
    fail(CKPTDB_ECORRUPT, c.reason);
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
            // Longer than recorded: judged at once, by the file's whole size
            // (the bytes read so far are only a lower bound).
            if (got_ > want_size_) {
                struct stat st;
                judge(compare_file(path_, want_size_, want_sum_,
                                   io::ops().fstat(fd_.get(), &st) == 0 ? static_cast<int64_t>(st.st_size) : got_, ""));
            }
            return static_cast<size_t>(n);
        }
        judge(compare_file(path_, want_size_, want_sum_, got_, hash_.hex()));
        checked_ = true;
        return 0;
    }
}

}  // namespace ckptdb

#include "reader.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "ckptdb.h"
#include "error.hpp"
#include "io.hpp"
#include "names.hpp"

namespace ckptdb {

Reader::Reader(std::shared_ptr<Catalog> cat, int64_t id, int64_t rank) : cat_(std::move(cat)), id_(id) {
    Entry e = cat_->entry(id);
    if (e.status != CKPTDB_STATUS_COMPLETE)
        fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(id) + " is " + status_text(e.status) + ", not complete");
    std::vector<FileRow> fs = cat_->files(id);
    const FileRow *f = nullptr;
    for (const FileRow &r : fs)
        if (r.rank == rank) f = &r;
    if (!f)
        fail(fs.empty() ? CKPTDB_ECORRUPT : CKPTDB_ENOTFOUND, "checkpoint " + std::to_string(id) +
                                                                  " has no file of rank " + std::to_string(rank) +
                                                                  " (it has " + std::to_string(fs.size()) + ")");
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

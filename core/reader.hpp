// Reading a complete checkpoint back: one file of it, checked against its
// rows (size and XXH3-128) once the last byte was read, by the same per-file
// verdict as every other check (compare_file, core/verify.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "catalog.hpp"
#include "fsio.hpp"
#include "hash.hpp"

namespace ckptdb {

// Reads one file of a complete checkpoint (rank 0 unless given; for a
// directory, rank 0's first file by name) and checks size and checksum at
// the end.
class Reader {
public:
    Reader(std::shared_ptr<Catalog> cat, int64_t id, int64_t rank = 0);
    // The file of that name (for a directory checkpoint, a name inside it);
    // CKPTDB_ENOTFOUND when the checkpoint has none.
    Reader(std::shared_ptr<Catalog> cat, int64_t id, const std::string &file);
    size_t read(void *buf, size_t cap);  // 0 at the end, after the check passed

private:
    // A failed compare_file: the checkpoint is marked corrupt, CKPTDB_ECORRUPT.
    void judge(const Check &c);
    // Opens the file of the row the constructor picked (nullptr: none).
    void open_file(const Entry &e, const std::vector<FileRow> &fs, const FileRow *f, const std::string &which);

    std::shared_ptr<Catalog> cat_;
    int64_t id_;
    std::string path_, want_sum_;
    int64_t want_size_ = 0, got_ = 0;
    UniqueFd fd_;
    Hasher hash_;
    bool checked_ = false;
};

}  // namespace ckptdb

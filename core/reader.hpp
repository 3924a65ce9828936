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

// Reads one file of a complete checkpoint (rank 0 unless given) and checks
// size and checksum at the end.
class Reader {
public:
    Reader(std::shared_ptr<Catalog> cat, int64_t id, int64_t rank = 0);
    size_t read(void *buf, size_t cap);  // 0 at the end, after the check passed

private:
    // A failed compare_file: the checkpoint is marked corrupt, CKPTDB_ECORRUPT.
    void judge(const Check &c);

    std::shared_ptr<Catalog> cat_;
    int64_t id_;
    std::string path_, want_sum_;
    int64_t want_size_ = 0, got_ = 0;
    UniqueFd fd_;
    Hasher hash_;
    bool checked_ = false;
};

}  // namespace ckptdb

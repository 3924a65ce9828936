// XXH3-128 through xxHash's runtime-dispatch entry points (the plain entry
// points of distribution builds run at a fraction of the speed), printed the
// way xxh128sum prints it: the canonical big-endian form in lower-case hex.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace ckptdb {

class Hasher {
public:
    Hasher();
    ~Hasher();
    Hasher(const Hasher &) = delete;
    Hasher &operator=(const Hasher &) = delete;

    void update(const void *data, size_t len);
    std::string hex() const;  // of everything updated so far

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace ckptdb

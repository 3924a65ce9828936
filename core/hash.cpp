#include "hash.hpp"

#include <xxh_x86dispatch.h>

#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb {

struct Hasher::State {
    XXH3_state_t *st = nullptr;
};

Hasher::Hasher() : s_(new State) {
    s_->st = XXH3_createState();
    if (!s_->st) fail(CKPTDB_ENOMEM, "cannot allocate an XXH3 state");
    XXH3_128bits_reset(s_->st);
}

Hasher::~Hasher() { XXH3_freeState(s_->st); }

void Hasher::update(const void *data, size_t len) {
    // Resolves to XXH3_128bits_update_dispatch through xxh_x86dispatch.h.
    XXH3_128bits_update(s_->st, data, len);
}

std::string Hasher::hex() const {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s_->st));
    static const char digits[] = "0123456789abcdef";
    std::string out(32, '0');
    for (size_t i = 0; i < sizeof c.digest; i++) {
        out[2 * i] = digits[c.digest[i] >> 4];
        out[2 * i + 1] = digits[c.digest[i] & 15];
    }
    return out;
}

}  // namespace ckptdb

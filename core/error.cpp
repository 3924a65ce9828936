#include "error.hpp"

#include <cerrno>
#include <cstring>

#include "ckptdb.h"

namespace ckptdb {

void fail(int code, const std::string &msg) { throw Error(code, msg); }

int code_for_errno(int err) {
    switch (err) {
        case ENOSPC:
        case EDQUOT:
        case EFBIG:
            return CKPTDB_ENOSPC;
        case EACCES:
        case EPERM:
        case EROFS:
            return CKPTDB_EPERM;
        case ENOENT:
        case ENOTDIR:
            return CKPTDB_ENOTFOUND;
        case EEXIST:
            return CKPTDB_EEXISTS;
        case ENOMEM:
            return CKPTDB_ENOMEM;
        default:
            return CKPTDB_EIO;
    }
}

void fail_os(const std::string &what, const std::string &path, int err) {
    throw Error(code_for_errno(err), what + " '" + path + "': " + std::strerror(err));
}

}  // namespace ckptdb

// Error plumbing shared by the extern "C" shims (capi*.cpp): every shim runs
// its body in guard(), which turns any exception into a status code and the
// calling thread's last-error message.  Internal; never installed.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb::capi {

// One last error per thread, shared by every translation unit of the library.
inline thread_local std::string t_message;
inline thread_local int t_code = CKPTDB_OK;

inline int set_error(int code, const std::string &msg) {
    t_code = code;
    try {
        t_message = msg;
    } catch (...) {
        t_message.clear();
    }
    return code;
}

template <class F>
int guard(F &&f) {
    try {
        f();
        t_code = CKPTDB_OK;
        t_message.clear();
        return CKPTDB_OK;
    } catch (const Error &e) {
        return set_error(e.code(), e.what());
    } catch (const std::bad_alloc &) {
        return set_error(CKPTDB_ENOMEM, "out of memory");
    } catch (const std::exception &e) {
        return set_error(CKPTDB_ERROR, e.what());
    } catch (...) {
        return set_error(CKPTDB_ERROR, "unknown internal error");
    }
}

inline void need(const void *p, const char *what) {
    if (!p) throw Error(CKPTDB_EMISUSE, std::string(what) + " is NULL");
}

inline void check_version(unsigned v, unsigned current, const char *what) {
    if (v == 0 || v > current)
        throw Error(CKPTDB_EINVAL, std::string(what) + " has unknown version " + std::to_string(v) +
                                       " (this library knows up to " + std::to_string(current) + ")");
}

// The body of every *_options_init(): defaults, with the caller's version.
template <class T>
int init_options(T *opts, unsigned version, unsigned current, const T &defaults, const char *what) {
    return guard([&] {
        need(opts, "opts");
        check_version(version, current, what);
        *opts = defaults;
        opts->version = version;
    });
}

}  // namespace ckptdb::capi

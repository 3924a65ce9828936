// Error plumbing shared by the extern "C" shims (capi*.cpp): every shim runs
// its body in guard(), which turns any exception into a status code and the
// calling thread's last-error message.  Internal; never installed.
#pragma once

#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb::capi {

// One last error per thread, shared by every translation unit of the library.
inline thread_local std::string t_message;
inline thread_local int t_code = CKPTDB_OK;
// The value of the callback that stopped the thread's most recent call
// (ckptdb_last_callback_value); 0 when none did.
inline thread_local int t_callback_value = 0;

// The one callback rule (ckptdb.h CONVENTIONS): a callback's non-zero return
// stops the call with CKPTDB_ECALLBACK.  Thrown from inside the call (the
// engine unwinds as for any error), caught by guard().
class CallbackStop : public Error {
public:
    CallbackStop(const char *function, int value)
        : Error(CKPTDB_ECALLBACK,
                std::string(function) + " was stopped by its callback, which returned " + std::to_string(value)),
          value_(value) {}
    int value() const noexcept { return value_; }

private:
    int value_;
};

// Calls a caller's int-returning callback under the rule above.
template <class Cb, class... Args>
void call_back(const char *function, Cb cb, Args &&...args) {
    if (int r = cb(std::forward<Args>(args)...)) throw CallbackStop(function, r);
}

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
    t_callback_value = 0;
    try {
        f();
        t_code = CKPTDB_OK;
        t_message.clear();
        return CKPTDB_OK;
    } catch (const CallbackStop &e) {
        t_callback_value = e.value();
        return set_error(e.code(), e.what());
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

// what names the struct (and, for an array element, which one).
inline void check_version(unsigned v, unsigned current, const std::string &what) {
    if (v == 0 || v > current)
        throw Error(CKPTDB_EINVAL, what + " has unknown version " + std::to_string(v) + " (this library knows up to " +
                                       std::to_string(current) + ")");
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

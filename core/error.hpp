// Errors inside the engine: one exception type that carries a ckptdb status
// code and a message for people. The C ABI turns it into a status code and
// the thread's last-error text; nothing else crosses the ABI.
#pragma once

#include <stdexcept>
#include <string>

namespace ckptdb {

class Error : public std::runtime_error {
public:
    Error(int code, const std::string &msg) : std::runtime_error(msg), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

[[noreturn]] void fail(int code, const std::string &msg);

// The ckptdb status code that fits an errno value (ENOSPC -> CKPTDB_ENOSPC...).
int code_for_errno(int err);

// Throws Error with code_for_errno(err) and "<what> '<path>': <strerror>".
[[noreturn]] void fail_os(const std::string &what, const std::string &path, int err);

}  // namespace ckptdb

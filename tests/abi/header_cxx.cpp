// ckptdb.h and ckptdb.hpp compile as C++ with -pedantic -Werror, and the
// wrapper's exceptions carry the code and the library's message.  Without
// CKPTDB_EXPERIMENTAL the experimental tier stays out of sight: the
// declarations below would clash with it (a redefined type, a variable
// named as a function), so this file only compiles while it is hidden.
#include "ckptdb.h"
#include "ckptdb.hpp"

#if defined(CKPTDB_OPEN_REQUEUE) || defined(CKPTDB_TRIGGER_OPTIONS_VERSION) || defined(CKPTDB_TRIGGER_OPTIONS_INIT)
#error "the experimental tier is visible without CKPTDB_EXPERIMENTAL"
#endif
struct ckptdb_trigger_options {
    int not_the_library_s;
};
static const int ckptdb_signals_install = 0, ckptdb_preempt_requested = 0, ckptdb_trigger_new = 0,
                 ckptdb_trigger_check = 0;

// The wrapper's names are its own, apart from the engine's namespace ckptdb.
namespace ckptdb {
struct catalog {};
struct entry {};
struct error {};
}  // namespace ckptdb

#include <cstdio>
#include <string>

int main() {
    try {
        ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
        o.flags = CKPTDB_OPEN_NO_CREATE;
        ckptdbxx::catalog c("/nonexistent/ckptdb-abi-test", &o);
        return 1;
    } catch (const ckptdbxx::error &e) {
        if (e.code() != CKPTDB_ENOTFOUND) return 1;
        if (std::string(e.what()).find("/nonexistent/ckptdb-abi-test") == std::string::npos) return 1;
    }
    ckptdb_trigger_options own{ckptdb_signals_install + ckptdb_preempt_requested + ckptdb_trigger_new +
                               ckptdb_trigger_check};
    if (own.not_the_library_s != 0) return 1;
    std::printf("C++: ckptdb %s\n", ckptdb_version());
    return 0;
}

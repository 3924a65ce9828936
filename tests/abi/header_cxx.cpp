// ckptdb.h and ckptdb.hpp compile as C++ with -pedantic -Werror, and the
// wrapper's exceptions carry the code and the library's message.
#include "ckptdb.h"
#include "ckptdb.hpp"

#include <cstdio>
#include <string>

int main() {
    try {
        ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
        o.flags = CKPTDB_OPEN_NO_CREATE;
        ckptdb::catalog c("/nonexistent/ckptdb-abi-test", &o);
        return 1;
    } catch (const ckptdb::error &e) {
        if (e.code() != CKPTDB_ENOTFOUND) return 1;
        if (std::string(e.what()).find("/nonexistent/ckptdb-abi-test") == std::string::npos) return 1;
    }
    std::printf("C++: ckptdb %s\n", ckptdb_version());
    return 0;
}

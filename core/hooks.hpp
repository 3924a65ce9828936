// Named points inside the save protocol and recovery. Test binaries that
// link the engine statically set g_test_hook to stop a child process at an
// exact point (and kill it there); in the library it stays null.
#pragma once

namespace ckptdb {

using HookFn = void (*)(const char *point);
extern HookFn g_test_hook;

inline void hook(const char *point) {
    if (g_test_hook) g_test_hook(point);
}

}  // namespace ckptdb

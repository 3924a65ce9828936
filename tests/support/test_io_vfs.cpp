// The test VFS (io_vfs.hpp) through the engine's one seam for it
// (io::g_sqlite_vfs): while an observer is installed, every catalog the
// engine opens goes through the shim, which sees SQLite's writes and can fail
// them; switched off, the engine is back on SQLite's default VFS.
#include <doctest/doctest.h>

#include <cerrno>
#include <string>

#include "catalog.hpp"
#include "io.hpp"
#include "io_vfs.hpp"
#include "support.hpp"

namespace {

int g_writes = 0;
bool g_fail_writes = false;

int observer(const ckptdb::io_vfs::SqliteOp &op) {
    if (op.kind != ckptdb::io_vfs::SqliteOp::write) return 0;
    g_writes++;
    return g_fail_writes ? EIO : 0;
}

}  // namespace

TEST_CASE("the test VFS sees and fails SQLite's writes to the catalogs the engine opens, until switched off") {
    REQUIRE(ckptdb::io::sqlite_vfs() == nullptr);  // SQLite's default until a test asks
    ckptdb::io_vfs::set_sqlite_observer(observer);
    REQUIRE(ckptdb::io::sqlite_vfs() != nullptr);
    CHECK(std::string(ckptdb::io::sqlite_vfs()) == "ckptdb-io");
    {
        t::TempDir d;
        auto cat = ckptdb::Catalog::open(d.path, ckptdb::OpenOptions{});
        CHECK(g_writes > 0);  // creating the catalog wrote through the shim
    }
    g_fail_writes = true;
    {
        t::TempDir d;
        CHECK_THROWS(ckptdb::Catalog::open(d.path, ckptdb::OpenOptions{}));
    }
    g_fail_writes = false;

    ckptdb::io_vfs::set_sqlite_observer(nullptr);
    CHECK(ckptdb::io::sqlite_vfs() == nullptr);
    g_writes = 0;
    {
        t::TempDir d;
        auto cat = ckptdb::Catalog::open(d.path, ckptdb::OpenOptions{});
        CHECK(g_writes == 0);  // the shim is out of the way
    }
}

// The SQLite connection of a catalog: opening with the right pragmas,
// refusing what is not ours, migrating, named prepared statements kept for
// the connection's life, and IMMEDIATE transactions. The statements
// themselves are private to the statement layer (store.hpp): the rest of the
// engine cannot run SQL of its own.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sql_embedded.hpp"

namespace ckptdb {

struct DbOptions {
    bool readonly = false;
    bool create = true;
    bool rollback_journal = false;  // network file systems: no WAL
    // Give a file with no schema the catalog's: only for a catalog being
    // built under its temp name. Any other schema-less file is a lost catalog.
    bool init_schema = false;
    int busy_timeout_ms = 60000;
};

class Db {
public:
    Db(const std::string &path, const DbOptions &opts);
    ~Db();
    Db(const Db &) = delete;
    Db &operator=(const Db &) = delete;

    // A named statement, bound and stepped; reset when the Query goes away.
    // Only the statement layer makes one (store.hpp).
    class Query {
    public:
        ~Query();
        Query(const Query &) = delete;
        Query &operator=(const Query &) = delete;

        Query &bind(int idx, int64_t v);
        Query &bind(int idx, const std::string &v);
        Query &bind_null(int idx);

        bool step();  // true while there is a row
        void run();   // step to completion
        int64_t i64(int col) const;
        double f64(int col) const;
        std::string text(int col) const;
        bool is_null(int col) const;

    private:
        friend class Store;
        Query(Db &db, sql::Stmt which);
        Db &db_;
        sqlite3_stmt *st_;
        sql::Stmt which_;
    };

    // BEGIN IMMEDIATE ... COMMIT; rolls back when destroyed uncommitted.
    class Tx {
    public:
        explicit Tx(Db &db);
        ~Tx();
        void commit();

    private:
        Db &db_;
        bool open_ = false;
    };

    // BEGIN (deferred) ... ROLLBACK: several reads from one snapshot.
    class ReadTx {
    public:
        explicit ReadTx(Db &db);
        ~ReadTx();
        ReadTx(const ReadTx &) = delete;
        ReadTx &operator=(const ReadTx &) = delete;

    private:
        Db &db_;
    };

    // Copies the WAL's committed frames into the catalog file (PASSIVE: as
    // far as readers allow, never waiting; TRUNCATE: all of them, then the
    // WAL emptied, or throws). A no-op with a rollback journal.
    void checkpoint_wal(bool truncate);
    // A consistent copy of the whole catalog into dest (SQLite's backup
    // API, one step: a single read transaction).
    void backup_into(sqlite3 *dest);
    const std::string &path() const { return path_; }

    // Throws Error with a ckptdb code that fits SQLite's result rc.
    [[noreturn]] void fail_sqlite(int rc, const std::string &what) const;

private:
    friend class Store;
    void exec(const char *sql);
    int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
    int changes() const { return sqlite3_changes(db_); }

    void check_and_migrate(const DbOptions &opts);
    static void roll_back_hot_journal(const std::string &path, const DbOptions &opts);
    sqlite3_stmt *stmt(sql::Stmt which);

    sqlite3 *db_ = nullptr;
    std::string path_;
    std::vector<sqlite3_stmt *> stmts_;
};

// PRAGMA application_id of a ckptdb catalog ("ckpd").
inline constexpr int kApplicationId = 0x636b7064;

}  // namespace ckptdb

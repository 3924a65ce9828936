#include "db.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "ckptdb.h"
#include "error.hpp"
#include "io.hpp"

namespace ckptdb {

static int code_for_sqlite(int rc) {
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return CKPTDB_EBUSY;
        case SQLITE_NOTADB:
            return CKPTDB_ENOTCATALOG;
        case SQLITE_FULL:
            return CKPTDB_ENOSPC;
        case SQLITE_READONLY:
            return CKPTDB_EREADONLY;
        case SQLITE_PERM:
        case SQLITE_AUTH:
            return CKPTDB_EPERM;
        case SQLITE_IOERR:
            return CKPTDB_EIO;
        case SQLITE_NOMEM:
            return CKPTDB_ENOMEM;
        case SQLITE_CORRUPT:
            return CKPTDB_ENOTCATALOG;
        case SQLITE_CONSTRAINT:
            return CKPTDB_EEXISTS;
        default:
            return CKPTDB_EDB;
    }
}

void Db::fail_sqlite(int rc, const std::string &what) const {
    std::string msg = what + " (catalog '" + path_ + "'): " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    int err = db_ ? sqlite3_system_errno(db_) : 0;
    if ((rc & 0xff) == SQLITE_IOERR && err != 0) {
        int code = code_for_errno(err);
        throw Error(code == CKPTDB_ENOTFOUND ? CKPTDB_EIO : code, msg);
    }
    if ((rc & 0xff) == SQLITE_CANTOPEN) throw Error(err == ENOENT ? CKPTDB_ENOTFOUND : CKPTDB_EPERM, msg);
    throw Error(code_for_sqlite(rc), msg);
}

Db::Db(const std::string &path, const DbOptions &opts) : path_(path) {
    struct stat st;
    bool exists = ::lstat(path.c_str(), &st) == 0;
    if (exists && S_ISLNK(st.st_mode))
        fail(CKPTDB_ENOTCATALOG, "catalog '" + path + "' is a symbolic link; ckptdb does not follow links");
    if (exists && !S_ISREG(st.st_mode)) fail(CKPTDB_ENOTCATALOG, "catalog '" + path + "' is not a regular file");
    if (!exists && (!opts.create || opts.readonly)) fail(CKPTDB_ENOTFOUND, "catalog '" + path + "' does not exist");

    // Only a catalog being built is created here (Catalog::open makes a new
    // one under a temp name first); an existing catalog that vanished is an
    // error, not a new empty file.
    int flags =
        opts.readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | (opts.init_schema ? SQLITE_OPEN_CREATE : 0));
    flags |= SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, io::sqlite_vfs());
    if (rc != SQLITE_OK) {
        try {
            fail_sqlite(rc, "cannot open the catalog");
        } catch (...) {
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw;
        }
    }
    stmts_.assign(static_cast<size_t>(sql::Stmt::count_), nullptr);
    try {
        sqlite3_extended_result_codes(db_, 1);
        sqlite3_busy_timeout(db_, opts.busy_timeout_ms);
        check_and_migrate(opts);
    } catch (...) {
        bool hot = opts.readonly && sqlite3_extended_errcode(db_) == SQLITE_READONLY_ROLLBACK;
        sqlite3_close_v2(db_);
        db_ = nullptr;
        if (!hot) throw;
        // A writer was killed inside a transaction of a rollback journal
        // (a network file system's catalog, or one switched out of WAL):
        // the journal is hot and only a read-write connection may roll it
        // back. That restores the last committed state, which is what any
        // reader must see; it changes nothing that was committed.
        roll_back_hot_journal(path, opts);
        rc = sqlite3_open_v2(path.c_str(), &db_, flags, io::sqlite_vfs());
        try {
            if (rc != SQLITE_OK) fail_sqlite(rc, "cannot open the catalog");
            sqlite3_extended_result_codes(db_, 1);
            sqlite3_busy_timeout(db_, opts.busy_timeout_ms);
            check_and_migrate(opts);
        } catch (...) {
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw;
        }
    }
}

void Db::roll_back_hot_journal(const std::string &path, const DbOptions &opts) {
    sqlite3 *rw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &rw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX,
                             io::sqlite_vfs());
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(rw, opts.busy_timeout_ms);
        rc = sqlite3_exec(rw, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
    }
    std::string why = rw ? sqlite3_errmsg(rw) : sqlite3_errstr(rc);
    sqlite3_close_v2(rw);
    if (rc != SQLITE_OK)
        fail(CKPTDB_EREADONLY, "catalog '" + path +
                                   "' has a hot rollback journal left by a writer that was killed, "
                                   "and it cannot be rolled back from here (" +
                                   why + "); open it once by a user who may write the directory");
}

Db::~Db() {
    for (sqlite3_stmt *s : stmts_) sqlite3_finalize(s);
    if (db_) sqlite3_close_v2(db_);
}

void Db::exec(const char *sql) {
    char *err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string m = err ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        fail_sqlite(rc, "catalog statement failed: " + m);
    }
}

static int64_t pragma_int(Db &db, sqlite3 *h, const char *sql) {
    sqlite3_stmt *st = nullptr;
    int rc = sqlite3_prepare_v2(h, sql, -1, &st, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) db.fail_sqlite(rc, "cannot read the catalog");
    return v;
}

void Db::check_and_migrate(const DbOptions &opts) {
    // Read-only checks first: nothing is written to a file we refuse.
    int64_t version = pragma_int(*this, db_, "PRAGMA user_version");
    int64_t app_id = pragma_int(*this, db_, "PRAGMA application_id");
    int64_t objects = pragma_int(*this, db_, "SELECT count(*) FROM sqlite_master");
    if (app_id != kApplicationId && (objects > 0 || version != 0))
        fail(CKPTDB_ENOTCATALOG,
             "'" + path_ + "' is an SQLite database but not a ckptdb catalog; it was left untouched");
    if (objects == 0 && version == 0 && !opts.init_schema)
        fail(CKPTDB_ENOTCATALOG, "catalog '" + path_ +
                                     "' is empty (no ckptdb schema): the catalog was lost, truncated or never "
                                     "finished. It was left untouched, and no empty catalog is started beside the "
                                     "directory's checkpoints. 'ckptdb fsck --repair' rebuilds it from the files "
                                     "there");
    if (version > sql::kSchemaVersion)
        fail(CKPTDB_EVERSION, "catalog '" + path_ + "' has schema version " + std::to_string(version) +
                                  ", newer than this library's " + std::to_string(sql::kSchemaVersion) +
                                  " (ckptdb " CKPTDB_VERSION_STRING
                                  "); upgrade ckptdb. The catalog was left untouched");
    if (opts.readonly) {
        if (version < sql::kSchemaVersion)
            fail(CKPTDB_EVERSION, "catalog '" + path_ + "' has schema version " + std::to_string(version) +
                                      " and needs a migration; open it once read-write");
        exec("PRAGMA foreign_keys=ON");
        return;
    }

    const char *mode = opts.rollback_journal ? "DELETE" : "WAL";
    std::string want = opts.rollback_journal ? "delete" : "wal";
    sqlite3_stmt *st = nullptr;
    std::string q = std::string("PRAGMA journal_mode=") + mode;
    int rc = sqlite3_prepare_v2(db_, q.c_str(), -1, &st, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    std::string got = rc == SQLITE_ROW ? reinterpret_cast<const char *>(sqlite3_column_text(st, 0)) : "";
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) fail_sqlite(rc, "cannot set the catalog's journal mode");
    if (got != want) fail(CKPTDB_EDB, "catalog '" + path_ + "' stayed in journal mode '" + got + "', wanted " + want);
    // FULL, not NORMAL: in WAL mode NORMAL can lose the last commit on power
    // loss while a rotation's unlink already reached the disk.
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA foreign_keys=ON");
    if (!opts.rollback_journal) {
        // Keep -wal and -shm after the last close. On a full disk the next
        // open then maps the existing -shm; without it SQLite must create
        // one and cannot, and the catalog could not even be opened to find
        // the newest checkpoint. The WAL is truncated to nothing on close
        // (journal_size_limit 0), so no stale frames outlive the connection.
        exec("PRAGMA journal_size_limit=0");
        // Fold the WAL into the catalog file every 32 pages (a few commits)
        // instead of SQLite's 1000: a lost -wal then costs only the last few
        // commits, and the file on its own stays close to current.
        exec("PRAGMA wal_autocheckpoint=32");
        int persist = 1;
        sqlite3_file_control(db_, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    }

    if (version == sql::kSchemaVersion) return;
    Tx tx(*this);
    version = pragma_int(*this, db_, "PRAGMA user_version");  // another process may have migrated meanwhile
    if (version > sql::kSchemaVersion) fail(CKPTDB_EVERSION, "catalog '" + path_ + "' was upgraded by a newer ckptdb");
    for (int64_t v = version; v < sql::kSchemaVersion; v++) exec(sql::kMigrations[v]);
    exec(("PRAGMA application_id=" + std::to_string(kApplicationId)).c_str());
    exec(("PRAGMA user_version=" + std::to_string(sql::kSchemaVersion)).c_str());
    tx.commit();
}

void Db::checkpoint_wal(bool truncate) {
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(db_, "main", truncate ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE,
                                       &log, &done);
    if (rc != SQLITE_OK) fail_sqlite(rc, "cannot checkpoint the catalog's WAL into its file");
    if (truncate && log > 0) fail(CKPTDB_EBUSY, "catalog '" + path_ + "': the WAL could not be folded into the file");
}

void Db::backup_into(sqlite3 *dest) {
    sqlite3_backup *b = sqlite3_backup_init(dest, "main", db_, "main");
    if (!b) fail(CKPTDB_EDB, std::string("cannot snapshot the catalog: ") + sqlite3_errmsg(dest));
    int rc = sqlite3_backup_step(b, -1);  // one step: a single consistent read transaction
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) fail_sqlite(rc, "cannot snapshot the catalog");
}

sqlite3_stmt *Db::stmt(sql::Stmt which) {
    auto i = static_cast<size_t>(which);
    if (!stmts_[i]) {
        int rc = sqlite3_prepare_v3(db_, sql::kStatements[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts_[i], nullptr);
        if (rc != SQLITE_OK) fail_sqlite(rc, std::string("cannot prepare statement ") + sql::kStatementNames[i]);
    }
    return stmts_[i];
}

Db::Query::Query(Db &db, sql::Stmt which) : db_(db), st_(db.stmt(which)), which_(which) {}

Db::Query::~Query() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
}

Db::Query &Db::Query::bind(int idx, int64_t v) {
    int rc = sqlite3_bind_int64(st_, idx, v);
    if (rc != SQLITE_OK) db_.fail_sqlite(rc, "cannot bind a parameter");
    return *this;
}

Db::Query &Db::Query::bind(int idx, const std::string &v) {
    int rc = sqlite3_bind_text(st_, idx, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) db_.fail_sqlite(rc, "cannot bind a parameter");
    return *this;
}

Db::Query &Db::Query::bind_null(int idx) {
    int rc = sqlite3_bind_null(st_, idx);
    if (rc != SQLITE_OK) db_.fail_sqlite(rc, "cannot bind a parameter");
    return *this;
}

bool Db::Query::step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_.fail_sqlite(rc,
                    std::string("catalog statement ") + sql::kStatementNames[static_cast<size_t>(which_)] + " failed");
}

void Db::Query::run() {
    while (step()) {}
}

int64_t Db::Query::i64(int col) const { return sqlite3_column_int64(st_, col); }

std::string Db::Query::text(int col) const {
    const unsigned char *t = sqlite3_column_text(st_, col);
    return t ? std::string(reinterpret_cast<const char *>(t), static_cast<size_t>(sqlite3_column_bytes(st_, col)))
             : std::string();
}

double Db::Query::f64(int col) const { return sqlite3_column_double(st_, col); }

bool Db::Query::is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }

Db::ReadTx::ReadTx(Db &db) : db_(db) { db_.exec("BEGIN DEFERRED"); }

Db::ReadTx::~ReadTx() { sqlite3_exec(db_.db_, "ROLLBACK", nullptr, nullptr, nullptr); }

Db::Tx::Tx(Db &db) : db_(db) {
    db_.exec("BEGIN IMMEDIATE");
    open_ = true;
}

Db::Tx::~Tx() {
    if (open_) sqlite3_exec(db_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

void Db::Tx::commit() {
    db_.exec("COMMIT");
    open_ = false;
}

}  // namespace ckptdb

// Shared helpers of the doctest suites: temp directories, running the crash
// helper as a child process, reading files, and looking into a catalog with
// SQLite directly (as a person at the sqlite3 prompt would).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ckptdb.h"

extern char **environ;

namespace t {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
struct TempDir {
    std::string path;
    TempDir() {
        const char *base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ckptdb-test-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
        path = buf.data();
    }
    ~TempDir() {
        std::string cmd = "chmod -R u+rwx '" + path + "' 2>/dev/null; rm -rf '" + path + "'";
        if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", path.c_str());
    }
    std::string operator/(const std::string &name) const { return path + "/" + name; }
};

inline std::string read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline void write_file(const std::string &path, const std::string &bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << bytes;
}

inline bool exists(const std::string &path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

// Names in a directory, sorted.
inline std::set<std::string> names(const std::string &dir) {
    std::set<std::string> out;
    DIR *d = ::opendir(dir.c_str());
    if (!d) return out;
    while (auto *de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") out.insert(n);
    }
    ::closedir(d);
    return out;
}

inline std::set<std::string> temp_files(const std::string &dir) {
    std::set<std::string> out;
    for (const auto &n : names(dir))
        if (n.rfind(".ckptdb-tmp-", 0) == 0) out.insert(n);
    return out;
}

// The deterministic bytes the crash helper writes for (size, seed).
inline std::string pattern(size_t n, unsigned seed = 7) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 31 + seed) & 0xff);
    return s;
}

// One query against the catalog through SQLite, rows as '|'-joined text.
inline std::vector<std::string> query(const std::string &db_path, const std::string &sql) {
    sqlite3 *db = nullptr;
    if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        sqlite3_close(db);
        throw std::runtime_error("cannot open " + db_path);
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
        std::string m = sqlite3_errmsg(db);
        sqlite3_close(db);
        throw std::runtime_error("bad test query: " + m);
    }
    std::vector<std::string> rows;
    while (sqlite3_step(st) == SQLITE_ROW) {
        std::string row;
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            if (c) row += "|";
            const unsigned char *v = sqlite3_column_text(st, c);
            row += v ? reinterpret_cast<const char *>(v) : "NULL";
        }
        rows.push_back(row);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
}

inline std::string query1(const std::string &db_path, const std::string &sql) {
    auto rows = query(db_path, sql);
    return rows.empty() ? std::string("<none>") : rows[0];
}

inline std::string catalog_path(const TempDir &d) { return d / "ckptdb.sqlite"; }

// One statement against the catalog, read-write, from its own connection (as
// a person at the sqlite3 prompt would change it); throws when it fails.
inline void exec(const TempDir &d, const std::string &sql) {
    sqlite3 *db = nullptr;
    if (sqlite3_open_v2(catalog_path(d).c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        sqlite3_close(db);
        throw std::runtime_error("cannot open " + catalog_path(d));
    }
    sqlite3_busy_timeout(db, 10000);
    char *err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    if (rc != SQLITE_OK) throw std::runtime_error("test statement failed: " + msg + ": " + sql);
}

// Everything observable of a directory: names with sizes and contents' length,
// plus every catalog row. Used to prove that bad input changed nothing.
inline std::string snapshot(const TempDir &d) {
    std::string out;
    for (const auto &n : names(d.path)) {
        if (n.find("ckptdb.sqlite") == 0) continue;  // WAL/SHM sizes move without content changes
        struct stat st;
        ::lstat((d / n).c_str(), &st);
        out += n + ":" + std::to_string(st.st_size) + "\n";
    }
    if (exists(catalog_path(d))) {
        for (const char *table : {"checkpoints", "files", "runs", "events"})
            for (const auto &r : query(catalog_path(d), std::string("SELECT * FROM ") + table + " ORDER BY 1"))
                out += std::string(table) + ":" + r + "\n";
    }
    return out;
}

// A child process running the crash helper, with its stdout as a pipe.
struct Child {
    pid_t pid = -1;
    FILE *out = nullptr;
    int status = -1;

    // Runs the helper binary named by the environment variable helper_var.
    Child(const std::vector<std::string> &args, const char *helper_var = "CKPTDB_CRASH_HELPER") {
        const char *helper = std::getenv(helper_var);
        if (!helper) throw std::runtime_error(std::string(helper_var) + " is not set (run through meson test)");
        int fds[2];
        if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        std::vector<std::string> all{helper};
        all.insert(all.end(), args.begin(), args.end());
        std::vector<char *> argv;
        for (auto &a : all) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        int rc = ::posix_spawn(&pid, helper, &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(fds[1]);
        if (rc != 0) {
            ::close(fds[0]);
            throw std::runtime_error("posix_spawn failed");
        }
        out = ::fdopen(fds[0], "r");
    }
    ~Child() {
        if (pid > 0 && status < 0) {
            ::kill(pid, SIGKILL);
            wait();
        }
        if (out) std::fclose(out);
    }
    // The next line of the child's stdout ("" at EOF).
    std::string line() {
        char *buf = nullptr;
        size_t cap = 0;
        ssize_t n = ::getline(&buf, &cap, out);
        std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
        std::free(buf);
        if (!s.empty() && s.back() == '\n') s.pop_back();
        return s;
    }
    int wait() {
        if (status >= 0) return status;
        int st = 0;
        while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        status = st;
        return st;
    }
    void kill9() {
        ::kill(pid, SIGKILL);
        wait();
    }
    int exit_code() {
        int st = wait();
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
};

// Runs the helper to completion; returns its first output line.
inline std::string run_helper(const std::vector<std::string> &args, int *code = nullptr) {
    Child c(args);
    std::string l = c.line();
    int ec = c.exit_code();
    if (code) *code = ec;
    return l;
}

// A catalog opened through the C ABI (with a retention policy if given),
// closed when it goes; a failed open or policy throws with ckptdb's message.
struct Cat {
    ckptdb_catalog *db = nullptr;
    explicit Cat(const std::string &dir, const ckptdb_retention *policy = nullptr) {
        if (ckptdb_open(&db, dir.c_str(), nullptr) != CKPTDB_OK)
            throw std::runtime_error("ckptdb_open(" + dir + "): " + ckptdb_last_error());
        if (policy && ckptdb_set_retention(db, policy) != CKPTDB_OK) {
            std::string why = ckptdb_last_error();
            ckptdb_close(db);
            throw std::runtime_error("ckptdb_set_retention: " + why);
        }
    }
    ~Cat() { ckptdb_close(db); }
    Cat(const Cat &) = delete;
    Cat &operator=(const Cat &) = delete;
};

}  // namespace t

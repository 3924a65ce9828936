// Helpers shared by the ckptdb benchmarks: timing, statistics, work
// directories and recursive removal.  Header-only, POSIX.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <dirent.h>
#include <spawn.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

namespace bench {

inline double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

[[noreturn]] inline void die(const std::string &msg) {
    std::fprintf(stderr, "bench error: %s\n", msg.c_str());
    std::exit(1);
}

[[noreturn]] inline void die_errno(const std::string &what) { die(what + ": " + std::strerror(errno)); }

// Quantile q in [0, 1] by nearest rank on a copy of v.
inline double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    if (q <= 0.0) return v.front();
    size_t rank = size_t(q * double(v.size()) + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > v.size()) rank = v.size();
    return v[rank - 1];
}

inline double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Directory that holds the running executable (the build dir of bench/).
inline std::string exe_dir() {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return ".";
    buf[n] = '\0';
    std::string s(buf);
    size_t slash = s.rfind('/');
    return slash == std::string::npos ? std::string(".") : s.substr(0, slash);
}

// A fresh work directory: mkdtemp under $CKPTDB_BENCH_DIR if set, else
// under the directory of the executable (inside the Meson build dir, so on
// the same file system as the source tree).
inline std::string make_workdir(const char *prefix) {
    const char *env = std::getenv("CKPTDB_BENCH_DIR");
    std::string base = (env && *env) ? std::string(env) : exe_dir();
    if (mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) die_errno("mkdir " + base);
    std::string templ = base + "/" + prefix + "-XXXXXX";
    std::vector<char> t(templ.begin(), templ.end());
    t.push_back('\0');
    if (!mkdtemp(t.data())) die_errno("mkdtemp " + templ);
    return std::string(t.data());
}

// rm -rf path (no symlinks followed).  Errors are fatal.
inline void remove_tree_at(int parent_fd, const char *name, const std::string &shown) {
    struct stat st;
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return;
        die_errno("stat " + shown);
    }
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) die_errno("open " + shown);
        DIR *d = fdopendir(fd);
        if (!d) die_errno("fdopendir " + shown);
        std::vector<std::string> names;
        while (dirent *e = readdir(d)) {
            if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
            names.emplace_back(e->d_name);
        }
        for (const auto &n : names) remove_tree_at(fd, n.c_str(), shown + "/" + n);
        closedir(d);
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0) die_errno("rmdir " + shown);
    } else {
        if (unlinkat(parent_fd, name, 0) != 0) die_errno("unlink " + shown);
    }
}

inline void remove_tree(const std::string &path) { remove_tree_at(AT_FDCWD, path.c_str(), path); }

// Run argv (searched in PATH), optionally capturing stdout; dies unless it
// exits with status 0.
inline void run_child(const std::vector<std::string> &args, std::string *captured) {
    std::vector<char *> argv;
    for (const auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);

    int pipefd[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (captured) {
        if (pipe2(pipefd, O_CLOEXEC) != 0) die_errno("pipe");
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    }
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        die_errno("spawn " + args[0]);
    }
    if (captured) {
        close(pipefd[1]);
        captured->clear();
        char buf[4096];
        for (;;) {
            ssize_t n = read(pipefd[0], buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            captured->append(buf, size_t(n));
        }
        close(pipefd[0]);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) die_errno("waitpid");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string cmd;
        for (const auto &a : args) cmd += a + " ";
        die("command failed (status " + std::to_string(status) + "): " + cmd);
    }
}

}  // namespace bench

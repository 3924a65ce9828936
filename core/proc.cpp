#include "proc.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>
#include <sstream>

namespace ckptdb {

static std::string read_first_line(const std::string &path) {
    std::ifstream f(path);
    std::string line;
    std::getline(f, line);
    return line;
}

int64_t proc_start_time(int64_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = all.rfind(')');  // the command name may contain spaces and ')'
    if (close == std::string::npos) return -1;
    std::istringstream rest(all.substr(close + 2));
    std::string field;
    // Fields after the name start at 3 (state); starttime is field 22.
    for (int i = 3; i <= 22; i++) {
        if (!(rest >> field)) return -1;
    }
    try {
        return std::stoll(field);
    } catch (...) {
        return -1;
    }
}

ProcIdentity self_identity() {
    ProcIdentity id;
    char host[HOST_NAME_MAX + 1] = {0};
    if (::gethostname(host, sizeof host - 1) == 0) id.host = host;
    id.boot_id = read_first_line("/proc/sys/kernel/random/boot_id");
    id.pid = ::getpid();
    id.proc_start = proc_start_time(id.pid);
    return id;
}

Liveness liveness(const ProcIdentity &self, const std::string &host, const std::string &boot_id, int64_t pid,
                  int64_t proc_start) {
    if (host != self.host) return Liveness::unknown;
    if (boot_id != self.boot_id) return Liveness::dead;
    if (pid <= 0) return Liveness::dead;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return Liveness::dead;
    int64_t start = proc_start_time(pid);
    if (start < 0) return Liveness::dead;            // gone between the two checks (or a zombie's stat vanished)
    if (start != proc_start) return Liveness::dead;  // the pid was reused
    return Liveness::alive;
}

}  // namespace ckptdb

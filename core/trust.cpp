#include "trust.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb {

// "uid 65534 (nobody)", or "uid 4242" when no user has that uid.
static std::string who(uid_t uid) {
    std::string out = "uid " + std::to_string(uid);
    long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buf(hint > 0 ? static_cast<size_t>(hint) : 16384);
    struct passwd pw, *found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found && found->pw_name)
        out += " (" + std::string(found->pw_name) + ")";
    return out;
}

static std::string octal_mode(mode_t mode) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

std::string trust_problem(const struct stat &st) {
    if (S_ISDIR(st.st_mode) && (st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
        return "it is writable by every user and has no sticky bit, so any user could have replaced the catalog "
               "or a checkpoint in it";
    uid_t me = ::geteuid();
    if (st.st_uid != me && st.st_uid != 0)
        return "it belongs to " + who(st.st_uid) + ", not to this user (" + who(me) +
               ") or root, so that user could have written it";
    return "";
}

std::string distrust(const struct stat &st, const std::string &what, const std::string &path) {
    std::string why = trust_problem(st);
    if (why.empty()) return why;
    return "the " + what + " '" + path + "' (owner " + who(st.st_uid) + ", mode " + octal_mode(st.st_mode) +
           "): " + why;
}

void fail_untrusted(const std::vector<std::string> &found) {
    std::string msg = "refusing to trust ";
    for (size_t i = 0; i < found.size(); i++) msg += (i ? "; and " : "") + found[i];
    fail(CKPTDB_EUNTRUSTED, msg + ". Nothing was read from " + (found.size() > 1 ? "them" : "it") +
                                ". If the directory is shared on purpose, open it with CKPTDB_OPEN_TRUST_SHARED "
                                "(Python: trust_shared=True; ckptdb: --trust-shared)");
}

void require_trusted(const struct stat &st, const std::string &what, const std::string &path) {
    std::string d = distrust(st, what, path);
    if (!d.empty()) fail_untrusted({d});
}

}  // namespace ckptdb

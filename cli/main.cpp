// ckptdb - the command-line tool over the C++ wrapper of the C ABI
// (capi/ckptdb.hpp, namespace ckptdbxx).
//
// Exit codes (also in `ckptdb --help` and cli/README.md):
//   0 ok, 1 error, 2 usage (bad arguments or option values),
//   3 corruption found (verify, latest, fsck, sync), 4 nothing found
//   (unknown id or name, no checkpoint).
#include <ckptdb.hpp>

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using json = nlohmann::ordered_json;

enum Exit { kOk = 0, kError = 1, kUsage = 2, kCorrupt = 3, kNotFound = 4 };

const char *const kExitCodes =
    "Exit codes:\n"
    "  0  ok\n"
    "  1  error (missing directory, not a catalog, I/O, locked catalog, ...)\n"
    "  2  usage: bad arguments or option values\n"
    "  3  corruption found (verify, latest, fsck, sync)\n"
    "  4  nothing found: unknown id or name, no checkpoint";

// A failure that ends the command: one line on stderr and an exit code.
struct Failure {
    int exit_code;
    std::string message;
};

[[noreturn]] void fail(int exit_code, std::string message) { throw Failure{exit_code, std::move(message)}; }

int exit_for(int rc) {
    switch (rc) {
        case CKPTDB_ENOTFOUND:
            return kNotFound;
        case CKPTDB_ECORRUPT:
            return kCorrupt;
        default:
            return kError;
    }
}

// A library failure the command does not handle itself ends it with the
// library's message and the exit code of its status (caught in main).

// --trust-shared: CKPTDB_OPEN_TRUST_SHARED on every catalog the command opens.
unsigned g_trust_flag = 0;
// CKPTDB_OPEN_RESERVE: set by prune and fsck --repair, whose opens may use
// the directory's reserve on a completely full disk.
unsigned g_reserve_flag = 0;

json str_or_null(const std::string &s) { return s.empty() ? json(nullptr) : json(s); }

// Print JSON with invalid UTF-8 (names are bytes) replaced rather than thrown on.
void print_json(const json &j) { std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n"; }

// ------------------------------------------------------------------------
// Formatting
// ------------------------------------------------------------------------

std::string human_size(int64_t bytes) {
    if (bytes < 0) return "-";
    if (bytes < 1024) return std::to_string(bytes) + " B";
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = double(bytes);
    int i = -1;
    while (v >= 1024.0 && i < 5) {
        v /= 1024.0;
        ++i;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[i]);
    return buf;
}

std::string duration_text(double seconds) {
    if (!(seconds >= 0)) seconds = 0;
    int64_t s = int64_t(seconds + 0.5);
    char buf[32];
    if (seconds < 9.95)
        std::snprintf(buf, sizeof buf, "%.1fs", seconds);
    else if (s < 60)
        std::snprintf(buf, sizeof buf, "%" PRId64 "s", s);
    else if (s < 3600)
        std::snprintf(buf, sizeof buf, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else
        std::snprintf(buf, sizeof buf, "%" PRId64 "h%02" PRId64 "m", s / 3600, (s % 3600) / 60);
    return buf;
}

// "2026-11-27T02:30:12.345Z" -> seconds since the epoch; -1 if unparsable.
int64_t parse_time(const std::string &t) {
    int y, mo, d, h, mi, s;
    if (t.size() < 19 || std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &s) != 6) return -1;
    struct tm tm {};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return int64_t(timegm(&tm));
}

std::string age_text(const std::string &committed_at, const std::string &created_at) {
    int64_t t = parse_time(committed_at.empty() ? created_at : committed_at);
    if (t < 0) return "-";
    int64_t a = int64_t(std::time(nullptr)) - t;
    if (a < 0) a = 0;
    if (a < 60) return std::to_string(a) + "s";
    if (a < 3600) return std::to_string(a / 60) + "m";
    if (a < 86400) return std::to_string(a / 3600) + "h";
    return std::to_string(a / 86400) + "d";
}

// A plain text table: columns separated by two spaces, numbers right-aligned.
class Table {
public:
    Table(std::vector<std::string> header, std::set<size_t> right) : right_(std::move(right)) {
        rows_.push_back(std::move(header));
    }
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
    void print(std::FILE *f = stdout) const {
        std::vector<size_t> w;
        for (const auto &r : rows_)
            for (size_t i = 0; i < r.size(); ++i) {
                if (w.size() <= i) w.push_back(0);
                w[i] = std::max(w[i], r[i].size());
            }
        for (const auto &r : rows_) {
            std::string line;
            for (size_t i = 0; i < r.size(); ++i) {
                if (i) line += "  ";
                size_t pad = w[i] - r[i].size();
                if (right_.count(i))
                    line += std::string(pad, ' ') + r[i];
                else if (i + 1 < r.size())
                    line += r[i] + std::string(pad, ' ');
                else
                    line += r[i];
            }
            std::fprintf(f, "%s\n", line.c_str());
        }
    }

private:
    std::vector<std::vector<std::string>> rows_;
    std::set<size_t> right_;
};

// ------------------------------------------------------------------------
// Progress on stderr: a bar on a terminal, one plain line per checkpoint
// otherwise.
// ------------------------------------------------------------------------

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Progress {
public:
    Progress(std::string verb, int64_t total)
        : verb_(std::move(verb)), total_(total), tty_(isatty(STDERR_FILENO) == 1), start_(now_seconds()) {}
    ~Progress() { clear(); }

    bool tty() const { return tty_; }
    void set_total(int64_t total) { total_ = total; }
    int64_t done() const { return done_; }
    int64_t total() const { return total_; }

    void set_label(std::string label) {
        label_ = std::move(label);
        if (tty_) draw(true);
    }
    void update(int64_t done) {
        done_ = done;
        if (tty_) draw(false);
    }
    // One plain line on stderr (skipped on a terminal, where the bar says it).
    void plain(const std::string &line) {
        if (tty_) return;
        std::fprintf(stderr, "%s\n", line.c_str());
        std::fflush(stderr);
    }
    // A line on stdout, with the bar taken down and put back around it.
    void out(const std::string &line) {
        clear();
        std::fprintf(stdout, "%s\n", line.c_str());
        std::fflush(stdout);
        if (tty_ && drawn_once_) draw(true);
    }
    std::string rate_text() const {
        double el = now_seconds() - start_;
        if (el <= 0.0 || done_ <= 0) return "-";
        return human_size(int64_t(double(done_) / el)) + "/s";
    }
    double elapsed() const { return now_seconds() - start_; }
    void clear() {
        if (tty_ && shown_) {
            std::fputs("\r\033[K", stderr);
            std::fflush(stderr);
            shown_ = false;
        }
    }

private:
    void draw(bool force) {
        double t = now_seconds();
        if (!force && t - last_draw_ < 0.1 && done_ < total_) return;
        last_draw_ = t;
        double el = t - start_;
        double frac = total_ > 0 ? std::min(1.0, double(done_) / double(total_)) : 1.0;
        const int width = 24;
        int fill = int(frac * width + 0.5);
        std::string bar = "[" + std::string(size_t(fill), '#') + std::string(size_t(width - fill), '-') + "]";
        std::string left = "-";
        if (done_ >= total_) {
            left = "0s";
        } else if (done_ > 0 && el > 0.05) {
            double rate = double(done_) / el;
            left = duration_text(double(total_ - done_) / rate);
        }
        char pct[16];
        std::snprintf(pct, sizeof pct, "%3d%%", int(frac * 100.0));
        std::string line = verb_ + " " + pct + " " + bar + " " + human_size(done_) + "/" + human_size(total_) + "  " +
                           rate_text() + "  " + left + " left  " + label_;
        struct winsize ws {};
        size_t cols = 80;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
        if (line.size() >= cols) line.resize(cols - 1);
        std::fprintf(stderr, "\r%s\033[K", line.c_str());
        std::fflush(stderr);
        shown_ = true;
        drawn_once_ = true;
    }

    std::string verb_, label_;
    int64_t total_ = 0, done_ = 0;
    bool tty_;
    bool shown_ = false, drawn_once_ = false;
    double start_, last_draw_ = 0;
};

// ------------------------------------------------------------------------
// The catalog
// ------------------------------------------------------------------------

struct EventRec {
    std::string event;
    int64_t checkpoint_id;
    std::string detail;
};

enum class Mode { ReadOnly, ReadWrite };

// Never creates anything: a missing directory or catalog fails (exit 1).
ckptdbxx::catalog open_catalog(const std::string &dir, Mode mode, std::vector<EventRec> *events = nullptr) {
    ckptdbxx::open_options o;
    o.flags =
        CKPTDB_OPEN_NO_CREATE | (mode == Mode::ReadOnly ? CKPTDB_OPEN_READONLY : 0u) | g_trust_flag | g_reserve_flag;
    if (events)
        o.on_event = [events](const std::string &event, int64_t checkpoint_id, const std::string &detail) {
            events->push_back(EventRec{event, checkpoint_id, detail});
        };
    try {
        return ckptdbxx::catalog(dir, o);
    } catch (const ckptdbxx::error &e) {
        fail(kError, e.detail());
    }
}

using Entry = ckptdbxx::entry;

json metadata_json(const std::string &text) {
    if (text.empty()) return json::object();
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return json(text);
    return j;
}

json entry_json(const Entry &e) {
    json j;
    j["id"] = e.id;
    j["name"] = e.name;
    j["path"] = e.path;
    j["kind"] = e.kind;
    j["epoch"] = e.epoch;
    j["step"] = e.step;
    j["size"] = e.size < 0 ? json(nullptr) : json(e.size);
    j["checksum"] = str_or_null(e.checksum);
    j["status"] = e.status_name();
    j["pinned"] = e.pinned;
    j["run_id"] = e.run_id ? json(e.run_id) : json(nullptr);
    j["file_count"] = e.file_count;
    j["created_at"] = str_or_null(e.created_at);
    j["committed_at"] = str_or_null(e.committed_at);
    j["deleted_at"] = str_or_null(e.deleted_at);
    j["metadata"] = metadata_json(e.metadata);
    j["layout"] = e.is_dir() ? "dir" : "file";
    return j;
}

std::string status_text(const Entry &e) {
    std::string s = e.status_name();
    if (e.pinned) s += ",pinned";
    return s;
}

bool all_digits(const std::string &s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// ID|NAME: all digits is an id, anything else a name.
// dir: as the user gave it, for the message.
Entry resolve(ckptdbxx::catalog &cat, const std::string &dir, const std::string &target) {
    if (target.empty()) fail(kUsage, "an empty checkpoint id or name");
    std::string what;
    try {
        if (all_digits(target)) {
            errno = 0;
            unsigned long long v = std::strtoull(target.c_str(), nullptr, 10);
            if (errno == ERANGE || v > uint64_t(INT64_MAX))
                fail(kUsage, "checkpoint id '" + target + "' is out of range");
            what = "with id " + target;
            return cat.get(int64_t(v));
        }
        what = "named '" + target + "'";
        return cat.get(target);
    } catch (const ckptdbxx::error &e) {
        if (e.code() == CKPTDB_ENOTFOUND) fail(kNotFound, "no checkpoint " + what + " in '" + dir + "'");
        throw;
    }
}

// ------------------------------------------------------------------------
// Option values
// ------------------------------------------------------------------------

// 4096, 512K, 8M, 1.5G, 2T (binary units; "KiB"/"KB"/"k" all accepted).
int64_t parse_size(const std::string &flag, const std::string &s) {
    auto bad = [&]() -> int64_t {
        fail(kUsage, flag + " needs a size such as 4096, 512K, 8M or 1.5G, not '" + s + "'");
    };
    if (s.empty() || !((s[0] >= '0' && s[0] <= '9') || s[0] == '.')) return bad();
    char *end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (errno != 0 || end == s.c_str() || !(v >= 0)) return bad();
    std::string suffix(end);
    double mult = 1;
    if (!suffix.empty()) {
        switch (suffix[0]) {
            case 'k':
            case 'K':
                mult = 1024.0;
                break;
            case 'm':
            case 'M':
                mult = 1024.0 * 1024;
                break;
            case 'g':
            case 'G':
                mult = 1024.0 * 1024 * 1024;
                break;
            case 't':
            case 'T':
                mult = 1024.0 * 1024 * 1024 * 1024;
                break;
            case 'b':
            case 'B':
                mult = 1;
                break;
            default:
                return bad();
        }
        std::string rest = suffix.substr(1);
        bool ok = rest.empty() || (mult > 1 && (rest == "iB" || rest == "B" || rest == "ib" || rest == "b")) ||
                  (mult == 1 && suffix.size() == 1);
        if (!ok) return bad();
    }
    double bytes = v * mult;
    if (bytes >= 9.2e18) fail(kUsage, flag + ": size '" + s + "' is too large");
    return int64_t(bytes);
}

// 3600, 90s, 30m, 12h, 7d.
int64_t parse_seconds(const std::string &flag, const std::string &s) {
    auto bad = [&]() -> int64_t {
        fail(kUsage, flag + " needs a number of seconds >= 0 (or 30m, 12h, 7d), not '" + s + "'");
    };
    if (s.empty() || !(s[0] >= '0' && s[0] <= '9')) return bad();
    char *end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno != 0 || v < 0) return bad();
    std::string suffix(end);
    int64_t mult = 1;
    if (suffix == "" || suffix == "s")
        mult = 1;
    else if (suffix == "m")
        mult = 60;
    else if (suffix == "h")
        mult = 3600;
    else if (suffix == "d")
        mult = 86400;
    else
        return bad();
    if (v > INT64_MAX / mult) return bad();
    return int64_t(v) * mult;
}

int parse_count(const std::string &flag, const std::string &s, int min) {
    if (s == "all" && min <= -1) return -1;
    char *end = nullptr;
    errno = 0;
    long v = s.empty() ? 0 : std::strtol(s.c_str(), &end, 10);
    if (s.empty() || errno != 0 || *end != '\0' || v < min || v > INT_MAX)
        fail(kUsage, flag + " needs " + (min < 0 ? "a count >= 0 or 'all'" : "an integer >= " + std::to_string(min)) +
                         ", not '" + s + "'");
    return int(v);
}

// ------------------------------------------------------------------------
// Commands
// ------------------------------------------------------------------------

struct Common {
    std::string dir;
    bool json = false;
};

int cmd_ls(const Common &c, bool all, const std::string &kind) {
    ckptdbxx::catalog cat = open_catalog(c.dir, Mode::ReadOnly);
    unsigned mask = all ? 0u
                        : (CKPTDB_STATUS_BIT(CKPTDB_STATUS_WRITING) | CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE) |
                           CKPTDB_STATUS_BIT(CKPTDB_STATUS_CORRUPT));
    std::vector<Entry> es = cat.list(mask, kind.empty() ? std::nullopt : std::optional<std::string>(kind));
    if (c.json) {
        json arr = json::array();
        for (const auto &e : es) arr.push_back(entry_json(e));
        json j;
        j["dir"] = cat.dir();
        j["checkpoints"] = std::move(arr);
        print_json(j);
        return kOk;
    }
    Table t({"ID", "NAME", "KIND", "EPOCH", "STEP", "SIZE", "STATUS", "AGE"}, {0, 3, 4, 5});
    for (const auto &e : es)
        t.add({std::to_string(e.id), e.is_dir() ? e.name + "/" : e.name, e.kind, std::to_string(e.epoch),
               std::to_string(e.step), human_size(e.size), status_text(e), age_text(e.committed_at, e.created_at)});
    t.print();
    return kOk;
}

int cmd_show(const Common &c, const std::string &target) {
    ckptdbxx::catalog cat = open_catalog(c.dir, Mode::ReadOnly);
    Entry e = resolve(cat, c.dir, target);
    std::vector<ckptdbxx::file> files = cat.files(e.id);
    std::vector<ckptdbxx::event> events = cat.events(e.id, 0);

    if (c.json) {
        json j = entry_json(e);
        json fa = json::array();
        for (const auto &f : files)
            fa.push_back(json{{"rank", f.rank},
                              {"name", f.name},
                              {"path", str_or_null(f.path)},
                              {"size", f.size < 0 ? json(nullptr) : json(f.size)},
                              {"checksum", str_or_null(f.checksum)}});
        json ea = json::array();
        for (const auto &ev : events)
            ea.push_back(json{{"id", ev.id},
                              {"at", ev.at},
                              {"run_id", ev.run_id ? json(ev.run_id) : json(nullptr)},
                              {"checkpoint_id", ev.checkpoint_id ? json(ev.checkpoint_id) : json(nullptr)},
                              {"event", ev.name},
                              {"detail", str_or_null(ev.detail)}});
        j["files"] = std::move(fa);
        j["events"] = std::move(ea);
        print_json(j);
        return kOk;
    }
    auto line = [](const char *k, const std::string &v) { std::printf("%-13s %s\n", k, v.c_str()); };
    line("id:", std::to_string(e.id));
    line("name:", e.name);
    line("path:", e.path);
    line("kind:", e.kind);
    line("epoch:", std::to_string(e.epoch));
    line("step:", std::to_string(e.step));
    line("size:", e.size < 0 ? "-" : std::to_string(e.size) + " (" + human_size(e.size) + ")");
    line("checksum:", e.checksum.empty() ? "-" : e.checksum);
    line("status:", e.status_name());
    line("pinned:", e.pinned ? "yes" : "no");
    line("run_id:", e.run_id ? std::to_string(e.run_id) : "-");
    line("file_count:", std::to_string(e.file_count) + (e.is_dir() ? " (a directory)" : ""));
    line("created_at:", e.created_at.empty() ? "-" : e.created_at);
    line("committed_at:", e.committed_at.empty() ? "-" : e.committed_at);
    line("deleted_at:", e.deleted_at.empty() ? "-" : e.deleted_at);
    line("age:", age_text(e.committed_at, e.created_at));
    std::printf("metadata:\n");
    std::string md = metadata_json(e.metadata).dump(2, ' ', false, json::error_handler_t::replace);
    size_t pos = 0;
    while (pos <= md.size()) {
        size_t nl = md.find('\n', pos);
        std::printf("  %s\n", md.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos).c_str());
        if (nl == std::string::npos) break;
        pos = nl + 1;
    }
    std::printf("files:\n");
    if (files.empty()) std::printf("  (none)\n");
    for (const auto &f : files)
        std::printf("  rank %" PRId64 "  %s  %s  %s\n", f.rank, f.name.c_str(),
                    f.size < 0 ? "-" : (std::to_string(f.size) + " B").c_str(),
                    f.checksum.empty() ? "-" : f.checksum.c_str());
    std::printf("events:\n");
    if (events.empty()) std::printf("  (none)\n");
    for (const auto &ev : events) {
        std::string run = ev.run_id ? "  run " + std::to_string(ev.run_id) : "";
        std::printf("  %s  %s%s%s%s\n", ev.at.c_str(), ev.name.c_str(), run.c_str(), ev.detail.empty() ? "" : "  ",
                    ev.detail.c_str());
    }
    return kOk;
}

int cmd_latest(const Common &c, const std::string &kind, bool no_verify, bool path_only) {
    std::vector<EventRec> events;
    ckptdbxx::catalog cat = open_catalog(c.dir, Mode::ReadWrite, &events);
    std::optional<Entry> found;
    std::optional<ckptdbxx::error> err;
    try {
        found = cat.latest(kind.empty() ? std::nullopt : std::optional<std::string>(kind),
                           no_verify ? CKPTDB_VERIFY_NONE : CKPTDB_VERIFY_FULL);
    } catch (const ckptdbxx::error &x) {
        err = x;
    }
    // What the search marked corrupt on the way.
    std::vector<std::string> bad;
    for (const auto &ev : events) {
        if (ev.event != "corrupt") continue;
        std::string name = "?";
        try {
            name = cat.get(ev.checkpoint_id).name;
        } catch (const ckptdbxx::error &) {
            // the name is only for the message
        }
        bad.push_back(name + " (id " + std::to_string(ev.checkpoint_id) + ")");
        std::fprintf(stderr, "ckptdb: %s (id %" PRId64 ") failed verification and is now marked corrupt%s%s\n",
                     name.c_str(), ev.checkpoint_id, ev.detail.empty() ? "" : ": ", ev.detail.c_str());
    }
    if (err) fail(exit_for(err->code()), err->detail());
    if (!found) {
        std::string what = kind.empty() ? "complete checkpoint" : "complete checkpoint of kind '" + kind + "'";
        std::string msg = bad.empty() ? "no " + what + " in '" + c.dir + "'"
                                      : "no " + what + " that verifies in '" + c.dir + "' (" +
                                            std::to_string(bad.size()) + " failed verification)";
        fail(kNotFound, msg);
    }
    const Entry &e = *found;
    if (!bad.empty())
        std::fprintf(stderr, "ckptdb: using %s (id %" PRId64 "), the newest checkpoint that verifies\n", e.name.c_str(),
                     e.id);
    if (path_only) {
        std::printf("%s\n", e.path.c_str());
        return kOk;
    }
    if (c.json) {
        print_json(entry_json(e));
        return kOk;
    }
    Table t({"ID", "NAME", "KIND", "EPOCH", "STEP", "SIZE", "STATUS", "AGE", "PATH"}, {0, 3, 4, 5});
    t.add({std::to_string(e.id), e.name, e.kind, std::to_string(e.epoch), std::to_string(e.step), human_size(e.size),
           status_text(e), age_text(e.committed_at, e.created_at), e.path});
    t.print();
    return kOk;
}

int cmd_verify(const Common &c, const std::string &target, bool all) {
    ckptdbxx::catalog cat = open_catalog(c.dir, Mode::ReadWrite);
    std::vector<Entry> targets;
    if (!target.empty()) {
        targets.push_back(resolve(cat, c.dir, target));
    } else {
        (void)all;  // the default: every complete checkpoint
        targets = cat.list(CKPTDB_STATUS_BIT(CKPTDB_STATUS_COMPLETE));
        if (targets.empty()) fail(kNotFound, "no complete checkpoint to verify in '" + c.dir + "'");
    }
    int64_t total = 0;
    for (const auto &e : targets) total += std::max<int64_t>(0, e.size);

    Progress p("verify", total);
    json results = json::array();
    int64_t ok = 0, corrupt = 0, errors = 0, base = 0;
    size_t i = 0;
    for (const auto &e : targets) {
        ++i;
        p.set_label(e.name);
        // A named checkpoint the library refuses to verify (its status) is
        // the command's error, said on one line.
        if (target.empty())
            p.plain("verify: [" + std::to_string(i) + "/" + std::to_string(targets.size()) + "] " + e.name + " (" +
                    human_size(e.size) + ")");
        int rc = CKPTDB_OK;
        std::string msg;
        try {
            cat.verify(e.id, [&p, base](int64_t done, int64_t) { p.update(base + done); });
        } catch (const ckptdbxx::error &x) {
            if (!target.empty() && x.code() != CKPTDB_ECORRUPT && x.code() != CKPTDB_EIO) {
                p.clear();
                throw;
            }
            rc = x.code();
            msg = x.detail();
        }
        base += std::max<int64_t>(0, e.size);
        p.update(base);
        std::string result;
        if (rc == CKPTDB_OK) {
            ++ok;
            result = e.status == CKPTDB_STATUS_CORRUPT ? "restored" : "ok";
        } else if (rc == CKPTDB_ECORRUPT) {
            ++corrupt;
            result = "corrupt";
        } else {
            ++errors;
            result = "error";
        }
        if (c.json) {
            results.push_back(json{{"id", e.id},
                                   {"name", e.name},
                                   {"size", e.size < 0 ? json(nullptr) : json(e.size)},
                                   {"result", result},
                                   {"message", str_or_null(msg)}});
        } else {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%-8s %6" PRId64 "  ", result.c_str(), e.id);
            p.out(std::string(buf) + e.name + "  " + human_size(e.size) + (msg.empty() ? "" : "  " + msg));
        }
    }
    p.clear();
    p.plain("verify: " + std::to_string(targets.size()) + " checked, " + human_size(total) + " in " +
            duration_text(p.elapsed()) + " (" + p.rate_text() + ")");
    if (c.json) {
        json j;
        j["checked"] = int64_t(targets.size());
        j["ok"] = ok;
        j["corrupt"] = corrupt;
        j["errors"] = errors;
        j["bytes"] = total;
        j["checkpoints"] = std::move(results);
        print_json(j);
    } else {
        std::printf("verified %zu checkpoint%s (%s): %" PRId64 " ok, %" PRId64 " corrupt%s\n", targets.size(),
                    targets.size() == 1 ? "" : "s", human_size(total).c_str(), ok, corrupt,
                    errors ? (", " + std::to_string(errors) + " errors").c_str() : "");
    }
    if (corrupt) return kCorrupt;
    if (errors) return kError;
    return kOk;
}

struct PruneOpts {
    std::vector<std::string> keep;
    std::string keep_default, every_n_epochs, interval, best, best_mode, best_k, max_bytes;
    bool dry_run = false;
    bool corrupt = false;
};

int cmd_prune(const Common &c, const PruneOpts &o) {
    // Build the policy first: bad values are usage errors and nothing is opened.
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    bool custom = false;
    std::vector<std::string> kinds;
    std::vector<ckptdb_keep_kind> keep;
    kinds.reserve(o.keep.size());
    for (const auto &k : o.keep) {
        size_t eq = k.find('=');
        if (eq == std::string::npos || eq == 0)
            fail(kUsage, "--keep needs KIND=N (e.g. epoch=5, step=all), not '" + k + "'");
        std::string kind = k.substr(0, eq);
        for (const auto &seen : kinds)
            if (seen == kind) fail(kUsage, "--keep: kind '" + kind + "' is given twice");
        int n = parse_count("--keep " + kind, k.substr(eq + 1), -1);
        kinds.push_back(kind);
        keep.push_back(ckptdb_keep_kind CKPTDB_KEEP_KIND(nullptr, n));
    }
    for (size_t i = 0; i < keep.size(); ++i) keep[i].kind = kinds[i].c_str();
    if (!o.keep.empty()) {
        r.keep_last = keep.data();
        r.keep_last_count = keep.size();
        custom = true;
    }
    if (!o.keep_default.empty()) r.keep_last_default = parse_count("--keep-default", o.keep_default, -1), custom = true;
    if (!o.every_n_epochs.empty())
        r.keep_every_n_epochs = parse_count("--every-n-epochs", o.every_n_epochs, 0), custom = true;
    if (!o.interval.empty()) r.keep_interval_seconds = parse_seconds("--interval", o.interval), custom = true;
    if (!o.best.empty()) r.best_metric = o.best.c_str(), custom = true;
    if (!o.best_mode.empty()) {
        if (o.best.empty()) fail(kUsage, "--best-mode needs --best METRIC");
        if (o.best_mode == "min")
            r.best_mode = CKPTDB_BEST_MIN;
        else if (o.best_mode == "max")
            r.best_mode = CKPTDB_BEST_MAX;
        else
            fail(kUsage, "--best-mode must be 'min' or 'max', not '" + o.best_mode + "'");
    }
    if (!o.best_k.empty()) {
        if (o.best.empty()) fail(kUsage, "--best-k needs --best METRIC");
        r.best_k = parse_count("--best-k", o.best_k, 1);
    }
    if (!o.max_bytes.empty()) r.max_bytes = parse_size("--max-bytes", o.max_bytes), custom = true;
    if (o.corrupt) r.prune_corrupt = 1, custom = true;

    // On a completely full disk even the open may need the reserve.
    if (!o.dry_run) g_reserve_flag = CKPTDB_OPEN_RESERVE;
    ckptdbxx::catalog cat = open_catalog(c.dir, o.dry_run ? Mode::ReadOnly : Mode::ReadWrite);
    ckptdbxx::prune_result pr;
    try {
        pr = cat.prune(custom ? &r : nullptr, o.dry_run);
    } catch (const ckptdbxx::error &e) {
        if (e.code() == CKPTDB_EINVAL) fail(kUsage, e.detail());
        throw;
    }
    const std::vector<ckptdbxx::prune_item> &rows = pr.items;
    const int64_t count = pr.count, bytes = pr.bytes;
    if (c.json) {
        json arr = json::array();
        for (const auto &row : rows)
            arr.push_back(json{{"id", row.id},
                               {"name", row.name},
                               {"size", row.size < 0 ? json(nullptr) : json(row.size)},
                               {"rule", row.rule}});
        json j;
        j["dry_run"] = o.dry_run;
        j["count"] = count;
        j["bytes"] = bytes;
        j["checkpoints"] = std::move(arr);
        print_json(j);
        return kOk;
    }
    if (rows.empty()) {
        std::printf("nothing to prune\n");
        return kOk;
    }
    Table t({"ID", "NAME", "SIZE", "RULE"}, {0, 2});
    for (const auto &row : rows) t.add({std::to_string(row.id), row.name, human_size(row.size), row.rule});
    t.print();
    std::printf("%s %" PRId64 " checkpoint%s (%s)%s\n", o.dry_run ? "would prune" : "pruned", count,
                count == 1 ? "" : "s", human_size(bytes).c_str(), o.dry_run ? "; nothing changed (--dry-run)" : "");
    return kOk;
}

int cmd_pin(const Common &c, const std::string &target, bool pin) {
    ckptdbxx::catalog cat = open_catalog(c.dir, Mode::ReadWrite);
    Entry e = resolve(cat, c.dir, target);
    cat.pin(e.id, pin);
    if (c.json) {
        print_json(json{{"id", e.id}, {"name", e.name}, {"pinned", pin}});
        return kOk;
    }
    std::printf("%s %" PRId64 " %s\n", pin ? "pinned" : "unpinned", e.id, e.name.c_str());
    return kOk;
}

using FsckRow = ckptdbxx::finding;

json fsck_json(const FsckRow &r) {
    return json{{"kind", r.kind},
                {"name", r.name},
                {"checkpoint_id", r.checkpoint_id ? json(r.checkpoint_id) : json(nullptr)},
                {"detail", str_or_null(r.detail)},
                {"action", str_or_null(r.action)}};
}

void print_fsck_rows(const std::vector<FsckRow> &rows) {
    Table t({"FINDING", "NAME", "ID", "DETAIL", "ACTION"}, {2});
    for (const auto &r : rows)
        t.add({r.kind, r.name, r.checkpoint_id ? std::to_string(r.checkpoint_id) : "-",
               r.detail.empty() ? "-" : r.detail, r.action.empty() ? "-" : r.action});
    t.print();
}

int cmd_fsck(const Common &c, bool repair) {
    // The library does the whole check (and repair); this only renders it.
    if (repair) g_reserve_flag = CKPTDB_OPEN_RESERVE;  // on a full disk even the open may need the reserve
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    o.flags = g_trust_flag | g_reserve_flag;
    ckptdbxx::fsck_report report;
    try {
        report = ckptdbxx::fsck_dir(c.dir, &o, repair);
    } catch (const ckptdbxx::error &e) {
        fail(kError, e.detail());
    }
    const std::vector<FsckRow> &rows = report.findings;
    const int64_t problems = report.problems;
    const bool rebuilt = report.rebuilt;
    const bool lost = !rebuilt && !rows.empty() &&
                      (rows.front().kind == "catalog_missing" || rows.front().kind == "catalog_unreadable");

    if (c.json) {
        json arr = json::array();
        for (const auto &r : rows) arr.push_back(fsck_json(r));
        print_json(json{{"repair", repair}, {"rebuilt", rebuilt}, {"problems", problems}, {"findings", arr}});
    } else if (lost) {
        print_fsck_rows(rows);
        std::printf("the catalog is %s; 'ckptdb fsck --repair %s' rebuilds it from the files present\n",
                    rows.front().kind == "catalog_missing" ? "missing" : "unreadable", c.dir.c_str());
    } else {
        if (!rows.empty()) print_fsck_rows(rows);
        if (problems == 0)
            std::printf("no problems found\n");
        else
            std::printf("%" PRId64 " problem%s found%s\n", problems, problems == 1 ? "" : "s",
                        repair ? ", repaired what can be repaired safely (unknown files are never deleted)"
                               : "; 'ckptdb fsck --repair' fixes what can be fixed safely");
    }
    return problems ? kCorrupt : kOk;
}

int cmd_adopt(const Common &c) {
    ckptdbxx::rebuild_report report = ckptdbxx::adopt(c.dir);
    const std::vector<FsckRow> &items = report.findings;
    const int64_t rows = report.rows;
    int64_t corrupt = 0;
    for (const auto &it : items)
        if (it.kind == "adopted" && it.action.find("quarantined") != std::string::npos) ++corrupt;
    if (c.json) {
        json arr = json::array();
        for (const auto &r : items) arr.push_back(fsck_json(r));
        print_json(json{{"adopted", rows}, {"corrupt", corrupt}, {"findings", arr}});
    } else {
        if (!items.empty()) print_fsck_rows(items);
        std::printf("adopted %" PRId64 " checkpoint%s (%" PRId64
                    " corrupt, quarantined), ordered by modification "
                    "time; all pinned: 'ckptdb unpin %s ID' releases one to rotation\n",
                    rows, rows == 1 ? "" : "s", corrupt, c.dir.c_str());
    }
    return kOk;
}

int cmd_history(const Common &c) {
    ckptdbxx::catalog cat = open_catalog(c.dir, Mode::ReadOnly);
    std::vector<ckptdbxx::run> runs = cat.runs();
    if (c.json) {
        json arr = json::array();
        for (const auto &r : runs)
            arr.push_back(
                json{{"id", r.id},
                     {"host", r.host},
                     {"pid", r.pid},
                     {"started_at", str_or_null(r.started_at)},
                     {"ended_at", str_or_null(r.ended_at)},
                     {"exit_reason", str_or_null(r.exit_reason)},
                     {"slurm_job_id", str_or_null(r.slurm_job_id)},
                     {"slurm_array_job_id", str_or_null(r.slurm_array_job_id)},
                     {"slurm_array_task_id", str_or_null(r.slurm_array_task_id)},
                     {"slurm_restart_count", r.slurm_restart_count < 0 ? json(nullptr) : json(r.slurm_restart_count)},
                     {"resumed_from", r.resumed_from ? json(r.resumed_from) : json(nullptr)},
                     {"last_step", r.last_step < 0 ? json(nullptr) : json(r.last_step)},
                     {"last_saved_step", r.last_saved_step < 0 ? json(nullptr) : json(r.last_saved_step)},
                     {"saves", r.saves},
                     {"steps_lost", r.steps_lost}});
        print_json(json{{"runs", arr}});
        return kOk;
    }
    Table t({"RUN", "HOST", "PID", "SLURM_JOB", "RESTARTS", "STARTED", "RESUMED_FROM", "SAVES", "ENDED", "LAST_STEP",
             "STEPS_LOST"},
            {0, 2, 4, 7, 9, 10});
    for (const auto &r : runs) {
        std::string job = r.slurm_job_id.empty() ? "-" : r.slurm_job_id;
        if (!r.slurm_array_job_id.empty()) job += " (" + r.slurm_array_job_id + "_" + r.slurm_array_task_id + ")";
        std::string from = "-";
        if (r.resumed_from) {
            from = std::to_string(r.resumed_from);
            try {
                from += " " + cat.get(r.resumed_from).name;
            } catch (const ckptdbxx::error &) {
                // a run resumed from a row no longer there: the id alone
            }
        }
        std::string ended = !r.exit_reason.empty() ? r.exit_reason : (r.ended_at.empty() ? "running" : "unknown");
        t.add({std::to_string(r.id), r.host, std::to_string(r.pid), job,
               r.slurm_restart_count < 0 ? "-" : std::to_string(r.slurm_restart_count), r.started_at, from,
               std::to_string(r.saves), ended, r.last_step < 0 ? "-" : std::to_string(r.last_step),
               std::to_string(r.steps_lost)});
    }
    t.print();
    return kOk;
}

int cmd_du(const Common &c) {
    ckptdbxx::catalog cat = open_catalog(c.dir, Mode::ReadOnly);
    // The library's one definition of disk usage (the catalog's view
    // disk_usage), per kind and status.
    std::map<std::pair<std::string, std::string>, std::pair<int64_t, int64_t>> usage;
    int64_t total_bytes = 0, total_count = 0;
    for (const auto &u : cat.disk_usage()) usage[{u.kind, ckptdbxx::status_name(u.status)}] = {u.checkpoints, u.bytes};
    for (const auto &kv : usage) {
        total_count += kv.second.first;
        total_bytes += kv.second.second;
    }
    if (c.json) {
        json arr = json::array();
        for (const auto &kv : usage)
            arr.push_back(json{{"kind", kv.first.first},
                               {"status", kv.first.second},
                               {"checkpoints", kv.second.first},
                               {"bytes", kv.second.second}});
        print_json(json{
            {"dir", cat.dir()}, {"usage", arr}, {"total", json{{"checkpoints", total_count}, {"bytes", total_bytes}}}});
        return kOk;
    }
    Table t({"KIND", "STATUS", "CHECKPOINTS", "BYTES", "SIZE"}, {2, 3, 4});
    for (const auto &kv : usage)
        t.add({kv.first.first, kv.first.second, std::to_string(kv.second.first), std::to_string(kv.second.second),
               human_size(kv.second.second)});
    t.add({"total", "", std::to_string(total_count), std::to_string(total_bytes), human_size(total_bytes)});
    t.print();
    return kOk;
}

struct SyncCtx {
    Progress *p;
    bool json;
    std::map<std::string, int64_t> sizes;
    std::vector<FsckRow> items;
    int64_t copied = 0, present = 0, deleted = 0, failed = 0;
};

void sync_progress(SyncCtx *s, int64_t done, int64_t total) {
    if (total != s->p->total()) s->p->set_total(total);
    s->p->update(done);
}

void sync_item(SyncCtx *s, FsckRow r) {
    if (r.kind == "copied")
        ++s->copied;
    else if (r.kind == "present")
        ++s->present;
    else if (r.kind == "deleted")
        ++s->deleted;
    else if (r.kind == "failed")
        ++s->failed;
    auto sz = s->sizes.find(r.name);
    std::string size = sz == s->sizes.end() ? "-" : human_size(sz->second);
    if (r.kind == "copied" || r.kind == "failed") {
        s->p->set_label(std::to_string(s->copied) + " copied" +
                        (s->failed ? ", " + std::to_string(s->failed) + " failed" : ""));
        s->p->plain("sync: " + r.kind + " " + r.name + " (" + size + "); " + human_size(s->p->done()) + " of " +
                    human_size(s->p->total()) + " done");
    } else if (r.kind != "present") {
        s->p->plain("sync: " + r.kind + " " + r.name);
    }
    if (!s->json) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%-8s %6s  ", r.kind.c_str(),
                      r.checkpoint_id ? std::to_string(r.checkpoint_id).c_str() : "-");
        s->p->out(std::string(buf) + r.name + "  " + size + (r.detail.empty() ? "" : "  " + r.detail));
    }
    s->items.push_back(std::move(r));
}

int cmd_sync(const std::string &src, const std::string &dst, bool del, bool as_json) {
    SyncCtx ctx{};
    {
        // A missing or foreign SRC is an error before anything is created in DST.
        ckptdbxx::catalog cat = open_catalog(src, Mode::ReadOnly);
        for (const auto &e : cat.list(0)) ctx.sizes[e.name] = e.size;
    }
    Progress p("sync", 0);
    ctx.p = &p;
    ctx.json = as_json;
    ckptdbxx::sync_options o;
    o.delete_pruned = del;
    o.progress = [&ctx](int64_t done, int64_t total) { sync_progress(&ctx, done, total); };
    o.on_item = [&ctx](const ckptdbxx::finding &f) { sync_item(&ctx, f); };
    ckptdbxx::sync_result res;
    try {
        res = ckptdbxx::sync(src, dst, o);
    } catch (const ckptdbxx::error &e) {
        p.clear();
        fail(e.code() == CKPTDB_EINVAL ? kUsage : kError, e.detail());
    }
    p.clear();
    const int64_t copied = res.copied, bytes = res.bytes;
    p.plain("sync: " + std::to_string(copied) + " copied, " + human_size(bytes) + " in " + duration_text(p.elapsed()) +
            " (" + p.rate_text() + ")");
    if (as_json) {
        json arr = json::array();
        for (const auto &r : ctx.items) arr.push_back(fsck_json(r));
        print_json(json{{"src", src},
                        {"dst", dst},
                        {"copied", copied},
                        {"bytes", bytes},
                        {"present", ctx.present},
                        {"deleted", ctx.deleted},
                        {"failed", ctx.failed},
                        {"checkpoints", arr}});
    } else {
        std::printf("copied %" PRId64 " checkpoint%s (%s) to %s; %" PRId64 " already there, %" PRId64
                    " deleted, %" PRId64 " failed\n",
                    copied, copied == 1 ? "" : "s", human_size(bytes).c_str(), dst.c_str(), ctx.present, ctx.deleted,
                    ctx.failed);
    }
    return (ctx.failed || res.corrupt) ? kCorrupt : kOk;
}

// ------------------------------------------------------------------------
// Command line
// ------------------------------------------------------------------------

int run(int argc, char **argv) {
    CLI::App app{"ckptdb - inspect, verify, prune, repair and copy a checkpoint catalog (ckptdb.sqlite)", "ckptdb"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "ckptdb " + ckptdbxx::version());
    app.footer(std::string("Every command takes --help.\n\n") + kExitCodes);
    app.failure_message(
        [](const CLI::App *, const CLI::Error &e) { return std::string("ckptdb: ") + e.what() + " (see --help)\n"; });

    Common c;
    std::string target, kind, src, dst;
    bool all = false, no_verify = false, path_only = false, repair = false, del = false, trust_shared = false;
    app.fallthrough();  // --trust-shared also after the command's name
    app.add_flag("--trust-shared", trust_shared,
                 "trust a directory shared on purpose: one writable by every user without the sticky bit, and "
                 "a directory, catalog or checkpoint files owned by other users (refused otherwise; links are "
                 "still never followed); not for sync");
    PruneOpts po;

    auto add_dir = [&](CLI::App *sub) {
        sub->add_option("DIR", c.dir, "checkpoint directory")->required()->type_name("");
    };
    auto add_json = [&](CLI::App *sub) { sub->add_flag("--json", c.json, "print one JSON document"); };

    auto *ls = app.add_subcommand("ls", "List checkpoints: id, name, kind, epoch, step, size, status, age");
    add_dir(ls);
    ls->add_flag("-a,--all", all, "include pruned and aborted checkpoints");
    ls->add_option("--kind", kind, "only checkpoints of this kind")->type_name("KIND");
    add_json(ls);

    auto *show = app.add_subcommand("show", "Show one checkpoint: every column, its files, metadata and events");
    add_dir(show);
    show->add_option("ID|NAME", target, "checkpoint id (all digits) or name")->required()->type_name("");
    add_json(show);

    auto *latest = app.add_subcommand("latest", "The newest complete checkpoint that verifies (what a resume loads)");
    add_dir(latest);
    latest->add_option("--kind", kind, "only checkpoints of this kind")->type_name("KIND");
    latest->add_flag("--no-verify", no_verify, "trust the catalog: do not read the files back");
    auto *path_opt =
        latest->add_flag("--path", path_only, "print only the path, e.g. --resume \"$(ckptdb latest --path ckpts)\"");
    latest->add_flag("--json", c.json, "print one JSON document")->excludes(path_opt);

    auto *verify = app.add_subcommand("verify", "Verify checkpoints' sizes and XXH3-128 checksums (default: all)");
    add_dir(verify);
    auto *target_opt = verify->add_option("ID|NAME", target, "one checkpoint (id or name)")->type_name("");
    verify->add_flag("--all", all, "every complete checkpoint (the default)")->excludes(target_opt);
    add_json(verify);

    auto *prune = app.add_subcommand("prune", "Delete the checkpoints the retention policy lets go");
    add_dir(prune);
    prune
        ->add_option("--keep", po.keep,
                     "KIND=N: keep the newest N of KIND ('all' or -1: every one); repeatable; replaces the "
                     "default list (epoch=5 time=3 preempt=0 manual=0)")
        ->allow_extra_args(false)
        ->type_name("KIND=N");
    prune->add_option("--keep-default", po.keep_default, "N for kinds --keep does not list (default: all)")
        ->type_name("N");
    prune->add_option("--every-n-epochs", po.every_n_epochs, "keep epoch checkpoints with epoch % N == 0")
        ->type_name("N");
    prune->add_option("--interval", po.interval, "keep the first checkpoint of every interval (3600, 30m, 12h, 7d)")
        ->type_name("SECONDS");
    prune->add_option("--best", po.best, "keep the best K by this metadata key (dots for nesting, e.g. val.loss)")
        ->type_name("METRIC");
    prune->add_option("--best-mode", po.best_mode, "min (default: smaller is better) or max")->type_name("min|max");
    prune->add_option("--best-k", po.best_k, "how many best to keep (default 1)")->type_name("K");
    prune->add_option("--max-bytes", po.max_bytes, "byte budget for the directory (4096, 512K, 8M, 1.5G)")
        ->type_name("SIZE");
    prune->add_flag("--corrupt", po.corrupt,
                    "delete corrupt checkpoints too, each hashed again first (one that verifies now is kept); "
                    "without it they are kept for inspection");
    prune->add_flag("--dry-run", po.dry_run, "show what would go and by which rule; change nothing");
    add_json(prune);

    auto *pin = app.add_subcommand("pin", "Pin a checkpoint: never pruned");
    add_dir(pin);
    pin->add_option("ID|NAME", target, "checkpoint id or name")->required()->type_name("");
    add_json(pin);
    auto *unpin = app.add_subcommand("unpin", "Unpin a checkpoint");
    add_dir(unpin);
    unpin->add_option("ID|NAME", target, "checkpoint id or name")->required()->type_name("");
    add_json(unpin);

    auto *fsck = app.add_subcommand(
        "fsck", "Check the directory against the catalog; --repair fixes it or rebuilds a lost catalog");
    add_dir(fsck);
    fsck->add_flag("--repair", repair,
                   "remove temp files, mark rows whose files are missing corrupt, rebuild a lost or unreadable "
                   "catalog (the old one is kept aside); unknown files are never deleted");
    add_json(fsck);

    auto *adopt = app.add_subcommand(
        "adopt",
        "Take in a directory written without ckptdb (torch.save files, a regular last.pt): every file "
        "hashed, torn zip archives quarantined, rows ordered by modification time and pinned");
    add_dir(adopt);
    add_json(adopt);

    auto *history = app.add_subcommand("history", "Runs that saved here: host, Slurm job, resumes, how each ended");
    add_dir(history);
    add_json(history);

    auto *du = app.add_subcommand("du", "Bytes on disk per kind and status");
    add_dir(du);
    add_json(du);

    auto *sync = app.add_subcommand("sync",
                                    "Copy every complete checkpoint DST lacks, verified, with a consistent "
                                    "catalog (e.g. node-local scratch to shared storage)");
    sync->add_option("SRC", src, "source checkpoint directory")->required()->type_name("");
    sync->add_option("DST", dst, "destination (created if missing)")->required()->type_name("");
    sync->add_flag("--delete", del, "remove from DST the checkpoints SRC has pruned");
    sync->add_flag("--json", c.json, "print one JSON document");

    for (auto *sub : app.get_subcommands([](const CLI::App *) { return true; })) {
        sub->failure_message([](const CLI::App *, const CLI::Error &e) {
            return std::string("ckptdb: ") + e.what() + " (see --help)\n";
        });
    }

    if (argc > 1 && argv[1][0] != '-') {
        std::string names;
        bool known = false;
        for (const auto *sub : app.get_subcommands([](const CLI::App *) { return true; })) {
            known = known || sub->get_name() == argv[1];
            names += (names.empty() ? "" : ", ") + sub->get_name();
        }
        if (!known) fail(kUsage, std::string("unknown command '") + argv[1] + "' (commands: " + names + ")");
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        app.exit(e);
        return kUsage;
    }

    if (trust_shared) {
        // ckptdb_sync takes no open flags: it would check ownership anyway.
        if (*sync) fail(kUsage, "--trust-shared does not apply to sync, which always checks ownership");
        g_trust_flag = CKPTDB_OPEN_TRUST_SHARED;
    }
    if (*ls) return cmd_ls(c, all, kind);
    if (*show) return cmd_show(c, target);
    if (*latest) return cmd_latest(c, kind, no_verify, path_only);
    if (*verify) return cmd_verify(c, target, all);
    if (*prune) return cmd_prune(c, po);
    if (*pin) return cmd_pin(c, target, true);
    if (*unpin) return cmd_pin(c, target, false);
    if (*fsck) return cmd_fsck(c, repair);
    if (*adopt) return cmd_adopt(c);
    if (*history) return cmd_history(c);
    if (*du) return cmd_du(c);
    if (*sync) return cmd_sync(src, dst, del, c.json);
    return kUsage;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        int rc = run(argc, argv);
        std::fflush(stdout);
        if (std::ferror(stdout)) {
            std::fprintf(stderr, "ckptdb: error writing to standard output\n");
            return kError;
        }
        return rc;
    } catch (const Failure &f) {
        std::fflush(stdout);
        std::fprintf(stderr, "ckptdb: %s\n", f.message.c_str());
        return f.exit_code;
    } catch (const ckptdbxx::error &e) {
        std::fflush(stdout);
        std::fprintf(stderr, "ckptdb: %s\n", e.detail().c_str());
        return exit_for(e.code());
    } catch (const std::exception &e) {
        std::fprintf(stderr, "ckptdb: %s\n", e.what());
        return kError;
    }
}

// A child process for the power-loss and kill tests (always fork+exec'd):
// it runs one scenario of scenarios.hpp with the engine's I/O going through
// the test seam.
//
//   fault_helper record SCENARIO ROOT TRACE [--no-setup]
//       runs the scenario and writes the trace of every operation that
//       changes the disk, with its sync barriers, to TRACE
//   fault_helper pause SCENARIO ROOT K [--no-setup]
//       stops at I/O operation K ("PAUSED K <op>") and waits to be killed
//
// Both print "BASE <id> <commit_seq>" for each checkpoint complete before the
// body runs, "ACK <id> <commit_seq>" when a commit returns OK, and at the end
// "DONE <operations> <code> <message>".
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "faultio.hpp"
#include "scenarios.hpp"

int main(int argc, char **argv) {
    if (argc < 5) {
        std::fprintf(stderr, "usage: fault_helper record|pause SCENARIO ROOT TRACE|K [--no-setup]\n");
        return 2;
    }
    std::string mode = argv[1], name = argv[2], root = argv[3], arg = argv[4];
    bool setup = !(argc > 5 && std::string(argv[5]) == "--no-setup");
    const scen::Scenario *s = scen::find(name);
    if (!s || (mode != "record" && mode != "pause")) {
        std::fprintf(stderr, "fault_helper: unknown mode or scenario\n");
        return 2;
    }
    faultio::install();
    if (setup) s->setup(root);
    auto ack = [](int64_t id, int64_t seq) {
        faultio::ack(id, seq);
        std::printf("ACK %lld %lld\n", static_cast<long long>(id), static_cast<long long>(seq));
        std::fflush(stdout);
    };
    {
        // What is complete before the body runs: acknowledged already.
        sqlite3 *db = nullptr;
        std::string cat = root + "/a/ckptdb.sqlite";
        if (::access(cat.c_str(), F_OK) == 0 &&
            sqlite3_open_v2(cat.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
            sqlite3_stmt *st = nullptr;
            if (sqlite3_prepare_v2(db, "SELECT id, commit_seq FROM checkpoints WHERE status = 'complete'", -1, &st,
                                   nullptr) == SQLITE_OK)
                while (sqlite3_step(st) == SQLITE_ROW)
                    std::printf("BASE %lld %lld\n", static_cast<long long>(sqlite3_column_int64(st, 0)),
                                static_cast<long long>(sqlite3_column_int64(st, 1)));
            sqlite3_finalize(st);
        }
        sqlite3_close(db);
        std::fflush(stdout);
    }
    faultio::Fault f;
    if (mode == "record") {
        faultio::start_recording(root, arg);
    } else {
        f.mode = faultio::Mode::pause;
        f.k = std::atol(arg.c_str());
    }
    faultio::arm(f);
    scen::Result r = s->body(root, ack);
    long ops = faultio::st().ops;
    faultio::disarm();
    faultio::stop_recording();
    std::printf("DONE %ld %d %s\n", ops, r.code, r.message.c_str());
    return r.code == 0 ? 0 : 1;
}

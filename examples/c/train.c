/*
 * train.c - a simulated trainer in plain C99 on top of the ckptdb C ABI.
 *
 * It "trains" for --epochs epochs of --steps-per-epoch steps and leaves every
 * decision about checkpoints to the library, the way a real trainer should:
 *
 *   - when to save: a ckptdb_trigger asked after every step.  By default it
 *     is the production default (CKPTDB_TRIGGER_OPTIONS_INIT): kind "epoch"
 *     at the end of every 5th epoch, kind "time" when 900 s have passed since
 *     the last save (or the start, or the resume), whichever comes first;
 *     --save-every-epochs, --save-every-steps (kind "step") and
 *     --save-every-seconds change the three intervals (0 turns one off);
 *   - preemption: ckptdb_signals_install() catches SIGTERM, SIGINT and
 *     SIGUSR1 (the handler only sets a flag).  The step being trained is
 *     finished, saved as kind "preempt" (unless the trigger had just saved
 *     it as another kind), and the program prints "stopped: ..." and exits 0,
 *     so that a scheduler that requeues the job simply runs the same command
 *     again;
 *   - rotation: the retention policy CKPTDB_RETENTION_INIT, pruned after
 *     every commit: the newest 5 "epoch" and 3 "time" checkpoints are kept,
 *     a "preempt" or "manual" one until a newer checkpoint is committed,
 *     other kinds ("step") all.  --keep-epoch / --keep-time change the two
 *     counts; --keep-all turns rotation off;
 *   - resuming: on start, the newest checkpoint whose bytes verify (no flag
 *     needed: a restart after a preemption or a crash just continues);
 *   - Slurm: with --requeue the catalog is opened with CKPTDB_OPEN_REQUEUE:
 *     after the preempt save that follows SIGUSR1 (sbatch
 *     --signal=B:USR1@N), the library asks Slurm to requeue the job
 *     (scontrol requeue $SLURM_JOB_ID) and the program exits as after any
 *     preemption; the requeued job runs the same command and resumes.
 * It reports its progress at every epoch end (ckptdb_run_progress), so the
 * catalog's runs table shows how far each run got.
 *
 * Meaning of the numbers recorded with a save:
 *   epoch = number of completed epochs,
 *   step  = number of completed steps in all (the global step).
 * A resumed run continues with global step step+1.
 *
 * The state is a deterministic function of (epoch, step), so a resumed run
 * can check every byte it read back.  Blob layout (all integers little-endian):
 *   bytes  0..7   magic "CKPTTRN1"
 *   bytes  8..15  epoch (completed epochs)
 *   bytes 16..23  step within the current epoch (global step - epoch * steps_per_epoch)
 *   bytes 24..31  global step
 *   bytes 32..39  steps per epoch
 *   bytes 40..47  total blob size in bytes
 *   bytes 48..63  zero
 *   bytes 64..    splitmix64 stream seeded from (epoch, global step)
 *
 * Output (stdout), one line each:
 *   resume: none, starting fresh
 *   resume: id=I name=N epoch=E step=S bytes=B
 *   save: id=I name=N kind=K epoch=E step=S bytes=B xxh128=X
 *   requeue: requeued DETAIL          (--requeue: Slurm accepted the requeue)
 *   requeue: failed DETAIL            (--requeue: scontrol failed; DETAIL says why)
 *   stopped: signal=G epoch=E step=S kind=K signal_to_commit_ms=T
 *       (K: the kind of the save of step S; T: milliseconds from the arrival
 *        of signal G to the commit of that save, 0 if it was committed first)
 *   done: epoch=E step=S
 *
 * Exit status: 0 done, or stopped by a preemption signal after its step was
 * saved; 1 ckptdb error; 2 bad command line; 3 a checkpoint whose bytes are
 * not what this program wrote for its (epoch, step).
 */
#define _POSIX_C_SOURCE 200809L
/* Triggers, signals and Slurm requeue are ckptdb's experimental tier. */
#define CKPTDB_EXPERIMENTAL

#include <ckptdb.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HEADER_BYTES 64
#define CHUNK_BYTES  ((size_t)1 << 20)
static const char kMagic[8] = {'C', 'K', 'P', 'T', 'T', 'R', 'N', '1'};

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

struct config {
    const char *dir;
    int64_t epochs;
    int64_t steps_per_epoch;
    int64_t state_bytes;
    int64_t save_every_epochs;
    int64_t save_every_steps;
    double save_every_seconds;
    int64_t step_sleep_ms;
    int keep_all;
    int requeue;
    int64_t keep_epoch;      /* -1: the library's default */
    int64_t keep_time;       /* -1: the library's default */
    double sim_step_seconds; /* > 0: the trigger's clock is simulated */
};

static const char *prog = "ckptdb-train-c";

/* The library's production default: every 5 epochs or 900 s, and on preemption. */
static const ckptdb_trigger_options kDefaultTrigger = CKPTDB_TRIGGER_OPTIONS_INIT;

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s --dir DIR [options]\n"
            "Simulated trainer that saves and resumes checkpoints through ckptdb.\n"
            "\n"
            "  --dir DIR                 checkpoint directory (required; created if missing)\n"
            "  --epochs N                epochs to train in all (default 10)\n"
            "  --steps-per-epoch N       steps per epoch (default 100)\n"
            "  --state-bytes N[K|M|G]    size of the saved state (default 1M; at least %d)\n"
            "  --save-every-epochs N     save (kind \"epoch\") at the end of every Nth epoch\n"
            "                            (default %" PRId64
            "; 0: off)\n"
            "  --save-every-steps N      save (kind \"step\") when the global step is a multiple\n"
            "                            of N (default 0: off)\n"
            "  --save-every-seconds T    save (kind \"time\") when T seconds have passed since\n"
            "                            the last save (default %g; 0: off)\n"
            "  --keep-epoch K            rotation: keep the newest K \"epoch\" checkpoints (default 5)\n"
            "  --keep-time K             rotation: keep the newest K \"time\" checkpoints (default 3)\n"
            "  --keep-all                no rotation: keep every checkpoint\n"
            "  --step-sleep-ms N         sleep N ms per step (default 0)\n"
            "  --simulated-step-seconds T\n"
            "                            the trigger's clock is simulated: it starts at 0 and\n"
            "                            each step advances it by T seconds (default 0: the\n"
            "                            real monotonic clock); makes time saves deterministic\n"
            "  --requeue                 under Slurm, after the preempt save that follows\n"
            "                            SIGUSR1, ask Slurm to requeue the job\n"
            "                            (CKPTDB_OPEN_REQUEUE)\n"
            "  --help                    show this help\n"
            "\n"
            "A save records epoch = completed epochs and step = completed global steps.\n"
            "On start the newest checkpoint that verifies is resumed, and training goes on\n"
            "with the next step.  Rotation (unless --keep-all) keeps the newest 5 \"epoch\"\n"
            "and 3 \"time\" checkpoints, a \"preempt\" one until a newer save, and every\n"
            "\"step\" one.  SIGTERM, SIGINT or SIGUSR1: finish the step, save it (kind\n"
            "\"preempt\"), print \"stopped: ...\" and exit 0; run the same command again to\n"
            "continue.\n",
            prog, HEADER_BYTES, (int64_t)kDefaultTrigger.every_epochs, kDefaultTrigger.every_seconds);
}

static void bad_usage(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    exit(2);
}

static int64_t parse_int(const char *flag, const char *s, int64_t min) {
    char *end = NULL;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min)
        bad_usage(min > 0 ? "%s needs an integer >= 1, not '%s'" : "%s needs an integer >= 0, not '%s'", flag, s);
    return (int64_t)v;
}

static int64_t parse_bytes(const char *flag, const char *s) {
    char *end = NULL;
    long long v;
    int64_t mult = 1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < 0) bad_usage("%s needs a size such as 4096, 512K, 8M or 1G, not '%s'", flag, s);
    switch (*end) {
        case '\0':
            break;
        case 'k':
        case 'K':
            mult = (int64_t)1 << 10;
            end++;
            break;
        case 'm':
        case 'M':
            mult = (int64_t)1 << 20;
            end++;
            break;
        case 'g':
        case 'G':
            mult = (int64_t)1 << 30;
            end++;
            break;
        default:
            end = NULL;
            break;
    }
    if (end != NULL && mult > 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)) end += strlen(end);
    if (end == NULL || *end != '\0') bad_usage("%s needs a size such as 4096, 512K, 8M or 1G, not '%s'", flag, s);
    if (v > INT64_MAX / mult) bad_usage("%s: size '%s' is too large", flag, s);
    if (v * mult < HEADER_BYTES) bad_usage("%s: size '%s' is below the 64-byte header", flag, s);
    return (int64_t)v * mult;
}

static double parse_seconds(const char *flag, const char *s) {
    char *end = NULL;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0) || v > 1e9)
        bad_usage("%s needs a number of seconds >= 0, not '%s'", flag, s);
    return v;
}

static void parse_args(struct config *cfg, int argc, char **argv) {
    static const char *const with_value[] = {"--dir",
                                             "--epochs",
                                             "--steps-per-epoch",
                                             "--state-bytes",
                                             "--save-every-epochs",
                                             "--save-every-seconds",
                                             "--step-sleep-ms",
                                             "--save-every-steps",
                                             "--keep-epoch",
                                             "--keep-time",
                                             "--simulated-step-seconds"};
    int i;
    size_t k;

    cfg->dir = NULL;
    cfg->epochs = 10;
    cfg->steps_per_epoch = 100;
    cfg->state_bytes = (int64_t)1 << 20;
    cfg->save_every_epochs = kDefaultTrigger.every_epochs;
    cfg->save_every_steps = kDefaultTrigger.every_steps;
    cfg->save_every_seconds = kDefaultTrigger.every_seconds;
    cfg->step_sleep_ms = 0;
    cfg->keep_all = 0;
    cfg->requeue = 0;
    cfg->keep_epoch = -1;
    cfg->keep_time = -1;
    cfg->sim_step_seconds = 0.0;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        const char *eq;
        size_t flen;
        int known = 0;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') bad_usage("unexpected argument '%s'%s", arg, "");
        if (strncmp(arg, "--keep-all", 10) == 0 && (arg[10] == '\0' || arg[10] == '=')) {
            if (arg[10] == '=') bad_usage("option '--keep-all' takes no value, not '%s'%s", arg, "");
            cfg->keep_all = 1;
            continue;
        }
        if (strncmp(arg, "--requeue", 9) == 0 && (arg[9] == '\0' || arg[9] == '=')) {
            if (arg[9] == '=') bad_usage("option '--requeue' takes no value, not '%s'%s", arg, "");
            cfg->requeue = 1;
            continue;
        }
        eq = strchr(arg, '=');
        flen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
            if (strlen(with_value[k]) == flen && strncmp(arg, with_value[k], flen) == 0) {
                known = 1;
                break;
            }
        }
        if (!known) bad_usage("unknown option '%s'%s", arg, "");
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc) bad_usage("option '%s' needs a value%s", arg, "");
            val = argv[++i];
        }

        switch (k) {
            case 0:
                if (*val == '\0') bad_usage("%s needs a directory%s", "--dir", "");
                cfg->dir = val;
                break;
            case 1:
                cfg->epochs = parse_int("--epochs", val, 0);
                break;
            case 2:
                cfg->steps_per_epoch = parse_int("--steps-per-epoch", val, 1);
                break;
            case 3:
                cfg->state_bytes = parse_bytes("--state-bytes", val);
                break;
            case 4:
                cfg->save_every_epochs = parse_int("--save-every-epochs", val, 0);
                break;
            case 5:
                cfg->save_every_seconds = parse_seconds("--save-every-seconds", val);
                break;
            case 6:
                cfg->step_sleep_ms = parse_int("--step-sleep-ms", val, 0);
                break;
            case 7:
                cfg->save_every_steps = parse_int("--save-every-steps", val, 0);
                break;
            case 8:
                cfg->keep_epoch = parse_int("--keep-epoch", val, 0);
                break;
            case 9:
                cfg->keep_time = parse_int("--keep-time", val, 0);
                break;
            case 10:
                cfg->sim_step_seconds = parse_seconds("--simulated-step-seconds", val);
                break;
            default:
                break;
        }
    }
    if (cfg->dir == NULL) bad_usage("--dir DIR is required%s%s", "", "");
    if (cfg->epochs > INT64_MAX / cfg->steps_per_epoch)
        bad_usage("--epochs times --steps-per-epoch is too large%s%s", "", "");
    if (cfg->keep_all && (cfg->keep_epoch >= 0 || cfg->keep_time >= 0))
        bad_usage("--keep-all cannot be combined with %s%s", cfg->keep_epoch >= 0 ? "--keep-epoch" : "--keep-time", "");
    if (cfg->keep_epoch > INT_MAX || cfg->keep_time > INT_MAX)
        bad_usage("%s is too large%s", cfg->keep_epoch > INT_MAX ? "--keep-epoch" : "--keep-time", "");
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* When the first preemption signal arrived and when the newest save was
 * committed (CLOCK_REALTIME), for the "signal_to_commit_ms" figure.  The
 * handler below runs chained after the library's (which sets the flag) and
 * only reads the clock (async-signal-safe); the loop reads g_signal_at once
 * ckptdb_preempt_requested() is set. */
static struct timespec g_signal_at;
static volatile sig_atomic_t g_signal_seen = 0;
static struct timespec g_commit_at;

static void note_signal(int signo) {
    (void)signo;
    if (g_signal_seen) return;
    (void)clock_gettime(CLOCK_REALTIME, &g_signal_at);
    g_signal_seen = 1;
}

static double ms_between(const struct timespec *a, const struct timespec *b) {
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static ckptdb_catalog *g_db = NULL;
static ckptdb_save *g_save = NULL;
static ckptdb_reader *g_reader = NULL;
static ckptdb_trigger *g_trigger = NULL;

static void cleanup(void) {
    ckptdb_trigger_free(g_trigger);
    g_trigger = NULL;
    ckptdb_reader_close(g_reader);
    g_reader = NULL;
    ckptdb_save_free(g_save); /* aborts a save in flight */
    g_save = NULL;
    ckptdb_close(g_db);
    g_db = NULL;
}

/* Report a ckptdb failure and exit 1.  The message is printed before any
 * other ckptdb call, which would replace ckptdb_last_error(). */
static void check(int rc) {
    if (rc == CKPTDB_OK) return;
    fprintf(stderr, "error: %s: %s\n", ckptdb_strerror(rc), ckptdb_last_error());
    fflush(stderr);
    cleanup();
    exit(1);
}

static void state_error(const char *fmt, int64_t id, const char *name, int64_t a, int64_t b) {
    fprintf(stderr, "error: checkpoint id=%" PRId64 " name=%s: ", id, name);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    cleanup();
    exit(3);
}

/* ------------------------------------------------------------------------ */
/* The deterministic state                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void put_le64(unsigned char *p, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A generator of the blob for (epoch, global step): header, then the stream. */
struct blob_gen {
    unsigned char header[HEADER_BYTES];
    uint64_t prng;
    int64_t pos;  /* bytes produced so far */
    int64_t size; /* bytes in the blob */
    unsigned char word[8];
    int word_left; /* unread bytes at the end of word[] */
};

static void gen_init(struct blob_gen *g, int64_t epoch, int64_t gstep, int64_t steps_per_epoch, int64_t size) {
    uint64_t seed = UINT64_C(0x636B707464622D63) ^ ((uint64_t)epoch * UINT64_C(0xD6E8FEB86659FD93));
    (void)splitmix64(&seed);
    seed ^= (uint64_t)gstep * UINT64_C(0x9FB21C651E98DF25);
    memset(g->header, 0, sizeof g->header);
    memcpy(g->header, kMagic, sizeof kMagic);
    put_le64(g->header + 8, (uint64_t)epoch);
    put_le64(g->header + 16, (uint64_t)(gstep - epoch * steps_per_epoch));
    put_le64(g->header + 24, (uint64_t)gstep);
    put_le64(g->header + 32, (uint64_t)steps_per_epoch);
    put_le64(g->header + 40, (uint64_t)size);
    g->prng = seed;
    g->pos = 0;
    g->size = size;
    g->word_left = 0;
}

/* Produce the next n bytes of the blob (n <= what is left). */
static void gen_fill(struct blob_gen *g, unsigned char *out, size_t n) {
    while (n > 0 && g->pos < HEADER_BYTES) {
        *out++ = g->header[g->pos++];
        n--;
    }
    while (n > 0 && g->word_left > 0) {
        *out++ = g->word[8 - g->word_left--];
        g->pos++;
        n--;
    }
    while (n >= 8) {
        put_le64(out, splitmix64(&g->prng));
        out += 8;
        g->pos += 8;
        n -= 8;
    }
    if (n > 0) {
        put_le64(g->word, splitmix64(&g->prng));
        g->word_left = 8;
        while (n > 0) {
            *out++ = g->word[8 - g->word_left--];
            g->pos++;
            n--;
        }
    }
}

/* A deterministic, decreasing "loss" for the metadata. */
static double fake_loss(int64_t gstep) {
    uint64_t x = (uint64_t)gstep;
    double noise = (double)(splitmix64(&x) >> 11) / 9007199254740992.0; /* [0, 1) */
    return 2.5 / (1.0 + (double)gstep / 200.0) + 0.02 * noise;
}

/* ------------------------------------------------------------------------ */
/* Saving and resuming                                                       */
/* ------------------------------------------------------------------------ */

static void save(ckptdb_catalog *db, const struct config *cfg, const char *kind, int64_t epoch, int64_t gstep,
                 unsigned char *buf) {
    ckptdb_save_options opts = CKPTDB_SAVE_OPTIONS_INIT;
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    struct blob_gen gen;
    char meta[128];
    int64_t left = cfg->state_bytes;

    snprintf(meta, sizeof meta, "{\"loss\": %.6f}", fake_loss(gstep));
    opts.metadata = meta;
    check(ckptdb_save_begin(&g_save, db, kind, epoch, gstep, &opts));
    gen_init(&gen, epoch, gstep, cfg->steps_per_epoch, cfg->state_bytes);
    while (left > 0) {
        size_t n = left > (int64_t)CHUNK_BYTES ? CHUNK_BYTES : (size_t)left;
        gen_fill(&gen, buf, n);
        check(ckptdb_save_write(g_save, buf, n));
        left -= (int64_t)n;
    }
    check(ckptdb_save_commit(&e, g_save));
    (void)clock_gettime(CLOCK_REALTIME, &g_commit_at);
    printf("save: id=%" PRId64 " name=%s kind=%s epoch=%" PRId64 " step=%" PRId64 " bytes=%" PRId64 " xxh128=%s\n",
           e.id, e.name, e.kind, e.epoch, e.step, e.size, e.checksum);
    fflush(stdout);
    ckptdb_save_free(g_save);
    g_save = NULL;
}

/* Read checkpoint e back, check every byte; returns through *epoch / *gstep. */
static void resume(ckptdb_catalog *db, const struct config *cfg, const ckptdb_entry *e, unsigned char *rbuf,
                   unsigned char *xbuf, int64_t *epoch, int64_t *gstep) {
    char name[512];
    int64_t id = e->id, size = e->size, total = 0;
    int64_t h_epoch, h_in_epoch, h_gstep, h_spe, h_size;
    size_t have = 0, got = 0;
    struct blob_gen gen;

    snprintf(name, sizeof name, "%s", e->name);
    if (size < HEADER_BYTES)
        state_error("%" PRId64 " bytes are too few for the %" PRId64 "-byte header of this trainer", id, name, size,
                    (int64_t)HEADER_BYTES);

    check(ckptdb_reader_open(&g_reader, db, id));
    /* The header first (a read may return fewer bytes than asked). */
    while (have < HEADER_BYTES) {
        check(ckptdb_reader_read(&got, g_reader, rbuf + have, CHUNK_BYTES - have));
        if (got == 0) break;
        have += got;
    }
    if (have < HEADER_BYTES || memcmp(rbuf, kMagic, sizeof kMagic) != 0)
        state_error("not written by this trainer (no \"CKPTTRN1\" header; %" PRId64 " of %" PRId64 " bytes read)", id,
                    name, (int64_t)have, size);
    h_epoch = (int64_t)get_le64(rbuf + 8);
    h_in_epoch = (int64_t)get_le64(rbuf + 16);
    h_gstep = (int64_t)get_le64(rbuf + 24);
    h_spe = (int64_t)get_le64(rbuf + 32);
    h_size = (int64_t)get_le64(rbuf + 40);
    if (h_epoch != e->epoch || h_gstep != e->step)
        state_error("the header says epoch=%" PRId64 " step=%" PRId64 " but the catalog row does not agree", id, name,
                    h_epoch, h_gstep);
    if (h_size != size) state_error("the header says %" PRId64 " bytes, the catalog %" PRId64, id, name, h_size, size);
    if (h_spe != cfg->steps_per_epoch)
        state_error("it was written with --steps-per-epoch %" PRId64 ", this run has %" PRId64, id, name, h_spe,
                    cfg->steps_per_epoch);
    if (h_in_epoch < 0 || h_in_epoch >= h_spe || h_in_epoch != h_gstep - h_epoch * h_spe)
        state_error("inconsistent header: step %" PRId64 " within the epoch, global step %" PRId64, id, name,
                    h_in_epoch, h_gstep);

    /* Then every byte against regenerate(epoch, step). */
    gen_init(&gen, h_epoch, h_gstep, h_spe, size);
    for (;;) {
        size_t i;
        if (have > 0) {
            if ((int64_t)have > size - total)
                state_error("it is longer than the %" PRId64 " bytes recorded (at least %" PRId64 ")", id, name, size,
                            total + (int64_t)have);
            gen_fill(&gen, xbuf, have);
            if (memcmp(rbuf, xbuf, have) != 0) {
                for (i = 0; i < have && rbuf[i] == xbuf[i]; i++) {}
                state_error("byte %" PRId64 " differs from the state regenerated for step %" PRId64, id, name,
                            total + (int64_t)i, h_gstep);
            }
            total += (int64_t)have;
        }
        /* Reading to the end makes the reader compare size and checksum. */
        check(ckptdb_reader_read(&have, g_reader, rbuf, CHUNK_BYTES));
        if (have == 0) break;
    }
    ckptdb_reader_close(g_reader);
    g_reader = NULL;
    if (total != size) state_error("read %" PRId64 " bytes, the catalog records %" PRId64, id, name, total, size);

    check(ckptdb_mark_resumed(db, id));
    printf("resume: id=%" PRId64 " name=%s epoch=%" PRId64 " step=%" PRId64 " bytes=%" PRId64 "\n", id, name, h_epoch,
           h_gstep, size);
    fflush(stdout);
    *epoch = h_epoch;
    *gstep = h_gstep;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

static void sleep_ms(int64_t ms) {
    struct timespec ts;
    if (ms <= 0) return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    /* A signal cuts the sleep short; the step ends early, that is all. */
    (void)nanosleep(&ts, NULL);
}

/* The library's events that a log reader wants: the requeue's outcome. */
static void on_event(const char *event, int64_t checkpoint_id, const char *detail, void *payload) {
    (void)checkpoint_id;
    (void)payload;
    if (strcmp(event, "requeued") == 0)
        printf("requeue: requeued %s\n", detail);
    else if (strcmp(event, "requeue_failed") == 0)
        printf("requeue: failed %s\n", detail);
    else
        return;
    fflush(stdout);
}

/* Rotation: the library's default policy, with the keep-last counts of
 * "epoch" and "time" replaced when --keep-epoch / --keep-time are given. */
static void set_rotation(ckptdb_catalog *db, const struct config *cfg) {
    ckptdb_retention policy = CKPTDB_RETENTION_INIT;
    ckptdb_keep_kind keep[4] = {CKPTDB_KEEP_KIND(NULL, 0), CKPTDB_KEEP_KIND(NULL, 0), CKPTDB_KEEP_KIND(NULL, 0),
                                CKPTDB_KEEP_KIND(NULL, 0)};

    if (cfg->keep_all) return;
    if (cfg->keep_epoch >= 0 || cfg->keep_time >= 0) {
        /* A keep_last list replaces the whole default list: restate it. */
        keep[0].kind = "epoch";
        keep[0].count = cfg->keep_epoch >= 0 ? (int)cfg->keep_epoch : 5;
        keep[1].kind = "time";
        keep[1].count = cfg->keep_time >= 0 ? (int)cfg->keep_time : 3;
        keep[2].kind = "preempt";
        keep[2].count = 0;
        keep[3].kind = "manual";
        keep[3].count = 0;
        policy.keep_last = keep;
        policy.keep_last_count = sizeof keep / sizeof keep[0];
    }
    check(ckptdb_set_retention(db, &policy)); /* the policy is copied */
}

/* --simulated-step-seconds: the trigger's clock, advanced once per step. */
static double g_sim_now = 0.0;

static double simulated_clock(void *payload) {
    (void)payload;
    return g_sim_now;
}

int main(int argc, char **argv) {
    struct config cfg;
    ckptdb_trigger_options topts = CKPTDB_TRIGGER_OPTIONS_INIT;
    ckptdb_open_options oopts = CKPTDB_OPEN_OPTIONS_INIT;
    struct sigaction sa;
    static const int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};
    size_t i;
    ckptdb_entry latest = CKPTDB_ENTRY_INIT;
    unsigned char *buf, *xbuf;
    int64_t epoch = 0, gstep = 0, in_epoch;
    int rc;

    parse_args(&cfg, argc, argv);

    buf = (unsigned char *)malloc(CHUNK_BYTES);
    xbuf = (unsigned char *)malloc(CHUNK_BYTES);
    if (buf == NULL || xbuf == NULL) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }

    /* SIGTERM, SIGINT, SIGUSR1: the library's handler records the signal,
     * then calls note_signal (chain), which records when it came. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note_signal;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof kSignals / sizeof kSignals[0]; i++) {
        if (sigaction(kSignals[i], &sa, NULL) != 0) {
            fprintf(stderr, "error: sigaction(%d): %s\n", kSignals[i], strerror(errno));
            return 1;
        }
    }
    check(ckptdb_signals_install(kSignals, sizeof kSignals / sizeof kSignals[0], 1));

    topts.every_epochs = cfg.save_every_epochs;
    topts.every_steps = cfg.save_every_steps;
    topts.every_seconds = cfg.save_every_seconds;
    if (cfg.sim_step_seconds > 0.0) topts.clock = simulated_clock;
    check(ckptdb_trigger_new(&g_trigger, &topts));

    oopts.on_event = on_event;
    if (cfg.requeue) oopts.flags |= CKPTDB_OPEN_REQUEUE;
    check(ckptdb_open(&g_db, cfg.dir, &oopts));
    set_rotation(g_db, &cfg);

    rc = ckptdb_latest(&latest, g_db, NULL, CKPTDB_VERIFY_FULL);
    if (rc == CKPTDB_ENOTFOUND) {
        printf("resume: none, starting fresh\n");
        fflush(stdout);
    } else {
        check(rc);
        resume(g_db, &cfg, &latest, buf, xbuf, &epoch, &gstep);
        check(ckptdb_trigger_resumed(g_trigger, gstep));
    }

    in_epoch = gstep - epoch * cfg.steps_per_epoch;
    while (epoch < cfg.epochs) {
        const char *kind = NULL;
        int epoch_end = 0;

        sleep_ms(cfg.step_sleep_ms);
        g_sim_now += cfg.sim_step_seconds;
        gstep++;
        in_epoch++;
        if (in_epoch == cfg.steps_per_epoch) {
            epoch++;
            in_epoch = 0;
            epoch_end = 1;
            check(ckptdb_run_progress(g_db, epoch, gstep));
        }

        check(ckptdb_trigger_check(&kind, g_trigger, epoch, gstep, epoch_end));
        if (kind != NULL) {
            save(g_db, &cfg, kind, epoch, gstep, buf);
            check(ckptdb_trigger_saved(g_trigger, gstep));
        }

        if (ckptdb_trigger_should_stop(g_trigger)) {
            int sig = ckptdb_preempt_requested();
            double to_commit = 0.0;
            /* The signal may have come after the check above: the step must
             * still be saved before the process goes. */
            if (kind == NULL) {
                kind = "preempt";
                save(g_db, &cfg, kind, epoch, gstep, buf);
                check(ckptdb_trigger_saved(g_trigger, gstep));
            }
            if (!epoch_end) check(ckptdb_run_progress(g_db, epoch, gstep));
            if (g_signal_seen) to_commit = ms_between(&g_signal_at, &g_commit_at);
            if (to_commit < 0.0) to_commit = 0.0;
            printf("stopped: signal=%d epoch=%" PRId64 " step=%" PRId64 " kind=%s signal_to_commit_ms=%.1f\n", sig,
                   epoch, gstep, kind, to_commit);
            fflush(stdout);
            cleanup();
            free(buf);
            free(xbuf);
            return 0;
        }
    }

    printf("done: epoch=%" PRId64 " step=%" PRId64 "\n", epoch, gstep);
    fflush(stdout);
    cleanup();
    free(buf);
    free(xbuf);
    return 0;
}

/*
 * c_helper - the C side of the Python binding's tests, built against the
 * public header only.
 *
 *   c_helper layout
 *       prints, one per line, "STRUCT sizeof" and "STRUCT.FIELD offsetof" for
 *       every structure of capi/ckptdb.h that the ctypes binding mirrors
 *   c_helper save DIR FILE KIND EPOCH STEP METADATA
 *       saves the bytes of FILE through ckptdb_save_write, prints the id
 *   c_helper dump DIR
 *       prints every checkpoint as the C API reports it (tab-separated:
 *       id name kind epoch step size checksum status pinned file_count metadata)
 *       and, for each complete one, the checksum its reader verified
 */
#define _POSIX_C_SOURCE     200809L
#define CKPTDB_EXPERIMENTAL /* the trigger options' layout */
#include <ckptdb.h>

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(T)    printf("%s %zu\n", #T, sizeof(T))
#define F(T, f) printf("%s.%s %zu\n", #T, #f, offsetof(T, f))

static int layout(void) {
    S(ckptdb_open_options);
    F(ckptdb_open_options, version);
    F(ckptdb_open_options, flags);
    F(ckptdb_open_options, catalog_name);
    F(ckptdb_open_options, busy_timeout_ms);
    F(ckptdb_open_options, on_event);
    F(ckptdb_open_options, event_payload);
    F(ckptdb_open_options, last_link);
    S(ckptdb_entry);
    F(ckptdb_entry, struct_size);
    F(ckptdb_entry, id);
    F(ckptdb_entry, name);
    F(ckptdb_entry, path);
    F(ckptdb_entry, kind);
    F(ckptdb_entry, epoch);
    F(ckptdb_entry, step);
    F(ckptdb_entry, size);
    F(ckptdb_entry, checksum);
    F(ckptdb_entry, status);
    F(ckptdb_entry, pinned);
    F(ckptdb_entry, run_id);
    F(ckptdb_entry, file_count);
    F(ckptdb_entry, created_at);
    F(ckptdb_entry, committed_at);
    F(ckptdb_entry, deleted_at);
    F(ckptdb_entry, metadata);
    F(ckptdb_entry, layout);
    F(ckptdb_entry, commit_seq);
    S(ckptdb_save_options);
    F(ckptdb_save_options, version);
    F(ckptdb_save_options, name);
    F(ckptdb_save_options, metadata);
    S(ckptdb_filter);
    F(ckptdb_filter, version);
    F(ckptdb_filter, status_mask);
    F(ckptdb_filter, kind);
    S(ckptdb_keep_kind);
    F(ckptdb_keep_kind, version);
    F(ckptdb_keep_kind, kind);
    F(ckptdb_keep_kind, count);
    S(ckptdb_retention);
    F(ckptdb_retention, version);
    F(ckptdb_retention, keep_last);
    F(ckptdb_retention, keep_last_count);
    F(ckptdb_retention, keep_last_default);
    F(ckptdb_retention, keep_every_n_epochs);
    F(ckptdb_retention, keep_interval_seconds);
    F(ckptdb_retention, best_metric);
    F(ckptdb_retention, best_mode);
    F(ckptdb_retention, best_k);
    F(ckptdb_retention, max_bytes);
    F(ckptdb_retention, prune_corrupt);
    S(ckptdb_prune_item);
    F(ckptdb_prune_item, struct_size);
    F(ckptdb_prune_item, id);
    F(ckptdb_prune_item, name);
    F(ckptdb_prune_item, size);
    F(ckptdb_prune_item, rule);
    S(ckptdb_file);
    F(ckptdb_file, struct_size);
    F(ckptdb_file, rank);
    F(ckptdb_file, name);
    F(ckptdb_file, path);
    F(ckptdb_file, size);
    F(ckptdb_file, checksum);
    S(ckptdb_event);
    F(ckptdb_event, struct_size);
    F(ckptdb_event, id);
    F(ckptdb_event, at);
    F(ckptdb_event, run_id);
    F(ckptdb_event, checkpoint_id);
    F(ckptdb_event, event);
    F(ckptdb_event, detail);
    S(ckptdb_run);
    F(ckptdb_run, struct_size);
    F(ckptdb_run, id);
    F(ckptdb_run, host);
    F(ckptdb_run, pid);
    F(ckptdb_run, started_at);
    F(ckptdb_run, ended_at);
    F(ckptdb_run, exit_reason);
    F(ckptdb_run, slurm_job_id);
    F(ckptdb_run, slurm_array_job_id);
    F(ckptdb_run, slurm_array_task_id);
    F(ckptdb_run, slurm_restart_count);
    F(ckptdb_run, resumed_from);
    F(ckptdb_run, last_step);
    F(ckptdb_run, last_saved_step);
    F(ckptdb_run, saves);
    F(ckptdb_run, steps_lost);
    S(ckptdb_fsck_item);
    F(ckptdb_fsck_item, struct_size);
    F(ckptdb_fsck_item, kind);
    F(ckptdb_fsck_item, name);
    F(ckptdb_fsck_item, checkpoint_id);
    F(ckptdb_fsck_item, detail);
    F(ckptdb_fsck_item, action);
    S(ckptdb_rebuild_item);
    F(ckptdb_rebuild_item, struct_size);
    F(ckptdb_rebuild_item, kind);
    F(ckptdb_rebuild_item, name);
    F(ckptdb_rebuild_item, checkpoint_id);
    F(ckptdb_rebuild_item, detail);
    F(ckptdb_rebuild_item, action);
    S(ckptdb_sync_item);
    F(ckptdb_sync_item, struct_size);
    F(ckptdb_sync_item, kind);
    F(ckptdb_sync_item, name);
    F(ckptdb_sync_item, checkpoint_id);
    F(ckptdb_sync_item, detail);
    S(ckptdb_trigger_options);
    F(ckptdb_trigger_options, version);
    F(ckptdb_trigger_options, every_epochs);
    F(ckptdb_trigger_options, every_steps);
    F(ckptdb_trigger_options, every_seconds);
    F(ckptdb_trigger_options, watch_signals);
    F(ckptdb_trigger_options, clock);
    F(ckptdb_trigger_options, clock_payload);
    S(ckptdb_sync_options);
    F(ckptdb_sync_options, version);
    F(ckptdb_sync_options, delete_pruned);
    F(ckptdb_sync_options, progress);
    F(ckptdb_sync_options, progress_payload);
    F(ckptdb_sync_options, on_item);
    F(ckptdb_sync_options, item_payload);
    S(ckptdb_shard_info);
    F(ckptdb_shard_info, struct_size);
    F(ckptdb_shard_info, name);
    F(ckptdb_shard_info, temp_name);
    F(ckptdb_shard_info, size);
    F(ckptdb_shard_info, checksum);
    S(ckptdb_shard_file);
    F(ckptdb_shard_file, version);
    F(ckptdb_shard_file, name);
    F(ckptdb_shard_file, temp_name);
    F(ckptdb_shard_file, size);
    F(ckptdb_shard_file, checksum);
    S(ckptdb_dir_info);
    F(ckptdb_dir_info, struct_size);
    F(ckptdb_dir_info, id);
    F(ckptdb_dir_info, name);
    F(ckptdb_dir_info, temp_name);
    S(ckptdb_dir_file);
    F(ckptdb_dir_file, version);
    F(ckptdb_dir_file, name);
    F(ckptdb_dir_file, rank);
    F(ckptdb_dir_file, size);
    F(ckptdb_dir_file, checksum);
    printf(
        "OPEN_OPTIONS_VERSION %d\nSAVE_OPTIONS_VERSION %d\nFILTER_VERSION %d\nRETENTION_VERSION %d\n"
        "TRIGGER_OPTIONS_VERSION %d\nSYNC_OPTIONS_VERSION %d\nKEEP_KIND_VERSION %d\nSHARD_FILE_VERSION %d\n"
        "DIR_FILE_VERSION %d\nLAYOUT_FILE %d\nLAYOUT_DIR %d\n",
        CKPTDB_OPEN_OPTIONS_VERSION, CKPTDB_SAVE_OPTIONS_VERSION, CKPTDB_FILTER_VERSION, CKPTDB_RETENTION_VERSION,
        CKPTDB_TRIGGER_OPTIONS_VERSION, CKPTDB_SYNC_OPTIONS_VERSION, CKPTDB_KEEP_KIND_VERSION,
        CKPTDB_SHARD_FILE_VERSION, CKPTDB_DIR_FILE_VERSION, CKPTDB_LAYOUT_FILE, CKPTDB_LAYOUT_DIR);
    printf("OPEN_NO_CREATE %u\nOPEN_READONLY %u\nOPEN_REQUEUE %u\n", CKPTDB_OPEN_NO_CREATE, CKPTDB_OPEN_READONLY,
           CKPTDB_OPEN_REQUEUE);
    printf("ECALLBACK %d\n", CKPTDB_ECALLBACK);
    return 0;
}

static int fail(const char *what) {
    fprintf(stderr, "c_helper: %s: %s\n", what, ckptdb_last_error());
    return 1;
}

static int save(const char *dir, const char *file, const char *kind, int64_t epoch, int64_t step,
                const char *metadata) {
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 1;
    }
    ckptdb_catalog *db = NULL;
    if (ckptdb_open(&db, dir, NULL) != CKPTDB_OK) {
        fclose(f);
        return fail("open");
    }
    ckptdb_save_options o = CKPTDB_SAVE_OPTIONS_INIT;
    o.metadata = metadata;
    ckptdb_save *s = NULL;
    int rc = ckptdb_save_begin(&s, db, kind, epoch, step, &o);
    char buf[65536];
    size_t n;
    while (rc == CKPTDB_OK && (n = fread(buf, 1, sizeof buf, f)) > 0) rc = ckptdb_save_write(s, buf, n);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    if (rc == CKPTDB_OK) rc = ckptdb_save_commit(&e, s);
    if (rc == CKPTDB_OK)
        printf("%" PRId64 "\n", e.id);
    else
        fail("save");
    ckptdb_save_free(s);
    ckptdb_close(db);
    fclose(f);
    return rc == CKPTDB_OK ? 0 : 1;
}

static int print_entry(const ckptdb_entry *e, void *payload) {
    (void)payload;
    printf("%" PRId64 "\t%s\t%s\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%s\t%s\t%d\t%" PRId64 "\t%s\n", e->id, e->name,
           e->kind, e->epoch, e->step, e->size, e->checksum, ckptdb_status_name(e->status), e->pinned, e->file_count,
           e->metadata);
    return 0;
}

static int dump(const char *dir) {
    ckptdb_catalog *db = NULL;
    ckptdb_open_options oo = CKPTDB_OPEN_OPTIONS_INIT;
    oo.flags = CKPTDB_OPEN_READONLY | CKPTDB_OPEN_NO_CREATE;
    if (ckptdb_open(&db, dir, &oo) != CKPTDB_OK) return fail("open");
    int rc = ckptdb_list(db, NULL, print_entry, NULL);
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    if (rc == CKPTDB_OK && ckptdb_latest(&e, db, NULL, CKPTDB_VERIFY_FULL) == CKPTDB_OK) {
        ckptdb_reader *r = NULL;
        rc = ckptdb_reader_open(&r, db, e.id);
        int64_t total = 0;
        char buf[65536];
        size_t n = 1;
        while (rc == CKPTDB_OK && n > 0) {
            rc = ckptdb_reader_read(&n, r, buf, sizeof buf);
            total += (int64_t)n;
        }
        ckptdb_reader_close(r);
        if (rc == CKPTDB_OK) printf("latest\t%" PRId64 "\tread %" PRId64 " bytes, checksum verified\n", e.id, total);
    }
    if (rc != CKPTDB_OK) fail("dump");
    ckptdb_close(db);
    return rc == CKPTDB_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "layout") == 0) return layout();
    if (argc == 8 && strcmp(argv[1], "save") == 0)
        return save(argv[2], argv[3], argv[4], strtoll(argv[5], NULL, 10), strtoll(argv[6], NULL, 10), argv[7]);
    if (argc == 3 && strcmp(argv[1], "dump") == 0) return dump(argv[2]);
    fprintf(stderr, "usage: c_helper layout | save DIR FILE KIND EPOCH STEP METADATA | dump DIR\n");
    return 2;
}

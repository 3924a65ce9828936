/* ckptdb.h compiles alone as C99 with -pedantic -Werror, with its
 * experimental tier, and the runtime version matches the header's. Every
 * declaration is taken by address so a broken prototype fails the build. */
#define CKPTDB_EXPERIMENTAL
#include "ckptdb.h"

#include <stdio.h>
#include <string.h>

typedef void (*fn)(void);

int main(void) {
    fn fns[] = {
        (fn)ckptdb_version,
        (fn)ckptdb_version_number,
        (fn)ckptdb_schema_version,
        (fn)ckptdb_strerror,
        (fn)ckptdb_last_error,
        (fn)ckptdb_last_error_code,
        (fn)ckptdb_open_options_init,
        (fn)ckptdb_open,
        (fn)ckptdb_close,
        (fn)ckptdb_dir,
        (fn)ckptdb_status_name,
        (fn)ckptdb_save_options_init,
        (fn)ckptdb_save_begin,
        (fn)ckptdb_default_name,
        (fn)ckptdb_disk_usage,
        (fn)ckptdb_fsck_dir,
        (fn)ckptdb_save_write,
        (fn)ckptdb_save_temp_path,
        (fn)ckptdb_save_fd,
        (fn)ckptdb_save_commit,
        (fn)ckptdb_save_abort,
        (fn)ckptdb_save_free,
        (fn)ckptdb_latest,
        (fn)ckptdb_get,
        (fn)ckptdb_get_by_name,
        (fn)ckptdb_mark_resumed,
        (fn)ckptdb_list,
        (fn)ckptdb_cursor_open,
        (fn)ckptdb_cursor_next,
        (fn)ckptdb_cursor_free,
        (fn)ckptdb_verify,
        (fn)ckptdb_verify_all,
        (fn)ckptdb_reader_open,
        (fn)ckptdb_reader_read,
        (fn)ckptdb_reader_close,
        (fn)ckptdb_retention_init,
        (fn)ckptdb_set_retention,
        (fn)ckptdb_prune,
        (fn)ckptdb_pin,
        (fn)ckptdb_pin_by_name,
        (fn)ckptdb_remove,
        (fn)ckptdb_remove_by_name,
        (fn)ckptdb_run_progress,
        (fn)ckptdb_signals_install,
        (fn)ckptdb_signals_restore,
        (fn)ckptdb_preempt_requested,
        (fn)ckptdb_preempt_request,
        (fn)ckptdb_preempt_clear,
        (fn)ckptdb_trigger_options_init,
        (fn)ckptdb_trigger_new,
        (fn)ckptdb_trigger_free,
        (fn)ckptdb_trigger_check,
        (fn)ckptdb_trigger_saved,
        (fn)ckptdb_trigger_resumed,
        (fn)ckptdb_trigger_should_stop,
        (fn)ckptdb_last_callback_value,
        (fn)ckptdb_files,
        (fn)ckptdb_events,
        (fn)ckptdb_runs,
        (fn)ckptdb_verify_progress,
        (fn)ckptdb_fsck,
        (fn)ckptdb_rebuild,
        (fn)ckptdb_adopt,
        (fn)ckptdb_sync,
        (fn)ckptdb_shard_begin,
        (fn)ckptdb_shard_write,
        (fn)ckptdb_shard_fd,
        (fn)ckptdb_shard_finish,
        (fn)ckptdb_shard_free,
        (fn)ckptdb_commit_shards,
        (fn)ckptdb_reader_open_rank,
        (fn)ckptdb_check_trusted_fd,
        (fn)ckptdb_dir_begin,
        (fn)ckptdb_dir_get_info,
        (fn)ckptdb_dir_file_begin,
        (fn)ckptdb_dir_commit,
        (fn)ckptdb_dir_abort,
        (fn)ckptdb_dir_free,
        (fn)ckptdb_reader_open_file,
        (fn)ckptdb_dir_begin_in_place,
        (fn)ckptdb_dir_commit_in_place,
    };
    ckptdb_dir_file df = CKPTDB_DIR_FILE_INIT;
    ckptdb_dir_info di = CKPTDB_DIR_INFO_INIT;
    ckptdb_keep_kind k = CKPTDB_KEEP_KIND("epoch", 5);
    ckptdb_shard_file sf = CKPTDB_SHARD_FILE_INIT;
    ckptdb_sync_options so = CKPTDB_SYNC_OPTIONS_INIT;
    ckptdb_retention r = CKPTDB_RETENTION_INIT;
    ckptdb_trigger_options to = CKPTDB_TRIGGER_OPTIONS_INIT;
    ckptdb_open_options o = CKPTDB_OPEN_OPTIONS_INIT;
    ckptdb_save_options s = CKPTDB_SAVE_OPTIONS_INIT;
    ckptdb_filter f = CKPTDB_FILTER_INIT;
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    size_t i;
    for (i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (!fns[i]) return 1;
    if (strcmp(ckptdb_version(), CKPTDB_VERSION_STRING) != 0 || ckptdb_version_number() != CKPTDB_VERSION_NUMBER) {
        fprintf(stderr, "header says %s, library says %s\n", CKPTDB_VERSION_STRING, ckptdb_version());
        return 1;
    }
    if (o.version != CKPTDB_OPEN_OPTIONS_VERSION || s.version != CKPTDB_SAVE_OPTIONS_VERSION ||
        f.version != CKPTDB_FILTER_VERSION || e.struct_size != sizeof(ckptdb_entry) ||
        r.version != CKPTDB_RETENTION_VERSION || to.version != CKPTDB_TRIGGER_OPTIONS_VERSION ||
        k.version != CKPTDB_KEEP_KIND_VERSION || k.count != 5 || sf.version != CKPTDB_SHARD_FILE_VERSION ||
        so.version != CKPTDB_SYNC_OPTIONS_VERSION || (o.flags & CKPTDB_OPEN_REQUEUE) ||
        df.version != CKPTDB_DIR_FILE_VERSION || di.struct_size != sizeof(ckptdb_dir_info) ||
        e.layout != CKPTDB_LAYOUT_FILE)
        return 1;
    if (ckptdb_last_callback_value() != 0 || strcmp(ckptdb_strerror(CKPTDB_ECALLBACK), "unknown status code") == 0)
        return 1;
    if (ckptdb_last_error() == NULL) return 1;
    printf("C99: ckptdb %s, schema %d\n", ckptdb_version(), ckptdb_schema_version());
    return 0;
}

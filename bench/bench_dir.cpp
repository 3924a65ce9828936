// A directory checkpoint of many files (as if each of thousands of ranks
// wrote one), committed, verified, listed and pruned, each against its
// floor measured side by side in the same run:
//   commit : ckptdb_dir_commit, after every file was written, fsynced and
//            sealed by its writer; its floor is nothing (target <= 1 s),
//            reported beside the writers' own time and one fsync per file
//   latest : ckptdb_latest with CKPTDB_VERIFY_SIZE  vs  an lstat of every
//            file (target <= 50 ms)
//   list   : ckptdb_files of the checkpoint  vs  readdir of the directory
//   prune  : a rotation that removes the whole directory  vs  rm -r of an
//            identical copy, synced to disk first as the checkpoint's files
//            are (target <= 2x)
// Never asserts timings; fails only when an operation fails.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "ckptdb.h"

namespace {

[[noreturn]] void die_api(const char *what, int rc) {
    bench::die(std::string(what) + " failed: " + ckptdb_strerror(rc) + ": " + ckptdb_last_error());
}

std::string file_name(int i) { return "__" + std::to_string(i) + "_0.distcp"; }

// One directory checkpoint of `files` files of `bytes` each; returns its id
// and the seconds the writers and the commit took.
int64_t save_dir(ckptdb_catalog *db, const std::string &dir, int64_t epoch, int files, size_t bytes, double *writers_s,
                 double *commit_s) {
    ckptdb_dir_save *s = nullptr;
    if (int rc = ckptdb_dir_begin(&s, db, "epoch", epoch, epoch, nullptr)) die_api("ckptdb_dir_begin", rc);
    ckptdb_dir_info info = CKPTDB_DIR_INFO_INIT;
    if (int rc = ckptdb_dir_get_info(&info, s)) die_api("ckptdb_dir_get_info", rc);
    std::vector<char> buf(bytes);
    for (size_t i = 0; i < bytes; i++) buf[i] = char((i * 2654435761u) >> 13);
    std::vector<std::string> names(files), sums(files);
    std::vector<ckptdb_dir_file> fs(files);
    double t0 = bench::now_s();
    for (int i = 0; i < files; i++) {
        ckptdb_shard *w = nullptr;
        names[i] = file_name(i);
        if (int rc = ckptdb_dir_file_begin(&w, dir.c_str(), info.temp_name, names[i].c_str(), i))
            die_api("ckptdb_dir_file_begin", rc);
        buf[0] = char(i);
        if (int rc = ckptdb_shard_write(w, buf.data(), buf.size())) die_api("ckptdb_shard_write", rc);
        ckptdb_shard_info si = CKPTDB_SHARD_INFO_INIT;
        if (int rc = ckptdb_shard_finish(&si, w)) die_api("ckptdb_shard_finish", rc);
        sums[i] = si.checksum;
        fs[i] = {CKPTDB_DIR_FILE_VERSION, names[i].c_str(), i, si.size, sums[i].c_str()};
        ckptdb_shard_free(w);
    }
    double t1 = bench::now_s();
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    if (int rc = ckptdb_dir_commit(&e, s, fs.data(), fs.size())) die_api("ckptdb_dir_commit", rc);
    double t2 = bench::now_s();
    ckptdb_dir_free(s);
    *writers_s = t1 - t0;
    *commit_s = t2 - t1;
    return e.id;
}

// One fsync per file of a directory like the checkpoint's: what the writers'
// seals cost at the least.
double fsync_floor(const std::string &dir, int files, size_t bytes) {
    std::vector<char> buf(bytes, 'x');
    if (mkdir(dir.c_str(), 0755) != 0) bench::die_errno("mkdir " + dir);
    double t0 = bench::now_s();
    for (int i = 0; i < files; i++) {
        std::string p = dir + "/" + file_name(i);
        int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) bench::die_errno("open " + p);
        if (write(fd, buf.data(), buf.size()) != ssize_t(buf.size())) bench::die_errno("write " + p);
        if (fsync(fd) != 0) bench::die_errno("fsync " + p);
        close(fd);
    }
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0) bench::die_errno("fsync " + dir);
    close(dfd);
    return bench::now_s() - t0;
}

double lstat_all(const std::string &dir, int files) {
    double t0 = bench::now_s();
    for (int i = 0; i < files; i++) {
        struct stat st;
        if (lstat((dir + "/" + file_name(i)).c_str(), &st) != 0) bench::die_errno("lstat");
    }
    return bench::now_s() - t0;
}

double readdir_all(const std::string &dir) {
    double t0 = bench::now_s();
    DIR *d = opendir(dir.c_str());
    if (!d) bench::die_errno("opendir " + dir);
    size_t n = 0;
    while (readdir(d)) n++;
    closedir(d);
    if (n == 0) bench::die("empty directory " + dir);
    return bench::now_s() - t0;
}

}  // namespace

int main(int argc, char **argv) {
    int files = 4096, reps = 3, calls = 20;
    size_t bytes = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--files")
            files = std::atoi(argv[i + 1]);
        else if (a == "--bytes")
            bytes = std::strtoull(argv[i + 1], nullptr, 10);
        else if (a == "--reps")
            reps = std::atoi(argv[i + 1]);
        else if (a == "--calls")
            calls = std::atoi(argv[i + 1]);
        else
            bench::die("usage: bench_dir [--files N] [--bytes N] [--reps N] [--calls N]");
    }
    if (files < 1 || reps < 1 || calls < 1) bench::die("--files, --reps and --calls must be >= 1");
    std::string work = bench::make_workdir("bench-dir");
    std::printf("bench_dir: ckptdb %s, %d files of %zu B per checkpoint, %d reps, work dir %s\n", ckptdb_version(),
                files, bytes, reps, work.c_str());
    std::vector<double> writers, commits, floors, latest, lstats, lists, dirents, prunes, rms;
    for (int r = 0; r < reps; r++) {
        std::string dir = work + "/c" + std::to_string(r);
        ckptdb_catalog *db = nullptr;
        if (int rc = ckptdb_open(&db, dir.c_str(), nullptr)) die_api("ckptdb_open", rc);
        double w = 0, c = 0;
        int64_t first = save_dir(db, dir, 1, files, bytes, &w, &c);
        writers.push_back(w);
        commits.push_back(c);
        floors.push_back(fsync_floor(work + "/floor" + std::to_string(r), files, bytes));
        bench::remove_tree(work + "/floor" + std::to_string(r));

        std::string path = dir + "/epoch_001";
        for (int k = 0; k < calls; k++) {
            ckptdb_entry e = CKPTDB_ENTRY_INIT;
            double t0 = bench::now_s();
            if (int rc = ckptdb_latest(&e, db, nullptr, CKPTDB_VERIFY_SIZE)) die_api("ckptdb_latest", rc);
            latest.push_back(bench::now_s() - t0);
            if (e.id != first || e.file_count != files) bench::die("latest found another checkpoint");
            lstats.push_back(lstat_all(path, files));
            int64_t n = 0;
            t0 = bench::now_s();
            if (int rc = ckptdb_files(
                    db, first,
                    [](const ckptdb_file *, void *p) {
                        ++*static_cast<int64_t *>(p);
                        return 0;
                    },
                    &n))
                die_api("ckptdb_files", rc);
            lists.push_back(bench::now_s() - t0);
            if (n != files) bench::die("ckptdb_files listed " + std::to_string(n) + " files");
            dirents.push_back(readdir_all(path));
        }

        // rm -r of an identical copy, then the rotation that removes the
        // first checkpoint once a second one is committed.
        std::string copy = work + "/copy" + std::to_string(r);
        bench::run_child({"cp", "-r", path, copy}, nullptr);
        // On disk like the checkpoint's files: an unlink of blocks never
        // written back costs far less than one of blocks on disk.
        bench::run_child({"sync", "-f", copy}, nullptr);
        double t0 = bench::now_s();
        bench::run_child({"rm", "-r", copy}, nullptr);
        rms.push_back(bench::now_s() - t0);
        double w2 = 0, c2 = 0;
        save_dir(db, dir, 2, files, bytes, &w2, &c2);
        ckptdb_retention pol = CKPTDB_RETENTION_INIT;
        ckptdb_keep_kind keep[] = {CKPTDB_KEEP_KIND("epoch", 1)};
        pol.keep_last = keep;
        pol.keep_last_count = 1;
        int64_t count = 0, freed = 0;
        t0 = bench::now_s();
        if (int rc = ckptdb_prune(&count, &freed, db, &pol, 0, nullptr, nullptr)) die_api("ckptdb_prune", rc);
        prunes.push_back(bench::now_s() - t0);
        struct stat st;
        if (count != 1 || lstat(path.c_str(), &st) == 0) bench::die("the prune left the first checkpoint");
        ckptdb_close(db);
    }
    double cm = bench::median(commits), wm = bench::median(writers), fm = bench::median(floors);
    std::printf(
        "writers (write + fsync + seal of %d files): median %.3f s; floor (write + fsync each): %.3f s "
        "(%.2fx)\n",
        files, wm, fm, wm / fm);
    std::printf("commit of %d files beyond their own fsyncs: median %.3f s, max %.3f s (target <= 1 s)\n", files, cm,
                *std::max_element(commits.begin(), commits.end()));
    double lm = bench::median(latest), sm = bench::median(lstats);
    std::printf(
        "latest, size verification: median %.2f ms, p90 %.2f ms (target <= 50 ms); lstat of every file: "
        "%.2f ms (%.2fx)\n",
        lm * 1e3, bench::quantile(latest, 0.9) * 1e3, sm * 1e3, lm / sm);
    double li = bench::median(lists), di = bench::median(dirents);
    std::printf("list (ckptdb_files): median %.2f ms; readdir: %.2f ms (%.2fx)\n", li * 1e3, di * 1e3, li / di);
    double pm = bench::median(prunes), rm = bench::median(rms);
    std::printf("prune of the whole directory: median %.3f s; rm -r of a copy: %.3f s (%.2fx, target <= 2x)\n", pm, rm,
                pm / rm);
    bench::remove_tree(work);
    return 0;
}

"""bench_python.py - torch.save through the catalog against the usual recipe,
and asynchronous saves against the CPU copy they start with.

Measured side by side in one run, in alternating order, on the same file
system; each figure is the median of --reps runs:

  save    a state_dict of --mib MiB (float32 tensors of 16 MiB) saved
            plain:     torch.save(state, tmp); fsync; rename; fsync(dir)
            catalog:   with cat.save(...) as f: torch.save(state, f)
                       (mode "write": bytes through ckptdb_save_write, and
                       mode "fd": os.write on the library's descriptor)
            temp path: open(save.temp_path, "wb") as a Python file; torch.save
                       into it; commit (torch.save given the path itself refuses
                       the temp file's name, which has no stem before its dot)
          and the physical limit: dd if=/dev/zero bs=1M count=MiB conv=fsync
          target: catalog / plain <= 1.05
  async   the time the training loop is blocked by AsyncSaver.save (the CPU
          copy on its thread, then the write and commit in the background)
          against the time of the CPU copy alone (ckptdb.torch.snapshot);
          target: blocked / copy <= 1.2

It never asserts timings; it fails only when an operation fails.  Work
files go under $CKPTDB_BENCH_DIR if set, else a fresh directory in the
current one; everything is removed at the end.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import torch
except ImportError:
    print("bench_python: skipped, this interpreter has no torch", file=sys.stderr)
    sys.exit(77)

import ckptdb
from ckptdb import torch as ct


def fsync_dir(d):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def plain_save(state, d, i):
    tmp = os.path.join(d, "plain_%d.pt.tmp" % i)
    final = os.path.join(d, "plain_%d.pt" % i)
    torch.save(state, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    fsync_dir(d)
    return final


def catalog_save(cat, state, i, mode):
    with cat.save(kind="bench", step=i, mode=mode) as f:
        torch.save(state, f)
    return f.entry


def temp_path_save(cat, state, i):
    s = cat.save(kind="bench", step=i)
    try:
        with open(s.temp_path, "wb") as fh:
            torch.save(state, fh)
    except BaseException:
        s.abort()
        raise
    return s.commit()


def drop(cat):
    """Delete every benchmark checkpoint but the newest (outside the timings)."""
    cat.prune(ckptdb.Retention(keep_last={"bench": 0}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    base = os.environ.get("CKPTDB_BENCH_DIR") or os.getcwd()
    work = tempfile.mkdtemp(prefix="bench_python-", dir=base)
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work):
    torch.manual_seed(0)
    n = args.mib // 16
    state = {"layer%02d.weight" % k: torch.randn(4 << 20) for k in range(n)}
    size = sum(t.numel() * t.element_size() for t in state.values())
    print("state_dict: %d tensors, %d MiB; %d reps, median; directory %s" % (n, size >> 20, args.reps, work))

    plain_dir = os.path.join(work, "plain")
    os.mkdir(plain_dir)
    cat = ckptdb.Catalog(os.path.join(work, "catalog"), last_link="")

    # dd: the physical limit of writing this many bytes durably here.
    dd_times = []
    for r in range(2):
        t0 = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", "of=" + os.path.join(work, "dd.bin"), "bs=1M",
                        "count=%d" % (size >> 20), "conv=fsync"], check=True, capture_output=True)
        dd_times.append(time.perf_counter() - t0)
        os.unlink(os.path.join(work, "dd.bin"))
    dd = min(dd_times)

    methods = {
        "plain": lambda i: plain_save(state, plain_dir, i),
        "catalog-write": lambda i: catalog_save(cat, state, i, "write"),
        "catalog-fd": lambda i: catalog_save(cat, state, i, "fd"),
        "catalog-temp-path": lambda i: temp_path_save(cat, state, i),
    }
    names = list(methods)
    times = {m: [] for m in names}
    methods["plain"](-1)  # warm up (allocator, page cache, torch's pickler)
    catalog_save(cat, state, 0, "write")
    for r in range(args.reps):
        order = names if r % 2 == 0 else names[::-1]
        for m in order:
            i = r * 10 + names.index(m) + 1
            t0 = time.perf_counter()
            out = methods[m](i)
            times[m].append(time.perf_counter() - t0)
            if m == "plain":
                os.unlink(out)
                fsync_dir(plain_dir)
            else:
                drop(cat)
    for f in os.listdir(plain_dir):
        os.unlink(os.path.join(plain_dir, f))

    med = {m: statistics.median(v) for m, v in times.items()}
    print()
    print("%-20s %10s %10s %12s %12s" % ("save", "median s", "MiB/s", "vs plain", "vs dd"))
    print("%-20s %10.3f %10.0f %12s %12.2f" % ("dd conv=fsync", dd, size / dd / 2 ** 20, "", 1.0))
    for m in names:
        print("%-20s %10.3f %10.0f %12.3f %12.2f" % (m, med[m], size / med[m] / 2 ** 20, med[m] / med["plain"],
                                                   med[m] / dd))
    print("  all runs (s): " + "; ".join("%s %s" % (m, " ".join("%.3f" % x for x in times[m])) for m in names))
    for m in ("catalog-write", "catalog-fd"):
        ratio = med[m] / med["plain"]
        print("save through the catalog (%s, a file object) / plain torch.save+fsync+rename: %.3fx "
              "(target <= 1.05: %s)" % (m, ratio, "met" if ratio <= 1.05 else "NOT met"))

    # Asynchronous saves: how long the loop is blocked, against the copy alone.
    saver = ct.AsyncSaver(cat)
    copy_t, block_t, total_t = [], [], []
    ct.snapshot(state)  # warm up
    for r in range(args.reps):
        order = ("copy", "async") if r % 2 == 0 else ("async", "copy")
        for what in order:
            if what == "copy":
                t0 = time.perf_counter()
                snap = ct.snapshot(state)
                copy_t.append(time.perf_counter() - t0)
                snap.clear()  # freed after the clock stopped
            else:
                t0 = time.perf_counter()
                saver.save(state, "bench", 0, 100 + r)
                block_t.append(time.perf_counter() - t0)
                # the loop would train here; the save completes in the background
                saver.wait()
                total_t.append(time.perf_counter() - t0)
                drop(cat)
    c, b, t = statistics.median(copy_t), statistics.median(block_t), statistics.median(total_t)
    print()
    print("%-34s %10s" % ("async", "median s"))
    print("%-34s %10.3f" % ("CPU copy alone (snapshot)", c))
    print("%-34s %10.3f" % ("loop blocked by AsyncSaver.save", b))
    print("%-34s %10.3f" % ("until committed (background)", t))
    print("  all runs (s): copy %s; blocked %s" % (" ".join("%.3f" % x for x in copy_t),
                                                   " ".join("%.3f" % x for x in block_t)))
    print("async: loop blocked / CPU copy alone: %.3fx (target <= 1.2: %s)" % (b / c, "met" if b / c <= 1.2
                                                                               else "NOT met"))
    cat.close()


if __name__ == "__main__":
    main()

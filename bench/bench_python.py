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
  resume  the newest checkpoint of that state loaded back
            plain:     torch.load(path, map_location="cpu") with torch's default
                       arguments (weights_only=True from torch 2.6 on)
            catalog:   cat.load_latest(map_location="cpu"): the catalog's newest
                       checkpoint, its bytes verified in full against the
                       XXH3-128 of the catalog, loaded with the safe loader and
                       the resume recorded
          and the physical limit of the verification: xxh128sum of the file;
          warm page cache (the file was just written), or cold with --cold
          (drops the page cache before each load; needs root)
          target: reported, not asserted; the floor of a verified resume is
          torch.load + xxh128sum (the file is read twice), printed too.
          torch.load's time depends on whether glibc hands it pages already
          faulted in: run with MALLOC_MMAP_THRESHOLD_=33554432 and a large
          MALLOC_TRIM_THRESHOLD_ (meson's benchmark does) for stable figures
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


def drop_caches(cold):
    if not cold:
        return
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def resume(args, cat, state, size, plain_dir):
    """A resume through the catalog (full verification, safe loader)
    against plain torch.load of the same bytes."""
    e = catalog_save(cat, state, 1000, "write")
    drop(cat)
    plain = plain_save(state, plain_dir, 1000)
    first = next(iter(state))
    times = {"plain torch.load": [], "load_latest (verified)": [], "xxh128sum": []}
    for r in range(args.reps):
        order = list(times) if r % 2 == 0 else list(times)[::-1]
        for m in order:
            drop_caches(args.cold)
            t0 = time.perf_counter()
            if m == "plain torch.load":
                got = torch.load(plain, map_location="cpu")
            elif m == "xxh128sum":
                subprocess.run(["xxh128sum", e.path], check=True, capture_output=True)
                got = None
            else:
                got, entry = cat.load_latest(map_location="cpu")
                if entry.id != e.id:
                    raise SystemExit("bench_python: load_latest returned %s, not %s" % (entry.name, e.name))
            times[m].append(time.perf_counter() - t0)
            if got is not None and not torch.equal(got[first], state[first]):
                raise SystemExit("bench_python: %s loaded other values" % m)
            del got
    os.unlink(plain)
    med = {m: statistics.median(v) for m, v in times.items()}
    print()
    print("%-26s %10s %10s %12s" % ("resume (%s cache)" % ("cold" if args.cold else "warm"), "median s", "MiB/s",
                                    "vs plain"))
    for m in times:
        print("%-26s %10.3f %10.0f %12.3f" % (m, med[m], size / med[m] / 2 ** 20, med[m] / med["plain torch.load"]))
    print("  all runs (s): " + "; ".join("%s %s" % (m, " ".join("%.3f" % x for x in v)) for m, v in times.items()))
    print("resume through load_latest (full verification) / plain torch.load: %.3fx; "
          "verification alone (xxh128sum) / plain torch.load: %.3fx"
          % (med["load_latest (verified)"] / med["plain torch.load"], med["xxh128sum"] / med["plain torch.load"]))
    print("resume through load_latest / (plain torch.load + xxh128sum), its floor: %.3fx"
          % (med["load_latest (verified)"] / (med["plain torch.load"] + med["xxh128sum"])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each load (root)")
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

    resume(args, cat, state, size, plain_dir)

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

"""bench_dcp.py - torch.distributed.checkpoint through the catalog against
DCP's own FileSystemWriter, on the same state, side by side in one run.

Launched with torch.distributed.run (gloo, CPU):

    python -m torch.distributed.run --nproc_per_node 4 bench/bench_dcp.py --mib 1024 --reps 3 --dir DIR

Every rank holds --mib / world MiB of float32 tensors (16 MiB each), so the
state in total is --mib MiB.  Each rep saves it twice, in alternating order:
  dcp     dcp.save(state, storage_writer=FileSystemWriter(DIR/dcp-<rep>))
          (its default sync_files=True: every file fsynced)
  ckptdb  dcp.save(state, storage_writer=ckptdb.dcp.Writer(DIR/ckptdb, ...))
Reported by rank 0: the median of each, their ratio (target <= 1.05), and
the commit's share: from the end of the last rank's write (a barrier after
write_data) to the committed row, measured inside the coordinator's finish.
Before each save, untimed, rank 0 calls sync(2), so that the previous
save's writeback is not charged to the next writer (--no-settle: not).
Never asserts timings.
"""

import argparse
import os
import shutil
import statistics
import time

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from ckptdb import dcp as ckdcp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--no-settle", dest="settle", action="store_false",
                    help="do not sync(2) the disk (untimed) before each save")
    a = ap.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    per_rank = a.mib // world
    state = {"r%d.t%d" % (rank, i): torch.full((4 << 20,), float(rank * 1000 + i))
             for i in range(max(1, per_rank // 16))}

    # The commit's share: the coordinator's finish, from the moment every
    # rank's write_data returned (the plans' all_reduce is the barrier DCP
    # puts there) to the committed row.
    finish_times = []
    orig_finish = ckdcp.Writer.finish

    def timed_finish(self, metadata, results):
        t0 = time.perf_counter()
        orig_finish(self, metadata, results)
        finish_times.append(time.perf_counter() - t0)

    ckdcp.Writer.finish = timed_finish

    plain, ours = [], []
    for rep in range(a.reps):
        for which in (("dcp", "ckptdb") if rep % 2 == 0 else ("ckptdb", "dcp")):
            # The previous save's writeback goes to disk before the clock
            # starts, so that neither writer pays for the other's.
            if a.settle and rank == 0:
                os.sync()
            dist.barrier()
            t0 = time.perf_counter()
            if which == "dcp":
                dcp.save(state, storage_writer=dcp.FileSystemWriter(os.path.join(a.dir, "dcp-%d" % rep)))
            else:
                dcp.save(state, storage_writer=ckdcp.Writer(os.path.join(a.dir, "ckptdb"), kind="step", step=rep))
            dist.barrier()
            (plain if which == "dcp" else ours).append(time.perf_counter() - t0)
        if rank == 0:
            shutil.rmtree(os.path.join(a.dir, "dcp-%d" % rep))
    if rank == 0:
        p, o = statistics.median(plain), statistics.median(ours)
        print("bench_dcp: %d ranks, %d MiB of state in total, %d reps" % (world, per_rank * world, a.reps))
        print("dcp.save, FileSystemWriter: median %.3f s (%s)" % (p, ", ".join("%.3f" % x for x in plain)))
        print("dcp.save, ckptdb.dcp.Writer: median %.3f s (%s)" % (o, ", ".join("%.3f" % x for x in ours)))
        print("ratio ckptdb / FileSystemWriter: %.3f (target <= 1.05)" % (o / p))
        print("last rank's write -> committed row (the coordinator's finish): median %.3f s (%s)"
              % (statistics.median(finish_times), ", ".join("%.3f" % x for x in finish_times)))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

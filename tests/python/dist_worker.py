"""A rank of the torch.distributed tests, started by torch.distributed.run.

It runs examples/python/train.py (replicated DDP training) or, with
--sharded, a loop whose ranks each save their own shard.  Two test hooks,
from the environment:
  CKPTDB_TEST_DIE=R:N   rank R SIGKILLs itself in the middle of its N-th
                        save (after the first bytes of it were written)
  CKPTDB_TEST_TERM=R:S  rank R sends itself SIGTERM after its step S
Every rank prints "rank R resumed E S P" after its resume, P a digest of its
parameters, so the test can check that all ranks agree.
"""

import hashlib
import os
import runpy
import signal
import sys

import ckptdb.catalog
import ckptdb.torch as ct

RANK = int(os.environ["RANK"])


def die_in_nth_save(cls, n):
    orig = cls.write
    seen = {"saves": 0}

    def write(self, data):
        if not hasattr(self, "_test_victim"):
            seen["saves"] += 1
            self._test_victim = seen["saves"] == n
        r = orig(self, data)
        if self._test_victim:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return r

    cls.write = write


def report_resume():
    orig = ct.CheckpointManager.resume

    def resume(self, *args, **kw):
        ep, sp = orig(self, *args, **kw)
        h = hashlib.sha256()
        for _, t in sorted(ct.unwrap(self.model).state_dict().items()):
            h.update(t.numpy().tobytes())
        print("rank %d resumed %d %d %s" % (self.rank, ep, sp, h.hexdigest()[:16]), flush=True)
        return ep, sp

    ct.CheckpointManager.resume = resume


def term_at_step(s):
    orig = ct.CheckpointManager.step

    def step(self, epoch, step, metrics=None, **kw):
        if step == s:
            os.kill(os.getpid(), signal.SIGTERM)
        return orig(self, epoch, step, metrics, **kw)

    ct.CheckpointManager.step = step


term = os.environ.get("CKPTDB_TEST_TERM")
if term:
    r, s = (int(x) for x in term.split(":"))
    if r == RANK:
        term_at_step(s)
die = os.environ.get("CKPTDB_TEST_DIE")
if die:
    r, n = (int(x) for x in die.split(":"))
    if r == RANK:
        die_in_nth_save(ckptdb.catalog.Save, n)
        try:
            import ckptdb.distributed as cd
            die_in_nth_save(cd.ShardWriter, n)
        except ImportError:
            pass
report_resume()

script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")

"""A rank of the torch.distributed tests, started by torch.distributed.run.

It runs examples/python/train.py (replicated DDP training) or, with
--sharded, a loop whose ranks each save their own part of the state.  Test
hooks, from the environment:
  CKPTDB_TEST_DIE=R:N   rank R SIGKILLs itself in the middle of its N-th
                        save (after the first bytes of its data file were
                        written; DCP's metadata files are not counted)
  CKPTDB_TEST_TERM=R:S  rank R sends itself SIGTERM after its step S
  CKPTDB_TEST_FLAT=1    CheckpointManager(sharded=True) saves in the flat
                        per-rank format (ckptdb.distributed.save_sharded),
                        as ckptdb did before it saved through DCP
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
            if getattr(self, "_test_name", "").startswith(".metadata"):
                self._test_victim = False  # the coordinator's metadata of a DCP save
            else:
                seen["saves"] += 1
                self._test_victim = seen["saves"] == n
        r = orig(self, data)
        if self._test_victim:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return r

    cls.write = write


def name_writers(cls):
    orig = cls.__init__

    def init(self, directory, name, *a, **kw):  # DirFileWriter passes its name second too
        self._test_name = name
        orig(self, directory, name, *a, **kw)

    cls.__init__ = init


def save_flat():
    import ckptdb.distributed as cd
    orig = ct.CheckpointManager.save

    def save(self, kind, epoch, step, metrics=None, name=None):
        if not self.sharded:
            return orig(self, kind, epoch, step, metrics, name)
        st = ct.build_state(epoch, step, self.model, self.optimizer, self.scheduler, self.scaler, self.extra)
        self.last_saved = cd.save_sharded(self.directory, st, kind, epoch, step, cat=self.cat, metrics=metrics)
        return self.last_saved

    ct.CheckpointManager.save = save


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
            name_writers(cd.ShardWriter)
            die_in_nth_save(cd.ShardWriter, n)
        except ImportError:
            pass
if os.environ.get("CKPTDB_TEST_FLAT") == "1":
    save_flat()
report_resume()

script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")

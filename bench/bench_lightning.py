"""bench_lightning.py - what ckptdb adds to a Lightning save, against
Lightning's own default checkpointing of the same model in the same run.

    python bench/bench_lightning.py --mib 256 --epochs 4 --reps 3 --dir DIR

The model: a stack of Linear layers holding --mib MiB of float32
parameters, trained with Adam (so a checkpoint holds about 3x that: the
weights and Adam's two moments), one step per epoch on synthetic data.
Each rep runs the same training twice, in alternating order:
  lightning  Trainer(callbacks=[ModelCheckpoint(dirpath=DIR/pl-<rep>,
             every_n_epochs=1, save_top_k=-1)]) with Lightning's default
             TorchCheckpointIO (torch.save; no fsync)
  ckptdb     Trainer(plugins=[ckptdb.lightning.CheckpointIO()],
             callbacks=[ckptdb.lightning.Checkpoint(DIR/ckptdb-<rep>,
             every_n_epochs=1, keep_last={"epoch": -1})]) (durable writer,
             XXH3-128 while writing, fsync, rename, one catalog commit)
A save is timed from trainer.save_checkpoint's entry to its return (the
state dump and the write: everything a save costs the training loop).
Before each run, untimed, the disk is synced (sync(2)), so the previous
run's writeback is not charged to the next.  Printed: the median save of
each, their ratio (target <= 1.05), and the minima's ratio.  Never asserts
timings.
"""

import argparse
import os
import shutil
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
except ImportError:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

import ckptdb.lightning


class Big(pl.LightningModule):
    def __init__(self, mib):
        super().__init__()
        width = 1024
        layers = max(1, (mib << 20) // (4 * width * width))
        self.net = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(layers)])

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.net(x).square().mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-4)


def run(which, mib, epochs, directory):
    torch.manual_seed(0)
    model = Big(mib)
    loader = DataLoader(TensorDataset(torch.randn(8, 1024)), batch_size=8)
    if which == "lightning":
        kw = dict(callbacks=[ModelCheckpoint(dirpath=directory, every_n_epochs=1, save_top_k=-1)])
    else:
        kw = dict(plugins=[ckptdb.lightning.CheckpointIO()],
                  callbacks=[ckptdb.lightning.Checkpoint(directory, every_n_epochs=1, keep_last={"epoch": -1})])
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, **kw)
    times = []
    orig = trainer.save_checkpoint

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = orig(*a, **k)
        times.append(time.perf_counter() - t0)
        return out

    trainer.save_checkpoint = timed
    trainer.fit(model, loader)
    if len(times) != epochs:
        raise SystemExit("bench_lightning: %s saved %d times in %d epochs" % (which, len(times), epochs))
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="MiB of float32 parameters (the checkpoint is ~3x)")
    ap.add_argument("--epochs", type=int, default=4, help="saves per run (one per epoch)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    got = {"lightning": [], "ckptdb": []}
    for rep in range(a.reps):
        for which in (("lightning", "ckptdb") if rep % 2 == 0 else ("ckptdb", "lightning")):
            d = os.path.join(a.dir, "%s-%d" % ("pl" if which == "lightning" else "ckptdb", rep))
            os.sync()
            got[which] += run(which, a.mib, a.epochs, d)
            size = sum(e.stat().st_size for e in os.scandir(d)
                       if e.name.endswith(".ckpt") and e.is_file(follow_symlinks=False))
            shutil.rmtree(d)
    pl_t, ck_t = got["lightning"], got["ckptdb"]
    per = size / max(1, a.epochs) if size else 0
    print("bench_lightning: %d MiB of parameters, %d saves per run, %d reps; a checkpoint is about %.0f MiB"
          % (a.mib, a.epochs, a.reps, per / (1 << 20)))
    print("save, Lightning (TorchCheckpointIO + ModelCheckpoint): median %.3f s, min %.3f s (%s)"
          % (statistics.median(pl_t), min(pl_t), ", ".join("%.3f" % x for x in pl_t)))
    print("save, ckptdb (CheckpointIO + Checkpoint): median %.3f s, min %.3f s (%s)"
          % (statistics.median(ck_t), min(ck_t), ", ".join("%.3f" % x for x in ck_t)))
    print("ratio ckptdb / Lightning: medians %.3f, minima %.3f (target <= 1.05)"
          % (statistics.median(ck_t) / statistics.median(pl_t), min(ck_t) / min(pl_t)))


if __name__ == "__main__":
    main()

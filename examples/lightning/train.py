#!/usr/bin/env python3
"""A small LightningModule on synthetic data, checkpointed by ckptdb.

    python examples/lightning/train.py --dir ckpts --epochs 6

Kill it at any moment (SIGKILL, or SIGTERM/SIGUSR1 for a "preempt"
checkpoint at the next batch boundary and a clean exit) and run the same
command again: it resumes from the newest checkpoint that verifies and
finishes where an uninterrupted run would.  The two lines ckptdb adds are
marked below.  Deterministic on CPU: fixed seeds, data in a fixed order.
"""

import argparse
import logging
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

import ckptdb.lightning


class Regressor(pl.LightningModule):
    """A two-layer MLP fitting a fixed random linear map."""

    def __init__(self, features=16, hidden=32, lr=0.01, step_sleep=0.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        if self.hparams.step_sleep:
            time.sleep(self.hparams.step_sleep)
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)}


def data(n, features, seed):
    """n samples of one fixed linear map plus noise; seed picks the samples."""
    w = torch.randn(features, 1, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return TensorDataset(x, x @ w + 0.1 * torch.randn(n, 1, generator=g))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="checkpoint directory (its catalog: ckptdb.sqlite)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batches", type=int, default=8, help="training batches per epoch")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--every-steps", type=int, default=0, help="also save every N steps (kind 'step')")
    ap.add_argument("--top-k", type=int, default=2, help="keep the K best epochs by val_loss")
    ap.add_argument("--keep-epochs", type=int, default=2, help="keep the newest N epoch checkpoints")
    ap.add_argument("--step-sleep", type=float, default=0.0, help="seconds each training step sleeps")
    ap.add_argument("--requeue", action="store_true", help="under Slurm, requeue the job after a preempt save")
    a = ap.parse_args(argv)

    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
    logging.getLogger("ckptdb").setLevel(logging.INFO)  # "ckptdb DIR: committed checkpoint 3", ...
    pl.seed_everything(0, verbose=False)
    model = Regressor(step_sleep=a.step_sleep)
    train = DataLoader(data(a.batches * a.batch_size, 16, 1), batch_size=a.batch_size, shuffle=False)
    val = DataLoader(data(64, 16, 2), batch_size=64)

    ckpts = ckptdb.lightning.Checkpoint(a.dir, every_n_epochs=1, every_n_train_steps=a.every_steps,
                                        monitor="val_loss", mode="min", save_top_k=a.top_k,
                                        keep_last={"epoch": a.keep_epochs, "step": 2, "preempt": 0},
                                        requeue_on_preempt=a.requeue)
    trainer = pl.Trainer(
        max_epochs=a.epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, deterministic=True, default_root_dir=a.dir,
        # ckptdb, line 1 of 2:
        plugins=[ckptdb.lightning.CheckpointIO()], callbacks=[ckpts])
    # ckptdb, line 2 of 2: the newest checkpoint that verifies, or None (fresh start).
    ckpt = ckptdb.lightning.latest(a.dir)
    print("resume: %s" % (ckpt or "none"), flush=True)
    trainer.fit(model, train, val, ckpt_path=ckpt)
    print("done: epoch=%d step=%d preempted=%d" % (trainer.current_epoch, trainer.global_step, ckpts.stopped),
          flush=True)


if __name__ == "__main__":
    main()

"""bench_transformers.py - what ckptdb adds to a Hugging Face Trainer save,
against the Trainer's own save_steps checkpoint of the same model.

    python bench/bench_transformers.py --n-embd 512 --layers 3 --saves 4 --reps 3 --dir DIR

The model: a GPT-2 built from a config (no download; --n-embd, --layers,
vocabulary 1024), trained with AdamW on seeded random token ids, so a
checkpoint holds the weights and AdamW's two moments (about 3x the
weights: ~120 MiB with the defaults).  Each rep runs the same training
(--saves saves, one every step) three times, in an order that rotates
per rep:
  hf        the Trainer's own save (save_strategy="steps"; no fsync)
  hf+fsync  the same, then every file of checkpoint-N/ fsynced, the
            directory and the output directory too: the durable floor
  ckptdb    callbacks=[ckptdb.transformers.Checkpoint()]: the directory made
            and the row recorded before the Trainer writes, then every file
            fsynced and hashed (XXH3-128), the directories fsynced, one
            catalog commit, in a thread while training goes on (the
            default, background=True)
  ckptdb-fg the same with background=False: the commit in on_save
A save is timed from the step end that asks for it (before the ckptdb
callback's begin, which waits for the previous commit) to the end of
on_save: what a save costs the training loop.  The whole train() of each
run is timed too (its steps, saves, the settling syncs and, for ckptdb,
the wait for the last commit), so work moved to the background is not
hidden.  Before each save, untimed, the disk is
synced (sync(2)), so the previous save's writeback is not charged to the
next.  Printed: a table of the median and minimum save of each, and the
ratios to both baselines (target <= 1.05 against the durable floor).
Never asserts timings.
"""

import argparse
import os
import shutil
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

import ckptdb.transformers  # noqa: E402

WHICH = ("hf", "hf+fsync", "ckptdb", "ckptdb-fg")


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seq_len, vocab):
        self.ids = torch.randint(0, vocab, (n, seq_len), generator=torch.Generator().manual_seed(1))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Start(TrainerCallback):
    """First of the timed callbacks: syncs the disk, then starts the clock."""

    def __init__(self):
        self.t0 = None

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            os.sync()
            self.t0 = time.perf_counter()


def fsync_path(path, directory=False):
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Stop(TrainerCallback):
    """Last of the timed callbacks: fsyncs the checkpoint when told to, then
    stops the clock."""

    def __init__(self, start, durable):
        self.start, self.durable, self.times = start, durable, []

    def on_save(self, args, state, control, **kwargs):
        if self.durable:
            d = os.path.join(args.output_dir, "checkpoint-%d" % state.global_step)
            for e in os.scandir(d):
                fsync_path(e.path)
            fsync_path(d, directory=True)
            fsync_path(args.output_dir, directory=True)
        self.times.append(time.perf_counter() - self.start.t0)


def run(which, a, directory):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=1024, n_positions=64, n_embd=a.n_embd, n_layer=a.layers,
                                       n_head=8))
    args = TrainingArguments(output_dir=directory, use_cpu=True, report_to=[], seed=0, max_steps=a.saves,
                             per_device_train_batch_size=2, save_strategy="steps", save_steps=1,
                             logging_strategy="no", dataloader_num_workers=0, disable_tqdm=True)
    start = Start()
    stop = Stop(start, durable=(which == "hf+fsync"))
    middle = [ckptdb.transformers.Checkpoint(retention={"keep_last": {"step": -1}}, background=(which == "ckptdb"))
              ] if which.startswith("ckptdb") else []
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(16, 32, 1024), callbacks=[start] + middle + [stop])
    t0 = time.perf_counter()
    trainer.train()  # its on_train_end waits for ckptdb's last commit
    total = time.perf_counter() - t0
    for cb in middle:
        cb.close()
    if len(stop.times) != a.saves:
        raise SystemExit("bench_transformers: %s saved %d times in %d steps" % (which, len(stop.times), a.saves))
    d = os.path.join(directory, "checkpoint-%d" % a.saves)
    size = sum(e.stat().st_size for e in os.scandir(d))
    return stop.times, size, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-embd", type=int, default=512)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--saves", type=int, default=4, help="saves per run (one per step)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    got = {w: [] for w in WHICH}
    totals = {w: [] for w in WHICH}
    size = 0
    for rep in range(a.reps):
        k = rep % len(WHICH)
        order = WHICH[k:] + WHICH[:k]
        for which in order:
            d = os.path.join(a.dir, "%s-%d" % (which.replace("+", "-"), rep))
            times, size, total = run(which, a, d)
            got[which] += times
            totals[which].append(total)
            shutil.rmtree(d)
    print("bench_transformers: GPT-2 n_embd %d, %d layers, %d saves per run, %d reps; a checkpoint-N is %.0f MiB"
          % (a.n_embd, a.layers, a.saves, a.reps, size / (1 << 20)))
    print("%-34s %9s %9s  %s" % ("save", "median s", "min s", "all"))
    labels = {"hf": "Trainer save_steps (no fsync)", "hf+fsync": "Trainer save_steps + fsync (floor)",
              "ckptdb": "ckptdb.transformers.Checkpoint", "ckptdb-fg": "  the same, background=False"}
    for w in WHICH:
        t = got[w]
        print("%-34s %9.3f %9.3f  %s" % (labels[w], statistics.median(t), min(t), " ".join("%.3f" % x for x in t)))
    for w in ("ckptdb", "ckptdb-fg"):
        for base in ("hf", "hf+fsync"):
            print("ratio %-9s / %-9s per save: medians %.3f, minima %.3f" % (
                w, base, statistics.median(got[w]) / statistics.median(got[base]), min(got[w]) / min(got[base])))
    print("%-34s %9s %9s  %s" % ("whole train() per run", "median s", "min s", "all"))
    for w in WHICH:
        t = totals[w]
        print("%-34s %9.3f %9.3f  %s" % (labels[w], statistics.median(t), min(t), " ".join("%.3f" % x for x in t)))
    for w in ("ckptdb", "ckptdb-fg"):
        print("ratio %-9s / hf        train(): medians %.3f" % (
            w, statistics.median(totals[w]) / statistics.median(totals["hf"])))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

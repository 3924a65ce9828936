#!/usr/bin/env python3
"""A tiny GPT-2 trained by the Hugging Face Trainer, checkpointed by ckptdb.

    python examples/transformers/train.py --dir out --steps 40 --save-steps 5

Kill it at any moment (SIGKILL, or SIGTERM/SIGUSR1 for a "preempt"
checkpoint at the next step and a clean exit) and run the same command
again: it resumes from the newest checkpoint-N that verifies and finishes
where an uninterrupted run would.  The two lines ckptdb adds are marked
below.  Nothing is downloaded: the model is built from a GPT2Config and the
data are seeded random token ids (labels = input_ids), no tokenizer.
On CPU, with fixed seeds.

CKPTDB_EXAMPLE_STEP_SLEEP (seconds) makes every training step sleep that
long, so a test can land a signal inside training.
"""

import argparse
import logging
import os
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

import ckptdb.transformers


class Tokens(torch.utils.data.Dataset):
    """n sequences of seq_len seeded random token ids; labels = input_ids."""

    def __init__(self, n, seq_len, vocab, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, seq_len), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class StepSleep(TrainerCallback):
    def __init__(self, seconds):
        self.seconds = seconds

    def on_step_begin(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


class Progress(TrainerCallback):
    """One line per checkpoint the Trainer saved, for whoever watches the
    output (ckptdb logs "committed checkpoint N" once it is committed, in
    the background)."""

    def on_save(self, args, state, control, **kwargs):
        print("saved: checkpoint-%d" % state.global_step, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="output directory (checkpoint-N/ and the catalog ckptdb.sqlite)")
    ap.add_argument("--steps", type=int, default=40, help="max_steps")
    ap.add_argument("--save-steps", type=int, default=5)
    ap.add_argument("--eval-steps", type=int, default=0, help="evaluate every N steps (0: never)")
    ap.add_argument("--keep", type=int, default=3, help="keep the newest N step checkpoints")
    ap.add_argument("--best-k", type=int, default=0, help="also keep the K best by eval_loss")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=32)
    ap.add_argument("--save-total-limit", type=int, default=None, help="the Trainer's own (refused by ckptdb)")
    a = ap.parse_args(argv)

    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
    logging.getLogger("ckptdb").setLevel(logging.INFO)  # "ckptdb DIR: committed checkpoint 3", ...
    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=a.n_embd, n_layer=2, n_head=2)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    args = TrainingArguments(
        output_dir=a.dir, use_cpu=True, report_to=[], seed=0, data_seed=0, max_steps=a.steps,
        per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=a.batch_size,
        learning_rate=1e-3, save_strategy="steps", save_steps=a.save_steps,
        eval_strategy="steps" if a.eval_steps else "no", eval_steps=a.eval_steps or None,
        save_total_limit=a.save_total_limit, logging_steps=a.save_steps, dataloader_num_workers=0,
        disable_tqdm=True)
    retention = {"keep_last": {"step": a.keep, "preempt": 1}}
    if a.best_k:
        retention.update(best_metric="eval_loss", best_mode="min", best_k=a.best_k)
    # ckptdb, line 1 of 2:
    ck = ckptdb.transformers.Checkpoint(retention=retention)
    callbacks = [ck, Progress()]
    sleep = float(os.environ.get("CKPTDB_EXAMPLE_STEP_SLEEP", "0") or 0)
    if sleep:
        callbacks.append(StepSleep(sleep))
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(a.samples, 16, cfg.vocab_size, 1),
                      eval_dataset=Tokens(16, 16, cfg.vocab_size, 2) if a.eval_steps else None, callbacks=callbacks)
    # ckptdb, line 2 of 2: the newest checkpoint that verifies, or None (fresh start).
    resume = ckptdb.transformers.latest(a.dir)
    print("resume: %s" % (resume or "none"), flush=True)
    trainer.train(resume_from_checkpoint=resume)
    print("done: step=%d preempted=%d" % (trainer.state.global_step, ck.stopped), flush=True)
    ck.close()


if __name__ == "__main__":
    main()

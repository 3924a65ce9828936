"""ckptdb.transformers: the Trainer callback (directory checkpoints made in
place, retention in place of save_total_limit, best-K, preemption,
refusals), latest(), and examples/transformers/train.py killed for real
(SIGKILL and SIGTERM at seeded random moments, and SIGKILL inside the
Trainer's save between the model file and the optimizer file) and
restarted until it finishes."""

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded

import pytest  # noqa: E402

# transformers is pinned in tools/requirements-test.txt: a missing one fails here.
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

import ckptdb  # noqa: E402
import ckptdb.transformers as ctf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "transformers", "train.py")
CKPT = re.compile(r"^checkpoint-\d+$")


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 32, (n, 8), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_model():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2))


def targs(out, **kw):
    base = dict(output_dir=str(out), use_cpu=True, report_to=[], seed=0, max_steps=6, per_device_train_batch_size=2,
                per_device_eval_batch_size=4, save_strategy="steps", save_steps=1, logging_steps=1,
                dataloader_num_workers=0, disable_tqdm=True)
    base.update(kw)
    return TrainingArguments(**base)


def trainer(out, callbacks, eval_data=False, compute_metrics=None, **kw):
    return Trainer(model=tiny_model(), args=targs(out, **kw), train_dataset=Tokens(16),
                   eval_dataset=Tokens(4, seed=2) if eval_data else None, callbacks=callbacks,
                   compute_metrics=compute_metrics)


def scripted(scores):
    """compute_metrics giving eval_score = scores[i] at the i-th evaluation."""
    calls = []

    def compute(_pred):
        calls.append(1)
        return {"score": scores[len(calls) - 1]}
    return compute


def ckpt_dirs(d):
    return sorted(n for n in os.listdir(d) if CKPT.match(n) and os.path.isdir(os.path.join(d, n)))


def ls_json(d):
    cli = os.environ.get("CKPTDB_CLI")
    if not cli:
        pytest.skip("CKPTDB_CLI is not set")
    out = subprocess.run([cli, "ls", "--json", str(d)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["checkpoints"]


def test_the_version_is_the_tested_major():
    assert transformers.__version__.split(".")[0] == "5"
    assert ctf.TRANSFORMERS_VERSION == transformers.__version__


# ---------------------------------------------------------------------------
# Refusals: nothing is written
# ---------------------------------------------------------------------------

def test_save_total_limit_or_save_strategy_best_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ckptdb.InvalidArgument, match=r"save_total_limit=2: .*retention.*'step': 2"):
        trainer(out, [ctf.Checkpoint()], save_total_limit=2)
    with pytest.raises(ckptdb.InvalidArgument, match=r"save_strategy='best' is not supported.*save_strategy='steps'"):
        trainer(out, [ctf.Checkpoint()], save_strategy="best", eval_strategy="steps", eval_steps=1,
                eval_data=True, metric_for_best_model="loss")
    with pytest.raises(ckptdb.InvalidArgument, match="TrainingArguments.fsdp is set.*flat checkpoint-N"):
        # (the Trainer itself wants several processes for FSDP: the callback's hook, called as it calls it)
        ctf.Checkpoint().on_init_end(targs(out, fsdp=True), None, None)
    with pytest.raises(ckptdb.InvalidArgument, match="retention must be a ckptdb.Retention"):
        ctf.Checkpoint(retention="everything")
    assert os.listdir(out) == []  # the Trainer made output_dir; no catalog in it


def test_a_directory_ckptdb_did_not_create_is_never_written_into(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "notes.txt").write_text("mine")
    t = trainer(out, [ctf.Checkpoint()])
    with pytest.raises(ckptdb.Exists, match=r"checkpoint-2 exists already \(a directory the catalog did not "
                                            r"write\).*latest\(output_dir\).*remove it"):
        t.train()
    assert os.listdir(out / "checkpoint-2") == ["notes.txt"]
    with ckptdb.Catalog(out) as cat:
        assert [(e.name, e.status) for e in cat.entries()] == [("checkpoint-1", "complete")]


def test_a_save_the_trainer_left_open_is_aborted_by_the_next_train(tmp_path, monkeypatch):
    out = tmp_path / "out"
    orig = Trainer._save_optimizer_and_scheduler

    def failing(self, output_dir):
        if self.state.global_step == 2:
            raise OSError("disk full (test)")
        return orig(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", failing)
    ck = ctf.Checkpoint()
    t = trainer(out, [ck], max_steps=3)
    with pytest.raises(OSError, match="disk full"):
        t.train()
    # The Trainer raised between its model file and its optimizer file.
    assert "model.safetensors" in os.listdir(out / "checkpoint-2")
    assert ck.cat.get("checkpoint-2").status == "writing"
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", orig)
    t.train(resume_from_checkpoint=ctf.latest(out))
    ck.close()
    with ckptdb.Catalog(out) as cat:
        assert [(e.name, e.status) for e in cat.entries()] == [
            ("checkpoint-1", "complete"), ("checkpoint-2", "aborted"), ("checkpoint-2", "complete"),
            ("checkpoint-3", "complete")]
        assert cat.verify() == (3, 0)


class StatusAtSave(TrainerCallback):
    """Records, in each on_save after ckptdb's, the row of that checkpoint."""

    def __init__(self, ck):
        self.ck, self.seen = ck, []

    def on_save(self, args, state, control, **kwargs):
        self.seen.append(self.ck.cat.get("checkpoint-%d" % state.global_step).status)


@pytest.mark.parametrize("background", [False, True])
def test_the_commit_runs_in_on_save_or_in_the_background_and_train_returns_with_all_committed(tmp_path, background):
    out = tmp_path / "out"
    ck = ctf.Checkpoint(background=background)
    seen = StatusAtSave(ck)
    trainer(out, [ck, seen], max_steps=3).train()
    if not background:
        assert seen.seen == ["complete"] * 3  # committed before on_save returned
    else:
        assert len(seen.seen) == 3 and set(seen.seen) <= {"writing", "complete"}
    # Either way, train() returns with every save committed.
    assert [(e.name, e.status) for e in ck.cat.entries()] == [
        ("checkpoint-%d" % i, "complete") for i in (1, 2, 3)]
    ck.close()


class ShardedLayout(TrainerCallback):
    """Puts a subdirectory into checkpoint-2 before ckptdb's on_save (as
    DeepSpeed's global_step*/ would be)."""

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 2:
            os.mkdir(os.path.join(args.output_dir, "checkpoint-2", "global_step2"))


def test_a_checkpoint_with_a_subdirectory_is_refused_and_aborted(tmp_path):
    out = tmp_path / "out"
    ck = ctf.Checkpoint()
    t = trainer(out, [ShardedLayout(), ck], max_steps=3)
    with pytest.raises(ckptdb.InvalidArgument, match="global_step2"):
        t.train()
    assert ck.cat.get("checkpoint-2").status == "aborted"  # the refused commit aborts its save
    ck.close()
    # The Trainer's files are gone; the subdirectory the catalog never
    # recorded is left for its owner.
    assert os.listdir(out / "checkpoint-2") == ["global_step2"]
    with ckptdb.Catalog(out) as cat:
        assert [(e.name, e.status) for e in cat.entries()] == [("checkpoint-1", "complete"),
                                                               ("checkpoint-2", "aborted")]


# ---------------------------------------------------------------------------
# Rows, retention, best-K, preemption (in process)
# ---------------------------------------------------------------------------

def test_keep_last_and_best_k_by_an_eval_metric_keep_the_right_ones_and_ls_shows_hfs_epoch_and_step(tmp_path):
    out = tmp_path / "out"
    scores = [5.0, 1.0, 4.0, 0.5, 3.0, 2.0]
    ck = ctf.Checkpoint(retention={"keep_last": {"step": 1}, "best_metric": "eval_score", "best_mode": "min",
                                   "best_k": 2})
    t = trainer(out, [ck], eval_data=True, compute_metrics=scripted(scores), eval_strategy="steps", eval_steps=1)
    t.train()
    ck.close()
    with ckptdb.Catalog(out) as cat:
        rows = cat.entries()
    # Every save is a row with the Trainer's numbers and what it logged at that step.
    assert [(r.name, r.kind, r.step) for r in rows] == [("checkpoint-%d" % s, "step", s) for s in range(1, 7)]
    assert [r.metadata["eval_score"] for r in rows] == scores
    assert all("eval_loss" in r.metadata and "loss" in r.metadata for r in rows)
    # Kept: the best two by eval_score (1.0 at step 2, 0.5 at step 4) and the newest.
    kept = [r.step for r in rows if r.status == "complete"]
    assert kept == [2, 4, 6]
    assert all(r.status == "pruned" for r in rows if r.step not in kept)
    assert ckpt_dirs(out) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    # 16 samples, batch 2: 8 steps an epoch; epoch = int(state.epoch) (epochs completed).
    want = [("checkpoint-%d" % s, "step", 0, s) for s in kept]
    assert [(c["name"], c["kind"], c["epoch"], c["step"]) for c in ls_json(out)] == want
    db = sqlite3.connect("file:%s?mode=ro" % (out / "ckptdb.sqlite"), uri=True)
    try:  # what the sqlite3 prompt shows
        assert db.execute("SELECT name, kind, epoch, step FROM checkpoints WHERE status = 'complete' "
                          "ORDER BY id").fetchall() == want
    finally:
        db.close()
    assert ctf.latest(out) == str(out / "checkpoint-6") == get_last_checkpoint(str(out))


def test_load_best_model_at_end_keeps_the_trainers_best_checkpoint(tmp_path):
    out = tmp_path / "out"
    ck = ctf.Checkpoint(retention={"keep_last": {"step": 1, "epoch": 1}})
    t = trainer(out, [ck], eval_data=True, compute_metrics=scripted([5.0, 1.0, 4.0, 3.0, 6.0, 2.0]),
                eval_strategy="steps", eval_steps=1, load_best_model_at_end=True, metric_for_best_model="score",
                greater_is_better=False, num_train_epochs=1, max_steps=6)
    t.train()
    ck.close()
    assert t.state.best_model_checkpoint == str(out / "checkpoint-2")
    # keep_last 1 alone would have pruned it; the Trainer's best is ckptdb's best-1.
    with ckptdb.Catalog(out) as cat:
        assert [e.name for e in cat.entries(status="complete")] == ["checkpoint-2", "checkpoint-6"]
    assert ckpt_dirs(out) == ["checkpoint-2", "checkpoint-6"]
    with pytest.raises(ckptdb.InvalidArgument, match="keeps the best by 'eval_loss'.*needs the best by 'eval_score'"):
        trainer(tmp_path / "o2", [ctf.Checkpoint(retention={"best_metric": "eval_loss"})], eval_data=True,
                eval_strategy="steps", eval_steps=1, load_best_model_at_end=True, metric_for_best_model="score")


class SignalAt(TrainerCallback):
    def __init__(self, step, signo):
        self.step, self.signo = step, signo

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), self.signo)


def test_a_sigterm_saves_preempt_at_the_next_step_end_and_stops(tmp_path):
    out = tmp_path / "out"
    ck = ctf.Checkpoint(retention={"keep_last": {}})
    t = trainer(out, [ck, SignalAt(5, signal.SIGTERM)], save_steps=2, max_steps=8)
    t.train()
    assert ck.stopped and t.state.global_step == 5
    with ckptdb.Catalog(out) as cat:
        rows = [(e.name, e.kind, e.step) for e in cat.entries(status="complete")]
    assert rows == [("checkpoint-2", "step", 2), ("checkpoint-4", "step", 4), ("checkpoint-5", "preempt", 5)]
    # The next train() of this process resumes and trains on: the flag was
    # that run's.
    t.train(resume_from_checkpoint=ctf.latest(out))
    ck.close()
    assert not ck.stopped and t.state.global_step == 8
    with ckptdb.Catalog(out) as cat:
        rows = [(e.name, e.kind, e.step) for e in cat.entries(status="complete")]
        runs = cat.runs()
    assert rows[3:] == [("checkpoint-6", "step", 6), ("checkpoint-8", "step", 8)]
    assert [r["exit_reason"] for r in runs if r["saves"]] == ["preempted"]


def test_the_resume_is_recorded_when_training_starts_from_the_checkpoint(tmp_path):
    out = tmp_path / "out"
    ck = ctf.Checkpoint()
    trainer(out, [ck], max_steps=2).train()
    ck.close()
    assert ctf.latest(out) == str(out / "checkpoint-2")
    with ckptdb.Catalog(out) as cat:
        assert not [e for e in cat.events() if e["event"] == "resumed"]  # latest() alone records nothing
    ck = ctf.Checkpoint()
    trainer(out, [ck], max_steps=4).train(resume_from_checkpoint=ctf.latest(out))
    ck.close()
    with ckptdb.Catalog(out) as cat:
        c2 = cat.get("checkpoint-2")
        assert [e["checkpoint_id"] for e in cat.events() if e["event"] == "resumed"] == [c2.id]
        assert [r["resumed_from"] for r in cat.runs() if r["saves"]] == [0, c2.id]


# ---------------------------------------------------------------------------
# The example, killed for real
# ---------------------------------------------------------------------------

STEPS, SAVE_STEPS = 24, 4
ARGS = ["--steps", str(STEPS), "--save-steps", str(SAVE_STEPS), "--keep", "2"]


def child_env(**extra):
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def run_once(d, rng, signo, logpath, argv=None, env=None):
    """Run the example once; once it committed a checkpoint, wait a seeded
    random moment and send signo (0: none).  Returns (exit status, output)."""
    with open(logpath, "w") as log:
        p = subprocess.Popen(argv or [sys.executable, EXAMPLE, "--dir", str(d)] + ARGS, stdout=log,
                             stderr=subprocess.STDOUT, env=env or child_env(CKPTDB_EXAMPLE_STEP_SLEEP="0.1"))
        try:
            deadline = time.monotonic() + 240  # a hang guard only
            while signo and p.poll() is None and time.monotonic() < deadline:
                with open(logpath) as f:
                    if "committed checkpoint" in f.read():
                        break
                time.sleep(0.05)
            if signo:
                time.sleep(rng.uniform(0.0, 1.0))
                if p.poll() is None:
                    p.send_signal(signo)
            rc = p.wait(timeout=240)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    with open(logpath) as f:
        return rc, f.read()


def after_a_kill(d):
    """What must hold after every kill, once the catalog is reopened."""
    if not os.path.isdir(d):
        return
    with ckptdb.Catalog(d) as cat:  # its recovery runs first
        checked, corrupt = cat.verify()
        assert corrupt == 0
        assert not cat.entries(status="writing")
        complete = sorted(e.name for e in cat.entries(status="complete"))
    assert checked == len(complete)
    # No checkpoint-N the catalog does not call complete: what the Trainer's
    # own resume_from_checkpoint=True would pick is ckptdb's choice too.
    assert ckpt_dirs(d) == complete
    got = ctf.latest(d)
    assert got == get_last_checkpoint(str(d))


def final_state(d):
    path = os.path.join(str(d), "checkpoint-%d" % STEPS)
    assert ctf.latest(d) == path
    return load_file(os.path.join(path, "model.safetensors")), torch.load(os.path.join(path, "optimizer.pt"),
                                                                          weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The example run once without a kill, in this process (one start of
    Python and transformers less; the same arguments, seeds and one thread)."""
    import importlib.util
    d = tmp_path_factory.mktemp("uninterrupted") / "out"
    spec = importlib.util.spec_from_file_location("transformers_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        example.main(["--dir", str(d)] + ARGS)
    finally:
        torch.set_num_threads(threads)
    return final_state(d)


def test_killed_with_sigkill_and_sigterm_at_random_moments_finishes_as_an_uninterrupted_run(tmp_path, uninterrupted):
    d = tmp_path / "out"
    rng = random.Random(1515)
    kills = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]
    outputs = []
    for i in range(len(kills) + 3):
        signo = kills[i] if i < len(kills) else 0
        rc, out = run_once(d, rng, signo, tmp_path / ("run%d.log" % i))
        outputs.append(out)
        print("run %d: signal %d, exit status %s, %s" % (i, signo, rc, re.findall(r"^(?:resume|done): .*", out, re.M)))
        if "preempted=1" in out:
            assert rc == 0, out  # a preemption ends the run cleanly
        after_a_kill(d)
        if "done: step=%d preempted=0" % STEPS in out:
            assert rc in (0, -signo), out  # the signal may land after training ended
            break
    else:
        raise AssertionError("the example did not finish:\n" + "\n---\n".join(outputs))
    assert any(re.search(r"^resume: /", o, re.M) for o in outputs[1:])  # a restart resumed
    # The Trainer's resume is exact on CPU (it restores model, optimizer,
    # scheduler and RNG states and skips the batches already seen), from a
    # checkpoint at any step: the end state is the uninterrupted run's.
    weights, opt = final_state(d)
    want_w, want_o = uninterrupted
    assert weights.keys() == want_w.keys()
    for k in weights:
        assert torch.equal(weights[k], want_w[k]), k
    assert opt["param_groups"] == want_o["param_groups"]
    for i in want_o["state"]:
        for k in want_o["state"][i]:
            assert torch.equal(opt["state"][i][k], want_o["state"][i][k]), (i, k)


KILL_IN_SAVE = r"""
import os, runpy, signal, sys
from transformers import Trainer
orig = Trainer._save_optimizer_and_scheduler
def killed(self, output_dir):
    if self.state.global_step == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(self, output_dir)
Trainer._save_optimizer_and_scheduler = killed
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_sigkill_inside_the_trainers_save_leaves_nothing_resume_picks(tmp_path):
    d = tmp_path / "out"
    argv = [sys.executable, "-c", KILL_IN_SAVE, EXAMPLE, "--dir", str(d), "--steps", "12", "--save-steps", "4"]
    rc, out = run_once(d, None, 0, tmp_path / "killed.log", argv=argv, env=child_env(KILL_AT_STEP="8"))
    assert rc == -signal.SIGKILL, out
    # Killed after the model file, before the optimizer file: the Trainer's
    # own resume would pick this half-written directory.
    half = d / "checkpoint-8"
    assert "model.safetensors" in os.listdir(half) and "optimizer.pt" not in os.listdir(half)
    assert get_last_checkpoint(str(d)) == str(half)
    # Reopened (recovery): it is gone, the catalog shows the aborted save.
    with ckptdb.Catalog(d) as cat:
        rows = [(e.name, e.status) for e in cat.entries()]
        c4 = cat.get("checkpoint-4")
    assert rows == [("checkpoint-4", "complete"), ("checkpoint-8", "aborted")]
    assert not half.exists()
    assert ctf.latest(d) == get_last_checkpoint(str(d)) == str(d / "checkpoint-4")
    # The next run resumes from it.
    rc, out = run_once(d, None, 0, tmp_path / "resumed.log", argv=argv[:1] + argv[3:], env=child_env())
    assert rc == 0, out
    assert "resume: %s" % (d / "checkpoint-4") in out and "done: step=12 preempted=0" in out
    with ckptdb.Catalog(d) as cat:
        assert [r["resumed_from"] for r in cat.runs() if r["saves"]] == [0, c4.id]
        assert [(e.name, e.status) for e in cat.entries()] == [
            ("checkpoint-4", "complete"), ("checkpoint-8", "aborted"), ("checkpoint-8", "complete"),
            ("checkpoint-12", "complete")]
    with open(d / "checkpoint-8" / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 8

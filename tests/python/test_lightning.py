"""ckptdb.lightning: the CheckpointIO plugin, latest(), the Checkpoint
callback (triggers, preemption, best-K, Slurm requeue), and
examples/lightning/train.py killed for real (SIGKILL and SIGTERM at seeded
random moments) and restarted until it finishes."""

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

# lightning is pinned in tools/requirements-test.txt: a missing one fails here.
import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import ckptdb  # noqa: E402
import ckptdb.lightning as cl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "lightning", "train.py")
HOLD = os.path.join(HERE, "lightning_hold.py")
QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)


def lightning_dict(epoch=1, step=10):
    """A checkpoint as Lightning lays it out (what dump_checkpoint returns)."""
    return {"epoch": epoch, "global_step": step, "pytorch-lightning_version": pl.__version__,
            "state_dict": {"w": torch.arange(6.0)}, "loops": {"fit_loop": {"epoch_progress": {"current": {"ready": 1}}}},
            "callbacks": {}, "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}],
            "lr_schedulers": [], "hyper_parameters": {"lr": 0.1, "hidden": 8, "name": "mlp"}}


def listing(d):
    return sorted(os.listdir(d))


# ---------------------------------------------------------------------------
# Step 1: the plugin
# ---------------------------------------------------------------------------

def test_plugin_saves_through_the_catalog_and_loads_what_verifies(tmp_path):
    io = cl.CheckpointIO()
    d = tmp_path / "ckpts"
    io.save_checkpoint(lightning_dict(3, 120), d / "a.ckpt")
    io.save_checkpoint(lightning_dict(4, 160), d / "b.ckpt",
                       storage_options={"kind": "epoch", "metrics": {"val_loss": torch.tensor(0.25)}})
    with ckptdb.Catalog(d) as cat:
        a, b = cat.get("a.ckpt"), cat.get("b.ckpt")
        assert (a.kind, a.epoch, a.step, a.status) == ("manual", 3, 120, "complete")
        assert (b.kind, b.epoch, b.step, b.metadata) == ("epoch", 4, 160, {"val_loss": 0.25})
        assert cat.verify(a.id) and cat.verify(b.id)
    st = io.load_checkpoint(d / "b.ckpt")
    assert st["global_step"] == 160 and torch.equal(st["state_dict"]["w"], torch.arange(6.0))
    assert io.loaded[1].name == "b.ckpt"
    # The catalog's last link names the newest; a load through it loads that one.
    assert os.readlink(d / "last.pt") == "b.ckpt"
    assert io.load_checkpoint(d / "last.pt")["epoch"] == 4
    io.teardown()


def test_plugin_refuses_a_corrupt_or_unknown_file_and_bad_options(tmp_path):
    io = cl.CheckpointIO()
    d = tmp_path / "ckpts"
    io.save_checkpoint(lightning_dict(), d / "a.ckpt")
    raw = bytearray((d / "a.ckpt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "a.ckpt").write_bytes(bytes(raw))
    with pytest.raises(ckptdb.Corrupt, match="a.ckpt does not match its catalog row"):
        io.load_checkpoint(d / "a.ckpt")
    with ckptdb.Catalog(d) as cat:
        assert cat.get("a.ckpt").status == "corrupt"
    # A file the catalog did not write is not loaded...
    torch.save(lightning_dict(), d / "stranger.ckpt")
    with pytest.raises(ckptdb.NotFound, match="stranger.ckpt is not a checkpoint of the catalog"):
        io.load_checkpoint(d / "stranger.ckpt")
    # ... nor one in a directory without a catalog (none is made there).
    (tmp_path / "plain").mkdir()
    torch.save(lightning_dict(), tmp_path / "plain" / "x.ckpt")
    with pytest.raises(ckptdb.Error):
        io.load_checkpoint(tmp_path / "plain" / "x.ckpt")
    assert listing(tmp_path / "plain") == ["x.ckpt"]
    # Bad storage_options: a clear error, nothing written.
    before = listing(d)
    with pytest.raises(ckptdb.InvalidArgument, match=r"storage_options keys \['colour'\]"):
        io.save_checkpoint(lightning_dict(), d / "b.ckpt", storage_options={"colour": 1})
    with pytest.raises(ckptdb.InvalidArgument, match="must be None or a dict"):
        io.save_checkpoint(lightning_dict(), d / "b.ckpt", storage_options="fast")
    # A path naming a live checkpoint is never overwritten.
    with pytest.raises(ckptdb.Exists):
        io.save_checkpoint(lightning_dict(), d / "a.ckpt")
    assert listing(d) == before
    io.teardown()


class NotATensor:
    def __init__(self, v):
        self.v = v


def test_plugin_loads_with_the_safe_loader_unless_told_the_file_is_trusted(tmp_path):
    io = cl.CheckpointIO()
    st = lightning_dict()
    st["hyper_parameters"] = {"thing": NotATensor(3)}  # save_hyperparameters of an object
    io.save_checkpoint(st, tmp_path / "h.ckpt")
    with pytest.raises(ckptdb.UnsafeCheckpoint, match="h.ckpt"):
        io.load_checkpoint(tmp_path / "h.ckpt")
    assert io.loaded is None
    assert io.load_checkpoint(tmp_path / "h.ckpt", weights_only=False)["hyper_parameters"]["thing"].v == 3
    assert cl.CheckpointIO(weights_only=False).load_checkpoint(tmp_path / "h.ckpt")["global_step"] == 10
    io.teardown()


def test_remove_checkpoint_deletes_only_catalog_files_through_the_catalog(tmp_path):
    io = cl.CheckpointIO()
    for i, n in enumerate(("a.ckpt", "b.ckpt", "c.ckpt", "d.ckpt")):
        io.save_checkpoint(lightning_dict(i, 10 * i), tmp_path / n)
    cat = io.catalog(tmp_path)
    cat.pin("a.ckpt")  # the user's pin stays
    io.remove_checkpoint(tmp_path / "b.ckpt")
    assert not (tmp_path / "b.ckpt").exists()
    rows = {e.name: e for e in cat.entries()}
    assert rows["b.ckpt"].status == "pruned"
    with sqlite3.connect(str(tmp_path / "ckptdb.sqlite")) as q:
        assert q.execute("SELECT prune_rule FROM checkpoints WHERE name = 'b.ckpt'").fetchall() == [("removed",)]
    assert [(n, rows[n].status, rows[n].pinned) for n in ("a.ckpt", "c.ckpt", "d.ckpt")] == [
        ("a.ckpt", "complete", True), ("c.ckpt", "complete", False), ("d.ckpt", "complete", False)]
    # A pinned one is refused, and nothing changes.
    before = listing(tmp_path)
    with pytest.raises(ckptdb.InvalidArgument, match="a.ckpt.*is pinned"):
        io.remove_checkpoint(tmp_path / "a.ckpt")
    assert listing(tmp_path) == before
    # The newest may go (ModelCheckpoint decides what its top-k keeps).
    io.remove_checkpoint(tmp_path / "d.ckpt")
    assert not (tmp_path / "d.ckpt").exists()
    before = listing(tmp_path)
    # A file the catalog did not write is never deleted.
    (tmp_path / "notes.ckpt").write_bytes(b"mine")
    with pytest.raises(ckptdb.NotFound):
        io.remove_checkpoint(tmp_path / "notes.ckpt")
    assert listing(tmp_path) == sorted(before + ["notes.ckpt"])
    assert [(e.name, e.pinned) for e in cat.entries(status="complete")] == [("a.ckpt", True), ("c.ckpt", False)]
    io.teardown()


# ---------------------------------------------------------------------------
# Step 2: latest()
# ---------------------------------------------------------------------------

def test_latest_is_the_newest_checkpoint_that_verifies_or_none(tmp_path):
    assert cl.latest(tmp_path / "nothing-yet") is None
    assert not (tmp_path / "nothing-yet").exists()
    io = cl.CheckpointIO()
    io.save_checkpoint(lightning_dict(0, 5), tmp_path / "a.ckpt")
    io.save_checkpoint(lightning_dict(1, 10), tmp_path / "b.ckpt")
    io.teardown()
    assert cl.latest(tmp_path) == str(tmp_path / "b.ckpt")
    with open(tmp_path / "b.ckpt", "r+b") as f:  # torn: same size, other bytes
        f.seek(100)
        f.write(b"\0" * 16)
    assert cl.latest(tmp_path) == str(tmp_path / "a.ckpt")
    with ckptdb.Catalog(tmp_path) as cat:
        assert cat.get("b.ckpt").status == "corrupt"


# ---------------------------------------------------------------------------
# Step 3: the callback, in process
# ---------------------------------------------------------------------------

class Scripted(pl.LightningModule):
    """A linear model whose val_loss is a scripted value per epoch; step 0
    of a batch sends a signal when told to."""

    def __init__(self, val_losses=(1.0,), signal_at_step=None, signo=signal.SIGTERM):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.val_losses = list(val_losses)
        self.signal_at_step = signal_at_step
        self.signo = signo

    def training_step(self, batch, batch_idx):
        if self.signal_at_step is not None and self.global_step == self.signal_at_step:
            os.kill(os.getpid(), self.signo)
        x, y = batch
        return torch.nn.functional.mse_loss(self.lin(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(self.val_losses[self.current_epoch % len(self.val_losses)]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loaders(batches=2):
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(batches * 4, 4, generator=g), torch.randn(batches * 4, 1, generator=g))
    return DataLoader(ds, batch_size=4), DataLoader(ds, batch_size=8)


def ls_json(d):
    cli = os.environ.get("CKPTDB_CLI")
    if not cli:
        pytest.skip("CKPTDB_CLI is not set")
    out = subprocess.run([cli, "ls", "--json", str(d)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["checkpoints"]


def test_best_k_by_val_loss_keeps_the_right_ones_and_ls_shows_lightnings_epoch_and_step(tmp_path):
    losses = [5.0, 1.0, 4.0, 0.5, 3.0, 2.0]
    cb = cl.Checkpoint(tmp_path / "ck", monitor="val_loss", mode="min", save_top_k=2, keep_last={"epoch": 1})
    trainer = pl.Trainer(max_epochs=len(losses), callbacks=[cb], **QUIET)
    train, val = loaders(batches=2)
    trainer.fit(Scripted(losses), train, val)
    # The callback is a Checkpoint: Lightning added no ModelCheckpoint, and
    # the callback alone put ckptdb's CheckpointIO in place.
    assert trainer.checkpoint_callbacks == [cb]
    assert isinstance(trainer.strategy.checkpoint_io, cl.CheckpointIO)
    with ckptdb.Catalog(tmp_path / "ck") as cat:
        rows = cat.entries(kind="epoch")
    assert [r.metadata["val_loss"] for r in rows] == losses
    kept = sorted(r.epoch for r in rows if r.status == "complete")
    assert kept == [1, 3, 5]  # best two (1.0 at epoch 1, 0.5 at epoch 3) and the newest
    assert all(r.status == "pruned" for r in rows if r.epoch not in kept)
    assert os.readlink(tmp_path / "ck" / "last.pt") == "epoch=5-step=12.ckpt"
    want = [("epoch=%d-step=%d.ckpt" % (e, 2 * (e + 1)), "epoch", e, 2 * (e + 1)) for e in kept]
    assert [(c["name"], c["kind"], c["epoch"], c["step"]) for c in ls_json(tmp_path / "ck")] == want
    db = sqlite3.connect("file:%s?mode=ro" % (tmp_path / "ck" / "ckptdb.sqlite"), uri=True)
    try:  # what the sqlite3 prompt shows
        assert db.execute("SELECT name, kind, epoch, step FROM checkpoints WHERE status = 'complete' "
                          "ORDER BY id").fetchall() == want
    finally:
        db.close()
    assert [n for n in listing(tmp_path / "ck") if n.endswith(".ckpt")] == [
        "epoch=%d-step=%d.ckpt" % (e, 2 * (e + 1)) for e in kept]


def test_step_trigger_and_a_sigterm_saves_preempt_at_the_next_batch_and_stops(tmp_path):
    cb = cl.Checkpoint(tmp_path, every_n_epochs=0, every_n_train_steps=3, keep_last={})
    trainer = pl.Trainer(max_epochs=10, callbacks=[cb], **QUIET)
    train, val = loaders(batches=4)
    trainer.fit(Scripted(signal_at_step=7), train, val)
    with ckptdb.Catalog(tmp_path) as cat:
        rows = [(r.kind, r.step) for r in cat.entries(status="complete")]
        runs = cat.runs()
    # global_step counts finished steps: the signal arrives in step 8's
    # forward, and that batch's end saves it as "preempt".
    assert rows == [("step", 3), ("step", 6), ("preempt", 8)]
    assert cb.stopped and trainer.global_step == 8
    assert runs[-1]["exit_reason"] == "preempted"


def test_epoch_and_time_triggers_on_a_fake_clock(tmp_path):
    now = [1000.0]

    class Ticking(Scripted):
        def training_step(self, batch, batch_idx):
            now[0] += 10.0  # every step takes 10 s of the fake clock
            return super().training_step(batch, batch_idx)

    cb = cl.Checkpoint(tmp_path, every_n_epochs=2, train_time_interval=25, keep_last={}, clock=lambda: now[0])
    trainer = pl.Trainer(max_epochs=4, callbacks=[cb], **QUIET)
    train, val = loaders(batches=4)
    trainer.fit(Ticking(), train, val)
    with ckptdb.Catalog(tmp_path) as cat:
        rows = [(e.kind, e.epoch, e.step) for e in cat.entries()]
    # A "time" save once 25 s passed since the last save of any kind (30 s:
    # three steps); an "epoch" save at the end of every second epoch.
    assert rows == [("time", 0, 3), ("time", 1, 6), ("epoch", 1, 8), ("time", 2, 11), ("time", 3, 14),
                    ("epoch", 3, 16)]


def test_a_model_checkpoint_in_the_same_directory_is_refused(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint
    trainer = pl.Trainer(max_epochs=1, callbacks=[cl.Checkpoint(tmp_path), ModelCheckpoint(dirpath=tmp_path)],
                         **QUIET)
    train, val = loaders()
    with pytest.raises(ckptdb.InvalidArgument, match="a ModelCheckpoint also saves into"):
        trainer.fit(Scripted(), train, val)
    assert not any(n.endswith(".ckpt") for n in listing(tmp_path))


def test_another_checkpoint_io_or_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class OtherIO(TorchCheckpointIO):
        pass

    trainer = pl.Trainer(max_epochs=1, plugins=[OtherIO()], callbacks=[cl.Checkpoint(tmp_path / "ck")], **QUIET)
    train, val = loaders()
    with pytest.raises(ckptdb.InvalidArgument, match="checkpoint I/O is OtherIO"):
        trainer.fit(Scripted(), train, val)
    with pytest.raises(ckptdb.InvalidArgument, match="save_top_k must be >= 1 with monitor='val_loss', got 0"):
        cl.Checkpoint(tmp_path / "ck", monitor="val_loss", save_top_k=0)
    with pytest.raises(ckptdb.InvalidArgument, match="every_n_train_steps must be >= 0, got -1"):
        cl.Checkpoint(tmp_path / "ck", every_n_train_steps=-1)
    assert not (tmp_path / "ck").exists()


def test_the_plugin_alone_under_a_model_checkpoint_rotates_through_the_catalog(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint
    losses = [5.0, 1.0, 4.0, 0.5, 3.0, 2.0]
    mc = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2)
    trainer = pl.Trainer(max_epochs=len(losses), plugins=[cl.CheckpointIO()], callbacks=[mc], **QUIET)
    train, val = loaders(batches=2)
    trainer.fit(Scripted(losses), train, val)
    # ModelCheckpoint saved epochs 0-3 (4, 5 were not among its best two)
    # and removed 0 and 2 again: pruned rows, files gone, the rest verified.
    with ckptdb.Catalog(tmp_path) as cat:
        rows = [(e.name, e.status) for e in cat.entries()]
        assert cat.verify() == (2, 0)
    assert rows == [("epoch=0-step=2.ckpt", "pruned"), ("epoch=1-step=4.ckpt", "complete"),
                    ("epoch=2-step=6.ckpt", "pruned"), ("epoch=3-step=8.ckpt", "complete")]
    assert [n for n in listing(tmp_path) if n.endswith(".ckpt")] == ["epoch=1-step=4.ckpt", "epoch=3-step=8.ckpt"]
    assert mc.best_model_path == str(tmp_path / "epoch=3-step=8.ckpt")


def fake_scontrol(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    (bindir / "scontrol").write_text("#!/bin/sh\necho \"$@\" >> %s\nexit 0\n" % calls)
    (bindir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    for k, v in {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0",
                 "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(k, v)
    return calls


def calls_of(path):
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("requeue", [True, False])
def test_under_slurm_only_ckptdb_requeues(tmp_path, monkeypatch, requeue):
    from lightning.fabric.plugins.environments import SLURMEnvironment
    calls = fake_scontrol(tmp_path, monkeypatch)
    root = tmp_path / "root"
    cb = cl.Checkpoint(tmp_path / "ck", requeue_on_preempt=requeue)
    trainer = pl.Trainer(max_epochs=5, callbacks=[cb], default_root_dir=root, **QUIET)
    env = trainer._accelerator_connector.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue  # Lightning's requeue is armed
    train, val = loaders(batches=4)
    trainer.fit(Scripted(signal_at_step=5, signo=signal.SIGUSR1), train, val)
    with ckptdb.Catalog(tmp_path / "ck") as cat:
        kinds = [r.kind for r in cat.entries(status="complete")]
        events = [e["event"] for e in cat.events()]
    assert kinds[-1] == "preempt" and cb.stopped
    assert calls_of(calls) == (["requeue 4242"] if requeue else [])
    assert events.count("requeued") == (1 if requeue else 0)
    # Lightning's handler never ran: it would have saved an hpc checkpoint.
    assert not any("hpc_ckpt" in n for _, _, fs in os.walk(tmp_path) for n in fs)


def test_without_the_callback_lightnings_slurm_handler_requeues(tmp_path, monkeypatch):
    """The control of the test above: the same run, Lightning in charge."""
    calls = fake_scontrol(tmp_path, monkeypatch)
    trainer = pl.Trainer(max_epochs=2, enable_checkpointing=False, default_root_dir=tmp_path / "root", **QUIET)
    train, val = loaders(batches=4)
    trainer.fit(Scripted(signal_at_step=5, signo=signal.SIGUSR1), train, val)
    assert calls_of(calls) == ["requeue 4242"]
    assert any("hpc_ckpt" in n for _, _, fs in os.walk(tmp_path / "root") for n in fs)


# ---------------------------------------------------------------------------
# Step 5: the example, killed for real
# ---------------------------------------------------------------------------

EPOCHS, BATCHES = 6, 8


def child_env():
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    for k in list(env):
        if k.startswith("SLURM_"):
            del env[k]
    return env


def ARGS(d):
    return ["--dir", str(d), "--epochs", str(EPOCHS), "--batches", str(BATCHES), "--step-sleep", "0.03"]


def start(d, log, hold_at=None):
    if hold_at is None:
        cmd = [sys.executable, EXAMPLE] + ARGS(d)
    else:
        cmd = [sys.executable, HOLD, EXAMPLE, str(hold_at)] + ARGS(d)
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=child_env())


def kill_after_a_commit(d, rng, signo, logpath, hold_at=None):
    """Run the example once and send it signo (0: none): with hold_at, while
    it holds at that global step (lightning_hold.py), so that the signal
    lands mid-training; otherwise a seeded random moment after it committed
    a checkpoint, which may be anywhere up to its exit.  Returns (exit
    status, its output, whether the signal was sent)."""
    sent = False
    with open(logpath, "w") as log:
        p = start(d, log, hold_at)
        try:
            wanted = "holding at step" if hold_at is not None else "committed checkpoint"
            deadline = time.monotonic() + 120  # a hang guard only
            while p.poll() is None and time.monotonic() < deadline:
                with open(logpath) as f:
                    if wanted in f.read():
                        break
                time.sleep(0.05)
            if hold_at is None:
                time.sleep(rng.uniform(0.0, 0.8))
            if signo and p.poll() is None:
                p.send_signal(signo)
                sent = True
            if hold_at is not None and p.poll() is None:
                p.stdin.write(b"go\n")
            p.stdin.close()
            rc = p.wait(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    with open(logpath) as f:
        return rc, f.read(), sent


def every_complete_row_verifies(d):
    with ckptdb.Catalog(d) as cat:  # its recovery runs first
        checked, corrupt = cat.verify()
        assert corrupt == 0
        assert not cat.entries(status="writing")
        return checked


def run_to_the_end(d, signo, seed, tmp_path, kills=2, hold_first=False):
    """Kill the example `kills` times, then run it until it finishes.  With
    hold_first, the first signal lands at a seeded step mid-training."""
    rng = random.Random(seed)
    outputs = []
    done = re.compile(r"^done: epoch=%d step=\d+ preempted=0$" % EPOCHS, re.M)
    for i in range(kills + 3):
        hold_at = rng.randrange(BATCHES + 1, EPOCHS * BATCHES - 2) if hold_first and i == 0 else None
        rc, out, sent = kill_after_a_commit(d, rng, signo if i < kills else 0, tmp_path / ("run%d.log" % i), hold_at)
        outputs.append(out)
        print("run %d: signal %d, exit status %s, %s" % (i, signo if i < kills else 0, rc,
                                                        (re.findall(r"^(?:resume|done): .*", out, re.M) or ["-"])))
        if signo == signal.SIGTERM and "preempted=1" in out:
            assert rc == 0, out  # a preemption ends the run cleanly
        if not sent:
            assert rc == 0, out  # only a signal stops a run
        if os.path.isdir(d):
            every_complete_row_verifies(d)
        # A signal may land after training ended, while the process exits:
        # that run counts as killed, and the next one finds nothing to do.
        if done.search(out) and rc == 0:
            return outputs
    raise AssertionError("the example did not finish:\n" + "\n---\n".join(outputs))


def final_state(d, steps=EPOCHS * BATCHES):
    path = cl.latest(d)
    assert path is not None and os.path.basename(path) == "epoch=%d-step=%d.ckpt" % (EPOCHS - 1, steps)
    return torch.load(path, weights_only=True)


def assert_same_training_state(a, b):
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    oa, ob = a["optimizer_states"][0], b["optimizer_states"][0]
    assert oa["param_groups"] == ob["param_groups"]
    for i in oa["state"]:
        for k in oa["state"][i]:
            assert torch.equal(torch.as_tensor(oa["state"][i][k]), torch.as_tensor(ob["state"][i][k])), (i, k)
    assert a["lr_schedulers"] == b["lr_schedulers"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The example run once without a kill, in this process (one start of
    Python and Lightning less; the same arguments, seeds and one thread)."""
    import importlib.util
    d = tmp_path_factory.mktemp("uninterrupted") / "ck"
    spec = importlib.util.spec_from_file_location("lightning_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        example.main(ARGS(d))
    finally:
        torch.set_num_threads(threads)
    return final_state(d)


def test_sigkill_at_random_moments_resumes_exactly_from_epoch_checkpoints(tmp_path, uninterrupted):
    d = tmp_path / "ck"
    outs = run_to_the_end(d, signal.SIGKILL, 1515, tmp_path)
    assert any(re.search(r"^resume: /", o, re.M) for o in outs[1:])  # a restart resumed
    # Every checkpoint is an epoch's, where Lightning's resume is exact.
    assert_same_training_state(final_state(d), uninterrupted)


def test_sigterm_at_random_moments_saves_preempt_and_finishes(tmp_path, uninterrupted):
    d = tmp_path / "ck"
    outs = run_to_the_end(d, signal.SIGTERM, 1516, tmp_path, hold_first=True)
    stops = [int(re.search(r"done: epoch=\d+ step=(\d+) preempted=1", o).group(1)) for o in outs
             if "preempted=1" in o]
    assert stops  # the first SIGTERM landed in training (the child held there)
    with ckptdb.Catalog(d) as cat:
        # Each stop saved a "preempt" checkpoint of the step it stopped at.
        saved = {e.step for e in cat.entries(kind="preempt")}
    assert set(stops) <= saved
    # Mid-epoch, Lightning restores its counters, not a plain DataLoader's
    # position: the resumed epoch runs its batches from the first again, so
    # each stop k batches into an epoch adds k steps; the run ends at the
    # same epoch with finite weights. Bitwise equality is promised at epoch
    # boundaries only (the SIGKILL test).
    got = final_state(d, EPOCHS * BATCHES + sum(s % BATCHES for s in stops))
    assert got["epoch"] == uninterrupted["epoch"]
    assert all(torch.isfinite(v).all() for v in got["state_dict"].values())

"""The ctypes binding against the real library: layout, errors, saves,
listing, verification, retention, threads, signals, and interop with C and
the sqlite3 command.  Needs no torch."""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

import ckptdb
from ckptdb import _lib

C_HELPER = os.environ["CKPTDB_C_HELPER"]


def listing(d):
    return sorted(os.listdir(d))


# ---------------------------------------------------------------------------
# Layout and loading
# ---------------------------------------------------------------------------

def test_every_struct_matches_the_c_header_in_size_offsets_and_version():
    out = subprocess.run([C_HELPER, "layout"], check=True, capture_output=True, text=True).stdout
    c = dict(line.rsplit(" ", 1) for line in out.splitlines())
    checked = 0
    for cname, py in _lib.STRUCTS.items():
        assert int(c[cname]) == ctypes.sizeof(py), cname
        for fname, _ in py._fields_:
            assert int(c[cname + "." + fname]) == getattr(py, fname).offset, cname + "." + fname
            checked += 1
        # every C field the helper knows is mirrored (none missing at the end)
        c_fields = {k.split(".", 1)[1] for k in c if k.startswith(cname + ".")}
        assert c_fields == {f for f, _ in py._fields_}, cname
    assert _lib.HAS_SHARDS and "ckptdb_shard_info" in _lib.STRUCTS
    assert checked > 90
    for v in ("OPEN_OPTIONS", "SAVE_OPTIONS", "FILTER", "RETENTION", "TRIGGER_OPTIONS", "SYNC_OPTIONS", "KEEP_KIND",
              "SHARD_FILE", "DIR_FILE"):
        assert int(c[v + "_VERSION"]) == getattr(_lib, v + "_VERSION"), v
    assert _lib.HAS_DIRS and "ckptdb_dir_file" in _lib.STRUCTS
    for v in ("OPEN_NO_CREATE", "OPEN_READONLY", "OPEN_REQUEUE", "ECALLBACK", "LAYOUT_FILE", "LAYOUT_DIR"):
        assert int(c[v]) == getattr(_lib, v), v


def test_library_loads_by_soname_and_says_how_to_fix_a_missing_one(tmp_path):
    env = dict(os.environ)
    libpath = env.pop("CKPTDB_LIBRARY")
    code = "import ckptdb; print(ckptdb.version())"
    env["LD_LIBRARY_PATH"] = os.path.dirname(libpath)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ckptdb.version()
    env.pop("LD_LIBRARY_PATH")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert "CKPTDB_LIBRARY" in r.stderr and "libckptdb.so.1" in r.stderr


def test_every_status_code_maps_to_one_exception_class():
    seen = set()
    for code in range(1, 18):
        cls = ckptdb.errors.error_for(code)
        assert issubclass(cls, ckptdb.Error)
        assert code == 1 or cls is not ckptdb.Error, code
        seen.add(cls)
    assert len(seen) == 17
    assert ckptdb.errors.error_for(16) is ckptdb.errors.UntrustedError
    assert ckptdb.errors.error_for(999) is ckptdb.Error


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["write", "fd"])
def test_save_commits_on_success_with_its_row(tmp_path, mode):
    d = tmp_path / "ck"
    data = os.urandom(3 << 20)
    with ckptdb.Catalog(d) as cat:
        with cat.save(kind="epoch", epoch=7, step=70, metrics={"loss": 0.25}, mode=mode) as f:
            f.write(data[:1000])
            f.write(memoryview(data)[1000:])  # a read-only buffer, passed without a copy
        e = f.entry
        assert (e.name, e.kind, e.epoch, e.step, e.size, e.status) == ("epoch_007.pt", "epoch", 7, 70, len(data),
                                                                      "complete")
        assert e.metadata == {"loss": 0.25}
        assert open(e.path, "rb").read() == data
        assert cat.latest() == cat.get(e.id) == cat.get("epoch_007.pt")
        assert cat.read(e.id) == data
        assert [x.id for x in cat.entries(status="complete")] == [e.id]
    r = subprocess.run(["xxh128sum", str(d / "epoch_007.pt")], capture_output=True, text=True)
    if r.returncode == 0:
        assert r.stdout.split()[0] == e.checksum


def test_temp_path_save_written_by_path(tmp_path):
    with ckptdb.Catalog(tmp_path / "ck") as cat:
        s = cat.save(kind="manual", name="by-path.bin")
        with open(s.temp_path, "wb") as f:
            f.write(b"written by path")
        with pytest.raises(ckptdb.Misuse):
            s.write(b"more")
        e = s.commit()
        assert e.name == "by-path.bin" and cat.read(e.id) == b"written by path"


def test_exception_inside_the_block_aborts_and_leaves_no_file(tmp_path):
    d = tmp_path / "ck"
    with ckptdb.Catalog(d) as cat:
        before = listing(d)
        with pytest.raises(RuntimeError, match="boom"):
            with cat.save(kind="epoch", epoch=1, step=1) as f:
                f.write(b"x" * 100000)
                raise RuntimeError("boom")
        assert listing(d) == before
        assert [x.status for x in cat.entries()] == ["aborted"]
        assert cat.latest() is None
        with pytest.raises(ValueError):
            f.write(b"after abort")
        # the name of an aborted save can be used again
        assert cat.save_bytes(b"ok", kind="epoch", epoch=1, step=1).name == "epoch_001.pt"


def test_bad_input_raises_a_named_error_and_changes_nothing(tmp_path):
    d = tmp_path / "ck"
    with ckptdb.Catalog(d) as cat:
        cat.save_bytes(b"first", kind="manual", name="taken.pt")
        rows, files = len(cat.entries()), listing(d)
        cases = [
            (dict(kind="bad/kind"), ckptdb.InvalidArgument, "kind"),
            (dict(kind="epoch", epoch=-1), ckptdb.InvalidArgument, "epoch"),
            (dict(kind="step", step=-5), ckptdb.InvalidArgument, "step"),
            (dict(kind="manual", name="../escape.pt"), ckptdb.InvalidArgument, "escape"),
            (dict(kind="manual", name="a\nb"), ckptdb.InvalidArgument, "name"),
            (dict(kind="manual", name=".ckptdb-x"), ckptdb.InvalidArgument, ".ckptdb"),
            (dict(kind="manual", name="taken.pt"), ckptdb.Exists, "taken.pt"),
            (dict(kind="manual", metrics={"loss": float("nan")}), ValueError, "JSON"),
            (dict(kind="manual", metrics=[1, 2]), TypeError, "metrics"),
        ]
        for kw, exc, word in cases:
            with pytest.raises(exc) as ei:
                cat.save(**kw)
            assert word in str(ei.value), (kw, str(ei.value))
            if isinstance(ei.value, ckptdb.Error):
                assert ei.value.code == exc.code and ei.value.function == "ckptdb_save_begin"
        assert len(cat.entries()) == rows and listing(d) == files
        with pytest.raises(ckptdb.NotFound):
            cat.get(12345)
        with pytest.raises(ckptdb.NotFound):
            cat.get("nope.pt")
        with pytest.raises(ValueError):
            cat.latest(verify="sometimes")
        with pytest.raises(ValueError):
            cat.entries(status="lost")
    with pytest.raises(ckptdb.NotFound):
        ckptdb.Catalog(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ValueError, match="closed"):
        cat.latest()


def test_readonly_catalog_refuses_saves(tmp_path):
    d = tmp_path / "ck"
    with ckptdb.Catalog(d) as cat:
        e = cat.save_bytes(b"data", kind="epoch", epoch=1)
    with ckptdb.Catalog(d, readonly=True) as ro:
        assert ro.latest().id == e.id
        with pytest.raises(ckptdb.ReadOnly):
            ro.save(kind="epoch", epoch=2)


# ---------------------------------------------------------------------------
# Finding, verifying, retention
# ---------------------------------------------------------------------------

def test_latest_skips_a_corrupt_checkpoint_and_marks_it(tmp_path):
    with ckptdb.Catalog(tmp_path / "ck") as cat:
        a = cat.save_bytes(b"A" * 5000, kind="epoch", epoch=1, step=10)
        b = cat.save_bytes(b"B" * 5000, kind="epoch", epoch=2, step=20)
        assert cat.latest().id == b.id
        with open(b.path, "r+b") as f:
            f.write(b"X")
        assert cat.latest(verify="none").id == b.id
        assert cat.latest().id == a.id
        assert cat.get(b.id).status == "corrupt"
        assert any(ev["event"] == "corrupt" for ev in cat.events(b.id))
        assert cat.verify(a.id) is True
        with open(b.path, "r+b") as f:
            f.write(b"B")
        assert cat.verify(b.id) is True and cat.get(b.id).status == "complete"
        with open(a.path, "r+b") as f:
            f.write(b"Z")
        assert cat.verify() == (2, 1)
        c = cat.save_bytes(b"C" * 5000, kind="epoch", epoch=3, step=30)
        with open(c.path, "r+b") as f:
            f.write(b"X")
        with pytest.raises(ckptdb.Corrupt):  # the reader checks the bytes at the end
            cat.read(c.id)
        assert cat.get(c.id).status == "corrupt"


def test_newest_first_is_the_commit_order_latest_walks_never_a_clock(tmp_path):
    import sqlite3
    with ckptdb.Catalog(tmp_path / "ck") as cat:
        a = cat.save_bytes(b"A" * 100, kind="epoch", epoch=1, step=10)
        b = cat.save_bytes(b"B" * 100, kind="step", epoch=1, step=20)
        c = cat.save_bytes(b"C" * 100, kind="epoch", epoch=2, step=30)
        assert 0 < a.commit_seq < b.commit_seq < c.commit_seq
        # The clock stepped back before the newest commit: its time is older.
        with sqlite3.connect(str(tmp_path / "ck" / "ckptdb.sqlite")) as q:
            q.execute("UPDATE checkpoints SET committed_at = '2000-01-01T00:00:00.000Z' WHERE id = ?", (c.id,))
        assert [e.id for e in cat.newest_first()] == [c.id, b.id, a.id]
        assert [e.id for e in cat.newest_first("epoch")] == [c.id, a.id]
        assert cat.latest().id == c.id


def test_retention_rotates_after_commits_and_prune_reports_rules(tmp_path):
    d = tmp_path / "ck"
    with ckptdb.Catalog(d, retention=ckptdb.Retention(keep_last={"epoch": 2})) as cat:
        ids = [cat.save_bytes(b"%d" % i, kind="epoch", epoch=i, step=i).id for i in range(1, 6)]
        assert [e.id for e in cat.entries(status="complete")] == ids[-2:]
        assert {e.status for e in cat.entries(status=["pruned"])} == {"pruned"}
        assert sorted(f for f in listing(d) if f.endswith(".pt")) == ["epoch_004.pt", "epoch_005.pt", "last.pt"]
        assert os.readlink(d / "last.pt") == "epoch_005.pt"
        cat.set_retention(None)
        for i in range(6, 9):
            cat.save_bytes(b"x", kind="epoch", epoch=i, step=i)
        cat.pin("epoch_006.pt")
        plan = cat.prune(ckptdb.Retention(keep_last={"epoch": 1}), dry_run=True)
        assert sorted(p.name for p in plan) == ["epoch_004.pt", "epoch_005.pt", "epoch_007.pt"]
        assert all(p.rule.startswith("keep_last") for p in plan)
        assert len(cat.entries(status="complete")) == 5  # a dry run changes nothing
        done = cat.prune({"keep_last": {"epoch": 1}})
        assert sorted(p.name for p in done) == sorted(p.name for p in plan)
        assert [e.name for e in cat.entries(status="complete")] == ["epoch_006.pt", "epoch_008.pt"]
        cat.unpin("epoch_006.pt")
        assert not cat.get("epoch_006.pt").pinned
    with pytest.raises(ValueError):
        ckptdb.Retention(best_mode="median")
    with ckptdb.Catalog(d) as cat:
        with pytest.raises(ckptdb.InvalidArgument):
            cat.set_retention(ckptdb.Retention(best_metric="loss", best_k=0))


def test_files_events_runs_and_event_callback(tmp_path):
    got = []
    with ckptdb.Catalog(tmp_path / "ck", on_event=lambda ev, cid, detail: got.append((ev, cid))) as cat:
        e = cat.save_bytes(b"abc", kind="step", epoch=0, step=5)
        cat.progress(0, 9)
        [fi] = cat.files(e.id)
        assert (fi.rank, fi.name, fi.size, fi.checksum) == (0, e.name, 3, e.checksum)
        assert ("begun", e.id) in got and ("committed", e.id) in got
        assert [ev["event"] for ev in cat.events(e)][:2] == ["begun", "committed"]
        [run] = cat.runs()
        assert run["pid"] == os.getpid() and run["saves"] == 1 and run["last_step"] == 9


def test_requeue_flag_is_passed_to_open(tmp_path, monkeypatch):
    seen = []
    real = ckptdb.catalog.lib

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def ckptdb_open(self, out, d, opts):
            seen.append(opts._obj.flags)
            return real.ckptdb_open(out, d, opts)

    monkeypatch.setattr(ckptdb.catalog, "lib", Spy())
    ckptdb.Catalog(tmp_path / "ck", requeue_on_preempt=True).close()
    ckptdb.Catalog(tmp_path / "ck2", readonly=False, create=True).close()
    assert seen == [_lib.OPEN_REQUEUE, 0]


def test_ownership_untrusted_error_and_trust_shared(tmp_path):
    from ckptdb.catalog import open_checkpoint
    from ckptdb.errors import UntrustedError
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    d = base / "ck"
    with ckptdb.Catalog(d) as cat:
        older = cat.save_bytes(b"one", kind="epoch", epoch=1, step=1)
        newer = cat.save_bytes(b"two", kind="epoch", epoch=2, step=2)
    # Writable by every user without the sticky bit: refused, read-only too, changing nothing.
    os.chmod(d, 0o777)
    before = listing(d)
    for ro in (True, False):
        with pytest.raises(UntrustedError) as ei:
            ckptdb.Catalog(d, readonly=ro)
        assert ei.value.code == 16 and str(d) in ei.value.message and "mode 0777" in ei.value.message
        assert "trust_shared=True" in ei.value.message
    assert listing(d) == before
    with ckptdb.Catalog(d, readonly=True, trust_shared=True) as cat:
        assert cat.trust_shared and cat.latest().id == newer.id
    os.chmod(d, 0o755)
    with open_checkpoint(newer.path) as f:  # a file of this user
        assert f.read() == b"two"
    os.symlink(newer.path, d / "link.pt")
    with pytest.raises(OSError):  # a link is not followed
        open_checkpoint(d / "link.pt")
    if os.geteuid() != 0:
        pytest.skip("the rest needs root (a checkpoint file of another user, uid 65534)")
    os.chown(newer.path, 65534, 65534)
    with ckptdb.Catalog(d) as cat:
        with pytest.raises(UntrustedError) as ei:
            cat.latest()  # refused, not skipped to the older one
        assert newer.path in ei.value.message and "uid 65534" in ei.value.message
        with pytest.raises(UntrustedError):
            cat.read(newer.id)
        assert cat.read(older.id) == b"one"
        assert cat.get(newer.id).status == "complete"
    with pytest.raises(UntrustedError) as ei:
        open_checkpoint(newer.path)
    assert newer.path in ei.value.message
    with open_checkpoint(newer.path, trust_shared=True) as f:
        assert f.read() == b"two"
    with ckptdb.Catalog(d, trust_shared=True) as cat:
        assert cat.latest().id == newer.id and cat.read(newer.id) == b"two"


# ---------------------------------------------------------------------------
# Threads, lifetime
# ---------------------------------------------------------------------------

def test_saves_from_several_threads_through_one_catalog(tmp_path):
    errors = []
    with ckptdb.Catalog(tmp_path / "ck") as cat:
        def work(t):
            try:
                for i in range(5):
                    with cat.save(kind="worker%d" % t, step=i) as f:
                        f.write(os.urandom(200000))
                    cat.entries()
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
        rows = cat.entries(status="complete")
        assert len(rows) == 20
        assert all(cat.verify(r.id) for r in rows)


def test_a_save_outlives_its_closed_catalog_and_del_aborts(tmp_path):
    d = tmp_path / "ck"
    cat = ckptdb.Catalog(d)
    s = cat.save(kind="manual", name="late.pt")
    cat.close()
    cat.close()  # twice is fine
    s.write(b"late")
    assert s.commit().name == "late.pt"
    cat = ckptdb.Catalog(d)
    s = cat.save(kind="manual", name="dropped.pt")
    s.write(b"x")
    del s
    assert cat.get("dropped.pt").status == "aborted"
    assert not any(n.startswith(".ckptdb-tmp") for n in listing(d))
    del cat  # the guarded __del__ closes it


# ---------------------------------------------------------------------------
# Signals and triggers
# ---------------------------------------------------------------------------

def test_signal_only_sets_the_flag_and_trigger_answers_preempt():
    now = [0.0]
    trig = ckptdb.Trigger(every_epochs=2, every_seconds=100, clock=lambda: now[0])
    assert trig.check(1, 10, epoch_end=True) is None
    assert trig.check(2, 20, epoch_end=True) == "epoch"
    trig.saved(20)
    now[0] = 150.0
    assert trig.check(2, 21) == "time"
    trig.saved(21)
    ckptdb.clear_preempt()
    ckptdb.install_signals([signal.SIGTERM])
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # the process keeps running
        assert ckptdb.preempt_requested() == signal.SIGTERM
        assert trig.check(2, 22) == "preempt"
        trig.saved(22)
        assert trig.should_stop()
    finally:
        ckptdb.restore_signals()
        ckptdb.clear_preempt()
    with pytest.raises(ckptdb.InvalidArgument):
        ckptdb.Trigger(every_seconds=-1)


# ---------------------------------------------------------------------------
# Interop: a Python save is a save like any other
# ---------------------------------------------------------------------------

def test_python_saves_look_like_c_saves_in_the_c_api_and_sqlite3(tmp_path):
    d = tmp_path / "ck"
    payload = tmp_path / "payload.bin"
    data = os.urandom(1 << 20)
    payload.write_bytes(data)
    with ckptdb.Catalog(d) as cat:
        py = cat.save_bytes(data, kind="step", epoch=3, step=300, metrics={"loss": 1.5})
    r = subprocess.run([C_HELPER, "save", str(d), str(payload), "step", "3", "301", '{"loss": 1.5}'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    c_id = int(r.stdout)
    dump = subprocess.run([C_HELPER, "dump", str(d)], check=True, capture_output=True, text=True).stdout
    rows = [line.split("\t") for line in dump.splitlines() if not line.startswith("latest")]
    by_id = {int(x[0]): x for x in rows}
    p, c = by_id[py.id], by_id[c_id]
    assert p[1] == "step_000300.pt" and c[1] == "step_000301.pt"
    # kind, epoch, size, checksum, status, pinned, file count, metadata: identical
    assert [p[2], p[3]] + p[5:] == [c[2], c[3]] + c[5:]
    assert p[6] == py.checksum and p[10] == '{"loss":1.5}'
    assert ("latest\t%d\t" % c_id) in dump
    if shutil.which("sqlite3"):
        q = ("SELECT c.kind, c.epoch, c.size, c.checksum, c.status, c.pinned, c.metadata, "
             "f.rank, f.size, f.checksum, r.host, r.pid > 0 FROM checkpoints c JOIN files f ON f.checkpoint_id = c.id "
             "JOIN runs r ON r.id = c.run_id WHERE c.id IN (%d, %d) ORDER BY c.id;" % (py.id, c_id))
        out = subprocess.run(["sqlite3", str(d / "ckptdb.sqlite"), q], check=True, capture_output=True,
                             text=True).stdout.splitlines()
        assert len(out) == 2 and out[0] == out[1]
        assert out[0].split("|")[3] == py.checksum
        latest = subprocess.run(["sqlite3", str(d / "ckptdb.sqlite"), "SELECT name FROM latest_complete;"],
                                check=True, capture_output=True, text=True).stdout.split()
        assert latest == ["step_000301.pt"]


# ---------------------------------------------------------------------------
# Whole directories: progress, sync, rebuild
# ---------------------------------------------------------------------------

def test_verify_progress_sync_and_rebuild(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    with ckptdb.Catalog(src) as cat:
        a = cat.save_bytes(os.urandom(3 << 20), kind="epoch", epoch=1, step=1)
        b = cat.save_bytes(os.urandom(1000), kind="epoch", epoch=2, step=2)
        seen = []
        assert cat.verify(a.id, progress=lambda done, total: seen.append((done, total))) is True
        assert seen and seen[-1] == (a.size, a.size)
    got = []
    copied, nbytes, items = ckptdb.sync(src, dst, progress=lambda d, t: got.append(d))
    assert (copied, nbytes) == (2, a.size + b.size)
    assert sorted(i["kind"] for i in items) == ["copied", "copied"] and got[-1] == nbytes
    with ckptdb.Catalog(dst) as cat:
        assert cat.latest().checksum == b.checksum
    with pytest.raises(ckptdb.InvalidArgument):
        ckptdb.sync(src, src / "inside")
    os.unlink(dst / "ckptdb.sqlite")
    items = ckptdb.rebuild(dst)
    assert sorted(i["name"] for i in items if i["kind"] == "rebuilt") == ["epoch_001.pt", "epoch_002.pt"]
    with ckptdb.Catalog(dst) as cat:
        assert [e.name for e in cat.entries(status="complete")] == ["epoch_001.pt", "epoch_002.pt"]
        assert cat.get("epoch_002.pt").checksum == b.checksum


def test_a_progress_function_that_returns_true_stops_the_call_with_callback_stopped(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    with ckptdb.Catalog(src) as cat:
        a = cat.save_bytes(os.urandom(3 << 20), kind="epoch", epoch=1, step=1)
        with pytest.raises(ckptdb.CallbackStopped) as e:
            cat.verify(a.id, progress=lambda done, total: True)
        assert e.value.code == _lib.ECALLBACK == 17
        assert "ckptdb_verify_progress" in e.value.message and "callback" in e.value.message
        assert _lib.lib.ckptdb_last_callback_value() == 1
        assert cat.get(a.id).status == "complete"  # stopping is not corruption
    with pytest.raises(ckptdb.CallbackStopped):
        ckptdb.sync(src, dst, progress=lambda d, t: True)
    copied, _, _ = ckptdb.sync(src, dst)  # the next run goes on
    assert copied == 1


def test_adopt_a_plain_directory_and_refuse_a_lost_catalog(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    for i, name in enumerate(["epoch_001.pt", "epoch_002.pt", "last.pt"]):
        (d / name).write_bytes(bytes([i]) * 1000)
        os.utime(d / name, (1700000000 + i, 1700000000 + i))
    with pytest.raises(ckptdb.Error) as e:  # no empty catalog beside them
        ckptdb.Catalog(d)
    assert "epoch_001.pt" in str(e.value) and "ckptdb adopt" in str(e.value)
    assert not (d / "ckptdb.sqlite").exists()
    items = ckptdb.adopt(d)
    assert [i["name"] for i in items if i["kind"] == "adopted"] == ["epoch_001.pt", "epoch_002.pt", "last.pt"]
    with ckptdb.Catalog(d) as cat:
        assert cat.latest().name == "last.pt"
        assert all(e.pinned for e in cat.entries(status="complete"))
    with pytest.raises(ckptdb.Exists):
        ckptdb.adopt(d)  # it has a catalog now


def test_values_that_c_would_change_are_refused_before_the_call(tmp_path):
    with ckptdb.Catalog(tmp_path / "d") as cat:
        for bad, what in [(dict(name="evil\0/../../x.pt"), "NUL"), (dict(kind="ep\0och"), "NUL"),
                          (dict(epoch=2**63), "outside"), (dict(step=-2**63 - 1), "outside"),
                          (dict(epoch=1.9), "integer"), (dict(step=True), "integer"), (dict(epoch="3"), "integer")]:
            with pytest.raises(ckptdb.InvalidArgument, match=what):
                cat.save_bytes(b"x", **bad)
        assert cat.entries() == []
        import numpy
        assert cat.save_bytes(b"x", kind="epoch", epoch=numpy.int64(3), step=2**63 - 1).epoch == 3
    with pytest.raises(ckptdb.InvalidArgument, match="NUL"):
        ckptdb.Catalog(str(tmp_path / "e") + "\0/x")
    with pytest.raises(ckptdb.InvalidArgument, match="catalog file name"):
        ckptdb.Catalog(tmp_path / "f", catalog_name=".ckptdb/../../x.sqlite")
    assert not (tmp_path / "x.sqlite").exists()

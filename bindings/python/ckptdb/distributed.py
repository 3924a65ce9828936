"""Sharded (multi-rank) saves over torch.distributed.

Every rank writes its own file with the library's durable writer
(ckptdb_shard_*: temp file, XXH3-128 while writing, fsync) without touching
the catalog; rank 0 gathers (name, temp name, size, checksum) with
all_gather_object and commits one checkpoint with all the files in one
transaction (ckptdb_commit_shards: the temps are renamed to their names
there); a broadcast of the outcome is the barrier after which every rank
frees its shard (a temp file no commit took is removed).  A rank killed at
any moment leaves no complete checkpoint: the previous one stays the resume
point.  Resume verifies every file of the newest checkpoint and falls back
as a whole (ckptdb_latest with full verification).

This flat per-rank format is the one CheckpointManager(sharded=True) wrote
before it saved through DCP (ckptdb.dcp); the manager still resumes from it
(load_flat) on as many ranks as saved it.

File names: rank 0 asks the library (ckptdb_default_name) for the kind's
default names of a sharded checkpoint (epoch_010.rank0-of-4.pt ...), with a
"-2", "-3"... suffix on the stem when any of them is taken, and broadcasts
them.
"""

from __future__ import annotations

import io
import os
import threading
import time
from ctypes import byref, c_int, create_string_buffer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

if TYPE_CHECKING:
    from .catalog import Catalog, Checkpoint, StrPath

from . import _lib
from ._lib import enc, lib, s
from .catalog import _buffer_address
from .errors import Error, NotFound

__all__ = ["ShardWriter", "DirFileWriter", "shard_names", "save_sharded", "load_sharded", "load_flat", "flat_paths",
           "world_mismatch"]


class ShardWriter(io.RawIOBase):
    """One rank's file of a sharded checkpoint: a write-only binary file.

    finish() fsyncs it and returns its description for the commit (a dict:
    name, temp_name, size, checksum).  free() must come only after rank 0's
    commit returned (every rank waits for it); it removes the temp file when
    no commit took it.  mode "write" (ckptdb_shard_write) or "fd" (os.write
    on the library's own descriptor, which must not be closed)."""

    def __init__(self, directory: StrPath, name: str, mode: str = "write", *, temp_dir: Optional[str] = None,
                 rank: Optional[int] = None) -> None:
        super().__init__()
        if not _lib.HAS_SHARDS:
            raise _lib.error_for(2)(2, "ckptdb: this libckptdb has no sharded saves (ckptdb_shard_begin)")
        if mode not in ("write", "fd"):
            raise ValueError("ckptdb: shard mode must be 'write' or 'fd', not %r" % (mode,))
        self._lock = threading.Lock()
        self._h: Any = None
        self._fd: Optional[int] = None
        self._rank = rank
        #: What finish() returned: name, temp_name, size, checksum (and rank for a directory's file).
        self.info: Optional[Dict[str, Any]] = None
        h = _lib.shard_p()
        if temp_dir is None:
            lib.ckptdb_shard_begin(byref(h), enc(os.fspath(directory)), enc(name))
        else:
            # A file of a directory save (DirFileWriter).
            lib.ckptdb_dir_file_begin(byref(h), enc(os.fspath(directory)), enc(temp_dir), enc(name),
                                      _lib.i64(rank, "rank"))
        self._h = h
        if mode == "fd":
            fd = c_int(-1)
            lib.ckptdb_shard_fd(byref(fd), h)
            self._fd = fd.value

    def writable(self) -> bool:
        """True: a shard is written, never read."""
        return True

    def write(self, data: Any) -> int:
        """Append bytes (any buffer) to this rank's file; returns how many."""
        with self._lock:
            if self._h is None or self.info is not None:
                raise ValueError("ckptdb: write to a shard that was finished or freed")
            if self._fd is not None:
                mv = memoryview(data).cast("B")
                done = 0
                while done < len(mv):
                    done += os.write(self._fd, mv[done:])
                return len(mv)
            addr, n, keep = _buffer_address(data)
            if n:
                lib.ckptdb_shard_write(self._h, addr, n)
            del keep
            return n

    def flush(self) -> None:
        """Nothing to do: bytes go to the file as they are written."""

    def finish(self) -> Dict[str, Any]:
        """fsync the file; returns its name, temp_name, size and checksum for the commit."""
        with self._lock:
            if self._h is None:
                raise ValueError("ckptdb: the shard was freed")
            if self.info is None:
                i = _lib.ShardInfo.new()
                lib.ckptdb_shard_finish(byref(i), self._h)
                self.info = {"name": s(i.name), "temp_name": s(i.temp_name), "size": i.size,
                             "checksum": s(i.checksum)}
                if self._rank is not None:
                    self.info["rank"] = self._rank
            return dict(self.info)

    def free(self) -> None:
        """Release the shard (after rank 0's commit): a temp file no commit took is removed."""
        with self._lock:
            h, self._h, self._fd = self._h, None, None
            if h:
                lib.ckptdb_shard_free(h)
        io.RawIOBase.close(self)

    def close(self) -> None:
        """Same as free()."""
        self.free()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, et: Optional[Type[BaseException]], ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if et is not None:
            self.free()

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:
            pass


class DirFileWriter(ShardWriter):
    """One file of a directory checkpoint (Catalog.begin_dir), written by any
    process that knows the checkpoint directory and the save's temp
    directory name, without opening the catalog: a write-only binary file,
    hashed while written.  finish() fsyncs and seals it and returns its
    description for DirSave.commit (a dict: name, rank, size, checksum);
    the file then belongs to the save, and free() leaves it (free() before
    finish() removes it)."""

    def __init__(self, directory: StrPath, temp_dir: str, name: str, rank: int, mode: str = "write") -> None:
        if not _lib.HAS_DIRS:
            raise _lib.error_for(2)(2, "ckptdb: this libckptdb has no directory checkpoints (ckptdb_dir_file_begin)")
        super().__init__(directory, name, mode, temp_dir=temp_dir, rank=rank)


def shard_names(directory: StrPath, kind: str, epoch: int, step: int, world: int,
                cat: Optional[Catalog] = None) -> List[str]:
    """The file names of a sharded checkpoint, one per rank, none of them
    taken by a file in the directory or by a live checkpoint: the library's
    default names (ckptdb_default_name), the first free suffix."""
    kind_b = enc(kind, "kind")
    epoch, step = _lib.i64(epoch, "epoch"), _lib.i64(step, "step")
    world = _lib.i64(world, "world", 1, _lib.INT32_MAX)
    now = int(time.time())  # one time for every rank's name
    buf = create_string_buffer(512)
    for n in range(1, 10000):
        names = []
        for r in range(world):
            lib.ckptdb_default_name(buf, len(buf), kind_b, epoch, step, now, n, r, world)
            names.append(s(buf.value))
        if any(os.path.lexists(os.path.join(directory, x)) for x in names):
            continue
        if cat is not None and any(_live(cat, x) for x in names):
            continue
        return names
    raise Error(5, "ckptdb: no free name for a sharded checkpoint of kind %r in %s" % (kind, directory))


def _live(cat: Catalog, name: str) -> bool:
    try:
        return cat.get(name).status in ("writing", "complete", "corrupt")
    except NotFound:
        return False


def _dist():
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("ckptdb.distributed: torch.distributed is not initialised")
    return dist


def _broadcast(dist, obj):
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def save_sharded(directory: StrPath, state: Any, kind: str, epoch: int, step: int, cat: Optional[Catalog] = None,
                 metrics: Optional[Mapping[str, Any]] = None, metadata: Optional[Mapping[str, Any]] = None,
                 mode: str = "write") -> Optional[Checkpoint]:
    """Every rank calls it with its own state; returns the committed
    Checkpoint on every rank (or raises the same error on every rank).
    Rank 0 passes its open Catalog (cat); other ranks never open it."""
    import torch
    dist = _dist()
    rank, world = dist.get_rank(), dist.get_world_size()
    directory = os.fspath(directory)
    if rank == 0 and cat is None:
        raise ValueError("ckptdb.save_sharded: rank 0 needs the open Catalog (cat=)")
    names = _broadcast(dist, shard_names(directory, kind, epoch, step, world, cat) if rank == 0 else None)
    writer = None
    report = None
    try:
        writer = ShardWriter(directory, names[rank], mode=mode)
        torch.save(state, writer)
        report = writer.finish()
    except Exception as e:  # told to every rank, so no rank waits forever
        report = {"error": "rank %d: %s" % (rank, e)}
    reports = [None] * world
    dist.all_gather_object(reports, report)
    outcome = None
    if rank == 0:
        errors = [r["error"] for r in reports if "error" in r]
        if errors:
            outcome = {"error": "; ".join(errors)}
        else:
            try:
                e = cat.commit_shards(reports, kind=kind, epoch=epoch, step=step, metrics=metrics,
                                      metadata=metadata)
                outcome = {"entry": e}
            except Exception as e:
                outcome = {"error": "rank 0 commit: %s" % e}
    outcome = _broadcast(dist, outcome)  # every rank waits here for rank 0's commit
    if writer is not None:
        writer.free()
    if "error" in outcome:
        raise Error(1, "ckptdb: sharded save of %s failed: %s" % (kind, outcome["error"]))
    return outcome["entry"]


def load_sharded(directory: StrPath, cat: Optional[Catalog] = None, map_location: Any = "cpu",
                 kind: Optional[str] = None, weights_only: bool = True,
                 prepare: Optional[Callable[[Any, Checkpoint, str], Any]] = None,
                 trust_shared: bool = False) -> Optional[Tuple[Any, Checkpoint]]:
    """Every rank calls it; rank 0 (with its open Catalog) picks the newest
    checkpoint whose every file verifies and broadcasts it; each rank loads
    its own file (ckptdb.torch.load_checkpoint: torch's safe loader unless
    weights_only=False).  Returns (state, Checkpoint) or None when there is
    none.  A checkpoint saved by another number of ranks is refused with an
    error naming both; CheckpointManager(sharded=True) falls back past it
    instead.

    prepare(state, entry, path), when given, runs on every rank on its
    loaded state (and returns what to hand back in its place); a failure of
    any rank's load or prepare is raised on every rank, and only when every
    rank succeeded does rank 0 record the resume: a refused file changes
    nothing in the catalog.

    Each rank's file is checked like every resume's (its owner, see
    ckptdb.catalog.open_checkpoint); trust_shared=True trusts files of other
    users, as CKPTDB_OPEN_TRUST_SHARED does for the catalog."""
    dist = _dist()
    rank, world = dist.get_rank(), dist.get_world_size()
    pick = None
    if rank == 0:
        if cat is None:
            raise ValueError("ckptdb.load_sharded: rank 0 needs the open Catalog (cat=)")
        e = cat.latest(kind)
        if e is not None:
            paths = flat_paths(cat, e)
            pick = {"entry": e, "paths": paths}
            if len(paths) != world:
                pick = {"error": "checkpoint %s was %s" % (e.name, world_mismatch(len(paths), world))}
    pick = _broadcast(dist, pick)
    if pick is None:
        return None
    if "error" in pick:
        raise Error(3, "ckptdb: cannot resume: " + pick["error"])
    st = load_flat(pick["paths"], pick["entry"], map_location=map_location, weights_only=weights_only,
                   prepare=prepare, trust_shared=trust_shared)
    if rank == 0:
        cat.mark_resumed(pick["entry"].id)
    return st, pick["entry"]


def world_mismatch(saved: int, world: int) -> str:
    """The words every refusal of a checkpoint saved by another number of ranks uses."""
    return "saved by %d ranks, this job has %d" % (saved, world)


def flat_paths(cat: Catalog, e: Checkpoint) -> List[str]:
    """The files of a flat sharded checkpoint (one per rank), in rank order."""
    return [f.path for f in sorted(cat.files(e.id), key=lambda f: f.rank)]


def load_flat(paths: List[str], entry: Checkpoint, map_location: Any = "cpu", weights_only: bool = True,
              prepare: Optional[Callable[[Any, Checkpoint, str], Any]] = None, trust_shared: bool = False) -> Any:
    """Every rank loads its own file of a flat sharded checkpoint (paths, one
    per rank, as many as the ranks) and runs prepare on it; a failure of any
    rank is raised on every rank.  Records nothing in the catalog."""
    from .torch import load_checkpoint
    dist = _dist()
    rank, world = dist.get_rank(), dist.get_world_size()
    st, err = None, None
    try:
        if len(paths) != world:
            raise Error(3, "ckptdb: checkpoint %s was %s" % (entry.name, world_mismatch(len(paths), world)))
        path = paths[rank]
        st = load_checkpoint(path, map_location=map_location, weights_only=weights_only, trust_shared=trust_shared)
        if prepare is not None:
            st = prepare(st, entry, path)
    except Exception as x:
        err = x
    errs = [None] * world
    dist.all_gather_object(errs, None if err is None else "rank %d: %s" % (rank, err))
    if err is not None:
        raise err
    if any(errs):
        raise Error(1, "ckptdb: resume failed on another rank: %s" % "; ".join(x for x in errs if x))
    return st

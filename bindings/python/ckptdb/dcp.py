"""torch.distributed.checkpoint (DCP) storage through the catalog: a DCP
checkpoint is one directory checkpoint (Catalog.begin_dir).

    from ckptdb import dcp as ckdcp
    import torch.distributed.checkpoint as dcp
    dcp.save(state_dict, storage_writer=ckdcp.Writer(directory, kind="step", epoch=e, step=s))
    dcp.load(state_dict, storage_reader=ckdcp.Reader(directory))   # the newest one that verifies

Saving (Writer, on every rank):
  set_up_storage_writer   the coordinator begins the directory save (its
                          row "writing" and its temp directory); a save of
                          an earlier call left open on this writer is
                          aborted first
  prepare_global_plan     the coordinator gives every rank, in its plan's
                          storage_data, the file prefix "__{rank}_" and the
                          temp directory's name (plans are scattered)
  write_data              every rank writes its items into one file
                          "__{rank}_0.distcp" of the temp directory through
                          DirFileWriter (hashed while written, fsynced,
                          sealed), in FileSystemWriter's layout: byte items,
                          then each tensor as torch.save writes it, each at
                          the offset recorded in its WriteResult
                          (_StorageInfo: file name, offset, length).  A rank
                          with nothing to write (DCP deduplicates replicated
                          tensors) writes no file.  Its file's description
                          (name, rank, size, checksum) goes to the
                          coordinator as one more WriteResult in its list:
                          index MetadataIndex(FILE_FQN + name), storage_data
                          a plain dict {"ckptdb_file": {...}}; finish takes
                          those out before anything sees the results.
  finish (coordinator)    the metadata file METADATA_FILE (".metadata.json",
                          JSON: see encode_metadata) and the stock pickle
                          ".metadata" (for torch's own FileSystemReader and
                          format_utils only; ckptdb never reads it) are
                          written through DirFileWriter too; then
                          DirSave.commit with every file: no byte is read
                          back, the seals are checked, the temp directory
                          becomes `name/` and the row complete.

A rank that fails (an exception, or killed): DCP calls no finish and no
abort hook.  When every process survives, the exception reaches every rank
(CheckpointException) and the coordinator's DirSave, left open, is aborted
(its temp directory removed) when the Writer is released or at its next
save.  When the coordinator's process is gone (torchrun ends every rank
when one dies), the save stays "writing" until the next Catalog open of
the directory: its recovery aborts it and removes the temp directory.
Either way no checkpoint was committed: the previous one stays the resume
point.

Loading (Reader, on every rank): read_metadata (declared without **kwargs,
so DCP makes no per-rank second call) runs on every rank: rank 0 of the
process group asks the catalog for the newest complete DCP checkpoint (a
directory checkpoint with METADATA_FILE; kind= narrows it) whose every file
verifies (Catalog.latest, full verification: a corrupt one is marked and
skipped as a whole), or checks the one asked for (id=), reads
its METADATA_FILE verified (Catalog.read) and broadcasts both, so every
rank loads the same checkpoint.  read_data reads each item's byte range
from the files inside that directory (opened relative to it, links never
followed).  Tensors are loaded with torch.load(weights_only=True), as
FileSystemReader does.  Non-tensor values (BYTE_IO) are unpickled by DCP's
LoadPlanner (DefaultLoadPlanner uses torch.load(weights_only=False)), so
the Reader first loads each one with torch's safe loader
(weights_only=True) and raises UnsafeCheckpoint for one that holds
anything but tensors and plain types: no code from a checkpoint runs.
Reader(..., weights_only=False) skips that check, for a trusted one.
Once its own reads succeeded, rank 0 records the resume in the catalog
(Catalog.mark_resumed; DCP calls no reader hook after the other ranks'
reads, which it checks itself and raises on every rank).

Not supported: use_collectives=False (rank-local metadata) and DCP plan
caching (enable_plan_caching) are refused with ValueError.  The Writer
writes one file per rank, in torch.save format, without stream transforms
(the Reader refuses items saved with transforms: it could not read them).
async_save works with its default thread executor (the commit runs in
DCP's worker thread) and with its process executor
(AsyncCheckpointerType.PROCESS), which pickles the writer into a save
process of its own: a Writer of a directory opens the catalog there (the
parent's Writer.checkpoint stays None; the returned Metadata's
storage_meta.checkpoint_id names the checkpoint); one made with an open
Catalog cannot be pickled and is refused with TypeError.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import torch
import torch.distributed as dist
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (BytesStorageMetadata, ChunkStorageMetadata, Metadata,
                                                   MetadataIndex, StorageMeta, TensorProperties,
                                                   TensorStorageMetadata)
from torch.distributed.checkpoint.planner import (LoadItemType, LoadPlan, LoadPlanner, SavePlan, SavePlanner,
                                                  WriteItemType)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from .catalog import Catalog, Checkpoint
from .distributed import DirFileWriter
from .errors import Error, NotFound, UnsafeCheckpoint

if TYPE_CHECKING:
    from .catalog import StrPath

__all__ = ["Writer", "Reader", "METADATA_FILE", "encode_metadata", "decode_metadata"]

#: The metadata file of a ckptdb DCP checkpoint, the one the Reader loads.
METADATA_FILE = ".metadata.json"
#: The stock DCP metadata (pickle), written for torch's own tools; never read by ckptdb.
PICKLE_METADATA_FILE = ".metadata"
#: The fqn prefix of the extra WriteResult that carries a rank's file description.
FILE_FQN = "\0ckptdb/file/"
#: The "format" of METADATA_FILE, and its version.
FORMAT = "ckptdb-dcp-metadata"
FORMAT_VERSION = 1
DCP_VERSION = "1.0.0"  # torch.distributed.checkpoint.filesystem.CURRENT_DCP_VERSION


# -- metadata as JSON -------------------------------------------------------

def _torch_attr(text: Any, prefix: str, kind: type) -> Any:
    """torch.<name> for text "torch.<name>", only when it is an instance of kind."""
    if not isinstance(text, str) or not text.startswith(prefix):
        raise ValueError("ckptdb.dcp: bad %s %r in the metadata" % (kind.__name__, text))
    v = getattr(torch, text[len(prefix):], None)
    if not isinstance(v, kind):
        raise ValueError("ckptdb.dcp: unknown %s %r in the metadata" % (kind.__name__, text))
    return v


def _ints(v: Any, what: str) -> List[int]:
    if not isinstance(v, list) or not all(type(x) is int for x in v):
        raise ValueError("ckptdb.dcp: %s must be a list of integers in the metadata" % what)
    return v


def _encode_planner_data(pd: Any) -> Any:
    # DefaultSavePlanner's planner_data: fqn -> the object path (a tuple of str and int).
    if pd is None:
        return None
    if not isinstance(pd, dict):
        raise ValueError("ckptdb.dcp: planner_data of type %s cannot be stored" % type(pd).__name__)
    out = {}
    for k, v in pd.items():
        if not isinstance(k, str) or not isinstance(v, (tuple, list)) or not all(
                type(x) in (str, int) for x in v):
            raise ValueError("ckptdb.dcp: planner_data entry %r cannot be stored (a tuple of str and int only)"
                             % (k,))
        out[k] = list(v)
    return out


def encode_metadata(md: Metadata) -> bytes:
    """DCP Metadata as JSON (UTF-8): only names, numbers and lists, so that
    decode_metadata rebuilds it without running any code from the file."""
    sdm: Dict[str, Any] = {}
    for fqn, m in md.state_dict_metadata.items():
        if isinstance(m, BytesStorageMetadata):
            sdm[fqn] = {"type": "bytes"}
        elif isinstance(m, TensorStorageMetadata):
            p = m.properties
            sdm[fqn] = {"type": "tensor", "dtype": str(p.dtype), "layout": str(p.layout),
                        "requires_grad": bool(p.requires_grad), "memory_format": str(p.memory_format),
                        "pin_memory": bool(p.pin_memory), "size": list(m.size),
                        "chunks": [{"offsets": list(c.offsets), "sizes": list(c.sizes)} for c in m.chunks]}
        else:
            raise ValueError("ckptdb.dcp: %r has metadata of type %s" % (fqn, type(m).__name__))
    storage = []
    for idx, si in (md.storage_data or {}).items():
        if not isinstance(si, _StorageInfo):
            raise ValueError("ckptdb.dcp: storage_data of %r is a %s" % (idx.fqn, type(si).__name__))
        storage.append({"fqn": idx.fqn, "offset": None if idx.offset is None else list(idx.offset),
                        "index": idx.index, "file": si.relative_path, "start": si.offset, "length": si.length})
    sm = md.storage_meta
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "dcp_version": md.version,
           "state_dict_metadata": sdm, "planner_data": _encode_planner_data(md.planner_data),
           "storage_data": storage,
           "storage_meta": None if sm is None else {
               "checkpoint_id": None if sm.checkpoint_id is None else os.fspath(sm.checkpoint_id),
               "save_id": sm.save_id, "modules": list(sm.modules)}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode_metadata(data: bytes) -> Metadata:
    """The Metadata of encode_metadata's JSON.  Only json.loads runs on the
    file; dtypes, layouts and memory formats are looked up among torch's own
    by name.  Anything else raises ValueError."""
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
        raise ValueError("ckptdb.dcp: not a %s file of version %d" % (FORMAT, FORMAT_VERSION))
    sdm: Dict[str, Any] = {}
    for fqn, m in doc["state_dict_metadata"].items():
        if m.get("type") == "bytes":
            sdm[fqn] = BytesStorageMetadata()
        elif m.get("type") == "tensor":
            props = TensorProperties(dtype=_torch_attr(m["dtype"], "torch.", torch.dtype),
                                     layout=_torch_attr(m["layout"], "torch.", torch.layout),
                                     requires_grad=bool(m["requires_grad"]),
                                     memory_format=_torch_attr(m["memory_format"], "torch.", torch.memory_format),
                                     pin_memory=bool(m["pin_memory"]))
            chunks = [ChunkStorageMetadata(offsets=torch.Size(_ints(c["offsets"], "offsets")),
                                           sizes=torch.Size(_ints(c["sizes"], "sizes"))) for c in m["chunks"]]
            sdm[fqn] = TensorStorageMetadata(properties=props, size=torch.Size(_ints(m["size"], "size")),
                                             chunks=chunks)
        else:
            raise ValueError("ckptdb.dcp: unknown metadata type of %r" % (fqn,))
    storage: Dict[MetadataIndex, Any] = {}
    for s in doc["storage_data"]:
        off = None if s["offset"] is None else torch.Size(_ints(s["offset"], "offset"))
        index = s["index"]
        if index is not None and type(index) is not int:
            raise ValueError("ckptdb.dcp: bad index in the metadata")
        if not isinstance(s["fqn"], str) or not isinstance(s["file"], str):
            raise ValueError("ckptdb.dcp: bad storage entry in the metadata")
        start, length = s["start"], s["length"]
        if type(start) is not int or type(length) is not int or start < 0 or length < 0:
            raise ValueError("ckptdb.dcp: bad byte range of %r in the metadata" % (s["fqn"],))
        storage[MetadataIndex(fqn=s["fqn"], offset=off, index=index)] = _StorageInfo(s["file"], start, length)
    pd = doc["planner_data"]
    if pd is not None:
        pd = {k: tuple(v) for k, v in pd.items()}
    sm = doc["storage_meta"]
    meta = None
    if sm is not None:
        meta = StorageMeta(checkpoint_id=sm["checkpoint_id"], save_id=sm["save_id"], modules=list(sm["modules"]))
    return Metadata(state_dict_metadata=sdm, planner_data=pd, storage_data=storage, storage_meta=meta,
                    version=doc["dcp_version"])


# -- saving -----------------------------------------------------------------

class _Counted:
    """A DirFileWriter as DCP's items are written into it: write, and tell()
    (the bytes written so far) for the offsets."""

    def __init__(self, w: DirFileWriter) -> None:
        self.w, self.pos = w, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = self.w.write(data)
        self.pos += n
        return n

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass


def _rank_and_world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Writer(StorageWriter):
    """A DCP StorageWriter that saves one directory checkpoint of the
    catalog in `cat_or_directory` (an open Catalog, used by the coordinator,
    or the checkpoint directory: the coordinator then opens the catalog for
    each save and closes it after).  kind, epoch, step, name, metrics and
    metadata are the checkpoint's, as Catalog.begin_dir takes them;
    dcp.save(..., checkpoint_id=X) names the directory X instead.  Make one
    on every rank; after a save, .checkpoint is the committed Checkpoint on
    the coordinator (None elsewhere)."""

    def __init__(self, cat_or_directory: Union[Catalog, StrPath], kind: str = "step", epoch: int = 0, step: int = 0,
                 name: Optional[str] = None, metrics: Optional[Dict[str, Any]] = None,
                 metadata: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        if isinstance(cat_or_directory, Catalog):
            self._cat: Optional[Catalog] = cat_or_directory
            self.directory = cat_or_directory.directory
        else:
            self._cat = None
            self.directory = os.path.abspath(os.fspath(cat_or_directory))
        self.kind, self.epoch, self.step, self.name = kind, epoch, step, name
        self.metrics, self.metadata = metrics, metadata
        self.checkpoint: Optional[Checkpoint] = None
        self._save: Any = None  # the coordinator's DirSave
        self._own_cat: Optional[Catalog] = None
        self._rank = 0
        self._coordinator = False

    # DCP's StorageWriter interface ------------------------------------------
    def reset(self, checkpoint_id: Any = None) -> None:
        """Called by DCP only for dcp.save(..., checkpoint_id=X): X names the directory."""
        if checkpoint_id is not None:
            self.name = os.fspath(checkpoint_id)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        return False  # never picked by DCP on its own

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("use_collectives", True) is False:
            raise ValueError("ckptdb.dcp.Writer: use_collectives=False is not supported (one coordinator "
                             "commits the whole checkpoint)")
        self._release()  # a save of an earlier call DCP never finished is aborted
        self.checkpoint = None
        self._coordinator = bool(is_coordinator)
        rank = kwargs.get("rank")
        self._rank = int(rank) if rank is not None else _rank_and_world()[0]
        if not is_coordinator:
            return
        cat = self._cat
        if cat is None:
            cat = self._own_cat = Catalog(self.directory)
        try:
            self._save = cat.begin_dir(self.kind, epoch=self.epoch, step=self.step, name=self.name,
                                       metrics=self.metrics, metadata=self.metadata)
        except BaseException:
            self._release()
            raise

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        return plan

    def prepare_global_plan(self, plans: List[SavePlan]) -> List[SavePlan]:
        if self._save is None:
            raise ValueError("ckptdb.dcp.Writer: no save was begun on the coordinator")
        if any(not getattr(p, "usable", True) for p in plans):
            raise ValueError("ckptdb.dcp.Writer: DCP plan caching (enable_plan_caching) is not supported: "
                             "every save has its own temp directory")
        return [dataclasses.replace(p, storage_data={"prefix": "__%d_" % i, "temp_name": self._save.temp_name})
                for i, p in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future:
        if getattr(planner, "_enable_plan_caching", False):  # refused at the first save, not only at the second
            raise ValueError("ckptdb.dcp.Writer: DCP plan caching (enable_plan_caching) is not supported: "
                             "every save has its own temp directory")
        sd = plan.storage_data
        if not isinstance(sd, dict) or "temp_name" not in sd:
            raise ValueError("ckptdb.dcp.Writer: the plan carries no temp directory (was it made by this writer?)")
        results: List[WriteResult] = []
        if plan.items:
            name = sd["prefix"] + "0.distcp"
            w = DirFileWriter(self.directory, sd["temp_name"], name, self._rank)
            try:
                stream = _Counted(w)
                byte_items = [i for i in plan.items if i.type == WriteItemType.BYTE_IO]
                tensor_items = [i for i in plan.items if i.type != WriteItemType.BYTE_IO]
                for item in byte_items:  # FileSystemWriter's order: bytes first, then the tensors
                    data = planner.resolve_data(item)
                    off = stream.tell()
                    stream.write(data.getbuffer())
                    n = stream.tell() - off
                    results.append(WriteResult(index=item.index, size_in_bytes=n,
                                               storage_data=_StorageInfo(name, off, n)))
                for item in tensor_items:
                    t = planner.resolve_data(item).detach().cpu()
                    if t.untyped_storage().size() != t.nbytes:
                        t = t.clone()  # only the tensor's own bytes, as FileSystemWriter does
                    off = stream.tell()
                    torch.save(t, stream)
                    n = stream.tell() - off
                    results.append(WriteResult(index=item.index, size_in_bytes=n,
                                               storage_data=_StorageInfo(name, off, n)))
                info = w.finish()
            finally:
                w.free()  # before finish: the file is removed; after: it stays for the commit
            results.append(WriteResult(index=MetadataIndex(FILE_FQN + name), size_in_bytes=info["size"],
                                       storage_data={"ckptdb_file": {k: info[k] for k in
                                                                     ("name", "rank", "size", "checksum")}}))
        fut: Future = Future()
        fut.set_result(results)
        return fut

    def finish(self, metadata: Metadata, results: List[List[WriteResult]]) -> None:
        save = self._save
        if save is None:
            raise ValueError("ckptdb.dcp.Writer: finish without a save begun on this coordinator")
        try:
            files: List[Dict[str, Any]] = []
            storage: Dict[MetadataIndex, Any] = {}
            for per_rank in results:
                for wr in per_rank:
                    if isinstance(wr.storage_data, dict) and "ckptdb_file" in wr.storage_data:
                        files.append(wr.storage_data["ckptdb_file"])
                    else:
                        storage[wr.index] = wr.storage_data
            # DCP hands every rank the Metadata finish completed (dcp.save returns it).
            metadata.version = DCP_VERSION
            metadata.storage_data = storage
            metadata.storage_meta = StorageMeta(checkpoint_id=save.name, save_id=str(uuid.uuid4()))
            have = {f["name"] for f in files}
            missing = sorted({si.relative_path for si in storage.values()} - have)
            if missing:
                raise Error(1, "ckptdb.dcp.Writer: no rank reported the file(s) %s" % ", ".join(missing))
            for fname, data in ((METADATA_FILE, encode_metadata(metadata)),
                                (PICKLE_METADATA_FILE, pickle.dumps(metadata))):
                w = DirFileWriter(self.directory, save.temp_name, fname, self._rank)
                try:
                    w.write(data)
                    files.append(w.finish())
                finally:
                    w.free()
            self.checkpoint = save.commit([{k: f[k] for k in ("name", "rank", "size", "checksum")} for f in files])
        finally:
            self._release()

    def __getstate__(self) -> Dict[str, Any]:
        # dcp.async_save's process executor pickles the writer into its save
        # process, which opens the catalog itself (set_up_storage_writer).
        if self._cat is not None:
            raise TypeError("ckptdb.dcp.Writer: a Writer made with an open Catalog cannot be pickled (dcp.async_save "
                            "with AsyncCheckpointerType.PROCESS pickles it into its save process): make it with the "
                            "checkpoint directory, %s, and that process opens the catalog itself" % self.directory)
        st = dict(self.__dict__)
        st.update(_save=None, _own_cat=None, checkpoint=None)  # this process's save and handle stay here
        return st

    def _release(self) -> None:
        """Free this writer's DirSave (aborted unless committed) and the catalog it opened."""
        s, self._save = self._save, None
        if s is not None:
            s.free()
        c, self._own_cat = self._own_cat, None
        if c is not None:
            c.close()

    def close(self) -> None:
        """Abort a save DCP never finished (a rank failed) and close what this writer opened."""
        self._release()

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:
            pass


# -- loading ----------------------------------------------------------------

def _is_dcp(cat: Catalog, e: Checkpoint) -> bool:
    """A directory checkpoint with the metadata file of ckptdb.dcp."""
    return e.layout == "dir" and any(f.name == METADATA_FILE for f in cat.files(e.id))


class Reader(StorageReader):
    """A DCP StorageReader of the catalog in `cat_or_directory` (an open
    Catalog, used by rank 0, or the checkpoint directory: rank 0 then opens
    the catalog to pick).  id=None: the newest complete DCP checkpoint
    (a directory checkpoint with METADATA_FILE), of the given kind when
    one is, that verifies in full; an id or name: that one, verified.
    process_group: the group dcp.load runs over (None: the default group);
    rank 0 of it picks and broadcasts.  After read_metadata, .checkpoint
    is the Checkpoint loaded (on every rank).  weights_only=True (the
    default): every non-tensor value is first loaded with torch's safe
    loader (weights_only=True) before DCP's planner unpickles it, and one
    holding anything but tensors and plain types raises UnsafeCheckpoint:
    loading never runs code from the checkpoint.  Pass weights_only=False
    only for a trusted checkpoint.

    mark_resumed=True (the default): once rank 0's own reads succeeded
    (every rank's plan was made; DCP has no hook after the other ranks'
    reads), rank 0 records in the catalog that this run resumed from the
    checkpoint (Catalog.mark_resumed; not on a read-only Catalog), as
    CheckpointManager.resume does.  verify=False skips the verification
    of a checkpoint asked for by id that the caller just verified."""

    def __init__(self, cat_or_directory: Union[Catalog, StrPath], id: Union[int, str, None] = None,
                 process_group: Any = None, kind: Optional[str] = None, weights_only: bool = True,
                 mark_resumed: bool = True, verify: bool = True) -> None:
        super().__init__()
        if isinstance(cat_or_directory, Catalog):
            self._cat: Optional[Catalog] = cat_or_directory
            self.directory = cat_or_directory.directory
        else:
            self._cat = None
            self.directory = os.path.abspath(os.fspath(cat_or_directory))
        self.id = id
        self.kind = kind
        self.process_group = process_group
        self.weights_only = weights_only
        self.mark_resumed = mark_resumed
        self.verify = verify
        self.checkpoint: Optional[Checkpoint] = None
        #: The Metadata read_metadata returned (every saved key: .state_dict_metadata).
        self.metadata: Optional[Metadata] = None
        self._picker = False  # this rank picked the checkpoint (rank 0 of the group)
        self.path: Optional[str] = None
        self.storage_data: Dict[MetadataIndex, Any] = {}

    def reset(self, checkpoint_id: Any = None) -> None:
        """Called by DCP only for dcp.load(..., checkpoint_id=X): load X (an id or a name)."""
        self.storage_data = {}
        if checkpoint_id is not None:
            self.id = checkpoint_id if isinstance(checkpoint_id, int) else os.fspath(checkpoint_id)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        return False

    def _pick(self) -> Dict[str, Any]:
        """Rank 0: the checkpoint to load and its metadata file, read verified."""
        cat, own = self._cat, None
        if cat is None:
            cat = own = Catalog(self.directory)
        try:
            if self.id is None:
                e = cat.latest(self.kind)  # full verification: one that fails is marked corrupt and passed over
                if e is not None and not _is_dcp(cat, e):  # the newest is no DCP checkpoint: the newest that is
                    e = next((c for c in cat.newest_first(self.kind) if _is_dcp(cat, c) and cat.verify(c.id)), None)
                if e is None:
                    raise NotFound(NotFound.code, "ckptdb.dcp.Reader: no DCP checkpoint%s verifies in %s"
                                   % ("" if self.kind is None else " of kind %r" % self.kind, self.directory))
            else:
                e = cat.get(self.id)
                if e.status != "complete" or not _is_dcp(cat, e):
                    raise Error(1, "ckptdb.dcp.Reader: checkpoint %s is %s, not a complete DCP checkpoint"
                                % (e.name, e.status))
                if self.verify and not cat.verify(e.id):
                    raise Error(1, "ckptdb.dcp.Reader: checkpoint %s does not verify" % e.name)
            return {"checkpoint": e, "metadata": cat.read(e.id, file=METADATA_FILE)}
        finally:
            if own is not None:
                own.close()

    def read_metadata(self) -> Metadata:  # no **kwargs: DCP makes no rank-local second call
        use_dist = dist.is_available() and dist.is_initialized()
        pick: Dict[str, Any]
        self._picker = not use_dist or dist.get_rank(self.process_group) == 0
        if self._picker:
            try:
                pick = self._pick()
            except Exception as e:
                if not use_dist:
                    raise
                pick = {"text": "%s: %s" % (type(e).__name__, e)}  # told to every rank, so none waits
        else:
            pick = {}
        if use_dist:
            box = [pick]
            src = dist.get_global_rank(self.process_group, 0) if self.process_group is not None else 0
            dist.broadcast_object_list(box, src=src, group=self.process_group)
            pick = box[0]
        if "text" in pick:
            raise Error(1, "ckptdb.dcp.Reader: rank 0 could not pick a checkpoint: %s" % pick["text"])
        md = decode_metadata(pick["metadata"])
        self.checkpoint = pick["checkpoint"]
        self.path = self.checkpoint.path
        if md.storage_meta is None:
            md.storage_meta = StorageMeta()
        md.storage_meta.load_id = str(uuid.uuid4())
        self.storage_data = dict(md.storage_data)
        self.metadata = md
        return md

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.storage_data = dict(metadata.storage_data)

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: List[LoadPlan]) -> List[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future:
        if self.path is None:
            raise ValueError("ckptdb.dcp.Reader: read_data before read_metadata")
        per_file: Dict[str, List[Any]] = {}
        for req in plan.items:
            si = self.storage_data[req.storage_index]
            if si.transform_descriptors:
                raise ValueError("ckptdb.dcp.Reader: %r was saved with stream transforms" % (req.storage_index.fqn,))
            per_file.setdefault(si.relative_path, []).append(req)
        dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for fname, reqs in per_file.items():
                if "/" in fname or fname in ("", ".", ".."):
                    raise ValueError("ckptdb.dcp.Reader: bad file name %r in the metadata" % (fname,))
                fd = os.open(fname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                with os.fdopen(fd, "rb") as f:
                    for req in sorted(reqs, key=lambda r: self.storage_data[r.storage_index].offset):
                        si = self.storage_data[req.storage_index]
                        f.seek(si.offset)
                        data = f.read(si.length)
                        if len(data) != si.length:
                            raise Error(1, "ckptdb.dcp.Reader: %s is shorter than its metadata says" % fname)
                        if req.type == LoadItemType.BYTE_IO:
                            if self.weights_only:
                                # DCP's planner unpickles with weights_only=False:
                                # the safe loader sees the bytes first.
                                try:
                                    torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
                                except Exception as e:
                                    raise UnsafeCheckpoint("%s/%s (%s)" % (self.path, fname, req.storage_index.fqn),
                                                           str(e).splitlines()[0] if str(e) else type(e).__name__)
                            planner.load_bytes(req, io.BytesIO(data))
                            continue
                        t = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
                        t = narrow_tensor_by_index(t, req.storage_offsets, req.lengths)
                        target = planner.resolve_tensor(req).detach()
                        if target.size() != t.size():
                            raise ValueError("ckptdb.dcp.Reader: %r: %s read for %s" % (
                                req.storage_index.fqn, tuple(t.size()), tuple(target.size())))
                        target.copy_(t)
                        planner.commit_tensor(req, target)
        finally:
            os.close(dfd)
        if self._picker and self.mark_resumed and self.checkpoint is not None:
            self._mark_resumed(self.checkpoint.id)
        fut: Future = Future()
        fut.set_result(None)
        return fut

    def _mark_resumed(self, cid: int) -> None:
        if self._cat is not None:
            if not self._cat.readonly:
                self._cat.mark_resumed(cid)
            return
        with Catalog(self.directory) as cat:
            cat.mark_resumed(cid)

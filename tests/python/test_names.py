"""The default names of a sharded checkpoint come from the library
(ckptdb_default_name), and a lost catalog is rebuilt from them: the rank
files the binding writes are one checkpoint of their kind, epoch and step,
not unknown files.  Needs no torch."""

import ctypes
import os

import pytest

import ckptdb
from ckptdb import _lib
from ckptdb.distributed import ShardWriter, shard_names


def lib_name(kind, epoch, step, suffix, rank, world):
    buf = ctypes.create_string_buffer(256)
    _lib.lib.ckptdb_default_name(buf, len(buf), kind.encode(), epoch, step, 1700000000, suffix, rank, world)
    return buf.value.decode()


def test_shard_names_are_the_librarys_and_take_a_suffix_when_taken(tmp_path):
    assert shard_names(tmp_path, "epoch", 10, 100, 2) == ["epoch_010.rank0-of-2.pt", "epoch_010.rank1-of-2.pt"]
    assert shard_names(tmp_path, "step", 1, 500, 1) == [lib_name("step", 1, 500, 0, 0, 1)] == ["step_000500.rank0-of-1.pt"]
    (tmp_path / "epoch_010.rank1-of-2.pt").write_bytes(b"someone's")
    assert shard_names(tmp_path, "epoch", 10, 100, 2) == ["epoch_010-2.rank0-of-2.pt", "epoch_010-2.rank1-of-2.pt"]
    with pytest.raises(ckptdb.InvalidArgument, match="invalid checkpoint kind"):
        shard_names(tmp_path, "bad kind!", 1, 1, 2)
    with pytest.raises(ckptdb.InvalidArgument, match="world"):
        shard_names(tmp_path, "epoch", 1, 1, 0)


@pytest.mark.skipif(not _lib.HAS_SHARDS, reason="this libckptdb has no sharded saves")
def test_a_lost_catalog_is_rebuilt_with_the_rank_files_as_one_checkpoint(tmp_path):
    d = tmp_path / "ck"
    d.mkdir()
    names = shard_names(d, "epoch", 7, 70, 2)
    writers = [ShardWriter(d, n) for n in names]
    for r, w in enumerate(writers):
        w.write(b"rank %d bytes" % r)
    infos = [w.finish() for w in writers]
    with ckptdb.Catalog(d) as cat:
        cat.commit_shards(infos, kind="epoch", epoch=7, step=70)
    for w in writers:
        w.free()
    for n in os.listdir(d):
        if n.startswith("ckptdb.sqlite"):
            os.unlink(d / n)

    items = ckptdb.rebuild(d)
    assert [(i["kind"], i["name"]) for i in items] == [("rebuilt", "epoch_007.rank0-of-2.pt")], items
    with ckptdb.Catalog(d) as cat:
        [c] = cat.entries()
        assert (c.kind, c.epoch, c.step) == ("epoch", 7, 0)
        assert [(f.rank, f.name) for f in cat.files(c.id)] == list(enumerate(names))
        assert cat.verify(c.id)
        assert cat.read(c.id, rank=1) == b"rank 1 bytes"

"""A user's script of the public API, checked with mypy --strict against the
installed package (its py.typed hints); never run."""

from __future__ import annotations

import signal
from typing import Dict, List, Optional, Tuple

import ckptdb
from ckptdb import Catalog, Checkpoint, PruneItem, Retention, Trigger


def on_event(event: str, checkpoint_id: int, detail: str) -> None:
    print(event, checkpoint_id, detail)


def newest(directory: str) -> Optional[Checkpoint]:
    with Catalog(directory, readonly=True, create=False) as cat:
        return cat.latest(kind="epoch", verify="size")


def train(directory: str) -> int:
    ckptdb.install_signals((signal.SIGTERM, signal.SIGUSR1))
    policy = Retention(keep_last={"epoch": 5, "time": 3}, best_metric="val.loss", best_k=2)
    trigger = Trigger(every_epochs=1, every_seconds=600.0)
    step = 0
    try:
        with Catalog(directory, retention=policy, on_event=on_event) as cat:
            last: Optional[Checkpoint] = cat.latest()
            if last is not None:
                step = last.step
                trigger.resumed(step)
                cat.mark_resumed(last)
            for epoch in range(1, 4):
                step += 10
                kind: Optional[str] = trigger.check(epoch, step, epoch_end=True)
                if kind is not None:
                    with cat.save(kind=kind, epoch=epoch, step=step, metrics={"val": {"loss": 0.1}}) as f:
                        written: int = f.write(b"weights")
                    entry = f.entry
                    assert entry is not None and written == 7
                    trigger.saved(step)
                    metadata: Dict[str, object] = entry.metadata
                    print(entry.name, entry.size, entry.checksum, metadata)
                if trigger.should_stop():
                    break
            whole: bool = cat.verify(cat.entries(kind="epoch")[-1])
            checked, corrupt = cat.verify()
            gone: List[PruneItem] = cat.prune(dry_run=True)
            data: bytes = cat.read("epoch_001.pt")
            cat.pin(1)
            cat.unpin("epoch_001.pt")
            print(whole, checked + corrupt, [g.rule for g in gone], len(data), cat.events()[0]["event"])
    except ckptdb.NotFound as e:
        print(e.code, e.message, e.function)
        return 4
    except ckptdb.Error as e:
        return e.code
    finally:
        trigger.close()
        ckptdb.restore_signals()
    copied: Tuple[int, int, List[Dict[str, object]]] = ckptdb.sync(directory, directory + "-copy")
    print(copied[0], ckptdb.__version__, ckptdb.version(), ckptdb.preempt_requested())
    return 0


if __name__ == "__main__":
    raise SystemExit(train("ckpts"))

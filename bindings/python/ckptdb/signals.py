"""Preemption signals and save triggers (ckptdb_signals_*, ckptdb_trigger_*).

The library's handlers only set an async-signal-safe flag; the training loop
reads it at its next step and saves there.  Nothing runs inside a handler,
Python code included.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from ctypes import byref, c_char_p, c_int
from typing import Callable, Iterable, Optional

from . import _lib
from ._lib import lib


def install_signals(signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1),
                    chain: bool = False) -> None:
    """Make these signals set the preemption flag (and nothing else).

    chain=True also calls the handler that was installed before."""
    signals = list(signals)
    arr = (c_int * len(signals))(*[int(x) for x in signals])
    lib.ckptdb_signals_install(arr, len(signals), 1 if chain else 0)


def restore_signals() -> None:
    """Put back the handlers install_signals replaced."""
    lib.ckptdb_signals_restore()


def preempt_requested() -> int:
    """The first preemption signal received (or requested), 0 if none."""
    return lib.ckptdb_preempt_requested()


def request_preempt(signo: int = signal.SIGTERM) -> None:
    """Set the preemption flag as if signal signo had arrived."""
    lib.ckptdb_preempt_request(int(signo))


def clear_preempt() -> None:
    """Clear the preemption flag."""
    lib.ckptdb_preempt_clear()


class Trigger:
    """"Save now, and as what?" for a training loop (ckptdb_trigger).

    Defaults are the production ones: every 5 epochs or every 15 minutes,
    whichever comes first, and on preemption.  check() returns "preempt",
    "epoch", "step", "time" or None.
    """

    def __init__(self, every_epochs: int = 5, every_steps: int = 0, every_seconds: float = 900.0,
                 watch_signals: bool = True, clock: Optional[Callable[[], float]] = None) -> None:
        self._lock = threading.Lock()
        self._h = None
        o = _lib.TriggerOptions()
        lib.ckptdb_trigger_options_init(byref(o), _lib.TRIGGER_OPTIONS_VERSION)
        o.every_epochs = int(every_epochs)
        o.every_steps = int(every_steps)
        o.every_seconds = float(every_seconds)
        o.watch_signals = 1 if watch_signals else 0
        self._clock = None
        if clock is not None:
            self._clock = _lib.CLOCK_FN(lambda _p: float(clock()))
            o.clock = self._clock
        h = _lib.trigger_p()
        lib.ckptdb_trigger_new(byref(h), byref(o))
        self._h = h

    def check(self, epoch: int, step: int, epoch_end: bool = False) -> Optional[str]:
        """Whether to save at this step, and as what: "preempt", "epoch",
        "step", "time", or None.  epoch_end: this step ends an epoch."""
        with self._lock:
            k = c_char_p()
            lib.ckptdb_trigger_check(byref(k), self._h, int(epoch), int(step), 1 if epoch_end else 0)
            return k.value.decode() if k.value else None

    def saved(self, step: int) -> None:
        """Tell the trigger a checkpoint of this step was committed."""
        with self._lock:
            lib.ckptdb_trigger_saved(self._h, int(step))

    def resumed(self, step: int) -> None:
        """Tell the trigger the run resumed from a checkpoint of this step."""
        with self._lock:
            lib.ckptdb_trigger_resumed(self._h, int(step))

    def should_stop(self) -> bool:
        """True once a preemption checkpoint was saved: the loop should exit."""
        with self._lock:
            return bool(lib.ckptdb_trigger_should_stop(self._h))

    def close(self) -> None:
        """Free the trigger (also done when it is garbage collected)."""
        with self._lock:
            h, self._h = self._h, None
            if h:
                lib.ckptdb_trigger_free(h)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


del ctypes

"""Preemption signals and save triggers (ckptdb_signals_*, ckptdb_trigger_*).

The library's handlers only set an async-signal-safe flag; the training loop
reads it at its next step and saves there.  Nothing runs inside a handler,
Python code included.
"""

import ctypes
import signal
import threading
from ctypes import byref, c_char_p, c_int

from . import _lib
from ._lib import lib


def install_signals(signals=(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1), chain=False):
    """Make these signals set the preemption flag (and nothing else)."""
    arr = (c_int * len(signals))(*[int(x) for x in signals])
    lib.ckptdb_signals_install(arr, len(signals), 1 if chain else 0)


def restore_signals():
    lib.ckptdb_signals_restore()


def preempt_requested():
    """The first preemption signal received (or requested), 0 if none."""
    return lib.ckptdb_preempt_requested()


def request_preempt(signo=signal.SIGTERM):
    lib.ckptdb_preempt_request(int(signo))


def clear_preempt():
    lib.ckptdb_preempt_clear()


class Trigger:
    """"Save now, and as what?" for a training loop (ckptdb_trigger).

    Defaults are the production ones: every 5 epochs or every 15 minutes,
    whichever comes first, and on preemption.  check() returns "preempt",
    "epoch", "step", "time" or None.
    """

    def __init__(self, every_epochs=5, every_steps=0, every_seconds=900.0, watch_signals=True, clock=None):
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

    def check(self, epoch, step, epoch_end=False):
        with self._lock:
            k = c_char_p()
            lib.ckptdb_trigger_check(byref(k), self._h, int(epoch), int(step), 1 if epoch_end else 0)
            return k.value.decode() if k.value else None

    def saved(self, step):
        with self._lock:
            lib.ckptdb_trigger_saved(self._h, int(step))

    def resumed(self, step):
        with self._lock:
            lib.ckptdb_trigger_resumed(self._h, int(step))

    def should_stop(self):
        with self._lock:
            return bool(lib.ckptdb_trigger_should_stop(self._h))

    def close(self):
        with self._lock:
            h, self._h = self._h, None
            if h:
                lib.ckptdb_trigger_free(h)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


del ctypes

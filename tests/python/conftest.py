"""Shared by every file of the python suite (pytest loads it first)."""

import pytest

import ckptdb


@pytest.fixture(autouse=True)
def no_preempt_flag():
    """Each test starts and ends with no preemption flag and the signal
    handlers as they were."""
    ckptdb.clear_preempt()
    yield
    ckptdb.restore_signals()
    ckptdb.clear_preempt()

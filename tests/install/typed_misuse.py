"""Misuses of the API that mypy --strict must reject (the hints are seen):
each line marked 'error' is one.  Never run."""

from ckptdb import Catalog, Trigger

with Catalog("ckpts") as cat:
    cat.latest(kind=3)                       # error: kind is a str
    e = cat.latest()
    print(e.name)                            # error: e may be None
    n: int = cat.read(1)                     # error: read returns bytes
    cat.save(kind="epoch", epoch="one")      # error: epoch is an int
Trigger(every_seconds="15m")                 # error: every_seconds is a float

"""One exception hierarchy for every status code of the C ABI.

Every exception carries .code (the CKPTDB_E* status), .message (the
library's detailed text: paths, strerror) and .function (the C function
that failed).  Codes are never renumbered, so catching by class is stable.
"""


class Error(Exception):
    """Base of every ckptdb failure."""

    code = 1

    def __init__(self, code, message, function=""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.function = function


class Misuse(Error):
    code = 2


class InvalidArgument(Error, ValueError):
    code = 3


class NotFound(Error, LookupError):
    code = 4


class Exists(Error):
    code = 5


class IOFailure(Error):
    code = 6


class NoSpace(IOFailure):
    code = 7


class Corrupt(Error):
    code = 8


class Busy(Error):
    code = 9


class VersionMismatch(Error):
    code = 10


class NotCatalog(Error):
    code = 11


class Permission(Error):
    code = 12


class ReadOnly(Error):
    code = 13


class NoMemory(Error, MemoryError):
    code = 14


class DatabaseError(Error):
    code = 15


_BY_CODE = {c.code: c for c in (Misuse, InvalidArgument, NotFound, Exists, IOFailure, NoSpace, Corrupt, Busy,
                                VersionMismatch, NotCatalog, Permission, ReadOnly, NoMemory, DatabaseError)}


def error_for(code):
    """The exception class of a status code (Error for unknown codes)."""
    return _BY_CODE.get(code, Error)

"""Exceptions raised by hivemind_cpp.

The C++ library reports failures as absl::Status values; the extension turns every
non-OK status into one of these, carrying the status message. ``err.code`` is the
status code's name (for example ``"DEADLINE_EXCEEDED"``). Each class also derives
from the closest built-in exception, so ``except ValueError`` or
``except TimeoutError`` work as a Python user expects.
"""

__all__ = [
    "HivemindError",
    "CancelledError",
    "InvalidArgumentError",
    "DeadlineExceededError",
    "NotFoundError",
    "PermissionDeniedError",
    "FailedPreconditionError",
    "AbortedError",
    "UnimplementedError",
    "InternalError",
    "UnavailableError",
    "DataLossError",
]


class HivemindError(Exception):
    """Base of every error the library reports (``code``: the status code name)."""

    code = "UNKNOWN"


class CancelledError(HivemindError):
    """The object shut down, or the call was cancelled (kCancelled)."""


class InvalidArgumentError(HivemindError, ValueError):
    """A bad argument or option (kInvalidArgument, kOutOfRange)."""


class DeadlineExceededError(HivemindError, TimeoutError):
    """A timeout passed: no group formed, a peer did not answer (kDeadlineExceeded)."""


class NotFoundError(HivemindError, LookupError):
    """Nothing to find: no peer serves state, no such file (kNotFound)."""


class PermissionDeniedError(HivemindError, PermissionError):
    """The file system refused (kPermissionDenied)."""


class FailedPreconditionError(HivemindError, RuntimeError):
    """The object is in the wrong state for the call (kFailedPrecondition)."""


class AbortedError(HivemindError):
    """The group changed mid-round; retry the round (kAborted)."""


class UnimplementedError(HivemindError, NotImplementedError):
    """A newer peer's message or an unsupported feature (kUnimplemented)."""


class InternalError(HivemindError, RuntimeError):
    """A bug or an unexpected library failure (kInternal)."""


class UnavailableError(HivemindError, ConnectionError):
    """A peer or the DHT is unreachable; retrying may help (kUnavailable)."""


class DataLossError(HivemindError):
    """Corrupt bytes: a payload, a checkpoint, a state blob (kDataLoss)."""


# absl::StatusCode values (fixed by abseil) to classes; other codes raise
# HivemindError itself.
_BY_CODE = {
    1: CancelledError,
    3: InvalidArgumentError,
    4: DeadlineExceededError,
    5: NotFoundError,
    7: PermissionDeniedError,
    9: FailedPreconditionError,
    10: AbortedError,
    11: InvalidArgumentError,
    12: UnimplementedError,
    13: InternalError,
    14: UnavailableError,
    15: DataLossError,
}


def _from_status(code: int, code_name: str, message: str) -> HivemindError:
    """Builds the exception for a status (called by the extension)."""
    error = _BY_CODE.get(code, HivemindError)(message)
    error.code = code_name
    return error

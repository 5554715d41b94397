"""The library's log lines into Python's ``logging`` module (logger ``hivemind_cpp``).

The C++ library queues each line; a daemon thread here drains the queue into the
logger, so the library's own threads never wait for the GIL. ``flush()`` drains it
at once (at exit, and for tests).
"""

import atexit
import logging
import threading

from . import _core

logger = logging.getLogger("hivemind_cpp")

_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}
_lock = threading.Lock()  # one drainer at a time keeps the lines in order
_thread = None


def _emit(lines) -> None:
    for level, line in lines:
        logger.log(_LEVELS.get(level, logging.ERROR), "%s", line)


def flush(timeout: float = 0.0) -> None:
    """Writes every queued line to the logger (waiting up to ``timeout`` for one)."""
    with _lock:
        _emit(_core._drain_log(timeout))


def _run() -> None:
    while True:
        flush(0.2)


def start() -> None:
    """Routes the library's lines into ``logging`` (done once, at import)."""
    global _thread
    if _thread is not None:
        return
    _core._route_log(True)
    _thread = threading.Thread(target=_run, name="hivemind_cpp-log", daemon=True)
    _thread.start()
    atexit.register(flush)


def enable_verbose() -> None:
    """``verbose=True``: one line per averaging round, printed even where the
    application configured no logging (like hivemind's own log handler)."""
    if _core.get_log_level() not in ("debug", "info"):
        _core.set_log_level("info")
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)

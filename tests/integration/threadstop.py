"""Stop one thread of a process, not the whole process: ``ptrace(PTRACE_SEIZE)`` then
``PTRACE_INTERRUPT`` puts only that thread in a ptrace-stop (SIGSTOP would stop every thread).

It stands in for a daemon's main loop that hangs (on a FIFO, a stuck file system) while its other
threads (the control socket's) go on answering. Only for processes the test started itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from pathlib import Path

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WAIT_ALL = 0x40000000  # __WALL: wait for threads too

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _ptrace(request: int, tid: int) -> None:
    if _libc.ptrace(request, tid, None, None) == -1:
        error = ctypes.get_errno()
        raise OSError(error, f"ptrace({request:#x}, {tid}): {os.strerror(error)}")


@contextlib.contextmanager
def thread_stopped(tid: int) -> Iterator[None]:
    """Thread ``tid`` stays stopped inside the block (the main thread's tid is the pid)."""
    _ptrace(PTRACE_SEIZE, tid)
    try:
        _ptrace(PTRACE_INTERRUPT, tid)
        os.waitpid(tid, WAIT_ALL)  # the stop has happened
        yield
    finally:
        _ptrace(PTRACE_DETACH, tid)


def daemon_answers(socket: Path) -> Callable[[], bool]:
    """Whether the daemon behind ``socket`` answers a status request (within 5 s)."""
    from detoxd.client import ControlClient
    from detoxd.protocol import ControlError

    def answers() -> bool:
        try:
            return bool(ControlClient(socket).request("status", timeout=5.0).get("ok", True))
        except ControlError:
            return False
    return answers


@contextlib.contextmanager
def main_thread_stopped(pid: int, others_answer: Callable[[], bool], tries: int = 20) -> Iterator[None]:
    """The main thread of ``pid`` stopped while its other threads run. A thread stopped while it
    holds Python's GIL stops the whole interpreter: then it is let go and stopped again until
    ``others_answer()`` (e.g. :func:`daemon_answers`)."""
    for _ in range(tries):
        with thread_stopped(pid):
            if others_answer():
                yield
                return
    raise AssertionError(f"every one of {tries} stops of {pid}'s main thread stopped the others too")

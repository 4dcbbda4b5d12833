"""Stop one thread of a process, not the whole process: ``ptrace(PTRACE_SEIZE)`` then
``PTRACE_INTERRUPT`` puts only that thread in a ptrace-stop (SIGSTOP would stop every thread).

It stands in for a daemon's main loop that hangs (on a FIFO, a stuck file system) while its other
threads (the control socket's) go on answering. Only for processes the test started itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
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


# The calls a loop waits in (x86_64 numbers): stopped there, a thread holds neither Python's GIL
# (released around the call) nor, in the daemon, the engine's lock.
WAITING_CALLS = {"7": "poll", "23": "select", "232": "epoll_wait", "270": "pselect6", "271": "ppoll",
                 "281": "epoll_pwait"}


@contextlib.contextmanager
def main_thread_stopped(pid: int, others_answer: Callable[[], bool], timeout: float = 120.0
                        ) -> Iterator[None]:
    """The main thread of ``pid`` stopped where it waits for events, while its other threads
    run: a thread stopped holding Python's GIL would stop them all. A stop that lands elsewhere
    is let go; the next one comes once the others answer again (a stop makes the daemon's loop
    late, and it then writes about that: stopping again at once would land in that work)."""
    stopped_in: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not others_answer():
            continue
        with thread_stopped(pid):
            call = _syscall(pid)
            if call in WAITING_CALLS and others_answer():
                yield
                return
            stopped_in.append(call)
    raise AssertionError(f"{pid}'s main thread was never stopped while waiting in {timeout:.0f} s "
                         f"(stopped in system calls: {stopped_in})")


def _syscall(tid: int) -> str:
    """What the stopped thread was doing: its system call's number, or "running" (in user space)."""
    try:
        return Path(f"/proc/{tid}/task/{tid}/syscall").read_text().split()[0]
    except OSError as error:
        return str(error)

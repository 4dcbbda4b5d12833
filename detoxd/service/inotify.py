"""A minimal inotify binding for the hosts-file watcher.

watchdog covers the config directory, but its buffer pairs rename events with a delay and it
cannot watch a single bind-mounted file; restoring a tampered hosts file within milliseconds
needs the raw events, so this is a thin ctypes wrapper around the three libc calls.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_IGNORED = 0x00008000
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_HEADER = struct.Struct("iIII")
# CDLL(None) is the running process (which has libc): find_library would spawn ldconfig.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


@dataclass(frozen=True)
class Event:
    wd: int
    mask: int
    name: str


class Inotify:
    def __init__(self) -> None:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd: int = fd

    def add_watch(self, path: str, mask: int) -> int:
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), path)
        return int(wd)

    def remove_watch(self, wd: int) -> None:
        _libc.inotify_rm_watch(self.fd, wd)  # already gone when the file was replaced: fine

    def read_events(self) -> list[Event]:
        """Every event queued now (non-blocking; empty when there are none)."""
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        events: list[Event] = []
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            start = offset + _HEADER.size
            name = data[start:start + length].rstrip(b"\0").decode("utf-8", "surrogateescape")
            events.append(Event(wd, mask, name))
            offset = start + length
        return events

    def close(self) -> None:
        os.close(self.fd)

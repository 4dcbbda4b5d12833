"""Keeps detoxd's block in the hosts file: watches it and restores the block after tampering.

The guard never rewrites a file that is already correct (each write wakes resolvers and wears
disks) and never trusts a half-written file: an in-place tamper arrives as a truncate and then a
write, so it waits until the writer has closed the file (or gone quiet) before it looks, and it
re-checks after every event, including the events of its own writes: there is no cool-down
that could hide a tamper landing right after a restore.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detoxd.core import hosts
from detoxd.service import inotify
from detoxd.service.targets.hostsfile import HostsFile

log = logging.getLogger(__name__)

# After the writer closed the file (or renamed a new one in), the change is complete.
QUIET_AFTER_CLOSE = 0.002
# A bare modification may be a truncate with the write still to come: give the writer time.
QUIET_WHILE_WRITING = 0.030
# An empty file is half-way through a rewrite (nobody means an empty hosts file): wait longer
# before restoring on top of it, or the writer's lines land on (or beside) the restore.
QUIET_WHILE_EMPTY = 0.500
FILE_EVENTS = (inotify.IN_MODIFY | inotify.IN_CLOSE_WRITE | inotify.IN_ATTRIB
               | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF)
DIR_EVENTS = (inotify.IN_MOVED_TO | inotify.IN_CREATE | inotify.IN_DELETE
              | inotify.IN_MOVED_FROM | inotify.IN_CLOSE_WRITE)


@dataclass(frozen=True)
class Outcome:
    written: bool
    tampered: bool  # the block had been changed by someone else


class HostsGuard:
    def __init__(self, hosts_file: HostsFile, monotonic: Callable[[], float]) -> None:
        self.file = hosts_file
        self._monotonic = monotonic  # the daemon's clock: settle deadlines are compared with it
        self.path = Path(hosts_file.path)
        self.names: frozenset[str] = frozenset()
        self._order: Sequence[str] | None = None
        self._enforced_names: frozenset[str] | None = None  # None: not enforced yet
        self._managed: frozenset[str] = frozenset()  # names detoxd may have in the file now
        self._block_cache: tuple[frozenset[str], bytes, bytes] | None = None
        self._notify = inotify.Inotify()
        self._file_wd: int | None = None
        self._dir_wd = self._notify.add_watch(str(self.path.parent), DIR_EVENTS)
        self._watch_file()
        self._pending_since: float | None = None
        self._writer_open = False
        self._last_stat: tuple[int, int, int, int] | None = None
        self.in_sync = False

    # ---- what the daemon calls ----

    def fileno(self) -> int:
        return self._notify.fd

    def set_names(self, names: frozenset[str], order: Sequence[str] | None = None) -> Outcome:
        """Block ``names``: listed in ``order`` (the same names, each once) when given, else
        sorted. Within one run, a new order for the same names does not rewrite the block."""
        if order is not None and len(order) != len(names):
            raise ValueError("order must hold each of the names once")
        # No copy while nothing else is managed: at a million names a copy is 32 MB.
        self._managed = self._managed | names if self._managed else names
        self.names = names
        self._order = order
        return self.enforce()

    def handle_events(self) -> None:
        """Drain inotify; remember that the file changed and whether a writer is mid-write."""
        for event in self._notify.read_events():
            if event.mask & inotify.IN_Q_OVERFLOW:
                self._mark_pending(writer_open=False)
            elif event.wd == self._dir_wd:
                if event.name == self.path.name:
                    replaced = bool(event.mask & (inotify.IN_MOVED_TO | inotify.IN_CREATE))
                    if replaced:
                        self._watch_file()
                    self._mark_pending(writer_open=bool(event.mask & inotify.IN_CREATE))
            elif event.wd == self._file_wd:
                if event.mask & (inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_IGNORED):
                    self._watch_file()
                self._mark_pending(writer_open=bool(event.mask & inotify.IN_MODIFY)
                                   and not event.mask & inotify.IN_CLOSE_WRITE)

    def deadline(self) -> float | None:
        """Monotonic time at which the pending change is complete enough to check, or None."""
        if self._pending_since is None:
            return None
        quiet = QUIET_WHILE_WRITING if self._writer_open else QUIET_AFTER_CLOSE
        stat = self._stat()
        if stat is not None and stat[1] == 0:
            # Nobody means an empty hosts file: a rewrite is under way, whatever the events said
            # (a truncate can come before the watch on a just-replaced file exists).
            quiet = QUIET_WHILE_EMPTY
        return self._pending_since + quiet

    def settle(self, now: float) -> Outcome | None:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        return self.enforce()

    def verify(self, *, full: bool = False) -> None:
        """The periodic check for changes inotify did not report (a lost event, a watch on a
        replaced file): a cheap stat, or with ``full`` a read and compare.

        A change found here goes through the same settling as an event: the file may be in the
        middle of a rewrite, and restoring on top of a half-written file loses the writer's
        lines (with a rename-based restore, the rest of its write lands in the replaced inode).
        """
        if self._pending_since is not None:
            return  # already being settled
        changed = self._stat() != self._last_stat
        if changed or (full and self._desired(current := self.file.read()) != current):
            self._watch_file()
            self._mark_pending(writer_open=True)

    def enforce(self) -> Outcome:
        """Make the file hold exactly the block for ``names``; raises OSError (then out of sync)."""
        self._pending_since = None
        self._writer_open = False
        self.in_sync = False
        current = self.file.read()
        desired = self._desired(current)
        written = current != desired and self.file.write(desired)
        if written:
            self._watch_file()  # a rename made a new file: watch it now, not once the event is read
        # apply() leaves an intact block and every user edit outside it alone, so a rewrite
        # while the names are unchanged means someone damaged or removed the block.
        tampered = written and bool(self.names) and self._enforced_names == self.names
        self._enforced_names = self.names
        if not self.names:
            self._managed = frozenset()
        self._last_stat = self._stat()
        self.in_sync = True
        return Outcome(written, tampered)

    def retry_after(self, seconds: float) -> None:
        """After a failed write (a full disk): enforce again once ``seconds`` have passed, so
        that "retrying every second" is true even when the file does not change meanwhile."""
        self.in_sync = False
        self._pending_since = self._monotonic() + seconds - QUIET_AFTER_CLOSE
        self._writer_open = False

    def close(self) -> None:
        self._notify.close()

    # ---- internals ----

    def _desired(self, current: bytes) -> bytes:
        if not self.names:
            return hosts.strip(current, self._managed)
        return hosts.apply(current, self._block(hosts.newline_of(current)), self._managed)

    def _block(self, newline: bytes) -> bytes:
        cached = self._block_cache
        if cached is None or cached[0] != self.names or cached[1] != newline:
            block = (hosts.render_block(self.names, newline) if self._order is None
                     else hosts.render_block_in_order(self._order, newline))
            cached = (self.names, newline, block)
            self._block_cache = cached
        return cached[2]

    def _mark_pending(self, *, writer_open: bool) -> None:
        self._pending_since = self._monotonic()
        self._writer_open = writer_open

    def _watch_file(self) -> None:
        if self._file_wd is not None:
            self._notify.remove_watch(self._file_wd)
            self._file_wd = None
        try:
            self._file_wd = self._notify.add_watch(str(self.path), FILE_EVENTS)
        except FileNotFoundError:
            self._mark_pending(writer_open=False)  # deleted: enforce() recreates it

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

"""Keeps detoxd's block in the hosts file: watches it and restores the block after tampering.

The guard never rewrites a file that is already correct (each write wakes resolvers and wears
disks) and re-checks after every event, including the events of its own writes: there is no
cool-down that could hide a tamper landing right after a restore.

**Settling, bounded.** An in-place tamper arrives as a truncate and then a write, so after a
change the guard waits for the writer to close the file (then it looks at once) or to go quiet
(30 ms) before it looks — but never longer than :data:`SETTLE_CAP` (50 ms) after the first change
of a burst, whatever follows: a writer in a loop (a truncate every 20 ms, a byte every 20 ms)
cannot keep the block out by never going quiet, and once it has written over a restore made under
it, its further changes are restored at once (it is a loop). A file someone still writes is
restored *in place* (the same inode), so the rest of their write lands in the file, not in a
replaced inode; when it then overwrites the start of the restored block, the guard takes their
bytes as the user's text and drops the torn tail of its own (:func:`_writer_bytes_over`). A byte
written into the block (the marker line left as it was) is an edit of the block, not their text.
Under a loop the block is back within about a millisecond (an append or a one-page patch, fsynced
at the next periodic look: see :mod:`hostsfile`); benchmarks/guard_restore.py measures it.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from detoxd.core import hosts
from detoxd.service import inotify, state_store
from detoxd.service.targets.hosts.fsops import HostsFileError
from detoxd.service.targets.hosts.hostsbytes import common_tail_start
from detoxd.service.targets.hosts.hostsfile import DEFAULT_READ_LIMIT, ChangedSinceRead, HostsFile

log = logging.getLogger(__name__)

# After the writer closed the file (or renamed a new one in), the change is complete: only the
# events already on their way (a rename after the close) are worth waiting for. Short: under a
# truncate loop every 20 ms, each millisecond here is 5 % of the time without the block.
QUIET_AFTER_CLOSE = 0.0
# A bare modification may be a truncate with the write still to come: give the writer time.
QUIET_WHILE_WRITING = 0.030
# The longest a change waits for its writer, from the first event of a burst.
SETTLE_CAP = 0.050
_BLOCK_START = b"# BEGIN detoxd block"  # both variants of the begin marker start so
# How long after a restore under a writer its late bytes are still told from the restore's.
WRITER_GRACE = 5.0
FILE_EVENTS = (inotify.IN_MODIFY | inotify.IN_CLOSE_WRITE | inotify.IN_ATTRIB
               | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF)
# The user's own text in the hosts file (everything but detoxd's block) detoxd handles: the
# memory a restore costs stays under twice the file's size plus 64 MiB (the read, the user's
# text, a copy of it with lines held, the result). Larger: reported, not enforced.
USER_TEXT_LIMIT = 32 << 20
# Bytes per name in the block beyond the name itself, twice (the IPv4 and the IPv6 line, CRLF).
_BLOCK_BYTES_PER_NAME = 18
DIR_EVENTS = (inotify.IN_MOVED_TO | inotify.IN_CREATE | inotify.IN_DELETE
              | inotify.IN_MOVED_FROM | inotify.IN_CLOSE_WRITE)


@dataclass(frozen=True)
class Outcome:
    written: bool
    tampered: bool  # the block had been changed by someone else
    # Lines of the user's that gave a blocked name another address, commented out by this write.
    neutralised: tuple[hosts.Neutralised, ...] = ()


class HostsGuard:
    def __init__(self, hosts_file: HostsFile, monotonic: Callable[[], float]) -> None:
        self.file = hosts_file
        self._monotonic = monotonic  # the daemon's clock: settle deadlines are compared with it
        self.path = Path(hosts_file.path)
        self.names: frozenset[str] = frozenset()
        self._order: Sequence[str] | None = None
        self._enforced_names: frozenset[str] | None = None  # None: not enforced yet
        self._enforced_order: Sequence[str] | None = None
        self._managed: frozenset[str] = frozenset()  # names detoxd may have in the file now
        self._block_cache: tuple[frozenset[str], bytes, bytes] | None = None
        self._digest_cache: tuple[bytes, str] | None = None  # a block and its digest
        # (file digest, order digest) of a file known to be as enforce leaves it for that order
        # (hosts-block.json, at start: see expect); used once.
        self._expected: tuple[str, str] | None = None
        # (stat, order, file digest, order digest) of the file last recorded (file_record)
        self._file_record: tuple[tuple[int, int, int, int] | None, Sequence[str], str, str] | None = None
        self._notify = inotify.Inotify()
        self._file_wd: int | None = None
        self._dir_wd = self._notify.add_watch(str(self.path.parent), DIR_EVENTS)
        self._watch_file()
        self._pending_since: float | None = None  # the first change of the burst being settled
        self._last_change = 0.0  # the latest change of that burst
        self._not_before = 0.0  # after a failure: the retry's time
        self._writer_open = False
        self._last_stat: tuple[int, int, int, int] | None = None
        self._in_sync = False
        # A restore made in place while a writer still wrote, and when (see the module notes).
        self._restored_under_writer: tuple[bytes, float] | None = None

    # ---- what the daemon calls ----

    def fileno(self) -> int:
        return self._notify.fd

    def set_names(self, names: frozenset[str], order: Sequence[str] | None = None) -> Outcome:
        """Block ``names``: listed in ``order`` (the same names, each once) when given, else
        sorted. Within one run, a new order for the same names does not rewrite the block."""
        if order is not None and len(order) != len(names):
            raise ValueError("order must hold each of the names once")
        if names is self.names is self._enforced_names and order is self._enforced_order and names \
                and self._untouched():
            # The very names just enforced, and the file as that left it (a start applies them
            # twice: the second read and compare of a million names' block is not needed).
            return Outcome(False, False, ())
        # No copy while nothing else is managed: at a million names a copy is 32 MB.
        # Nor when the same names come again (a start applies them twice).
        if names is self._managed or not names:
            managed = self._managed
        else:
            managed = self._managed | names if self._managed else names
        if managed is not self._managed:
            self.file.limit = read_limit(managed)
        self._managed = managed
        self.names = names
        self._order = order
        # A change still settling is someone's write: restore in place if they may still write.
        return self.enforce(under_writer=self._pending_since is not None and self._writer_open)

    def _untouched(self) -> bool:
        """In sync, and no event waiting to be read either (a change not handled yet)."""
        return self.in_sync and not select.select([self._notify.fd], [], [], 0)[0]

    def handle_events(self) -> None:
        """Drain inotify; remember that the file changed and whether a writer is mid-write
        (it modified the file and has not closed it since)."""
        for event in self._notify.read_events():
            if event.mask & inotify.IN_Q_OVERFLOW:
                self._mark_pending()
            elif event.wd == self._dir_wd:
                if event.name == self.path.name:
                    if event.mask & (inotify.IN_MOVED_TO | inotify.IN_CREATE):
                        self._watch_file()  # a new file: its own writer, if any, is new too
                        self._mark_pending(writer_open=bool(event.mask & inotify.IN_CREATE))
                    else:
                        self._mark_pending()
            elif event.wd == self._file_wd:
                if event.mask & (inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_IGNORED):
                    self._watch_file()
                if event.mask & inotify.IN_CLOSE_WRITE:
                    self._mark_pending(writer_open=False)
                elif event.mask & inotify.IN_MODIFY:
                    self._mark_pending(writer_open=True)
                else:
                    self._mark_pending()

    @property
    def enforced(self) -> bool:
        """The last try to enforce succeeded."""
        return self._in_sync

    @property
    def in_sync(self) -> bool:
        """The file is as it should be: enforced, no change seen since, and stat says the same
        file as after the last look (read now, not remembered)."""
        return self._in_sync and self._pending_since is None and self._stat() == self._last_stat

    def deadline(self) -> float | None:
        """Monotonic time at which the pending change is complete enough to check, or None."""
        if self._pending_since is None:
            return None
        # A writer that wrote over a restore made under it is a loop: waiting for it to go
        # quiet only keeps the block out (its bytes over the restore are told apart anyway).
        remembered = self._restored_under_writer
        looping = remembered is not None and self._last_change - remembered[1] <= WRITER_GRACE
        quiet = QUIET_WHILE_WRITING if self._writer_open and not looping else QUIET_AFTER_CLOSE
        settled = min(self._pending_since + SETTLE_CAP, self._last_change + quiet)
        return max(settled, self._not_before)

    def settle(self, now: float) -> Outcome | None:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        # The writer has not closed the file (quiet, or cut short by the cap): it may still
        # write, so the restore goes into the same inode.
        return self.enforce(under_writer=self._writer_open)

    def verify(self, *, full: bool = False) -> None:
        """The periodic check for changes inotify did not report (a lost event, a watch on a
        replaced file): a cheap stat, or with ``full`` a read and compare.

        A change found here goes through the same settling as an event: the file may be in the
        middle of a rewrite, and restoring on top of a half-written file loses the writer's
        lines (with a rename-based restore, the rest of its write lands in the replaced inode).
        """
        if self._pending_since is not None:
            return  # already being settled
        self.file.sync()  # settled: an append under a loop is made durable here (hostsfile)
        changed = self._stat() != self._last_stat
        if changed or (full and self._desired(current := self.file.read()).text != current):
            self._watch_file()
            self._mark_pending(writer_open=True)  # unknown: as if a writer were at it

    def enforce(self, *, under_writer: bool = False) -> Outcome:
        """Make the file hold exactly the block for ``names``; raises OSError (then out of sync).
        ``under_writer``: someone may still be writing the file (module notes)."""
        # Changed since the last look (an event not settled yet, or unseen): whoever changed
        # it, the change is judged below, also when new names are applied in the same write.
        touched = self._pending_since is not None or self._stat() != self._last_stat
        self._pending_since = None
        self._writer_open = False
        self._in_sync = False
        current = self._read_after_writer()
        # The file detoxd left for this very order (see expect): nothing to render or compare.
        desired = hosts.Desired(current, ()) if self._as_expected(current) else self._desired(current)
        try:
            written = self.file.write(desired.text, current, in_place=under_writer)
        except ChangedSinceRead:
            # Someone wrote since the read (a big write seen half done): restoring now would
            # overwrite the rest of their bytes. Their change settles first, then a new look.
            self._mark_pending(writer_open=True)
            return Outcome(False, False, ())
        if written and under_writer:
            self._restored_under_writer = (desired.text, self._monotonic())
        if written:
            self._watch_file()  # a rename made a new file: watch it now, not once the event is read
            self._absorb_own_write(desired.text)
        # apply() leaves an intact block and every user edit outside it alone, so a rewrite
        # while the names are unchanged means someone damaged the block or overrode a name.
        # With new names (a config change), the file is judged by the names it was left with:
        # a tamper that lands just before the new block is written is counted too.
        tampered = written and bool(self.names) and (
            self._enforced_names == self.names or (touched and self._damaged_for_enforced(current)))
        self._enforced_names = self.names
        self._enforced_order = self._order
        if not self.names:
            self._managed = frozenset()
        self._last_stat = self._stat()
        self._in_sync = True
        return Outcome(written, tampered, desired.neutralised if written else ())

    def expect(self, file_digest: str, order_digest: str) -> None:
        """The next enforce may take a file with ``file_digest`` as it is, when the order it
        enforces has ``order_digest``: such a file is one this guard's enforce left in sync for
        that order (hosts-block.json says so), and enforce leaves such a file as it is (it never
        rewrites a correct file). Anything else is rendered and compared as always."""
        self._expected = (file_digest, order_digest)

    def _as_expected(self, current: bytes) -> bool:
        expected, self._expected = self._expected, None
        order = self._order
        return (expected is not None and order is not None and bool(self.names)
                and state_store.file_digest(current) == expected[0]
                and state_store.order_digest(order) == expected[1])

    def file_record(self) -> tuple[str, str] | None:
        """(file digest, order digest) of the file as it is, while it is as the last enforce left
        it (in sync, no event queued); None otherwise. Read and hashed once for each change."""
        order = self._enforced_order
        if order is None or not self.names or not self._untouched():
            return None
        known = self._file_record
        if known is not None and known[0] == self._last_stat and known[1] is order:
            return known[2], known[3]
        text = self.file.read()
        if self._stat() != self._last_stat:
            return None  # changed while read
        self._file_record = (self._last_stat, order, state_store.file_digest(text),
                             state_store.order_digest(order))
        return self._file_record[2], self._file_record[3]

    def block_digest(self) -> tuple[str, frozenset[str]] | None:
        """The digest of the block in the file (:func:`state_store.block_digest`) and its names,
        while the file is as the last enforce left it; None otherwise (not known)."""
        cached = self._block_cache
        if not self.in_sync or cached is None or cached[0] is not self.names \
                or self._enforced_names is not self.names:
            return None
        block = cached[2]
        digest = self._digest_cache
        if digest is None or digest[0] is not block:
            digest = self._digest_cache = (block, state_store.block_digest(block))
        return digest[1], self.names

    def overrides_in_file(self) -> tuple[hosts.Neutralised, ...]:
        """Lines of the file as it is now that give a blocked name another address (none when
        it cannot be read: that failure is reported by enforce)."""
        if not self.names:
            return ()
        try:
            current = self.file.read()
            return hosts.neutralise(hosts.split(current, self._managed, USER_TEXT_LIMIT).user_text,
                                    self.names)[1]
        except (OSError, hosts.TooMuchUserText):
            return ()

    def retry_after(self, seconds: float) -> None:
        """After a failed write (a full disk, an odd file): enforce again once ``seconds`` have
        passed, so that "retrying every second" is true even when the file does not change
        meanwhile, and not before (events of a file being written in a loop)."""
        self._in_sync = False
        now = self._monotonic()
        self._pending_since = now
        self._last_change = now
        self._not_before = now + seconds
        self._writer_open = False

    def close(self) -> None:
        try:
            self.file.sync()
        except OSError as error:
            log.warning("could not fsync %s: %s", self.path, error.strerror or error)
        self._notify.close()

    # ---- internals ----

    def _read_after_writer(self) -> bytes:
        """The file (once an interrupted write is finished); after a restore under a writer
        that has written since, the writer's bytes without the torn tail of the restore."""
        self.file.settle_journal()
        current = self.file.read()
        remembered = self._restored_under_writer
        if remembered is None:
            return current
        restored, when = remembered
        if current != restored or self._monotonic() - when > WRITER_GRACE:
            self._restored_under_writer = None
        return _writer_bytes_over(current, restored) if current != restored else current

    def _desired(self, current: bytes) -> hosts.Desired:
        return self._desired_for(current, self.names, self._order)

    def _damaged_for_enforced(self, current: bytes) -> bool:
        """Whether ``current`` is not as it should be for the names last enforced (someone
        changed it since, beyond their own lines)."""
        names = self._enforced_names
        if not names:
            return False
        return self._desired_for(current, names, self._enforced_order).text != current

    def _desired_for(self, current: bytes, names: frozenset[str],
                     order: Sequence[str] | None) -> hosts.Desired:
        try:
            if not names:
                return hosts.Desired(hosts.strip(current, self._managed, max_user_bytes=USER_TEXT_LIMIT), ())
            return hosts.desired(current, self._block(hosts.newline_of(current), names, order), self._managed,
                                 blocked=names, max_user_bytes=USER_TEXT_LIMIT)
        except hosts.TooMuchUserText as error:
            raise HostsFileError(errno.EFBIG, f"{self.path} holds {error.size >> 20} MiB besides "
                                 f"detoxd's block, more than the {USER_TEXT_LIMIT >> 20} MiB detoxd handles",
                                 "keep large block lists out of the hosts file: name them under lists: "
                                 "in /etc/detoxd/blocklist.yaml", self.path) from None

    def _block(self, newline: bytes, names: frozenset[str], order: Sequence[str] | None) -> bytes:
        cached = self._block_cache
        if cached is not None and (cached[0] is names or cached[0] == names) and cached[1] == newline:
            return cached[2]
        block = (hosts.render_block(names, newline) if order is None
                 else hosts.render_block_in_order(order, newline))
        if names is self.names:  # the old names' block is needed once, at a change: not kept
            self._block_cache = (names, newline, block)
        return block

    def _absorb_own_write(self, desired: bytes) -> None:
        """Our own write's inotify events are not a change: without this, every restore was
        followed by a settle of its own echo, and status said "out of sync" for that time.
        The kernel queued them during the write, so they are drained now; what anyone wrote
        since then shows in the read that follows (and in its own events, still to come)."""
        overflowed = any(event.mask & inotify.IN_Q_OVERFLOW for event in self._notify.read_events())
        self._watch_file()  # the file at the path now, should it have been replaced meanwhile
        if overflowed or self.file.read() != desired:
            self._mark_pending(writer_open=True)

    def _mark_pending(self, *, writer_open: bool | None = None) -> None:
        """A change: ``writer_open`` says whether a writer now has the file open for writing
        (None: this event does not tell)."""
        now = self._monotonic()
        if self._pending_since is None:
            self._pending_since = now  # the first change of a burst: the cap counts from here
            self._writer_open = False
        self._last_change = now
        if writer_open is not None:
            self._writer_open = writer_open

    def _watch_file(self) -> None:
        """Watch the file at the path now. The same file keeps its watch (and the events queued
        for it: a truncate right after a restore is not lost to a new watch)."""
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                # A FIFO, a device (a link to /dev/null sees every write on the machine): not
                # watched. enforce() reports it and retries; the directory's watch sees it go.
                self._unwatch_file()
                self._mark_pending()
                return
            wd = self._notify.add_watch(str(self.path), FILE_EVENTS)
        except OSError:
            self._unwatch_file()
            self._mark_pending()  # deleted (or odd): enforce() says what
            return
        if wd != self._file_wd:
            self._unwatch_file()
            self._file_wd = wd

    def _unwatch_file(self) -> None:
        if self._file_wd is not None:
            self._notify.remove_watch(self._file_wd)
            self._file_wd = None

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:  # gone, or a link loop, a path through a file: enforce() says what
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _writer_bytes_over(current: bytes, restored: bytes) -> bytes:
    """``current`` after a restore of ``restored`` in place, under a writer that went on
    writing where it was (after the user's text the restore kept, over the block): the writer's
    bytes, to the end of its last line, without the torn tail of the block; ``current`` itself
    when the file is not that (the writer wrote past the block, truncated again, or someone
    changed the user's text before the block).

    The writer truncated the file before it began, so everything it meant comes before the
    point from which the file still equals the restore."""
    if len(current) != len(restored) or current == restored:
        return current
    view_current, view_restored = memoryview(current), memoryview(restored)
    block_at = restored.rfind(b"\n" + _BLOCK_START) + 1
    if view_current[:block_at] != view_restored[:block_at]:
        return current  # a change before the block: not the writer going on
    marker_end = restored.find(b"\n", block_at) + 1
    if view_current[block_at:marker_end] == view_restored[block_at:marker_end]:
        return current  # the marker line untouched: an edit inside the block (a pwrite), not
        # a writer going on from where it was (it writes from the block's first byte)
    low = common_tail_start(view_current, view_restored, block_at)
    line_end = current.find(b"\n", max(low - 1, 0))
    return current if line_end == -1 else current[:line_end + 1]


def read_limit(managed: Collection[str]) -> int:
    """The largest hosts file read while these names are (or were) detoxd's: their block and the
    user's text, and never less than the default (an old block of names no longer managed)."""
    block = 2 * sum(map(len, managed)) + _BLOCK_BYTES_PER_NAME * len(managed) + 4096
    return max(DEFAULT_READ_LIMIT, block + USER_TEXT_LIMIT)

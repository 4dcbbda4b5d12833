"""The detox's event journal: append-only JSON lines in ``/var/lib/detoxd/journal/``.

What the report is built from (:mod:`detoxd.core.report`). The rest of the daemon calls one
function, never waits on it and never sees it fail::

    from detoxd.service import journal
    journal.record("tamper", target="hosts_file", restored="block of 145 names")

Properties, and why:

- **Append-only, one ``write()`` per event** on an ``O_APPEND`` descriptor, so events never
  interleave and only the last line can be torn: by a power cut, or by ``kill -9`` (Linux stops
  a write that crosses a page boundary when a fatal signal is pending). On opening, a torn last
  line is cut off; a reader skips it, and any line that is not a complete JSON object (counted,
  never fatal).
- **Versioned**: every line carries ``"v": 1``; a reader skips (and counts) lines of a newer
  version instead of guessing their meaning.
- **Size-bounded**: segments ``journal-00000001.jsonl``, … of at most ``segment_bytes``; a new
  one is started when the current one would overflow, and only the newest ``segments`` are kept
  (default 8 × 1 MiB). A line is at most ``MAX_EVENT_BYTES``: a bigger event is journalled
  as its kind with ``"truncated": true``.
- **Never stops enforcement**: a full disk, a read-only or vanished directory only drops the
  event (counted; a partial write is truncated away), logged at most once a minute; the next
  event that fits first records a ``journal_gap`` with how many were lost.
- **Durable within a second**: the segment is ``fdatasync``ed at most once a second, by the
  next event or by :meth:`Journal.sync` (the daemon calls it from its tick).

Each line: ``{"v": 1, "seq": 42, "at": "2026-12-01T09:30:00+00:00", "kind": "...", ...fields}``;
``seq`` increases by one per event across segments and restarts, so a reader can see gaps.
Event kinds and their fields are listed in :data:`KINDS` (and in docs/report.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detoxd.clock import Clock
from detoxd.durable import fsync_directory

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
DIRECTORY_NAME = "journal"
SEGMENT_BYTES = 1024 * 1024
SEGMENTS_KEPT = 8
MAX_EVENT_BYTES = 16 * 1024
SYNC_SECONDS = 1.0
FAILURE_LOG_SECONDS = 60.0
DIR_MODE = 0o700
FILE_MODE = 0o600
RESERVED_FIELDS = frozenset({"v", "seq", "at", "kind"})
_SEGMENT_NAME = re.compile(r"^journal-(\d{8})\.jsonl$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

# The event kinds the report reads, with their fields. Other kinds are journalled as well
# (and shown by `detoxd report --json` as counts), so a new kind needs no change here first.
KINDS: dict[str, str] = {
    "daemon_started": "version",
    "detox_started": "days, locked, names (count blocked), ends_at, by_uid; reason 'planned', "
                     "planned_for, late_seconds when a planned detox began",
    "detox_planned": "starts_at, days, locked, cancellable_until, by_uid (`start --at`)",
    "detox_plan_cancelled": "starts_at, by_uid",
    "cancel_refused": "by_uid, reason (the plan is locked by schedule, or there is none)",
    "detox_ended": "early (bool), reason ('finished' | 'ended early' | ...)",
    "tamper": "target ('hosts_file' | 'browser_policy' | 'engine:<name>'), restored (what was put back)",
    "clock_jump": "seconds (wall clock minus credited time; positive = set forward)",
    "time_held": "seconds (held in all), reason (downtime across a reboot the clock claims, unconfirmed)",
    "time_released": "held_seconds, credited_seconds (the clock confirmed: what really passed)",
    "config_error": "errors (count), first (the first message, redacted: no file content)",
    "start_refused": "by_uid, errors (count), reason (a start on a config in error starts nothing)",
    "status_stale": "seconds (the main loop had not gone round for that long when status was asked)",
    "watchdog_withheld": "reason (not guarding: systemd's watchdog is not fed and restarts detoxd)",
    "watchdog_resumed": "(the hosts file is verified again)",
    "app_closed": "app (rule name), uid, pid, via (scan or exec_event)",
    "allowance_opened": "uid, names (list), minutes",
    "allowance_closed": "uid, minutes_used",
    "session_started": "session (1 or 2), starts_at",
    "hot_seat": "session, person, starts_at",
    "agent_connected": "uid",
    "agent_disconnected": "uid, during_detox (bool)",
    "blocked_lookups": "date (local YYYY-MM-DD), device, counts ({blocked name: lookups})",
    "activity_day": "uid, date, phase ('before' | 'during'), sites ({blocked name: s}), apps ({app: s})",
    "activity_unavailable": "uid, reason",
    "journal_gap": "dropped (events lost while the journal could not be written)",
    "journal_lost": "directory (it was removed while detoxd ran: the events before this are gone)",
    "state_lost": "reason, failed_closed / during_detox (every copy gone at start, or removed while running)",
    "segment_started": "detox_started_at, detox_ends_at (the first line of every later segment)",
    "peer_end_attempt": "ended (bool), by_uid, failed_attempts, reason (why not; never a share)",
    "end_refused": "by_uid, reason (`detoxd end` during a locked detox)",
    "enforcement_failed": "target ('hosts file' | 'browser policy' | ...), reason (and the fix in status)",
    "enforced_again": "target (the obstacle named by the last enforcement_failed is gone)",
    "hosts_write_recovered": "outcome (finished | set_aside | not_yet | ...), detail",
    "window_opened": "entry (schedule: name), until (when it closes)",
    "window_closed": "entry",
    "schedule_edit_held": "entry, edit ('removed' | 'shorter' | ...), locked (bool), takes_effect",
    "schedule_edit_released": "entry, edit (the held edit takes effect)",
    "schedule_after_detox": "entries (detox.after: they take over from now)",
    "schedule_state_unsaved": "reason (schedule.json cannot be written: a restart would forget held edits)",
}


class Journal:
    """One writer of the journal directory; thread-safe; :meth:`record` never raises."""

    def __init__(
        self,
        directory: Path,
        clock: Clock,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        segments: int = SEGMENTS_KEPT,
        monotonic: Callable[[], float] = time.monotonic,
        header: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        if segment_bytes < MAX_EVENT_BYTES or segments < 1:
            raise ValueError("a segment must hold at least one event of the maximum size")
        self.directory = directory
        self._clock = clock
        self._segment_bytes = segment_bytes
        self._segments_kept = segments
        self._monotonic = monotonic
        self._header = header
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segment_number = 0
        self._size = 0
        self._next_seq = 1
        self._dirty = False
        self._last_sync = 0.0
        self._last_failure_log = -FAILURE_LOG_SECONDS
        self.written = 0
        # Told of every event written (kind, fields), under the journal's lock: they must not
        # record (the mail keeper counts the events the peers are told about).
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.dropped = 0  # since the last successful write; journalled as a journal_gap
        self.dropped_total = 0

    # ---- the API ----

    def record(self, kind: str, **fields: Any) -> bool:
        """Append one event; False when it could not be written (it is then counted, not raised)."""
        try:
            with self._lock:
                return self._record(kind, fields)
        except Exception:  # a bug here must never reach the enforcement loop
            log.exception("journal: could not record %r", kind)
            return False

    def record_nowait(self, kind: str, wait: float, **fields: Any) -> bool:
        """:meth:`record`, from a thread that must not hang on a writer stuck mid-event (the
        status thread reporting a stuck main loop): gives up after ``wait`` seconds."""
        if not self._lock.acquire(timeout=wait):
            return False
        try:
            return self._record(kind, fields)
        except Exception:
            log.exception("journal: could not record %r", kind)
            return False
        finally:
            self._lock.release()

    def sync(self) -> None:
        """fdatasync what was written since the last sync; cheap when nothing was."""
        with self._lock:
            self._sync()

    def close(self) -> None:
        with self._lock:
            self._sync()
            self._close_segment()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- writing ----

    def _record(self, kind: str, fields: dict[str, Any]) -> bool:
        if not _KIND.match(kind):
            log.error("journal: invalid event kind %r (lower case, digits, _)", kind)
            return False
        if self._segment_removed():
            # Its directory was removed (`rm -rf /var/lib/detoxd`): events written on would go
            # into a file nobody can read. A new directory and segment, and it says so first.
            log.error("journal: %s was removed while detoxd wrote to it: starting it again", self.directory)
            self._close_segment()
            self._write_event("journal_lost", {"directory": str(self.directory)})
        if self.dropped and kind != "journal_gap" and not self._write_event("journal_gap",
                                                                            {"dropped": self.dropped}):
            self._count_drop()
            return False
        if self._write_event(kind, fields):
            for listener in self.listeners:
                try:
                    listener(kind, fields)
                except Exception:  # a listener's bug must not stop the journal
                    log.exception("journal: a listener failed on %s", kind)
            return True
        self._count_drop()
        return False

    def _write_event(self, kind: str, fields: dict[str, Any]) -> bool:
        try:
            if self._fd is None:
                self._open_newest()  # first: it finds the sequence number to go on from
            line = self._encode(kind, fields)
            if self._size > 0 and self._size + len(line) > self._segment_bytes:
                self._rotate()
                line = self._encode(kind, fields)  # the new segment's header took a number
            self._append(line)
        except OSError as error:
            self._failed(error)
            return False
        self._next_seq += 1
        self.written += 1
        if kind == "journal_gap":
            self.dropped = 0
        self._dirty = True
        if self._monotonic() - self._last_sync >= SYNC_SECONDS:
            self._sync()
        return True

    def _encode(self, kind: str, fields: dict[str, Any]) -> bytes:
        clashes = RESERVED_FIELDS & fields.keys()
        if clashes:
            log.error("journal: %s event has reserved fields %s: dropped them", kind, sorted(clashes))
        head = {"v": JOURNAL_VERSION, "seq": self._next_seq,
                "at": self._clock.now().isoformat(timespec="seconds"), "kind": kind}
        body = {key: value for key, value in fields.items() if key not in RESERVED_FIELDS}
        line = _dumps({**head, **body})
        if len(line) > MAX_EVENT_BYTES:
            log.warning("journal: %s event of %d bytes is over %d: journalled without its fields",
                        kind, len(line), MAX_EVENT_BYTES)
            line = _dumps({**head, "truncated": True, "bytes": len(line)})
        return line

    def _append(self, line: bytes) -> None:
        """One write() of the whole line; on a short or failed write the tail is cut off again."""
        assert self._fd is not None
        size_before = self._size
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size_before)
            raise
        self._size += len(line)

    def _count_drop(self) -> None:
        self.dropped += 1
        self.dropped_total += 1

    def _failed(self, error: OSError) -> None:
        now = self._monotonic()
        if now - self._last_failure_log >= FAILURE_LOG_SECONDS:
            self._last_failure_log = now
            log.error("journal: cannot write to %s: %s (events are dropped and counted; enforcement "
                      "goes on; %d dropped so far)", self.directory, error.strerror or error,
                      self.dropped_total + 1)
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            self._close_segment()  # e.g. the directory was removed: reopen on the next event

    def _segment_removed(self) -> bool:
        if self._fd is None:
            return False
        try:
            return os.fstat(self._fd).st_nlink == 0
        except OSError:
            return True

    def _sync(self) -> None:
        if self._fd is None or not self._dirty:
            return
        try:
            os.fdatasync(self._fd)
        except OSError as error:
            self._failed(error)
            return
        self._dirty = False
        self._last_sync = self._monotonic()

    # ---- segments ----

    def _open_newest(self) -> None:
        self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        numbers = segment_numbers(self.directory)
        if not numbers:
            self._create_segment(1)
            return
        if len(numbers) > self._segments_kept:
            self._remove_old_segments()  # a crash between starting a segment and this
        newest = numbers[-1]
        path = self._segment_path(newest)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            self._size = _cut_torn_tail(fd)
            last_seq = _last_seq(path) or _last_seq_before(self.directory, numbers[:-1])
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._segment_number = fd, newest
        self._next_seq = max(self._next_seq, last_seq + 1)

    def _rotate(self) -> None:
        self._sync()
        self._close_segment()
        self._create_segment(self._segment_number + 1)
        self._write_header()
        self._remove_old_segments()

    def _write_header(self) -> None:
        """A new segment starts with what its reader needs once older ones are gone (the detox's
        start and end: a busy detox can rotate its own ``detox_started`` away)."""
        if self._header is None:
            return
        try:
            fields = self._header()
        except Exception:
            log.exception("journal: the segment header failed")
            fields = {}
        self._append(self._encode("segment_started", fields))
        self._next_seq += 1
        self.written += 1

    def _create_segment(self, number: int) -> None:
        path = self._segment_path(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        self._fd, self._segment_number, self._size = fd, number, 0
        fsync_directory(self.directory)

    def _remove_old_segments(self) -> None:
        numbers = segment_numbers(self.directory)
        for number in numbers[: max(0, len(numbers) - self._segments_kept)]:
            with contextlib.suppress(FileNotFoundError):
                self._segment_path(number).unlink()
        fsync_directory(self.directory)

    def _close_segment(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"journal-{number:08d}.jsonl"


def segment_numbers(directory: Path) -> list[int]:
    """The segments' numbers, oldest first."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):  # nothing there, or a file in its place: no segment
        return []
    return sorted(int(match.group(1)) for name in names if (match := _SEGMENT_NAME.match(name)))


def _dumps(event: dict[str, Any]) -> bytes:
    # default=str: a stray Path or datetime in a field must not cost the event.
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    return (text + "\n").encode()


def _cut_torn_tail(fd: int) -> int:
    """Cut off a last line without its newline (a write torn by a power cut); the new size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    window = min(size, MAX_EVENT_BYTES + 1)
    tail = os.pread(fd, window, size - window)
    if tail.endswith(b"\n"):
        return size
    newline = tail.rfind(b"\n")
    # No newline in the last MAX_EVENT_BYTES (newline == -1): only one line can be torn, so the
    # whole window goes and what precedes it stays.
    keep = size - window + newline + 1
    log.warning("journal: cutting off a torn last line (%d bytes) left by a crash", size - keep)
    os.ftruncate(fd, keep)
    return keep


def _last_seq(path: Path) -> int:
    """The highest sequence number in a segment, of any version (0 if none)."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return 0
    return max((event["seq"] for raw in lines if (event := _decode_line(raw))), default=0)


def _last_seq_before(directory: Path, older: list[int]) -> int:
    for number in reversed(older):
        seq = _last_seq(directory / f"journal-{number:08d}.jsonl")
        if seq:
            return seq
    return 0


# ---- reading ----


@dataclass
class JournalStats:
    """What a reader skipped; shown in the report so that nothing is lost silently."""

    segments: int = 0
    events: int = 0
    corrupt_lines: int = 0
    newer_version_lines: int = 0
    torn_tail: bool = False
    unreadable: list[str] = field(default_factory=list)


def read_events(directory: Path) -> tuple[list[dict[str, Any]], JournalStats]:
    """Every event, oldest first, and what was skipped. Never raises for bad content."""
    stats = JournalStats()
    events: list[dict[str, Any]] = []
    for number in segment_numbers(directory):
        stats.segments += 1
        events.extend(_events_in(directory / f"journal-{number:08d}.jsonl", stats))
    stats.events = len(events)
    return events, stats


def _events_in(path: Path, stats: JournalStats) -> Iterator[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError as error:
        stats.unreadable.append(f"{path.name}: {error.strerror or error}")
        return
    lines = data.split(b"\n")
    if lines and lines[-1]:
        stats.torn_tail = True  # being written right now, or torn by a crash
    for raw in lines[:-1]:
        event = _decode_line(raw)
        if event is None:
            stats.corrupt_lines += 1
        elif event["v"] > JOURNAL_VERSION:
            stats.newer_version_lines += 1
        else:
            yield event


def _decode_line(raw: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(event, dict):
        return None
    version, seq, at, kind = (event.get(key) for key in ("v", "seq", "at", "kind"))
    if not (_is_int(version) and _is_int(seq) and isinstance(at, str) and isinstance(kind, str)):
        return None
    return event


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---- the daemon's journal, for everyone to record into ----

_installed: Journal | None = None


def install(journal: Journal | None) -> None:
    """Make ``journal`` the one :func:`record` writes to (the daemon does this at start)."""
    global _installed
    _installed = journal


def installed() -> Journal | None:
    return _installed


def record(kind: str, **fields: Any) -> bool:
    """Journal an event in the daemon's journal; False (and nothing else) when there is none
    (tests, the CLI) or it could not be written. Never raises, never blocks on the network."""
    journal = _installed
    if journal is None:
        log.debug("journal: none installed, not recording %s", kind)
        return False
    return journal.record(kind, **fields)


def record_nowait(kind: str, wait: float = 0.1, **fields: Any) -> bool:
    """:func:`record` that gives up after ``wait`` seconds when the journal is busy."""
    journal = _installed
    return journal is not None and journal.record_nowait(kind, wait, **fields)


def directory_for(state_dir: Path) -> Path:
    return state_dir / DIRECTORY_NAME

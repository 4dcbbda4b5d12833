"""Crash-safe reading and writing of the real hosts file.

Four ways to write, each leaving the file whole after a crash at any instant:

- **Rename** (normal case): write a temporary file next to the target with the target's mode
  and owner, fsync it, ``os.replace`` it over the target, fsync the directory.
- **Append**, when the new content is the old one with more at the end (a truncated file, a block
  removed after the user's text: what a writer in a loop leaves), unless the mode is ``rename``: the missing
  bytes are appended (``O_APPEND``), no journal, as a crash at any instant leaves the old content
  whole and at most a torn tail of the block, which the next look removes. Made durable by
  :meth:`HostsFile.sync` at the guard's next periodic look (within a second), not at once: the
  block is in the file ~2 ms sooner, and a file whose blocks were fsynced is slow to truncate (ext4
  frees them, with ``discard`` ~2 ms, during which a truncating loop has the file empty before
  detoxd hears of it). Under a loop no fsync would outlive the next truncate anyway; a power cut
  before the sync loses only what the daemon re-applies at start.
- **Patch**, when the new content has the old one's length and differs within one page (a byte
  written into the block, as a ``pwrite`` loop does), unless the mode is ``rename``: written in
  place up to the change, no journal (every other page gets the bytes it holds; a crash tears no
  finer than a page), made durable the same way as an append.
- **In place**, when rename is refused: a bind-mounted ``/etc/hosts`` (containers, and systemd's
  ``ReadWritePaths=/etc/hosts`` under ``ProtectSystem=strict``) cannot be renamed over (EBUSY,
  EXDEV) and its read-only directory takes no temporary file (EROFS); EPERM and EACCES (an
  immutable file, a security module) are treated alike. Overwriting in place can be torn by a
  crash, so it is guarded by a write-ahead journal in the state directory holding the target's
  path, its old and its new content and a checksum: write journal, fsync; overwrite the file,
  truncate, fsync; delete the journal.

:meth:`HostsFile.recover` (at daemon start, and before any write that finds a journal) settles an
interrupted in-place write. A journal whose checksum fails was torn while being written, before
the file was touched: it is discarded. A complete journal is redone when the file holds the old
content or a torn mix of old and new; when the file already holds the new content only the
journal goes. If the file holds anything else, someone changed it after the crash: detoxd leaves
their file alone (the daemon then re-applies its block to it as to any edit).

Keeping the old content in the journal costs one more copy per in-place write, and buys that last
rule: without it a stale journal would silently overwrite a file edited while detoxd was down.

**Nothing at these paths can hang, crash or bloat the daemon.** The hosts file is read only when
it is a regular file (a link is followed to its target, which is checked: a FIFO, a device, a
directory is never opened for real; see :func:`detoxd.service.safeopen.open_regular`), with a
size bound, in one piece. The journal is opened without following links, checked the same way
and bounded; a journal that is no regular file, or cannot be read, is set aside
(``hosts-write.journal.unusable``), never fatal. A complete journal that cannot be replayed yet
(the file is read-only, immutable, gone odd) stays where it is: every write first tries it again
and fails loudly until it can be replayed, so an interrupted write is finished once the obstacle
is gone, and no new journal ever overwrites it. A write that fails before its first byte reached
the file (open refused: read-only, immutable, no space) removes its journal at once.
Each failure is a :class:`HostsFileError`: an OSError with a reason and a fix for the user.

**Immutable files** (``chattr +i`` or ``+a``): the flag is cleared for the write and set again
right after (it is the user's), when the daemon holds CAP_LINUX_IMMUTABLE (the unit grants it:
see systemd/detoxd.service); without it the write fails with the fix (``chattr -i``).

**A full disk.** A restore must not depend on free space appearing when it is needed:

- in the in-place mode a *reserve* file (``hosts-write.reserve``, fallocated to twice the size a
  journal of the current file needs) sits in the state directory; when the journal cannot be
  written for want of space, the reserve is deleted and the journal written into the room it
  frees, and the reserve is made again once there is room. So a full state directory (someone
  filled it, or the disk) does not stop a tamper from being undone.
- before overwriting in place, the file's blocks are reserved with ``fallocate(KEEP_SIZE)``:
  when the hosts file's file system is full, the write fails before its first byte (nothing torn,
  no BEGIN without END) and is retried every tick; it never stops half-way for want of space.
- a rename write on a full file system fails at the temporary file: the old file stays whole.

**Replaced by rename under the sandbox.** systemd's ``ReadWritePaths=/etc/hosts`` bind-mounts the
file's inode; when someone replaces ``/etc/hosts`` by rename (``sed -i``, most editors) the
service sees the new file, but through the read-only ``/etc`` (EROFS). The in-place write then
opens the same file as PID 1 sees it, ``/proc/1/root/etc/hosts`` (the daemon's CAP_SYS_PTRACE
allows that), and writes it only if it is the very inode the sandbox shows at ``/etc/hosts``: a
restore at in-place speed instead of a service restart (1.5 s), and never another file.

This module is the file's lifecycle (the four writes, the journal's life, recovery, the
reserve); the system calls it builds on and its errors in words are :mod:`.fsops`, the
journal's format and the byte comparisons :mod:`.hostsbytes`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Literal

from detoxd.durable import fsync_directory, remove_file, replace_file
from detoxd.paths import HOSTS_JOURNAL_FILE, HOSTS_RESERVE_FILE
from detoxd.service.safeopen import NotRegularFile, open_regular, read_regular
from detoxd.service.targets.hosts.fsops import (
    ReadOnlyInSandbox,
    clear_immutable,
    create_regular,
    explain,
    open_outside_sandbox,
    remove_any,
    reserve_blocks,
    restore_flags,
    set_flags,
)
from detoxd.service.targets.hosts.hostsbytes import (
    PAGE,
    Journal,
    common_prefix_length,
    common_tail_start,
    decode_journal,
    encode_journal,
    is_torn_between,
)

log = logging.getLogger(__name__)

Mode = Literal["auto", "rename", "inplace"]

JOURNAL_NAME = HOSTS_JOURNAL_FILE
NEW_FILE_MODE = 0o644
STATE_DIR_MODE = 0o700
# Errors with which the kernel refuses a rename (or the temporary file) but may allow a write.
RENAME_REFUSED = frozenset({errno.EBUSY, errno.EXDEV, errno.EROFS, errno.EPERM, errno.EACCES})

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_RESERVE_SLACK = 64 << 10
# The largest file patched in place without a journal (HostsFile._patch writes it up to the change).
PATCH_LIMIT = 1 << 20
# Until the guard knows its names (and sets HostsFile.limit from them), a hosts file is read up
# to this size: a block of a few million names fits, /dev/zero or a 500 MB file does not.
DEFAULT_READ_LIMIT = 256 << 20
UNUSABLE_SUFFIX = ".unusable"


class ChangedSinceRead(Exception):
    """The file changed after the read a write was computed from (a writer mid-write: a single
    ``write`` of megabytes is seen half done). Writing now would put detoxd's block over the rest
    of their bytes and, in place, truncate them away: nothing is written; look again once their
    change has settled."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed while detoxd was reading it")


# A read is retried this often while the file's size is not the length read (a write in
# progress); after that it is taken as it is and a write computed from it is refused.
_CONSISTENT_READ_TRIES = 5
_UNSETTLED = (-1,)  # the identity of a read that never settled: equal to no file's


class Recovery(StrEnum):
    NOTHING = "no interrupted write"
    FINISHED = "finished an interrupted write"
    ALREADY_WRITTEN = "an interrupted write had already reached the file"
    TORN_JOURNAL = "discarded a write interrupted before it touched the file"
    FILE_CHANGED = "the file changed after an interrupted write: left as it is"
    OTHER_FILE = "discarded a journal written for another file"
    SET_ASIDE = "set aside a write-ahead journal that cannot be read"
    NOT_YET = "an interrupted write cannot be finished yet: kept for the next try"


class HostsFile:
    """The hosts file at ``path``; write-ahead journals go to ``state_dir``.

    ``mode`` is ``"auto"`` (rename, falling back to in place for good once rename is refused),
    ``"rename"`` (never in place) or ``"inplace"`` (always; for tests and known bind mounts).
    """

    def __init__(self, path: Path, state_dir: Path, mode: Mode = "auto", outside_pid: int = 1) -> None:
        self.path = Path(path)
        self.outside_pid = outside_pid  # whose view of the file system is "outside the sandbox"
        self.state_dir = Path(state_dir)
        self.journal_path = self.state_dir / JOURNAL_NAME
        self.reserve_path = self.state_dir / HOSTS_RESERVE_FILE
        self.mode = mode
        self._in_place = mode == "inplace"
        self._reserved = 0  # bytes the reserve file holds (0: none yet, or given up for a journal)
        self.limit = DEFAULT_READ_LIMIT  # the largest hosts file read (the guard sets it)
        self.recovery_error: OSError | None = None  # why a kept journal could not be replayed
        self.unsynced = False  # an append not fsynced yet (see sync)
        self._written = mode == "inplace"  # the first write tries the usual way (see write)
        self._read_identity: tuple[int, ...] = ()  # the file as the last read saw it

    def read(self) -> bytes:
        """The file's bytes; a missing file reads as empty. Raises HostsFileError when the path
        is no regular file (a link is followed and its target checked) or holds more than
        :attr:`limit` bytes, OSError when it cannot be read.

        Reads run beside writes (the kernel does not order them): a read during someone's big
        write sees part of it. Such a read is retried; :meth:`write` refuses to build on one
        that never settled or that the file has moved on from (:class:`ChangedSinceRead`)."""
        data = b""
        for _ in range(_CONSISTENT_READ_TRIES):
            try:
                data = read_regular(self.path, self.limit, follow_links=True)
            except FileNotFoundError:
                data = b""
            except OSError as error:
                raise explain(error, self.path) from None
            identity = self._identity()
            if (identity[1] if identity else 0) == len(data):
                self._read_identity = identity
                return data
        self._read_identity = _UNSETTLED
        return data

    def _identity(self) -> tuple[int, ...]:
        """What tells a changed file from the same one: inode, size and times (empty: missing)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return ()
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def size(self) -> int:
        """The file's size without reading it (0 when it is missing or odd)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return 0
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    def write(self, content: bytes, current: bytes | None = None, *, in_place: bool = False) -> bool:
        """Make the file hold ``content``; False, and nothing written, when it already does.
        ``current``: the file's bytes as the caller just read them (saves reading it again);
        ``in_place``: this once in place (someone may still be writing to the file: the rest
        of their write must land in it, not in an inode a rename replaced)."""
        if self.settle_journal() is not Recovery.NOTHING:
            current = None  # a replay may have changed the file
        if current is None:
            current = self.read()
        if current == content:  # a missing file counts as empty: no write creates an empty one
            return False
        if self._identity() != self._read_identity:
            raise ChangedSinceRead(self.path)
        # Not before the first write has found out whether rename works: in place, that write
        # makes the reserve a later journal may need on a full disk.
        if self._written and self.mode != "rename" and (
                self._append(current, content) or self._patch(current, content)):
            self.keep_reserve(len(content))
            return True
        self._written = True
        if not (self._in_place or in_place) and not self.path.is_symlink():
            try:
                self._replace(content)
                return True
            except OSError as error:
                if self.mode == "rename" or error.errno not in RENAME_REFUSED:
                    raise
                # The normal case under the unit (a bind-mounted file): not a warning.
                log.info("cannot replace %s by rename (%s): writing it in place from now on",
                         self.path, os.strerror(error.errno or 0))
                self._in_place = True
        # A symlink is written through, so that it stays a link.
        self._write_in_place(current, content)
        return True

    def _append(self, current: bytes, content: bytes) -> bool:
        """Make the file ``content`` by appending what ``current`` lacks, when that is the whole
        change (a truncated file, a block removed after the user's text). False, nothing
        written, when the file cannot be opened so (missing, immutable, read-only in the
        sandbox, odd), is no longer ``current``'s size or its file system is nearly full: the
        caller writes the usual way. O_APPEND: a truncate landing after the size check puts the
        block at the start, where it belongs in an empty file; the guard looks again anyway.
        Made durable by :meth:`sync` (module notes)."""
        if not content.startswith(current):
            return False
        try:
            descriptor = open_regular(self.path, os.O_WRONLY | os.O_APPEND, follow_links=True)
        except OSError:
            return False
        try:
            if os.fstat(descriptor).st_size != len(current):
                return False
            room = os.fstatvfs(descriptor)
            if room.f_bavail * room.f_frsize < 2 * len(content) + _RESERVE_SLACK:
                return False  # the usual way reserves the blocks first: never torn for want of room
            tail = memoryview(content)[len(current):]
            written = 0
            while written < len(tail):
                written += os.write(descriptor, tail[written:])
        except OSError as error:
            raise explain(error, self.path) from error
        finally:
            os.close(descriptor)
        self.unsynced = True
        return True

    def _patch(self, current: bytes, content: bytes) -> bool:
        """Make the file ``content`` by overwriting it in place, no journal, when both have the
        same length (up to :data:`PATCH_LIMIT`) and differ within one page only (a byte written
        into the block): every other page is written with the bytes it holds, and a crash tears
        no finer than a page, so the file is ``current`` or ``content`` after it. Written from
        the start up to the change, never from the change on: a truncate landing meanwhile
        leaves a prefix of ``content`` (the guard looks again), never a hole of zeros. False,
        nothing written, when that is not the case or the file cannot be opened so. Made
        durable by :meth:`sync` (module notes)."""
        if len(current) != len(content) or len(content) > PATCH_LIMIT:
            return False
        new, old = memoryview(content), memoryview(current)
        first = common_prefix_length(new, old)
        low = common_tail_start(new, old, first)
        if first // PAGE != (low - 1) // PAGE:
            return False
        try:
            descriptor = open_regular(self.path, os.O_WRONLY, follow_links=True)
        except OSError:
            return False
        try:
            if os.fstat(descriptor).st_size != len(current):
                return False
            written = 0
            while written < low:
                written += os.pwrite(descriptor, new[written:low], written)
        except OSError as error:
            raise explain(error, self.path) from error
        finally:
            os.close(descriptor)
        self.unsynced = True
        return True

    def sync(self) -> None:
        """fsync an append :meth:`write` made (nothing when there is none). A file replaced or
        gone since has nothing of detoxd's to sync."""
        if not self.unsynced:
            return
        self.unsynced = False
        try:
            descriptor = open_regular(self.path, os.O_RDONLY, follow_links=True)
        except (FileNotFoundError, NotRegularFile):
            return
        except OSError as error:
            raise explain(error, self.path) from error
        try:
            os.fsync(descriptor)
        except OSError as error:
            raise explain(error, self.path) from error
        finally:
            os.close(descriptor)

    def settle_journal(self) -> Recovery:
        """:meth:`recover` when a journal is there; raises HostsFileError while it cannot be
        replayed yet. Call before reading the file to decide what to write: a replay changes it."""
        if not os.path.lexists(self.journal_path):
            return Recovery.NOTHING
        outcome = self.recover()
        if outcome is Recovery.NOT_YET:
            assert self.recovery_error is not None
            raise explain(self.recovery_error, self.path)
        return outcome

    def recover(self) -> Recovery:
        """Settle an interrupted in-place write (module notes). Call before the first write.
        Never raises: a journal that cannot be read is set aside, one that cannot be replayed
        yet is kept (NOT_YET, the reason in :attr:`recovery_error`)."""
        self.recovery_error = None
        try:
            raw = read_regular(self.journal_path, self._journal_limit(), follow_links=False)
        except FileNotFoundError:
            return Recovery.NOTHING
        except OSError as error:
            return self._set_aside(error)
        journal = decode_journal(raw)
        del raw
        try:
            if journal is None:
                outcome = Recovery.TORN_JOURNAL
            elif journal.path != os.fsencode(self.path):
                outcome = Recovery.OTHER_FILE
            else:
                outcome = self._redo(journal)
            self._remove_journal()
        except OSError as error:
            self.recovery_error = error
            log.error("%s: an interrupted write cannot be finished yet (%s): the journal %s is kept "
                      "and tried again before every write", self.path, error.strerror or error,
                      self.journal_path)
            return Recovery.NOT_YET
        log_level = logging.WARNING if outcome is Recovery.FILE_CHANGED else logging.INFO
        log.log(log_level, "%s: %s", self.path, outcome.value)
        return outcome

    def _journal_limit(self) -> int:
        # The path, the old and the new content: each a hosts file within the limit.
        return 2 * self.limit + (1 << 20)

    def _set_aside(self, error: OSError) -> Recovery:
        aside = self.journal_path.with_name(self.journal_path.name + UNUSABLE_SUFFIX)
        try:
            remove_any(aside)
            os.rename(self.journal_path, aside)
            fsync_directory(self.state_dir)
        except OSError as rename_error:
            self.recovery_error = rename_error
            log.error("cannot read the write-ahead journal %s (%s) nor set it aside (%s)",
                      self.journal_path, error.strerror or error, rename_error.strerror or rename_error)
            return Recovery.NOT_YET
        log.error("cannot read the write-ahead journal %s (%s): set aside as %s", self.journal_path,
                  error.strerror or error, aside.name)
        return Recovery.SET_ASIDE

    # ---- rename ----

    def _replace(self, content: bytes) -> None:
        replace_file(self.path, content, mode=NEW_FILE_MODE, keep_existing_mode=True)

    # ---- in place ----

    def _write_in_place(self, old: bytes, new: bytes) -> None:
        journal = Journal(os.fsencode(self.path), old, new)
        try:
            self._write_journal(journal)
        except OSError as error:
            if error.errno not in _NO_SPACE or not self._release_reserve():
                raise
            log.warning("the state directory %s is full: writing the journal into the reserve",
                        self.state_dir)
            self._write_journal(journal)
        try:
            self._overwrite(new)
        except _NotTouched as untouched:
            self._remove_journal()  # the file is as it was: nothing to finish after a crash
            raise untouched.error from None
        self.keep_reserve(len(new))
        self._remove_journal()

    def keep_reserve(self, content_size: int) -> None:
        """Make sure the reserve can hold the journal of a restore of ``content_size`` bytes
        (old and new content of about that size, twice over). Never raises; in-place mode only."""
        if not self._in_place:
            return
        wanted = 4 * content_size + _RESERVE_SLACK
        if self._reserved >= wanted and self.reserve_path.exists():
            return
        try:
            self.state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
            descriptor = create_regular(self.reserve_path, truncate=False)
        except OSError:
            return
        try:
            os.posix_fallocate(descriptor, 0, wanted)
            os.fsync(descriptor)
            self._reserved = wanted
        except OSError as error:
            log.warning("cannot reserve %d bytes in %s for restores: %s", wanted, self.state_dir,
                        os.strerror(error.errno or 0))
        finally:
            os.close(descriptor)

    def _release_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        self._reserved = 0
        return True

    def _overwrite(self, content: bytes) -> None:
        """Overwrite the file in place. Raises _NotTouched when it failed before the first byte
        reached the file (its journal is then of no use)."""
        try:
            with self._open_for_overwrite() as descriptor:
                # Every block the new content needs, before its first byte: a full file system
                # fails here, with the file untouched, instead of half-way through the write.
                try:
                    reserve_blocks(descriptor, len(content))
                except OSError as error:
                    raise _NotTouched(error) from error
                view = memoryview(content)
                written = 0
                while written < len(content):
                    written += os.pwrite(descriptor, view[written:], written)
                os.ftruncate(descriptor, len(content))
                os.fsync(descriptor)
        except _NotTouched:
            raise
        except OSError as error:
            raise explain(error, self.path) from error

    @contextlib.contextmanager
    def _open_for_overwrite(self) -> Iterator[int]:
        """The file opened for writing (a regular file only); an immutable or append-only one
        with its flags cleared for the write and set again after it."""
        flags = 0
        try:
            try:
                descriptor = self._open_writable()
            except PermissionError:
                flags = clear_immutable(self.path)  # 0: not why, raise the refusal
                if not flags:
                    raise
                descriptor = self._open_writable()
        except OSError as error:
            if flags:
                restore_flags(self.path, flags)
            raise _NotTouched(explain(error, self.path)) from error
        try:
            yield descriptor
        finally:
            try:
                if flags:
                    set_flags(descriptor, flags)
            finally:
                os.close(descriptor)

    def _open_writable(self) -> int:
        try:
            return open_regular(self.path, os.O_WRONLY, follow_links=True)
        except FileNotFoundError:
            return create_regular(self.path, truncate=False, mode=NEW_FILE_MODE, follow_links=True)
        except OSError as error:
            if error.errno != errno.EROFS:
                raise
            descriptor = open_outside_sandbox(self.path, self.outside_pid)
            if descriptor is None:
                raise
            if descriptor < 0:
                raise ReadOnlyInSandbox(errno.EROFS, f"{self.path} is read-only in detoxd's sandbox "
                                        "(it was replaced by rename)", "sudo systemctl restart detoxd",
                                        self.path) from error
            log.info("%s was replaced by rename and is read-only in this sandbox: writing the "
                     "same file through PID 1's view of it", self.path)
            return descriptor

    def _redo(self, journal: Journal) -> Recovery:
        current = self.read()
        if current == journal.new:
            return Recovery.ALREADY_WRITTEN
        if current == journal.old or is_torn_between(current, journal.old, journal.new):
            try:
                self._overwrite(journal.new)
            except _NotTouched as untouched:
                raise untouched.error from None
            return Recovery.FINISHED
        return Recovery.FILE_CHANGED

    def _write_journal(self, journal: Journal) -> None:
        self.state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        # recover() removed or set aside whatever stood here: anything now is refused, not opened
        descriptor = create_regular(self.journal_path, truncate=True)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                for part in encode_journal(journal):
                    stream.write(part)
                stream.flush()
                os.fsync(stream.fileno())
        except BaseException:
            self.journal_path.unlink(missing_ok=True)
            raise
        fsync_directory(self.state_dir)

    def _remove_journal(self) -> None:
        remove_file(self.journal_path)  # durably: a journal a power cut brought back would redo an old write


class _NotTouched(Exception):
    """A write in place failed before its first byte reached the file."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error

"""Crash-safe reading and writing of the real hosts file.

Two ways to write, both leaving the file whole after a crash at any instant:

- **Rename** (normal case): write a temporary file next to the target with the target's mode
  and owner, fsync it, ``os.replace`` it over the target, fsync the directory.
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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from detoxd.durable import fsync_directory, replace_file
from detoxd.paths import HOSTS_JOURNAL_FILE, HOSTS_RESERVE_FILE

log = logging.getLogger(__name__)

Mode = Literal["auto", "rename", "inplace"]

JOURNAL_NAME = HOSTS_JOURNAL_FILE
NEW_FILE_MODE = 0o644
STATE_DIR_MODE = 0o700
# Errors with which the kernel refuses a rename (or the temporary file) but may allow a write.
RENAME_REFUSED = frozenset({errno.EBUSY, errno.EXDEV, errno.EROFS, errno.EPERM, errno.EACCES})

_MAGIC = b"detoxd hosts write-ahead journal v1\n"
_LENGTHS = struct.Struct(">IQQ")  # path, old content, new content
_DIGEST_SIZE = hashlib.sha256().digest_size
# A crash tears a write at page granularity at worst; each page of a torn file is checked alone.
_PAGE = 4096
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_RESERVE_SLACK = 64 << 10
_FALLOC_FL_KEEP_SIZE = 1


class Recovery(StrEnum):
    NOTHING = "no interrupted write"
    FINISHED = "finished an interrupted write"
    ALREADY_WRITTEN = "an interrupted write had already reached the file"
    TORN_JOURNAL = "discarded a write interrupted before it touched the file"
    FILE_CHANGED = "the file changed after an interrupted write: left as it is"
    OTHER_FILE = "discarded a journal written for another file"


@dataclass(frozen=True)
class _Journal:
    path: bytes
    old: bytes
    new: bytes


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

    def read(self) -> bytes:
        """The file's bytes; a missing file reads as empty."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def write(self, content: bytes) -> bool:
        """Make the file hold ``content``; False, and nothing written, when it already does."""
        if self.journal_path.exists():
            self.recover()
        current = self.read()
        if current == content:  # a missing file counts as empty: no write creates an empty one
            return False
        if not self._in_place and not self.path.is_symlink():
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

    def recover(self) -> Recovery:
        """Settle an interrupted in-place write (module notes). Call before the first write."""
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return Recovery.NOTHING
        journal = _decode_journal(raw)
        if journal is None:
            outcome = Recovery.TORN_JOURNAL
        elif journal.path != os.fsencode(self.path):
            outcome = Recovery.OTHER_FILE
        else:
            outcome = self._redo(journal)
        self._remove_journal()
        log_level = logging.WARNING if outcome is Recovery.FILE_CHANGED else logging.INFO
        log.log(log_level, "%s: %s", self.path, outcome.value)
        return outcome

    # ---- rename ----

    def _replace(self, content: bytes) -> None:
        replace_file(self.path, content, mode=NEW_FILE_MODE, keep_existing_mode=True)

    # ---- in place ----

    def _write_in_place(self, old: bytes, new: bytes) -> None:
        journal = _Journal(os.fsencode(self.path), old, new)
        try:
            self._write_journal(journal)
        except OSError as error:
            if error.errno not in _NO_SPACE or not self._release_reserve():
                raise
            log.warning("the state directory %s is full: writing the journal into the reserve",
                        self.state_dir)
            self._write_journal(journal)
        self._overwrite(new)
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
            descriptor = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
                                 | os.O_NOFOLLOW, 0o600)
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
        descriptor = self._open_for_overwrite()
        try:
            # Every block the new content needs, before its first byte: a full file system
            # fails here, with the file untouched, instead of half-way through the write.
            _reserve_blocks(descriptor, len(content))
            view = memoryview(content)
            written = 0
            while written < len(content):
                written += os.pwrite(descriptor, view[written:], written)
            os.ftruncate(descriptor, len(content))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _open_for_overwrite(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, NEW_FILE_MODE)
        except OSError as error:
            if error.errno != errno.EROFS:
                raise
            descriptor = _open_outside_sandbox(self.path, self.outside_pid)
            if descriptor is None:
                raise
            log.info("%s was replaced by rename and is read-only in this sandbox: writing the "
                     "same file through PID 1's view of it", self.path)
            return descriptor

    def _redo(self, journal: _Journal) -> Recovery:
        current = self.read()
        if current == journal.new:
            return Recovery.ALREADY_WRITTEN
        if current == journal.old or is_torn_between(current, journal.old, journal.new):
            self._overwrite(journal.new)
            return Recovery.FINISHED
        return Recovery.FILE_CHANGED

    def _write_journal(self, journal: _Journal) -> None:
        self.state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
        descriptor = os.open(self.journal_path, flags, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                for part in _encode_journal(journal):
                    stream.write(part)
                stream.flush()
                os.fsync(stream.fileno())
        except BaseException:
            self.journal_path.unlink(missing_ok=True)
            raise
        fsync_directory(self.state_dir)

    def _remove_journal(self) -> None:
        # Durably gone: a journal resurrected by a power cut would redo an old write.
        self.journal_path.unlink(missing_ok=True)
        fsync_directory(self.state_dir)


def _open_outside_sandbox(path: Path, pid: int) -> int | None:
    """``path`` opened for writing as process ``pid`` (PID 1) sees it, when this process runs in
    another mount namespace (systemd's sandbox) — only if it is the same inode as ``path`` here
    (the write goes to the file the sandbox shows read-only, never to another); else None."""
    try:
        if os.stat("/proc/self/ns/mnt").st_ino == os.stat(f"/proc/{pid}/ns/mnt").st_ino:
            return None
        outside = Path(f"/proc/{pid}/root") / Path(os.path.abspath(path)).relative_to("/")
        descriptor = os.open(outside, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (OSError, ValueError):
        return None
    try:
        here, there = os.stat(path), os.fstat(descriptor)
    except OSError:
        os.close(descriptor)
        return None
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        os.close(descriptor)
        return None
    return descriptor


def _reserve_blocks(descriptor: int, size: int) -> None:
    """fallocate(FALLOC_FL_KEEP_SIZE): allocate without changing the file's size (so a crash
    right after leaves the old content as it was); ENOSPC when there is no room."""
    if size == 0 or _fallocate is None:
        return
    if _fallocate(descriptor, _FALLOC_FL_KEEP_SIZE, ctypes.c_int64(0), ctypes.c_int64(size)) != 0:
        code = ctypes.get_errno()
        if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return  # a file system without fallocate: write as before
        raise OSError(code, os.strerror(code))


def _load_fallocate() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    function.restype = ctypes.c_int
    return function


_fallocate = _load_fallocate()


def is_torn_between(current: bytes, old: bytes, new: bytes) -> bool:
    """Whether ``current`` can be ``old`` partly overwritten with ``new`` from offset 0.

    Page by page: each page holds the new bytes up to some offset and the old bytes after it
    (all new, all old, or the page where the writer stopped), and the file is no longer than
    both versions (it only shrinks at the final truncate).
    """
    if len(current) > max(len(old), len(new)):
        return False
    for start in range(0, len(current), _PAGE):
        page = current[start:start + _PAGE]
        new_page = new[start:start + _PAGE]
        if page == new_page:
            continue
        switch = start + _common_prefix_length(page, new_page)
        if page[switch - start:] != old[switch:start + len(page)]:
            return False
    return True


def _common_prefix_length(first: bytes, second: bytes) -> int:
    low, high = 0, min(len(first), len(second))  # the prefix is at least low, at most high
    while low < high:
        middle = (low + high + 1) // 2
        if first[:middle] == second[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _encode_journal(journal: _Journal) -> tuple[bytes, ...]:
    header = _MAGIC + _LENGTHS.pack(len(journal.path), len(journal.old), len(journal.new))
    digest = hashlib.sha256()
    parts = (header, journal.path, journal.old, journal.new)
    for part in parts:
        digest.update(part)
    return (*parts, digest.digest())


def _decode_journal(raw: bytes) -> _Journal | None:
    """The journal, or None when it is torn or damaged."""
    body_start = len(_MAGIC) + _LENGTHS.size
    if len(raw) < body_start + _DIGEST_SIZE or not raw.startswith(_MAGIC):
        return None
    path_length, old_length, new_length = _LENGTHS.unpack_from(raw, len(_MAGIC))
    if body_start + path_length + old_length + new_length + _DIGEST_SIZE != len(raw):
        return None
    if hashlib.sha256(memoryview(raw)[:-_DIGEST_SIZE]).digest() != raw[-_DIGEST_SIZE:]:
        return None
    old_start = body_start + path_length
    new_start = old_start + old_length
    return _Journal(raw[body_start:old_start], raw[old_start:new_start],
                    raw[new_start:new_start + new_length])


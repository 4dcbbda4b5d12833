"""What the hosts file's writer asks of the kernel, and its errors in words.

:class:`HostsFileError` (and :func:`explain`) turn an OSError into a reason and a fix for the
user; the rest are the system calls :class:`~detoxd.service.targets.hosts.hostsfile.HostsFile`
builds on: a file created without following links and never opened as a FIFO or device, the
immutable and append-only flags cleared for a write and set again, the file as PID 1 sees it
from inside systemd's sandbox, and blocks reserved with ``fallocate`` before a write in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path
from typing import Any

from detoxd.service.safeopen import FileTooLarge, NotRegularFile, kind_of, open_regular

log = logging.getLogger(__name__)

_FALLOC_FL_KEEP_SIZE = 1
# linux/fs.h: FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (the kernel reads an int), the immutable and
# append-only attributes (chattr +i, +a).
_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS = 0x80086601, 0x40086602
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


class HostsFileError(OSError):
    """Why the hosts file cannot be read or written (``strerror``: the reason, in words) and what
    the user can do about it (``fix``)."""

    def __init__(self, code: int, reason: str, fix: str, path: Path | str) -> None:
        super().__init__(code, reason, os.fspath(path))
        self.fix = fix


class ReadOnlyInSandbox(HostsFileError):
    """EROFS inside a mount namespace of its own (systemd's sandbox, after a rename replaced the
    file) when PID 1's view of the file could not be tried either: a restart mounts it again."""


def explain(error: OSError, path: Path) -> HostsFileError:
    """The error as the user needs it: what is wrong with ``path``, and how to fix it."""
    if isinstance(error, HostsFileError):
        return error
    code, shown = error.errno or errno.EIO, str(error.filename or path)
    if isinstance(error, NotRegularFile):
        return HostsFileError(code, f"{shown} is {error.strerror}, not a regular file",
                              f"make {shown} a regular file again: sudo rm -d "
                              f"{shown}, then restore your hosts file (printf '127.0.0.1 localhost\n::1 "
                              f"localhost\n' | sudo tee {shown})", path)
    if isinstance(error, FileTooLarge):
        return HostsFileError(code, f"{shown} is too large: {error.strerror}", "keep large block "
                              "lists out of the hosts file: name them under lists: in "
                              "/etc/detoxd/blocklist.yaml", path)
    if code == errno.EROFS:
        return HostsFileError(code, f"{shown} is on a read-only file system (or a read-only bind "
                              "mount)", f"make it writable again: findmnt -T {shown} shows the mount "
                              f"(a bind mount over it: sudo umount {shown})", path)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return HostsFileError(code, f"no space left on the file system of {shown}",
                              f"free space there (df -h {shown})", path)
    if code in (errno.EPERM, errno.EACCES):
        return HostsFileError(code, f"{shown} may not be written ({os.strerror(code)})",
                              f"check its mode and attributes: ls -l {shown}; lsattr {shown}", path)
    return HostsFileError(code, f"{shown}: {error.strerror or error}",
                          "see journalctl -u detoxd for what failed", path)


def create_regular(path: Path, *, truncate: bool, mode: int = 0o600, follow_links: bool = False) -> int:
    """Open ``path`` for writing, creating it: never a FIFO (no wait for a reader), a device or a
    directory that stands there (NotRegularFile), never through a link unless ``follow_links``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    flags |= 0 if follow_links else os.O_NOFOLLOW
    try:
        descriptor = os.open(path, flags, mode)
    except OSError as error:
        if error.errno in (errno.ENXIO, errno.EISDIR, errno.ELOOP):  # a FIFO, a directory, a link
            info = os.stat(path, follow_symlinks=follow_links)
            raise NotRegularFile(error.errno, kind_of(info.st_mode), os.fspath(path)) from None
        raise
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):  # a device: opened, but never written
            raise NotRegularFile(errno.EINVAL, kind_of(info.st_mode), os.fspath(path))
        if truncate:
            os.ftruncate(descriptor, 0)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def remove_any(path: Path) -> None:
    """Remove whatever stands at ``path`` (a file, a link, a FIFO, an empty directory)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except IsADirectoryError:
        os.rmdir(path)
    except PermissionError:  # Linux says EPERM, not EISDIR, when unlinking a directory
        if not os.path.isdir(path) or os.path.islink(path):
            raise
        os.rmdir(path)


def clear_immutable(path: Path) -> int:
    """Clear the immutable and append-only flags of the file; returns its flags as they were, to
    be set again after the write (0: it had neither). Raises HostsFileError when they may not
    be cleared (no CAP_LINUX_IMMUTABLE)."""
    try:
        descriptor = open_regular(path, os.O_RDONLY, follow_links=True)
    except OSError:
        return 0
    try:
        try:
            flags = get_flags(descriptor)
        except OSError:
            return 0  # a file system without attributes
        held = flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL)
        if not held:
            return 0
        which = "immutable (chattr +i)" if held & _FS_IMMUTABLE_FL else "append-only (chattr +a)"
        try:
            set_flags(descriptor, flags & ~held)
        except OSError as error:
            raise HostsFileError(error.errno or errno.EPERM, f"{path} is {which} and detoxd may not "
                                 "clear the flag (it lacks CAP_LINUX_IMMUTABLE)",
                                 f"sudo chattr -i -a {path}", path) from None
    finally:
        os.close(descriptor)
    log.warning("%s is %s: the flag is cleared for the write and set again after it", path, which)
    return flags


def restore_flags(path: Path, flags: int) -> None:
    with contextlib.suppress(OSError):
        descriptor = open_regular(path, os.O_RDONLY, follow_links=True)
        try:
            set_flags(descriptor, flags)
        finally:
            os.close(descriptor)


def get_flags(descriptor: int) -> int:
    buffer = bytearray(4)
    fcntl.ioctl(descriptor, _FS_IOC_GETFLAGS, buffer)
    return int.from_bytes(buffer, "little")


def set_flags(descriptor: int, flags: int) -> None:
    fcntl.ioctl(descriptor, _FS_IOC_SETFLAGS, flags.to_bytes(4, "little"))


def open_outside_sandbox(path: Path, pid: int) -> int | None:
    """``path`` opened for writing as process ``pid`` (PID 1) sees it, when this process runs in
    another mount namespace (systemd's sandbox) — only if it is the same inode as ``path`` here
    (the write goes to the file the sandbox shows read-only, never to another). None when this
    is no sandbox, or the file is another one or read-only there too; -1 when PID 1's view
    cannot be opened at all (a restart of the sandbox may help)."""
    try:
        if os.stat("/proc/self/ns/mnt").st_ino == os.stat(f"/proc/{pid}/ns/mnt").st_ino:
            return None
        outside = Path(f"/proc/{pid}/root") / Path(os.path.abspath(path)).relative_to("/")
        descriptor = open_regular(outside, os.O_WRONLY, follow_links=False)
    except OSError as error:
        return -1 if error.errno == errno.EACCES else None  # EACCES: no ptrace access to PID 1
    except ValueError:
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


def reserve_blocks(descriptor: int, size: int) -> None:
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

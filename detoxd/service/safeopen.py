"""Open config files the way sudo opens sudoers: only through paths nobody else could change.

The daemon runs as root and reads files named by users' config, so every file it reads and every
directory on the way to it is checked (the rules, also in docs/configuration.md):

- each directory is walked with ``openat(O_NOFOLLOW)`` from ``/``, one component at a time, and
  checked on the open descriptor (``fstat``), so a component swapped after the check is not used;
- a directory or file must be owned by a trusted uid (root, or the daemon's own user) and not be
  writable by other users, nor by a group other than root (gid 0);
- a world-writable directory with the sticky bit (``/tmp``) is accepted *above* the directory
  that holds the file: there only the owner of an entry can replace it, and the next component's
  owner is checked;
- symbolic links are followed only on the way *to* the config directory (``/etc/detoxd ->
  /srv/detoxd``) or to the directory of an absolute ``lists:`` path, and only when the link is
  owned by root or the daemon's user (it lies in a checked directory, so nobody else placed it);
  its target is walked with the same checks. Inside the config directory (the two YAML files and
  every component of a relative ``lists:`` path) and for the file itself a symlink is refused;
- the file must be a regular file: it is checked with ``fstatat`` before it is opened (a FIFO or a
  device is never opened), opened ``O_NONBLOCK | O_NOFOLLOW``, checked again with ``fstat``, and
  read with a size bound.

Files the daemon itself keeps (the hosts file, its write-ahead journal) are opened with
:func:`open_regular` and read with :func:`read_regular`: the same "regular file, opened without
side effects, read with a bound" rules, raised as OSError (the daemon's targets report OSError),
without the ownership walk (root's own files in root's directories).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

MAX_SYMLINKS = 16
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Untrusted(Exception):
    """The path may not be read: ``reason`` says why (never quotes the file's content)."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing  # a component does not exist (ENOENT)


@dataclass(frozen=True)
class ReadResult:
    data: bytes
    info: os.stat_result  # of the file that was read

    @property
    def world_readable(self) -> bool:
        return bool(self.info.st_mode & stat.S_IROTH)


def default_trusted() -> frozenset[int]:
    return frozenset({0, os.geteuid()})


def untrusted_reason(
    info: os.stat_result, trusted: Collection[int], *, sticky_ok: bool = False
) -> str | None:
    """Why a file or directory with this ``fstat`` could have been written by someone else."""
    if info.st_uid not in trusted:
        return f"owned by uid {info.st_uid}, not by root"
    if info.st_mode & stat.S_IWOTH and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        return "writable by other users"
    if info.st_mode & stat.S_IWGRP and info.st_gid != 0:
        return "writable by a group other than root"
    return None


@contextlib.contextmanager
def open_directory(path: str, trusted: Collection[int]) -> Iterator[int]:
    """An ``O_PATH`` descriptor of the trusted directory ``path`` (absolute). Raises Untrusted."""
    fd = _walk_to_directory(path, trusted)
    try:
        yield fd
    finally:
        os.close(fd)


def read_file(base_fd: int, relative: str, trusted: Collection[int], limit: int, *,
              shown: str | None = None) -> ReadResult:
    """Read ``relative`` (no ``..``, no symlinks) below the open trusted directory ``base_fd``.

    Raises Untrusted (missing=True when a component does not exist), or ``TooLarge``."""
    shown = shown or relative
    parts = [part for part in PurePosixPath(relative).parts if part not in ("", ".")]
    if not parts or relative.startswith("/"):
        raise Untrusted("not a relative file path")
    if ".." in parts:
        raise Untrusted("a path with '..' is not allowed")
    directory = os.dup(base_fd)
    try:
        for part in parts[:-1]:
            child = _enter(directory, part, trusted, links_ok=False, sticky_ok=False, shown=shown)
            assert isinstance(child, int)  # links_ok=False: a link raises
            os.close(directory)
            directory = child
        return _read_entry(directory, parts[-1], trusted, limit, shown)
    finally:
        os.close(directory)


class TooLarge(Untrusted):
    pass


class NotRegularFile(OSError):
    """The path names something other than a regular file; ``strerror`` says what ("a FIFO",
    "a directory", "a symbolic link", ...)."""


class FileTooLarge(OSError):
    """The file is larger than the bound it is read with."""


def open_regular(path: str | os.PathLike[str], flags: int, *, follow_links: bool) -> int:
    """A descriptor of ``path`` opened with ``flags`` (O_RDONLY or O_WRONLY, ...), only if it is a
    regular file. Raises NotRegularFile (errno EINVAL; a symbolic link without ``follow_links``:
    ELOOP), or the OSError of the open (FileNotFoundError, ...).

    The path is first opened ``O_PATH``, which never opens the file itself: a FIFO does not block,
    a device's open has no side effect. Only a regular file is then opened for real, through
    /proc/self/fd (the very inode checked); without /proc, by its path with ``O_NONBLOCK`` and
    compared with the checked inode."""
    link_flag = 0 if follow_links else os.O_NOFOLLOW
    handle = os.open(path, os.O_PATH | os.O_CLOEXEC | link_flag)
    try:
        checked = os.fstat(handle)
        _require_regular(checked, path)
        open_flags = flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(f"/proc/self/fd/{handle}", open_flags)
        except FileNotFoundError:  # no /proc (a bare chroot)
            fd = os.open(path, open_flags | link_flag)
        except OSError as error:  # named after the path, not after /proc/self/fd/N
            raise OSError(error.errno, error.strerror, os.fspath(path)) from None
    finally:
        os.close(handle)
    try:
        info = os.fstat(fd)
        _require_regular(info, path)
        if (info.st_dev, info.st_ino) != (checked.st_dev, checked.st_ino):
            raise NotRegularFile(errno.EINVAL, "a file replaced while being opened", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], limit: int, *, follow_links: bool) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`), at most ``limit`` of them:
    FileTooLarge (errno EFBIG) when it holds more, before reading when its size says so.
    Memory: the file's size, once (no list of chunks joined while the file stays put)."""
    fd = open_regular(path, os.O_RDONLY, follow_links=follow_links)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise FileTooLarge(errno.EFBIG, f"{_size(size)}, more than the {_size(limit)} detoxd reads",
                               os.fspath(path))
        data = _read_bounded(fd, limit, first=size + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise FileTooLarge(errno.EFBIG, f"more than the {_size(limit)} detoxd reads", os.fspath(path))
    return data


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def kind_of(mode: int) -> str:
    """What a file of this mode is, in words ("a FIFO", "a regular file", ...)."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode)
                else "of an unknown kind")


def _require_regular(info: os.stat_result, path: str | os.PathLike[str]) -> None:
    if stat.S_ISLNK(info.st_mode):  # O_PATH | O_NOFOLLOW opens the link itself
        raise NotRegularFile(errno.ELOOP, "a symbolic link", os.fspath(path))
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(errno.EINVAL, kind_of(info.st_mode), os.fspath(path))


def stat_file(base_fd: int, path: str, trusted: Collection[int]) -> os.stat_result:
    """The checks of :func:`read_file` (or :func:`read_absolute`) without reading the file."""
    if path.startswith("/"):
        pure = PurePosixPath(os.path.normpath(path))
        with open_directory(str(pure.parent), trusted) as directory:
            return _check_entry(directory, pure.name, trusted, path)
    parts = [part for part in PurePosixPath(path).parts if part not in ("", ".")]
    if not parts or ".." in parts:
        raise Untrusted(f"{path!r}: a path with '..' is not allowed")
    directory = os.dup(base_fd)
    try:
        for part in parts[:-1]:
            child = _enter(directory, part, trusted, links_ok=False, sticky_ok=False, shown=path)
            assert isinstance(child, int)
            os.close(directory)
            directory = child
        return _check_entry(directory, parts[-1], trusted, path)
    finally:
        os.close(directory)


def _check_entry(directory: int, name: str, trusted: Collection[int], shown: str) -> os.stat_result:
    try:
        info = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        raise Untrusted(f"cannot read {shown!r}: No such file or directory", missing=True) from None
    except OSError as exc:
        raise Untrusted(f"cannot read {shown!r}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise Untrusted(f"refusing {shown!r}: a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise Untrusted(f"refusing {shown!r}: not a regular file")
    problem = untrusted_reason(info, trusted)
    if problem:
        raise Untrusted(f"refusing {shown!r}: {problem}")
    return info


def read_absolute(path: str, trusted: Collection[int], limit: int) -> ReadResult:
    """Read the file at the absolute ``path``: its directory is walked as the config
    directory is (trusted symlinks followed), the file itself must not be a link."""
    pure = PurePosixPath(os.path.normpath(path))
    with open_directory(str(pure.parent), trusted) as directory:
        return _read_entry(directory, pure.name, trusted, limit, path)


# ---- internals ----

def _walk_to_directory(path: str, trusted: Collection[int]) -> int:
    if not path.startswith("/"):
        raise Untrusted(f"{path!r} is not an absolute path")
    pending = list(PurePosixPath(os.path.normpath(path)).parts[1:])
    hops = 0
    fd = os.open("/", _DIR_FLAGS)
    walked: list[str] = []
    try:
        _check_directory(fd, "/", trusted, sticky_ok=bool(pending))
        while pending:
            part = pending.pop(0)
            shown = "/" + "/".join([*walked, part])
            child = _enter(fd, part, trusted, links_ok=True, sticky_ok=bool(pending), shown=shown)
            if isinstance(child, int):
                os.close(fd)
                fd = child
                walked.append(part)
                continue
            hops += 1
            if hops > MAX_SYMLINKS:
                raise Untrusted(f"too many symbolic links on the way to {path!r}")
            # The link lies in a checked directory and is owned by a trusted user: walk its
            # target with the same checks, from / (a relative target from the link's directory).
            base = "" if child.startswith("/") else "/".join(walked)
            rest = list(PurePosixPath(os.path.normpath("/" + base + "/" + child)).parts[1:])
            os.close(fd)
            fd = os.open("/", _DIR_FLAGS)
            walked = []
            pending = rest + pending
        return fd
    except BaseException:
        os.close(fd)
        raise


def _enter(parent: int, name: str, trusted: Collection[int], *, links_ok: bool, sticky_ok: bool,
           shown: str) -> int | str:
    """The checked directory ``name`` in ``parent`` as a new descriptor, or, when it is a
    symlink that may be followed, the link's target."""
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        info = _lstat(parent, name, shown, exc)
        if not stat.S_ISLNK(info.st_mode):
            raise Untrusted(f"{shown!r} is not a directory") from None
        if not links_ok:
            raise Untrusted(f"refusing {shown!r}: a symbolic link") from None
        if info.st_uid not in trusted:
            raise Untrusted(f"refusing the symbolic link {shown!r}: owned by uid {info.st_uid}") from None
        return os.readlink(name, dir_fd=parent)
    try:
        _check_directory(child, shown, trusted, sticky_ok=sticky_ok)
    except BaseException:
        os.close(child)
        raise
    return child


def _lstat(parent: int, name: str, shown: str, cause: OSError) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        raise Untrusted(f"{shown!r} does not exist", missing=True) from None
    except OSError as exc:
        raise Untrusted(f"cannot open {shown!r}: {exc.strerror or cause.strerror}") from None


def _check_directory(fd: int, shown: str, trusted: Collection[int], *, sticky_ok: bool) -> None:
    # Root owns the directories above any config; it is trusted for them whatever ``trusted`` says.
    problem = untrusted_reason(os.fstat(fd), {0, *trusted}, sticky_ok=sticky_ok)
    if problem:
        raise Untrusted(f"refusing the directory {shown!r}: {problem}")


def _read_entry(directory: int, name: str, trusted: Collection[int], limit: int, shown: str) -> ReadResult:
    try:
        before = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        raise Untrusted(f"{shown!r} does not exist", missing=True) from None
    except OSError as exc:
        raise Untrusted(f"cannot open {shown!r}: {exc.strerror}") from None
    if stat.S_ISLNK(before.st_mode):
        raise Untrusted(f"refusing {shown!r}: a symbolic link")
    if not stat.S_ISREG(before.st_mode):
        raise Untrusted(f"refusing {shown!r}: not a regular file")  # a FIFO is never opened
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Untrusted(f"refusing {shown!r}: a symbolic link") from None
        raise Untrusted(f"cannot open {shown!r}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # the file that is open, whatever the path says now
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise Untrusted(f"refusing {shown!r}: it changed while being opened")
        problem = untrusted_reason(info, trusted)
        if problem:
            raise Untrusted(f"refusing {shown!r}: {problem}")
        if info.st_size > limit:
            raise TooLarge(f"{shown!r} is larger than {_size(limit)}")
        data = _read_bounded(fd, limit)
        if len(data) > limit:
            raise TooLarge(f"{shown!r} is larger than {_size(limit)}")
        return ReadResult(data, info)
    finally:
        os.close(fd)


def _read_bounded(fd: int, limit: int, first: int = 1 << 20) -> bytes:
    """Up to ``limit + 1`` bytes (so that "more than the limit" shows); ``first``: the size of the
    first read (a regular file's size + 1 reads it whole in one piece, without a copy)."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        try:
            chunk = os.read(fd, min(first if not chunks else 1 << 20, limit + 1 - total))
        except BlockingIOError:
            break  # a regular file never blocks; be safe anyway
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"

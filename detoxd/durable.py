"""Crash-safe file writes: every writer of detoxd goes through here.

A file is replaced by "write a temporary file beside it, fsync, rename over it, fsync the
directory": after a crash or a power cut a reader finds the old file or the new one, whole, never
a mix. A temporary file a crash left behind carries :data:`TEMP_SUFFIX`, so start-up can find it.
(The hosts file has a second, in-place way for a bind-mounted /etc/hosts: see hostsfile.)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".detoxd-new"
# Temporary files older detoxd versions left in the state directory.
_OLD_TEMP_SUFFIX = ".tmp"


def replace_file(path: Path, data: bytes, *, mode: int, keep_existing_mode: bool = False) -> None:
    """Atomically and durably make ``path`` hold ``data``.

    The new file gets ``mode``, or with ``keep_existing_mode`` the owner and mode of the file it
    replaces (when there is one): /etc/hosts and browser policies keep what the admin gave them,
    a user's config file (mako's, written by the tray) keeps its mode.
    """
    existing: os.stat_result | None = None
    if keep_existing_mode:
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            if existing is None:
                os.fchmod(stream.fileno(), mode)  # explicit: the service's umask is 0077
            else:  # owner first: chown clears set-id bits that chmod then restores
                made = os.fstat(stream.fileno())
                if (made.st_uid, made.st_gid) != (existing.st_uid, existing.st_gid):
                    # Root gives it back; a user cannot give away their file, or hand it a group
                    # they are not in: it keeps the mode, with the writer's group.
                    with contextlib.suppress(PermissionError):
                        os.fchown(stream.fileno(), existing.st_uid, existing.st_gid)
                os.fchmod(stream.fileno(), existing.st_mode & 0o7777)
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def remove_file(path: Path) -> bool:
    """Durably remove ``path`` (a power cut does not bring it back); False when it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True


def fsync_directory(directory: Path) -> None:
    """fsync a directory, so that a rename or unlink in it survives a power cut."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_temporaries(directory: Path, only_for: str | None = None) -> int:
    """Remove the temporary files a crash left between write and rename; returns how many.

    Only detoxd's own names are touched: ``.<name>.<random>.detoxd-new`` (and ``.tmp`` in the
    state directory); with ``only_for`` only those of that one file (``/etc`` holds others').
    Call at start-up, before any writer runs.
    """
    prefix = f".{only_for}." if only_for else "."
    suffixes = (TEMP_SUFFIX,) if only_for else (TEMP_SUFFIX, _OLD_TEMP_SUFFIX)
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(suffixes):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
    return removed

"""The ledger: detoxes started and ended, kept outside the state directory.

One JSON line per event (``{"at": ..., "kind": ..., ...}``), appended and fsynced, in the
evidence directory (``/var/log/detoxd/ledger.jsonl``). It holds only the daemon's starts, the
detoxes' starts and ends and lost states: a handful of lines per detox, so that removing the
state directory while detoxd is stopped does not take the word that a detox was running with it
(see :mod:`detoxd.core.evidence`). Bounded: past :data:`MAX_BYTES` the older half goes.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from detoxd.durable import replace_file
from detoxd.service.state_store import StateFileError, read_bounded

MAX_BYTES = 256 << 10
FILE_MODE = 0o600


def append(path: Path, kind: str, at: datetime, **fields: Any) -> None:
    """Append one event; raises OSError (the caller reports it, enforcement goes on)."""
    line = (json.dumps({"at": at.isoformat(timespec="seconds"), "kind": kind, **fields},
                       separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        size = os.fstat(fd).st_size
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if size + len(line) > MAX_BYTES:
        _keep_newer_half(path)


def read(path: Path) -> list[dict[str, Any]]:
    """The events, oldest first; a missing or unusable ledger is empty, a bad line is skipped."""
    try:
        data = read_bounded(path, 2 * MAX_BYTES)
    except (OSError, StateFileError):
        return []
    events = []
    for raw in data.splitlines():
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            event = json.loads(raw)
            if isinstance(event, dict) and isinstance(event.get("kind"), str):
                events.append(event)
    return events


def _keep_newer_half(path: Path) -> None:
    """The newer half, and the latest start or end of a detox whatever its age (a restart loop
    must not push the word that a detox runs out of the ledger)."""
    data = read_bounded(path, 2 * MAX_BYTES)
    cut = data.find(b"\n", len(data) // 2) + 1
    older, newer = data[:cut].splitlines(keepends=True), data[cut:]
    latest_detox = [line for line in older if b'"kind":"detox_' in line][-1:]
    replace_file(path, b"".join(latest_detox) + newer, mode=FILE_MODE)

"""What every DNS-engine target shares: its interface, its errors, a crash-safe file writer.

The network agent (:mod:`detoxd.netagent.agent`) drives one target per configured engine. A
target puts the names into its engine, looks for changes others made (and undoes them), and at
the end takes out exactly what it added. It never raises anything but :class:`EngineError` for
problems on the engine's side, and no message it produces contains a secret.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from detoxd.core.network import EngineConfig
from detoxd.durable import fsync_directory


class EngineError(Exception):
    """The engine could not be reached or refused; ``state`` is what status shows."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state  # unreachable | auth_failed | refused | error


class EngineTarget(Protocol):
    config: EngineConfig

    def apply(self, names: Sequence[str], allowed: Sequence[str]) -> None:
        """Hold exactly these names (and exceptions for the allowed names under them)."""

    def check(self) -> list[str]:
        """Find what others changed, put it back, and describe each change (for the log)."""

    def remove(self) -> None:
        """Take out everything detoxd added, also after a crash, also when nothing was applied."""

    def describe(self) -> str:
        """What `detoxd check` prints: the engine's version, whether the credentials work."""


def write_config_file(path: Path, text: str) -> None:
    """Replace a config file an engine reads (mode 0644) by rename: it sees old or new, whole."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_directory(path.parent)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True

"""The hosts-file target: the guarded block between detoxd's markers in /etc/hosts.

Besides the :class:`~detoxd.service.targets.Target` methods, it hands the daemon's loop an
inotify descriptor (``fileno``), the moment a pending change has settled (``deadline``) and the
event handler, so that a tamper is restored within milliseconds rather than at the next tick.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from detoxd.service.targets import Drift
from detoxd.service.targets.guard import HostsGuard, Outcome
from detoxd.service.targets.hostsfile import HostsFile, HostsFileError, Recovery, explain

NAME = "hosts file"


class HostsTarget:
    name = NAME

    def __init__(self, path: Path, state_dir: Path, monotonic: Callable[[], float]) -> None:
        self.path = path
        self.file = HostsFile(path, state_dir)
        self.problem: HostsFileError | None = None  # why the last try to enforce failed
        # Finish or roll back a write a crash interrupted, before reading. Never raises: a
        # journal that cannot be replayed yet stays, and the first write says why.
        self.recovery = self.file.recover()
        if self.recovery is Recovery.NOT_YET and self.file.recovery_error is not None:
            self.problem = explain(self.file.recovery_error, path)
        self.file.keep_reserve(self.file.size())  # in-place mode: room for a restore
        self.guard = HostsGuard(self.file, monotonic)

    @property
    def names(self) -> frozenset[str]:
        return self.guard.names

    @property
    def in_sync(self) -> bool:
        return self.guard.in_sync

    def apply(self, names: frozenset[str], order: Sequence[str]) -> None:
        with self._reporting():
            self.guard.set_names(names, order)

    def check(self, now: float, *, full: bool) -> list[Drift]:
        """Settle a pending change (inotify saw one) and stat (or, with ``full``, read) the file."""
        with self._reporting():
            drift = _drift(self.guard.settle(now))
            self.guard.verify(full=full)
        return drift

    def settle(self, now: float) -> list[Drift]:
        with self._reporting():
            return _drift(self.guard.settle(now))

    @contextlib.contextmanager
    def _reporting(self) -> Iterator[None]:
        """Every failure as a HostsFileError (reason and fix, for status and doctor)."""
        try:
            yield
        except OSError as error:
            self.problem = explain(error, self.path)
            raise self.problem from error
        if self.guard.enforced:
            self.problem = None

    def retry_after(self, seconds: float) -> None:
        """A write failed: look at the file again after ``seconds`` (not only at the next change)."""
        self.guard.retry_after(seconds)

    def remove(self) -> None:
        self.guard.set_names(frozenset())

    def state(self) -> dict[str, Any]:
        problem = self.problem if not self.guard.enforced else None
        return {"hosts_file": str(self.path), "hosts_in_sync": self.guard.in_sync,
                "hosts_file_problem": None if problem is None else {
                    "reason": problem.strerror, "fix": problem.fix}}

    # ---- for the daemon's select() loop ----

    def fileno(self) -> int:
        return self.guard.fileno()

    def deadline(self) -> float | None:
        return self.guard.deadline()

    def handle_events(self) -> None:
        self.guard.handle_events()

    def close(self) -> None:
        self.guard.close()


def _drift(outcome: Outcome | None) -> list[Drift]:
    if outcome is None or not outcome.tampered:
        return []
    return [Drift(NAME, "block restored")]

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

from detoxd.core.hosts import Neutralised
from detoxd.core.statustext import count
from detoxd.service.targets import Drift
from detoxd.service.targets.hosts.fsops import HostsFileError, explain
from detoxd.service.targets.hosts.guard import HostsGuard, Outcome
from detoxd.service.targets.hosts.hostsfile import HostsFile, Recovery

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
        # Tampering undone by apply() (a change that landed as new names were applied): the
        # engine counts it like the drift check() returns (see take_drift).
        self._drift: list[Drift] = []
        self._neutralised: list[Neutralised] = []  # for the journal, tamper or not (take_neutralised)

    @property
    def names(self) -> frozenset[str]:
        return self.guard.names

    @property
    def in_sync(self) -> bool:
        return self.guard.in_sync

    def apply(self, names: frozenset[str], order: Sequence[str]) -> None:
        with self._reporting():
            self._drift += self._seen(self.guard.set_names(names, order))

    def take_drift(self) -> list[Drift]:
        """What apply() restored that someone else had changed, once."""
        drift, self._drift = self._drift, []
        return drift

    def check(self, now: float, *, full: bool) -> list[Drift]:
        """Settle a pending change (inotify saw one) and stat (or, with ``full``, read) the file."""
        with self._reporting():
            drift = self._seen(self.guard.settle(now))
            self.guard.verify(full=full)
        return drift

    def settle(self, now: float) -> list[Drift]:
        with self._reporting():
            return self._seen(self.guard.settle(now))

    def _seen(self, outcome: Outcome | None) -> list[Drift]:
        if outcome is not None:
            self._neutralised += outcome.neutralised
        return _drift(outcome)

    def take_neutralised(self) -> list[Neutralised]:
        """Lines neutralised since the last call (at a detox's start too: not always a tamper)."""
        found, self._neutralised = self._neutralised, []
        return found

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
        in_sync = self.guard.in_sync
        # Read only while the file is not as detoxd left it and no change is being settled (that
        # takes milliseconds, and a read of a large file meanwhile would only slow it down): a
        # change not seen yet (the loop held up), a line overriding a blocked name may be in it.
        looking = not in_sync and self.guard.deadline() is None
        overrides = self.guard.overrides_in_file() if looking else ()
        return {"hosts_file": str(self.path), "hosts_in_sync": in_sync,
                "hosts_file_problem": None if problem is None else {
                    "reason": problem.strerror, "fix": problem.fix},
                "hosts_overrides": [{"line": str(line), "names": list(line.names)} for line in overrides]}

    def override_problems(self, overrides: list[dict[str, Any]]) -> list[str]:
        """The problems entry for lines overriding blocked names (from :meth:`state`)."""
        if not overrides:
            return []
        shown = "; ".join(repr(found["line"]) for found in overrides[:5])
        more = f" and {len(overrides) - 5} more" if len(overrides) > 5 else ""
        lines = f"1 line of {self.path} gives" if len(overrides) == 1 \
            else f"{len(overrides)} lines of {self.path} give"
        return [f"{lines} a blocked name another address (being commented out): {shown}{more}"]

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
    if outcome.neutralised:
        lines = "; ".join(f"{line} ({', '.join(line.names)})" for line in outcome.neutralised[:5])
        more = f" and {len(outcome.neutralised) - 5} more" if len(outcome.neutralised) > 5 else ""
        return [Drift(NAME, f"neutralised {count(len(outcome.neutralised), 'line')} giving a blocked "
                      f"name another address: {lines}{more}")]
    return [Drift(NAME, "block restored")]

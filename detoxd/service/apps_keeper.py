"""The blocked apps: the rules in force (configured, and kept by a locked detox's ratchet), and
the watcher that closes them while a detox runs.

Like the names, while a locked detox runs app rules only accumulate; the ones kept are saved in
the state directory (:func:`state_store.encode_kept_apps`), so a restart with the app removed from
the YAML still closes it. Called with the engine's lock held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from detoxd.core import apps
from detoxd.service import journal, state_store
from detoxd.service.appwatch import AppWatcher, Closure

log = logging.getLogger("detoxd")

Persist = Callable[[str, Callable[[], None]], bool]  # the engine's: a failed write said loudly


class AppsKeeper:
    def __init__(self, watcher: AppWatcher, kept_file: Path, persist: Persist) -> None:
        self.watcher = watcher
        self._kept_file = kept_file
        self._persist = persist
        self.configured: tuple[apps.AppRule, ...] = ()
        self.kept = state_store.load_kept_apps(kept_file)
        self._how: str | None = None  # how apps were found when last said (see how())

    def rules(self) -> tuple[apps.AppRule, ...]:
        """Every rule in force, configured or kept (a kept one may repeat a configured name)."""
        return (*self.configured, *self.kept)

    def names(self) -> frozenset[str]:
        return frozenset(rule.name for rule in self.rules())

    def enforce(self, *, locked: bool, only: frozenset[str] | None = None) -> None:
        """``only``: outside a detox, the rules a block window names (None: every rule)."""
        configured = self.configured
        rules = apps.ratchet_rules(self.kept, configured) if locked else configured
        if only is not None:
            rules = tuple(rule for rule in rules if rule.name in only)
        kept = rules if locked else ()
        if kept != self.kept and self.save(kept):
            self.kept = kept  # else retried at the next enforce
        self.watcher.set_rules(rules)

    def save(self, kept: tuple[apps.AppRule, ...] | None = None) -> bool:
        data = state_store.encode_kept_apps(self.kept if kept is None else kept)
        return self._persist("kept app rules", lambda: state_store.write_atomic(self._kept_file, data))

    def next_due(self, now: float, *, active: bool) -> float | None:
        """When :meth:`watch` must run again (monotonic); None: nothing to watch."""
        return self.watcher.next_due(now) if active else None

    def watch(self, now: float, *, active: bool) -> bool:
        """Close blocked apps started since the last tick, only while a detox runs. True when
        some were closed (journalled; status changed)."""
        if not active:
            self.watcher.pause()
            return False
        try:
            closures = self.watcher.scan(now)
        except OSError as exc:  # /proc unreadable: everything else keeps working
            log.error("cannot watch for blocked apps: %s", exc)
            return False
        self._say_how(now)
        return self._journal(closures)

    def exec_events(self, pids: list[int], now: float, *, active: bool, lease_seconds: float,
                    watching: bool, lost: bool) -> bool:
        """The exec watcher's PIDs: closed at once if blocked apps (only while a detox runs).
        True when some were closed."""
        try:
            closures = self.watcher.exec_events(pids if active else (), now, lease_seconds=lease_seconds,
                                                watching=watching, lost=lost)
        except OSError as exc:
            log.error("cannot look at exec'd processes: %s", exc)
            return False
        self._say_how(now)
        return self._journal(closures)

    def how(self, now: float) -> str:
        """How blocked apps are found: "exec_events" (the kernel tells) or "polling" (/proc)."""
        return "exec_events" if self.watcher.events_in_force(now) else "polling"

    def _say_how(self, now: float) -> None:
        how = self.how(now)
        if how != self._how:
            if how == "exec_events":
                log.info("blocked apps are closed at exec: the exec watcher passes on the kernel's events")
            elif self._how is not None:
                log.warning("no exec events from detoxd-execwatch any more: polling /proc for blocked apps")
            self._how = how

    @staticmethod
    def _journal(closures: list[Closure]) -> bool:
        for closure in closures:
            journal.record("app_closed", app=closure.app, uid=closure.root.real_uid, pid=closure.root.pid,
                           via=closure.via)
        return bool(closures)

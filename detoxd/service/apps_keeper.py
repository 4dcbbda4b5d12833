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
from detoxd.service.appwatch import AppWatcher

log = logging.getLogger("detoxd")

Persist = Callable[[str, Callable[[], None]], bool]  # the engine's: a failed write said loudly


class AppsKeeper:
    def __init__(self, watcher: AppWatcher, kept_file: Path, persist: Persist) -> None:
        self.watcher = watcher
        self._kept_file = kept_file
        self._persist = persist
        self.configured: tuple[apps.AppRule, ...] = ()
        self.kept = state_store.load_kept_apps(kept_file)

    def rules(self) -> tuple[apps.AppRule, ...]:
        """Every rule in force, configured or kept (a kept one may repeat a configured name)."""
        return (*self.configured, *self.kept)

    def names(self) -> frozenset[str]:
        return frozenset(rule.name for rule in self.rules())

    def enforce(self, *, locked: bool) -> None:
        configured = self.configured
        rules = apps.ratchet_rules(self.kept, configured) if locked else configured
        kept = rules if locked else ()
        if kept != self.kept and self.save(kept):
            self.kept = kept  # else retried at the next enforce
        self.watcher.set_rules(rules)

    def save(self, kept: tuple[apps.AppRule, ...] | None = None) -> bool:
        data = state_store.encode_kept_apps(self.kept if kept is None else kept)
        return self._persist("kept app rules", lambda: state_store.write_atomic(self._kept_file, data))

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
        for closure in closures:
            journal.record("app_closed", app=closure.app, uid=closure.root.real_uid, pid=closure.root.pid)
        return bool(closures)

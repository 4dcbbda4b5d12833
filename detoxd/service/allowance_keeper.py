"""The daemon's allowances: the pure planning of :mod:`detoxd.core.allowances` on the real clock,
the system time zone, a state file, and logind for who may open.

The engine asks which blocked names the open allowances let through (:meth:`unblocked`), calls
:meth:`tick` every second (a change in what is open means: apply the block again, everywhere), and
passes ``open``/``close`` requests with the peer from SO_PEERCRED: the command table
(:mod:`detoxd.service.commands`) has already checked it is a person at the seat, as logind (here
:attr:`AllowanceKeeper.logind`) says. A refusal is raised as an :class:`~detoxd.protocol.ErrorReply`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from detoxd.clock import Clock
from detoxd.core import allowances as al
from detoxd.core.detox import BootReading, Refusal
from detoxd.protocol import Peer, bad_request, refused
from detoxd.service import seat, state_store
from detoxd.service.scheduler import local_zone

log = logging.getLogger("detoxd")


class AllowanceKeeper:
    def __init__(self, state_file: Path, clock: Clock, *,
                 timezone: Callable[[], tzinfo] = local_zone,
                 logind: seat.Logind | None = None) -> None:
        self.state_file = state_file
        self.clock = clock
        self._timezone = timezone
        self.logind: seat.Logind | None = logind if logind is not None else _default_logind()
        self.rules: tuple[al.Allowance, ...] = ()  # in force: as written, within the lock's ratchet
        self.warnings: list[str] = []
        self.state = self._load()
        self.tz = timezone()
        self._open: frozenset[str] = frozenset()
        self._noticed: set[tuple[str, str]] = set()  # (name, closing time) already announced
        self._opened_at: dict[str, datetime] = {}  # trusted clock, for minutes_used
        self.events: list[tuple[str, dict[str, Any]]] = []  # for the journal, drained by the engine
        # Until the first config is in, what is open was already journalled by the last process.
        self._quiet = True
        self._saved = json.dumps(al.to_json(self.state))
        self._save_error: str | None = None  # the last failed save, logged once

    # ---- config and detox ----

    def configure(self, written: Sequence[al.Allowance], file: str = "blocklist.yaml") -> None:
        """The allowances of a config that loaded; a locked detox holds them within its ceiling."""
        held, issues = al.ratchet(self.state.ceiling, written, file)
        warnings = [str(issue) for issue in issues]
        for warning in warnings:
            if warning not in self.warnings:
                log.warning("%s", warning)
        self.warnings = warnings
        self.rules = held
        if self.state.ceiling is not None:  # what was given up cannot come back until the end
            self.state = al.AllowancesState(self.state.clock, self.state.usage, held)
        self.tick()
        self._quiet = False

    def detox_started(self, *, locked: bool) -> None:
        self.state = al.started(self.state, self.rules, locked=locked)
        self.tick()
        self.save()

    def detox_ended(self) -> None:
        self.state = al.ended(self.state)
        self.warnings = []
        self.tick()
        self.save()

    def sync_lock(self, *, active: bool, locked: bool) -> None:
        """At start-up: a state file from before a detox ended (or began) is brought in line."""
        if not active and (self.state.ceiling is not None or self.state.usage):
            self.detox_ended()
        elif active and locked and self.state.ceiling is None:
            self.state = al.AllowancesState(self.state.clock, self.state.usage, self.rules)
            self.save()

    # ---- time ----

    def tick(self) -> bool:
        """Count time, start new days, close what is due. True when what is open changed."""
        self.tz = self._timezone()
        boot = BootReading(self.clock.boot_id(), self.clock.boottime())
        self.state = al.settle(al.tick(self.state, self.clock.now(), boot), self.rules, self.tz)
        return self._refresh()

    def seconds_to_next_change(self) -> float | None:
        """Seconds from the last tick until an allowance opens, closes or is announced as closing
        by itself (see :func:`allowances.next_change`); None: nothing is due."""
        moment = al.next_change(self.state, self.rules, self.tz)
        if moment is None or self.state.clock is None:
            return None
        return (moment - self.state.clock.at).total_seconds()

    def _refresh(self, uid: int | None = None) -> bool:
        """Notice what opened and closed; ``uid`` made the change (None: a window or the clock)."""
        now_open = frozenset(rule.name for rule in al.open_rules(self.state, self.rules, self.tz))
        changed = now_open != self._open
        now = self.state.clock.at if self.state.clock is not None else self.clock.now()
        for name in sorted(now_open - self._open):
            until = self._until(name)
            log.info("allowance %s open until %s", name, self._until_text(name))
            self._opened_at[name] = now
            if self._quiet:
                continue
            minutes = round((until - now).total_seconds() / 60, 1) if until else None
            self.events.append(("allowance_opened", {"uid": uid, "allowance": name, "minutes": minutes}))
        for name in sorted(self._open - now_open):
            log.info("allowance %s closed: blocked again", name)
            opened = self._opened_at.pop(name, now)
            used = round((now - opened).total_seconds() / 60, 1)
            self.events.append(("allowance_closed", {"uid": uid, "allowance": name, "minutes_used": used}))
        self._open = now_open
        if changed or self._usage_changed():
            self.save()
        return changed

    def unblocked(self, blocked: frozenset[str], *, detox_active: bool) -> frozenset[str]:
        """The blocked names the open allowances let through (nothing outside a detox)."""
        if not detox_active:
            return frozenset()
        return al.unblocked(blocked, al.open_rules(self.state, self.rules, self.tz))

    def notices(self, *, detox_active: bool) -> list[dict[str, Any]]:
        """Allowances closing within two minutes that were not announced yet (for the desktop)."""
        if not detox_active:
            return []
        found = []
        for rule, until in al.closing_soon(self.state, self.rules, self.tz):
            key = (rule.name, until.isoformat())
            if key not in self._noticed:
                self._noticed.add(key)
                assert self.state.clock is not None
                wall = self.state.clock.to_wall(until, self.clock.now())
                seconds = round((until - self.state.clock.at).total_seconds())
                found.append({"name": rule.name, "closes_at": wall.isoformat(timespec="seconds"),
                              "seconds_left": seconds})
        return found

    # ---- requests ----

    def open(self, request: dict[str, Any], peer: Peer, *, detox_active: bool) -> dict[str, Any]:
        name, minutes = request.get("name"), request.get("minutes")
        if not isinstance(name, str) or (minutes is not None and (
                isinstance(minutes, bool) or not isinstance(minutes, int | float))):
            raise bad_request("open needs a name and optional minutes (a number)")
        self.tick()
        rule = al.find(self.rules, name)
        result = rule if isinstance(rule, Refusal) else al.open_allowance(
            self.state, rule, self.tz, minutes=None if minutes is None else float(minutes),
            detox_active=detox_active)
        if isinstance(result, Refusal):
            log.warning("refused open %s from uid %d: %s", name[:64], peer.uid, result.reason)
            raise refused(result.reason)
        self.state = result.state
        log.info("allowance %s opened by uid %d for %.1f min", name, peer.uid, result.granted_seconds / 60)
        self._refresh(peer.uid)
        self.save()
        return {"ok": True, "message": result.message}

    def close(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        name = request.get("name")
        if not isinstance(name, str):
            raise bad_request("close needs a name")
        self.tick()
        rule = al.find(self.rules, name)
        result = rule if isinstance(rule, Refusal) else al.close_allowance(self.state, rule, self.tz)
        if isinstance(result, Refusal):
            raise refused(result.reason)
        self.state, message = result
        log.info("allowance %s closed by uid %d", name, peer.uid)
        self._refresh(peer.uid)
        self.save()
        return {"ok": True, "message": message}

    # ---- status and state ----

    def status(self, *, detox_active: bool) -> list[dict[str, Any]]:
        return al.status(self.state, self.rules, self.tz, self.clock.now(), detox_active=detox_active)

    def save(self) -> None:
        """Never raises: a full or odd state directory must not stop a start, a tick or an
        allowance (the engine reports the directory; the next change saves again)."""
        text = json.dumps(al.to_json(self.state))
        try:
            state_store.write_atomic(self.state_file, text.encode())
        except OSError as exc:
            if self._save_error != exc.strerror:
                log.error("cannot save the allowances in %s: %s", self.state_file, exc.strerror)
                self._save_error = exc.strerror
            return
        self._save_error = None
        self._saved = text

    def _usage_changed(self) -> bool:
        """Worth a write: a new day, an open or close, a ceiling. Not the time an open session
        spends or the clock's checkpoint, which move every tick: after a restart both are
        credited again from the saved checkpoint and the session's ``counted_to``."""
        return bool(_shape(json.loads(self._saved)) != _shape(al.to_json(self.state)))

    def _load(self) -> al.AllowancesState:
        try:
            return al.from_json(state_store.read_json(self.state_file))
        except FileNotFoundError:
            return al.AllowancesState()
        except (OSError, state_store.StateFileError, ValueError, KeyError, TypeError) as exc:
            # Budgets start over rather than the daemon failing; the file is kept as evidence.
            aside = state_store.set_aside(self.state_file)
            log.error("allowance state %s unreadable (%s): moved to %s", self.state_file, exc, aside)
            return al.AllowancesState()

    def names_of(self, name: str, blocked: frozenset[str]) -> frozenset[str]:
        """The blocked names allowance ``name`` lets through when open."""
        rule = al.find(self.rules, name)
        return frozenset() if isinstance(rule, Refusal) else al.unblocked(blocked, (rule,))

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        events, self.events = self.events, []
        return events

    def _until(self, name: str) -> datetime | None:
        rule = al.find(self.rules, name)
        if isinstance(rule, Refusal) or self.state.clock is None:
            return None
        return al.open_until(self.state, rule, self.tz)

    def _until_text(self, name: str) -> str:
        until = self._until(name)
        if until is None or self.state.clock is None:
            return "?"
        return self.state.clock.to_wall(until, self.clock.now()).isoformat(timespec="seconds")


def _shape(document: dict[str, Any]) -> Any:
    usage = {name: {key: value for key, value in fields.items() if key != "spent_seconds"}
             | {"session": (fields.get("session") or {}).get("until")}
             for name, fields in (document.get("usage") or {}).items()}
    return usage, document.get("ceiling")


def _default_logind() -> seat.Logind | None:
    login = seat.SdLogin()
    return login if login.available() else None

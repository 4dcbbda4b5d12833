"""The daemon's weekly block windows: the pure planning of :mod:`detoxd.core.schedule` on the
allowances' trusted clock, the system time zone and a state file (the windows' ratchet).

The engine asks which names the windows block now (:attr:`ScheduleKeeper.blocked`), calls
:meth:`tick` at every tick (True: what the windows block changed, apply the block again,
everywhere) and sleeps no longer than :meth:`seconds_to_next_change`. Planning is cached: a tick
between two changes costs a comparison, not a plan (see benchmarks/schedule_bench.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from detoxd.core import presets
from detoxd.core import schedule as sc
from detoxd.service import state_store
from detoxd.service.scheduler import local_zone

log = logging.getLogger("detoxd")


class ScheduleKeeper:
    def __init__(self, state_file: Path, trusted_now: Callable[[], datetime],
                 to_wall: Callable[[datetime], datetime], *,
                 timezone: Callable[[], tzinfo] = local_zone) -> None:
        self.state_file = state_file
        self._now = trusted_now  # the allowances' trusted clock: a clock set back opens nothing
        self._to_wall = to_wall
        self._timezone = timezone
        self.tz = timezone()
        self.load_problem: str | None = None  # a warning in status until the daemon restarts
        self.state = self._load()
        # Until a config loads, the entries last in force (a broken config does not end them).
        self.written: tuple[sc.BlockWindow, ...] = self.state.known
        self.after: tuple[str, ...] = ()
        self.warnings: list[str] = []
        self.events: list[tuple[str, dict[str, Any]]] = []  # for the journal, drained by the engine
        self.blocked: frozenset[str] = frozenset()  # what the active windows block now
        self.apps: frozenset[str] = frozenset()  # the app rules they close now (by name)
        self.whole_in_force = False  # an entry without `block:` is in force: the blocklist's paths too
        self._app_names: frozenset[str] = frozenset()  # every app rule of the blocklist
        self._whole: frozenset[str] = frozenset()
        self._allow: frozenset[str] = frozenset()
        self._names: dict[sc.BlockWindow, frozenset[str]] = {}
        self._rules: tuple[sc.BlockWindow, ...] = ()
        self._active: frozenset[str] = frozenset()  # names of the entries active now
        self._due: datetime | None = None  # the next change planned (trusted clock)
        self._planned: tuple[tzinfo, bool] | None = None  # (zone, detox_active) of the plan
        self._detox_active = False
        self._saved = ""
        self.save_problem: str | None = None  # status `problems` while it lasts

    # ---- config and detox ----

    def configure(self, written: Sequence[sc.BlockWindow], after: Sequence[str], *,
                  whole: frozenset[str], allow: frozenset[str], apps: frozenset[str] = frozenset(),
                  file: str = "detoxd.yaml") -> None:
        """The schedule of a config that loaded: loosening edits are held (a warning each)."""
        before = {held.rule.name for held in self.state.held}
        self.tz = self._timezone()
        now = self._now()
        self.state, issues = sc.reconcile(self.state, written, now, self.tz, file=file)
        self.written, self.after = tuple(written), tuple(after)
        if whole is not self._whole or allow != self._allow:
            self._rules = ()  # names computed again: the blocklist changed
        self._whole, self._allow, self._app_names = whole, allow, apps
        warnings = [str(issue) for issue in issues]
        for warning in warnings:
            if warning not in self.warnings:
                log.warning("%s", warning)
        self.warnings = warnings
        for held in self.state.held:
            if held.rule.name not in before:
                self.events.append(("schedule_edit_held", {
                    "entry": held.rule.name, "edit": held.edit, "locked": held.rule.lock,
                    "takes_effect": _iso(self._to_wall(held.takes_effect(now, self.tz)))}))
        self._planned = None  # plan again, now: the engine enforces right after a config loads
        self.save()
        self.tick(detox_active=self._detox_active)

    def detox_ended(self) -> None:
        """The entries named in `detox.after` take over from now."""
        if self.after and self.state.after_since is None:
            self.state = sc.ScheduleState(self.state.known, self.state.held, self._now())
            self.events.append(("schedule_after_detox", {"entries": list(self.after)}))
            self._planned = None
            self.save()
        self.tick(detox_active=False)  # before the engine enforces what the end leaves

    def continuing(self) -> list[str]:
        """What continues after the detox, for the closing notice: "workdays (mon,... 09:00-17:30: ...)"."""
        rules = {rule.name: rule for rule in self.written}
        return [f"{name} ({rules[name].describe()})" for name in self.after if name in rules]

    # ---- time ----

    def tick(self, *, detox_active: bool) -> bool:
        """Release held edits whose time came, open and close windows. True: :attr:`blocked` changed."""
        self._detox_active = detox_active
        if self.save_problem is not None:
            self.save()  # the obstacle may be gone (a full disk freed, a state directory back)
        tz = self._timezone()
        now = self._now()
        if tz != self.tz:
            self.tz, self._planned = tz, None
        if self.state.held:
            self.state, released = sc.release(self.state, now, self.tz)
            for held in released:
                log.info("schedule entry %s: held edit (%s) takes effect", held.rule.name, held.edit)
                self.events.append(("schedule_edit_released", {"entry": held.rule.name, "edit": held.edit}))
            if released:
                self._planned = None
                self.warnings = [str(issue) for issue in
                                 sc.held_issues(self.state, self.written, now, self.tz)]
                self.save()
        if self._planned == (self.tz, detox_active) and (self._due is None or now < self._due):
            return False
        return self._plan(now, detox_active)

    def _plan(self, now: datetime, detox_active: bool) -> bool:
        rules = sc.in_force(self.state, self.written, detox_active=detox_active, after=self.after)
        if rules != self._rules:
            self._names = {rule: sc.names_of(rule, self._whole, presets.load_preset, self._allow)
                           for rule in rules}
            self._rules = rules
        planned = sc.plan(rules, self._names, self.state, now, self.tz)
        active = planned.active
        for name in sorted(active - self._active):
            self.events.append(("window_opened", {"entry": name, **self._until(name, now)}))
            log.info("schedule window %s opened", name)
        for name in sorted(self._active - active):
            self.events.append(("window_closed", {"entry": name}))
            log.info("schedule window %s closed", name)
        self._active = active
        self._due = planned.next_change
        self._planned = (self.tz, detox_active)
        blocked = planned.blocked
        apps = self._app_names if planned.whole_apps else planned.apps & self._app_names
        changed = (blocked != self.blocked or apps != self.apps
                   or planned.whole_apps != self.whole_in_force)
        self.blocked, self.apps, self.whole_in_force = blocked, apps, planned.whole_apps
        return changed

    def _until(self, name: str, now: datetime) -> dict[str, Any]:
        ends = [moment for rule in self._rules if rule.name == name
                and (moment := sc.next_change_of(rule, now, self.tz)) is not None]
        return {"until": _iso(self._to_wall(max(ends)))} if ends else {}

    def whole_changed(self, whole: frozenset[str]) -> None:
        """The blocklist changed (a reload): entries without ``block:`` follow it."""
        if whole is not self._whole:
            self._whole, self._rules, self._planned = whole, (), None
            self.tick(detox_active=self._detox_active)

    def seconds_to_next_change(self) -> float | None:
        if self._due is None:
            return None
        return max(0.0, (self._due - self._now()).total_seconds())

    # ---- status and state ----

    def status(self, *, private: bool = True) -> list[dict[str, Any]]:
        return sc.status(self._rules, self.written, self.state, self._now(), self.tz, self._to_wall,
                         detox_active=self._detox_active, after=self.after, private=private)

    def problems(self) -> list[str]:
        return [self.save_problem] if self.save_problem else []

    def all_warnings(self) -> list[str]:
        return [*([self.load_problem] if self.load_problem else []), *self.warnings]

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        events, self.events = self.events, []
        return events

    def save(self) -> None:
        """Never raises (as the allowances' save): the next change saves again."""
        text = json.dumps(sc.to_json(self.state))
        if text == self._saved:
            self.save_problem = None  # what the file holds is what is in force again
            return
        try:
            state_store.write_atomic(self.state_file, text.encode())
        except OSError as exc:
            problem = (f"cannot save the schedule's held edits in {self.state_file}: "
                       f"{exc.strerror or exc} (a restart would forget them)")
            if problem != self.save_problem:  # once, not every change
                log.error("%s", problem)
                self.events.append(("schedule_state_unsaved", {"reason": str(exc.strerror or exc)}))
                self.save_problem = problem
            return
        self._saved = text
        self.save_problem = None

    def _load(self) -> sc.ScheduleState:
        try:
            return sc.from_json(state_store.read_json(self.state_file))
        except FileNotFoundError:
            return sc.ScheduleState()
        except (OSError, state_store.StateFileError, ValueError, KeyError, TypeError) as exc:
            aside = state_store.set_aside(self.state_file)
            log.error("schedule state %s unreadable (%s): moved to %s", self.state_file, exc, aside)
            self.load_problem = (f"the schedule's state {self.state_file} was unreadable ({exc}) and "
                                 f"was moved to {aside}: edits held by the ratchet were lost")
            return sc.ScheduleState()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")

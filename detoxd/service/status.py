"""The daemon's status: assembled from the engine's keepers and targets into a
:class:`detoxd.protocol.Status` (what `status`, the tray's events and doctor read), and served
without waiting on a busy engine.

The engine owns the state; this module only reads it. :meth:`StatusBuilder.build` runs with
:attr:`Engine.lock` held; :meth:`StatusBuilder.current` is what the control server's threads
call: it waits at most :data:`STATUS_LOCK_WAIT` for the lock, else answers from the snapshot of
the last tick, marked with its age, and a status from a main loop :data:`STALE_SECONDS` late for
its wake-up is marked stale and never "in sync".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from detoxd import __version__
from detoxd.core import detox, peerkey, plan
from detoxd.core.config import LockMode
from detoxd.core.planned import cancel_locked, cancellable_until
from detoxd.core.planned import starts_at as planned_start
from detoxd.protocol import (
    AgentReport,
    AllowanceStatus,
    EngineRow,
    HostsFileProblem,
    HostsOverride,
    HotSeat,
    MailStatus,
    NextSession,
    PeerLockStatus,
    ScheduleEntryStatus,
    Status,
    TimeHeld,
)
from detoxd.service import journal
from detoxd.service.liveness import VERIFIED_WITHIN_SECONDS

if TYPE_CHECKING:
    from detoxd.service.engine import Engine

log = logging.getLogger("detoxd")

STATUS_LOCK_WAIT = 0.25  # longer than this, status answers from the last tick's snapshot
STALE_SECONDS = 2.0  # a status older than this says "stale" and never "in sync"


class StatusBuilder:
    """The status of one engine: built under its lock, snapshotted each tick, served timely."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._snapshots: tuple[Status, Status, float] = (Status(), Status(), -1.0)
        self._stale_reported: float | None = None  # the stall already logged (its start)
        # Called (from the thread that found it) when a status first goes stale, and when the
        # loop runs again after one: the daemon pushes the status to the trays at once, as an
        # event, instead of leaving it to their once-a-minute keepalive.
        self.on_stale_change: Callable[[], None] | None = None

    def build(self, *, private: bool = False) -> Status:
        """The status now (``private``: config errors unredacted, for root). Under the lock."""
        engine = self.engine
        now = engine.clock.now()
        state = engine.state
        active = state.active
        hosts_state = engine.hosts.state()
        overrides = engine.hosts.override_problems(hosts_state["hosts_overrides"])  # while present
        problem = hosts_state["hosts_file_problem"]
        sessions = engine.sessions.status_fields(now)
        held = self._time_held()
        lock, peers_needed, peer_lock = self._lock_fields()
        upcoming, seat = sessions["next_session"], sessions["current_hot_seat"]
        return Status(
            state="active" if active else "scheduled" if state.planned is not None else "idle",
            locked=active and state.locked,
            lock=lock,
            peers_needed=peers_needed,
            peer_lock=peer_lock,
            started_at=_iso(state.started_at) if active else None,
            ends_at=_iso(detox.ends_at(state, now)),
            days_left=detox.days_left(state) if active else None,
            seconds_left=round(detox.remaining(state).total_seconds()) if active else None,
            days_total=state.duration_seconds / detox.SECONDS_PER_DAY if active else
            state.planned.days if state.planned is not None else None,
            domains_blocked=len(engine.hosts.names),
            domains_configured=len(engine.applied.names),
            paths_blocked=tuple(sorted(engine.browser.paths)),
            hosts_file=hosts_state["hosts_file"],
            hosts_in_sync=hosts_state["hosts_in_sync"],
            hosts_file_problem=None if problem is None else HostsFileProblem.from_json(problem),
            hosts_overrides=tuple(HostsOverride.from_json(line) for line in hosts_state["hosts_overrides"]),
            network=tuple(EngineRow.from_json(row) for row in engine.network.state()["network"]),
            # Read by each user's tray agent, which owns the desktop's do-not-disturb switch.
            notifications_suppress=engine.applied.suppress_notifications,
            agents=tuple(AgentReport.from_json(report)
                         for report in engine.agents.reports(during_detox=state.active)),
            tamper_events=state.tamper_events,
            apps_closed=engine.app_watcher.closed_counts(),
            apps_watch=engine.apps.how(engine.clock.monotonic()),
            clock_jumps=state.clock_jumps,
            time_held=held,  # downtime not credited until the clock is confirmed
            stale=False,  # true only in a status served from an old snapshot (see current)
            config_error=self._config_error_text(private),
            config_missing=tuple(engine.config_missing),  # files read as built-in defaults
            # Loud while it lasts: a full disk, a hosts file that cannot be written, lost state.
            state_error=engine.state_error,
            problems=(*sorted(engine.problems.values()), *overrides, *engine.mail.problems(),
                      *engine.schedule.problems()),
            warnings=(*self._loud_warnings(), *overrides, *_held_warnings(held),
                      *self._missing_config_warnings(), *engine.warnings, *engine.allowances.warnings,
                      *engine.schedule.all_warnings(), *self._session_warnings(now)),
            allowances=tuple(AllowanceStatus.from_json(item)
                             for item in engine.allowances.status(detox_active=engine.allowances_in_force)),
            schedule=tuple(ScheduleEntryStatus.from_json(item)
                           for item in engine.schedule.status(private=private)),
            next_session=NextSession.from_json(upcoming) if upcoming is not None else None,
            current_hot_seat=HotSeat.from_json(seat) if seat is not None else None,
            starts_at=_iso(planned_start(state)),  # a planned detox (`start --at`)
            cancellable_until=_iso(cancellable_until(state)),
            cancellable=state.planned is not None and not cancel_locked(state),
            version=__version__,
            mail=_mail_status(engine),
        )

    def _lock_fields(self) -> tuple[bool | str | None, int | None, PeerLockStatus | None]:
        """``lock`` mirrors `detox.lock` (true, false, "peers") for the running detox; then
        ``peers_needed`` and ``peer_lock``."""
        state = self.engine.state
        if not state.active:
            return None, None, None
        if state.peer_lock is None:
            return state.locked, None, None
        verifier = state.peer_lock.verifier
        return LockMode.PEERS.value, verifier.needed, PeerLockStatus(
            holders=tuple(verifier.holders), share_set=peerkey.set_words(verifier.share_set),
            failed_attempts=state.peer_lock.failed_attempts,
            retry_in_seconds=round(detox.peer_retry_in(state)))

    def _time_held(self) -> TimeHeld | None:
        state = self.engine.state
        held = state.held if state.active else state.planned.held if state.planned is not None else None
        if held is None:
            return None
        return TimeHeld(seconds=round(held.seconds), since=_iso(held.since), reason=held.reason)

    def _loud_warnings(self) -> list[str]:
        engine = self.engine
        loud = sorted(engine.problems.values())
        return [*loud, engine.state_error] if engine.state_error else loud

    def _missing_config_warnings(self) -> list[str]:
        engine = self.engine
        return [f"{engine.paths.config_dir / name} does not exist: `detoxd start` is refused until "
                "it is written" for name in engine.config_missing]

    def _config_error_text(self, private: bool) -> str | None:
        error = self.engine.config_error
        if error is None:
            return None
        return "\n".join(str(issue if private else issue.redacted()) for issue in error.issues)

    def _session_warnings(self, now: datetime) -> list[str]:
        """Sessions outside the running detox, or after the end of one started now."""
        engine = self.engine
        planned = engine.sessions.plan
        if planned is None:
            return []
        if engine.state.active:
            return plan.warnings(planned, engine.state.started_at, detox.ends_at(engine.state, now))
        start = planned_start(engine.state)
        if start is not None and engine.state.planned is not None:  # the sessions follow a planned start
            return plan.warnings(planned, start, start + timedelta(days=engine.state.planned.days))
        return plan.warnings(planned, None, now + timedelta(days=engine.applied.days))

    # ---- served to the control server's threads ----

    def snapshot(self) -> None:
        """At the end of each tick, under the lock: what a status asked while the lock is held
        long (a large valid block being written) answers from."""
        self._snapshots = (self.build(private=False), self.build(private=True),
                           self.engine.clock.monotonic())

    def ran_after_stale(self) -> bool:
        """From the loop: True once after a stale status was reported (it is fresh again)."""
        if self._stale_reported is None:
            return False
        self._stale_reported = None
        return True

    def current(self, *, private: bool = False) -> Status:
        """The status without waiting on a busy engine, and honest about it: see :meth:`_timely`;
        under the daemon's loop, never "in sync" when the hosts file was not verified within
        :data:`VERIFIED_WITHIN_SECONDS`."""
        engine = self.engine
        status = self._timely(private)
        unverified = unverified_for(engine.hosts_checked_at, engine.clock.monotonic()) \
            if engine.loop_seen is not None else None
        problems = [f"the hosts file was last verified {unverified:.0f} s ago (a change has not "
                    "settled: is the daemon being stopped and continued?)"] if unverified else []
        if engine.guard_problem is not None and not unverified:
            problems.append(f"{engine.guard_problem}: systemd's watchdog is not fed, it restarts detoxd")
        if not problems:
            return status
        return status.replace(hosts_in_sync=False, problems=(*status.problems, *problems),
                                   warnings=(*problems, *status.warnings))

    def _timely(self, private: bool) -> Status:
        """Marked stale when the main loop is :data:`STALE_SECONDS` late for the wake-up it asked
        for (or, before it asked one, has not gone round for as long)."""
        engine = self.engine
        if engine.lock.acquire(timeout=STATUS_LOCK_WAIT):
            try:
                status = self.build(private=private)
            finally:
                engine.lock.release()
            seen, now = engine.loop_seen, engine.clock.monotonic()
            age = 0.0 if seen is None else now - seen
            return self._stale(status, seen, age) if self._overdue(now, seen) else status
        public, full, taken = self._snapshots
        if taken < 0:
            with engine.lock:  # no tick yet: nothing to show but the real thing
                return self.build(private=private)
        now = engine.clock.monotonic()
        age = now - taken
        snapshot = (full if private else public).replace(snapshot_age_seconds=round(age, 1))
        return self._stale(snapshot, taken, age) if self._overdue(now, taken) else snapshot

    def _overdue(self, now: float, seen: float | None) -> bool:
        """The main loop is late by more than :data:`STALE_SECONDS`: later than the wake-up it
        asked for (it sleeps until the next due thing, up to a quarter minute idle, so its last
        round may be that old without anything wrong), or, before it asked, than ``seen``."""
        due = self.engine.loop_due if self.engine.loop_due is not None else seen
        return due is not None and now - due > STALE_SECONDS

    def _stale(self, status: Status, since: float | None, age: float) -> Status:
        """A status nobody has confirmed for ``age`` seconds: it cannot say the hosts file is in
        sync. Logged and journalled once per stall (from this thread: the main loop is stuck)."""
        problem = (f"the daemon's main loop has not gone round for {age:.0f} s: this status is "
                   "that old, and nothing confirms the block is in place")
        if self._stale_reported != since:
            self._stale_reported = since
            log.error("%s (a status was asked for)", problem)
            journal.record_nowait("status_stale", seconds=round(age, 1))
            if self.on_stale_change is not None:
                self.on_stale_change()
        return status.replace(stale=True, hosts_in_sync=False,
                                   snapshot_age_seconds=round(age, 1),
                                   problems=(problem, *status.problems),
                                   warnings=(problem, *status.warnings))


def unverified_for(checked: float | None, now: float) -> float | None:
    """Seconds since the hosts file was last checked (``checked``, see
    :attr:`Engine.hosts_checked_at`), when that is longer than :data:`VERIFIED_WITHIN_SECONDS`;
    else None."""
    if checked is None or now - checked <= VERIFIED_WITHIN_SECONDS:
        return None
    return now - checked


def _held_warnings(held: TimeHeld | None) -> list[str]:
    if held is None:
        return []
    return [f"{duration_text(held.seconds)} held, not credited yet: {held.reason}; it is credited "
            "as soon as the clock is synchronised (NTP)"]


def duration_text(seconds: float) -> str:
    """"2.5 days", "3.0 hours", "40 minutes": for held time in logs and warnings."""
    if seconds >= 2 * detox.SECONDS_PER_DAY:
        return f"{seconds / detox.SECONDS_PER_DAY:.1f} days"
    if seconds >= 7200:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _iso(moment: datetime | None) -> str | None:
    return plan.iso(moment) if moment else None


def _mail_status(engine: Engine) -> MailStatus | None:
    found = engine.mail.status()
    return None if found is None else MailStatus.from_json(found)

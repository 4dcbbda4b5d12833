"""Runs the peer-session plan in the daemon: reminders and hot-seat handovers (shell).

Which jobs exist is a pure function of (plan, now) — :func:`planned_jobs`,
:func:`jobs_to_schedule` — recomputed at start and at every reload. The
:class:`SessionScheduler` hands them to an APScheduler 3 ``BackgroundScheduler`` with a
memory job store (nothing is pickled) under stable ids, so a reload replaces jobs instead of
doubling them. A job later than its grace time (machine asleep, daemon down) is dropped; a
hot seat's grace is its whole slot, so a daemon started mid-session announces the person in
the hot seat right away and the handovers after it on time.

The system's time zone (the default of ``sessions.timezone``) is also read here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from detoxd.clock import Clock
from detoxd.core.plan import (
    Plan,
    PlannedSession,
    format_duration,
    iso,
    later_session,
    next_repeated,
    status_fields,
)
from detoxd.core.sessions import valid_timezone
from detoxd.service.state_store import StateFileError, read_json, write_atomic

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]

EVENT_REMINDER = "session_reminder"
EVENT_HOT_SEAT = "hot_seat"  # a handover: the first one opens the session
EVENT_BREAK = "session_break"
EVENT_SESSION_ENDED = "session_ended"

MIN_REMINDER_GRACE = timedelta(minutes=1)
SESSION_END_GRACE = timedelta(minutes=5)
# APScheduler sleeps on a monotonic clock, which stops while the machine is suspended: the daemon's
# loop notices a resume (CLOCK_BOOTTIME moved further than CLOCK_MONOTONIC) within its quiet period
# and calls SessionScheduler.wakeup(). (A heartbeat job every 30 s did that before issue 26; it woke
# the scheduler's thread twice a minute for nothing.)


@dataclass(frozen=True)
class PlannedJob:
    id: str  # stable across reloads and restarts: what the job is, not when
    at: datetime
    grace: timedelta  # how late it may still run
    event: str
    details: dict[str, Any] = field(hash=False)

    @property
    def key(self) -> str:
        """Identifies one firing: a job moved to another time fires again."""
        return f"{self.id}@{self.at.isoformat()}"


# ---- pure: which jobs, when ----

def reminder_grace(before: timedelta) -> timedelta:
    """A reminder is still worth sending while three quarters of its lead time remain."""
    return max(before / 4, MIN_REMINDER_GRACE)


def planned_jobs(plan: Plan) -> list[PlannedJob]:
    """Every job of the plan, in time order."""
    jobs = [job for session in plan.sessions for job in _session_jobs(plan, session)]
    return sorted(jobs, key=lambda job: job.at)


def _session_jobs(plan: Plan, session: PlannedSession) -> Iterable[PlannedJob]:
    prefix = f"session{session.number}"
    for before, at in session.reminders:
        yield PlannedJob(f"{prefix}-reminder-{format_duration(before)}", at, reminder_grace(before),
                         EVENT_REMINDER, {"session": session.number, "start": iso(session.start),
                                          "before": format_duration(before), "location": plan.location})
    seats = session.hot_seats
    for index, seat in enumerate(seats):
        following = seats[index + 1] if index + 1 < len(seats) else None
        next_name = following.person.name if following else None
        yield PlannedJob(f"{prefix}-seat{seat.number}", seat.start, seat.end - seat.start, EVENT_HOT_SEAT, {
            "session": session.number, "seat": seat.number, "of": len(seats), "name": seat.person.name,
            "starts_at": iso(seat.start), "ends_at": iso(seat.end), "next_name": next_name})
        if following is not None and following.start > seat.end:
            yield PlannedJob(f"{prefix}-break{seat.number}", seat.end, following.start - seat.end,
                             EVENT_BREAK, {"session": session.number, "until": iso(following.start),
                                           "next_name": next_name})
    later = [other for other in plan.sessions if other.start > session.start]
    repeated = later_session(plan, session.number - len(plan.sessions) + 1) if not later else None
    after = later[0] if later else repeated
    yield PlannedJob(f"{prefix}-end", session.end, SESSION_END_GRACE, EVENT_SESSION_ENDED, {
        "session": session.number, "next_session": iso(after.start) if after else None})


def repeated_jobs(plan: Plan, now: datetime) -> list[PlannedJob]:
    """`sessions.repeat`: the jobs of the repeated session in progress at ``now`` or next (the
    one after it is scheduled when it ends: :meth:`SessionScheduler._fire`)."""
    session = next_repeated(plan, now)
    return [] if session is None else sorted(_session_jobs(plan, session), key=lambda job: job.at)


def jobs_to_schedule(plan: Plan | None, now: datetime, fired: Iterable[str] = ()) -> list[PlannedJob]:
    """The jobs still to run at ``now``: not yet fired and not later than their grace."""
    if plan is None:
        return []
    done = set(fired)
    return [job for job in (*planned_jobs(plan), *repeated_jobs(plan, now))
            if now <= job.at + job.grace and job.key not in done]


# ---- shell: APScheduler ----

class SessionScheduler:
    """Owns a BackgroundScheduler; ``publish(event, details)`` is called from its worker thread."""

    def __init__(self, clock: Clock, publish: Publish, fired_file: Path | None = None) -> None:
        """``fired_file`` remembers what was announced, so a restart within a reminder's grace
        time does not announce it again."""
        # Imported here so that CLI commands that only need the plan stay fast.
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        # APScheduler logs every run at INFO (the heartbeat too); its warnings (a missed job) stay.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.clock = clock
        self._publish = publish
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._fired_file = fired_file
        self._fired: set[str] = self._load_fired()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=1)},  # one worker: events in order
            job_defaults={"coalesce": True, "max_instances": 1},
            daemon=True,
        )

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        """Never waits for a running job: it may be waiting for the caller's lock."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def wakeup(self) -> None:
        """Look at the jobs now, not at the next planned wake-up: the clock moved."""
        self._scheduler.wakeup()

    @property
    def plan(self) -> Plan | None:
        with self._lock:
            return self._plan

    def update(self, plan: Plan | None, now: datetime | None = None) -> list[PlannedJob]:
        """Replace every session job by those of ``plan`` still due at ``now``; returns them."""
        now = now or self.clock.now()
        with self._lock:
            self._plan = plan
            wanted = jobs_to_schedule(plan, now, self._fired)
            known = [*planned_jobs(plan), *repeated_jobs(plan, now)] if plan else []
            self._fired &= {job.key for job in known}
            self._save_fired()
        wanted_ids = {job.id for job in wanted}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted_ids:
                self._remove(job.id)
        for job in wanted:
            self._scheduler.add_job(
                self._fire, "date", run_date=job.at, args=(job,), id=job.id, name=job.event,
                replace_existing=True, misfire_grace_time=max(1, math.ceil(job.grace.total_seconds())))
        return wanted

    def status_fields(self, now: datetime | None = None) -> dict[str, Any]:
        """``next_session`` and ``current_hot_seat`` for the daemon's status."""
        return status_fields(self.plan, now or self.clock.now())

    def scheduled(self) -> dict[str, datetime]:
        """Job id → next run time, for logs and tests."""
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()
                if job.next_run_time is not None}

    def _remove(self, job_id: str) -> None:
        from apscheduler.jobstores.base import JobLookupError

        with contextlib.suppress(JobLookupError):  # it ran (and removed itself) in the meantime
            self._scheduler.remove_job(job_id)

    def _load_fired(self) -> set[str]:
        if self._fired_file is None:
            return set()
        try:
            keys = read_json(self._fired_file)
        except FileNotFoundError:
            return set()
        except (OSError, StateFileError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self._fired_file, exc)
            return set()
        return {key for key in keys if isinstance(key, str)} if isinstance(keys, list) else set()

    def _save_fired(self) -> None:
        if self._fired_file is not None:
            try:
                write_atomic(self._fired_file, json.dumps(sorted(self._fired)).encode())
            except OSError as exc:  # at worst a reminder is announced twice after a restart
                log.warning("cannot save %s: %s", self._fired_file, exc)

    def _fire(self, job: PlannedJob) -> None:
        with self._lock:
            if job.key in self._fired:  # already announced before a reload re-added it
                return
            self._fired.add(job.key)
            self._save_fired()
        log.info("%s: %s", job.event, job.details)
        try:
            self._publish(job.event, dict(job.details))
        except Exception:  # a failing subscriber must not silence later handovers
            log.exception("publishing %s failed", job.event)
        plan = self.plan
        if job.event == EVENT_SESSION_ENDED and plan is not None and plan.repeat is not None:
            self.update(plan)  # `sessions.repeat`: the next session's jobs


# ---- the system's time zone ----

def system_timezone(etc: Path = Path("/etc")) -> str:
    """The IANA name of the machine's zone: the /etc/localtime link, else /etc/timezone, else UTC."""
    try:
        target = str((etc / "localtime").readlink())
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        name = target.split("zoneinfo/", 1)[1]
        if valid_timezone(name):
            return name
    try:
        name = (etc / "timezone").read_text().strip()
    except OSError:
        name = ""
    return name if name and valid_timezone(name) else "UTC"


def local_zone() -> ZoneInfo:
    """The machine's zone (:func:`system_timezone`): report days and sessions are its calendar days."""
    return ZoneInfo(system_timezone())

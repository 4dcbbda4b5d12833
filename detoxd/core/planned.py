"""A detox that starts later (`detoxd start --at "YYYY-MM-DD HH:MM"`): pure, like
:mod:`detoxd.core.detox`, whose state holds the plan (:class:`~detoxd.core.detox.PlannedStart`).

The wait is *credited*, never read off the wall clock: each :func:`tick` credits the time since
the plan's checkpoint by the detox's own rules (:func:`detoxd.core.detox.tick`: boot time within
a boot; across a reboot the downtime only as far as the kernel confirms the clock, the rest held).
So setting the clock forward does not bring the start nearer (the jump is counted in
``clock_jumps``), setting it back does not put it off, and a restart or a reboot loses nothing.
The planned wall time is shown; the start happens when the credited wait reaches the wait asked.

When the wait is over, the detox begins (:func:`tick` returns an active state). Time credited past
the planned moment (the daemon was stopped, or the machine off, at that moment) counts as time of
the detox, as downtime counts for a running detox: the detox ends ``days`` after the planned moment.
Downtime still held when it begins is not carried over (the detox only gets longer).

Cancelling (:func:`cancel`): a plan made with ``detox.lock: false`` can be cancelled until it begins.
A locked plan (``detox.lock: true``, the default) is *locked by schedule* in the
:data:`CANCEL_LOCK_SECONDS` (24 hours) before it begins, counted in credited time (held time
counts as passed here, so a doubtful clock only locks it sooner): loosening a commitment waits a
day, as a window's `lock: true` edit does. A plan made less than a day ahead is locked at once.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo

from detoxd.core import detox
from detoxd.core.detox import BootReading, DetoxState, Phase, PlannedStart, Refusal
from detoxd.core.peerkey import Verifier
from detoxd.core.timesync import TimeSync

AT_FORMAT = "%Y-%m-%d %H:%M"
AT_HINT = "YYYY-MM-DD HH:MM, local time"
MAX_AHEAD_DAYS = 365
"""The furthest a start may be planned: a locked plan cannot be undone in its last day, so a typo
in the year must not plan one for 2062."""
CANCEL_LOCK_SECONDS = 86_400.0


def parse_at(text: object, zone: tzinfo, now: datetime) -> datetime | Refusal:
    """``text`` ("YYYY-MM-DD HH:MM", a wall time in ``zone``) as an aware time after ``now`` and at
    most :data:`MAX_AHEAD_DAYS` ahead, else why not. A time that does not exist (clocks go
    forward) or happens twice (clocks go back) is refused: the user says which is meant."""
    if not isinstance(text, str):
        return Refusal(f"--at: give the start as {AT_HINT}")
    try:
        wall = datetime.strptime(text.strip(), AT_FORMAT)
    except ValueError:
        return Refusal(f"--at: {text!r} is not a date and time ({AT_HINT}, such as "
                       f"{(now.astimezone(zone) + timedelta(days=1)):%Y-%m-%d} 09:00)")
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        return Refusal(f"--at: {text.strip()} does not exist in {_zone_name(zone)} (the clocks go "
                       "forward then): choose a time outside the skipped hour")
    if first.utcoffset() != second.utcoffset():
        return Refusal(f"--at: {text.strip()} happens twice in {_zone_name(zone)} (the clocks go back "
                       f"then: {first:%H:%M %Z} and {second:%H:%M %Z}): choose a time outside that hour")
    if first <= now:
        return Refusal(f"--at: {text.strip()} is in the past (it is {now.astimezone(zone):%Y-%m-%d %H:%M} "
                       "now); `detoxd start` without --at starts now")
    if first - now > timedelta(days=MAX_AHEAD_DAYS):
        return Refusal(f"--at: {text.strip()} is more than {MAX_AHEAD_DAYS} days ahead")
    return first


def _zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def plan(state: DetoxState, *, now: datetime, boot: BootReading, starts_at: datetime, days: float,
         locked: bool, peer_lock: Verifier | None = None) -> DetoxState | Refusal:
    """Plan a detox of ``days`` days to begin at ``starts_at`` (from :func:`parse_at`); with
    ``peer_lock`` (`lock: peers`, the cards written when it was planned) it begins peer-locked."""
    if now.tzinfo is None or starts_at.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    refusal = detox.refuse_busy(state) or detox.refuse_days(days)
    if refusal is not None:
        return refusal
    wait = (starts_at - now).total_seconds()
    if wait <= 0:
        return Refusal("the start is in the past")
    return replace(state, planned=PlannedStart(
        starts_at=starts_at, wait_seconds=wait, credited_seconds=0.0,
        checkpoint=detox.Checkpoint(wall=now, boot=boot), days=days, locked=locked or peer_lock is not None,
        planned_at=now, peer_lock=peer_lock))


def _countdown(planned: PlannedStart) -> DetoxState:
    """The wait as a detox that never ends: its clock is the detox's clock, rule for rule."""
    return DetoxState(phase=Phase.ACTIVE, started_at=planned.planned_at, duration_seconds=math.inf,
                      credited_seconds=planned.credited_seconds, checkpoint=planned.checkpoint,
                      clock_jumps=planned.clock_jumps, held=planned.held)


def tick(state: DetoxState, *, now: datetime, boot: BootReading, sync: TimeSync | None = None) -> DetoxState:
    """Credit the wait; begin the detox (an active state) once it is over."""
    planned = state.planned
    if planned is None or state.active:
        return state
    counted = detox.tick(_countdown(planned), now=now, boot=boot, sync=sync)
    assert counted.checkpoint is not None  # an active state keeps its checkpoint
    planned = replace(planned, credited_seconds=counted.credited_seconds, checkpoint=counted.checkpoint,
                      clock_jumps=counted.clock_jumps, held=counted.held)
    if planned.credited_seconds < planned.wait_seconds:
        return replace(state, planned=planned)
    late = planned.credited_seconds - planned.wait_seconds
    begun = detox.start(replace(state, planned=None), now=now, boot=boot, days=planned.days,
                        locked=planned.locked, peer_lock=planned.peer_lock)
    assert isinstance(begun, DetoxState)  # idle, no plan, days checked when planned
    return replace(begun, started_at=now - timedelta(seconds=late), credited_seconds=late,
                   clock_jumps=planned.clock_jumps)


def needs_time_sync(state: DetoxState, *, now: datetime, boot: BootReading) -> bool:
    """Whether :func:`tick` needs to know if the clock is confirmed (see detox.needs_time_sync)."""
    if state.planned is None or state.active:
        return False
    return detox.needs_time_sync(_countdown(state.planned), now=now, boot=boot)


def wait_left(state: DetoxState) -> float | None:
    """Credited seconds still to wait before the planned detox begins (None: none planned)."""
    if state.planned is None or state.active:
        return None
    return max(0.0, state.planned.wait_seconds - state.planned.credited_seconds)


def held_seconds(state: DetoxState) -> float:
    planned = state.planned
    return planned.held.seconds if planned is not None and planned.held is not None else 0.0


def starts_at(state: DetoxState) -> datetime | None:
    """When it begins, for display: counted from the last checkpoint, like ``detox.ends_at`` (the
    wall clock can be wrong, the credited wait cannot). Rounded to the second."""
    left = wait_left(state)
    if left is None or state.planned is None:
        return None
    return _second(state.planned.checkpoint.wall + timedelta(seconds=left))


def cancel_locked(state: DetoxState) -> bool:
    """A locked plan in its last :data:`CANCEL_LOCK_SECONDS` (held time counted as passed)."""
    left = wait_left(state)
    if left is None or state.planned is None or not state.planned.locked:
        return False
    return left - held_seconds(state) <= CANCEL_LOCK_SECONDS


def cancellable_until(state: DetoxState) -> datetime | None:
    """Until when `detoxd cancel` is taken (None: no plan, or cancellable until it begins)."""
    start = starts_at(state)
    if start is None or state.planned is None or not state.planned.locked:
        return None
    return start - timedelta(seconds=CANCEL_LOCK_SECONDS)


def cancel(state: DetoxState) -> DetoxState | Refusal:
    """Drop the plan; refused once it is locked by schedule."""
    if state.planned is None or state.active:
        return Refusal("no detox is planned")
    if cancel_locked(state):
        return Refusal("this planned detox is locked: it cannot be cancelled in the 24 hours before "
                       "it starts (detox.lock); it begins by itself")
    return replace(state, planned=None)


def _second(moment: datetime) -> datetime:
    return (moment + timedelta(microseconds=500_000)).replace(microsecond=0)

"""A detox that starts later (`detoxd start --at`): pure planning on a FakeClock (detoxd.core.planned)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from detoxd.clock import FakeClock
from detoxd.core import detox, planned
from detoxd.core.detox import DetoxState, Refusal

LONDON = ZoneInfo("Europe/London")
BERLIN = ZoneInfo("Europe/Berlin")
DAY = 86400.0
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 2 March 2026, 09:00 in London


def reading(clock: FakeClock) -> detox.BootReading:
    return detox.BootReading(clock.boot_id(), clock.boottime())


def planned_state(clock: FakeClock, at: str, *, days: float = 14, locked: bool = True,
                  zone: ZoneInfo = LONDON) -> DetoxState:
    starts_at = planned.parse_at(at, zone, clock.now())
    assert isinstance(starts_at, datetime), starts_at
    state = planned.plan(DetoxState(), now=clock.now(), boot=reading(clock), starts_at=starts_at,
                         days=days, locked=locked)
    assert isinstance(state, DetoxState), state
    return state


def tick(state: DetoxState, clock: FakeClock) -> DetoxState:
    now, boot = clock.now(), reading(clock)
    sync = clock.time_sync() if planned.needs_time_sync(state, now=now, boot=boot) else None
    return planned.tick(state, now=now, boot=boot, sync=sync)


# ---- the time asked ----

def test_a_local_time_is_read_in_the_machines_zone() -> None:
    assert planned.parse_at("2026-03-09 09:00", LONDON, NOW) == datetime(2026, 3, 9, 9, 0, tzinfo=LONDON)
    at = planned.parse_at(" 2026-03-09 09:00 ", BERLIN, NOW)
    assert isinstance(at, datetime) and at.astimezone(UTC) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "why"), [
    ("2026-03-02 08:59", "in the past"),
    ("2026-03-02 09:00", "in the past"),  # now is not later
    ("2027-03-03 09:00", "more than 365 days ahead"),
    ("2026-03-09", "is not a date and time"),
    ("9 March 09:00", "is not a date and time"),
    ("2026-02-30 09:00", "is not a date and time"),
    ("2026-03-09 25:00", "is not a date and time"),
    ("2026-03-29 01:30", "does not exist in Europe/London"),  # clocks go forward 01:00 -> 02:00
    ("2026-10-25 01:30", "happens twice in Europe/London"),  # clocks go back 02:00 -> 01:00
    (None, "give the start as YYYY-MM-DD HH:MM"),
])
def test_past_far_malformed_and_dst_times_are_clear_errors(text: str | None, why: str) -> None:
    result = planned.parse_at(text, LONDON, NOW)
    assert isinstance(result, Refusal) and why in result.reason, result


def test_the_hours_around_a_dst_change_are_fine() -> None:
    assert planned.parse_at("2026-03-29 02:00", LONDON, NOW) == datetime(2026, 3, 29, 2, 0, tzinfo=LONDON)
    at = planned.parse_at("2026-10-25 02:00", LONDON, NOW)
    assert isinstance(at, datetime) and at.utcoffset() == timedelta(0)


# ---- the wait, on the detox's clock ----

def test_it_begins_by_itself_when_the_wait_is_over() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-04 09:00", days=14)
    assert planned.starts_at(state) == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert not state.active and planned.wait_left(state) == 2 * DAY
    clock.advance(2 * DAY - 1)
    state = tick(state, clock)
    assert not state.active and planned.wait_left(state) == 1
    clock.advance(1)
    state = tick(state, clock)
    assert state.active and state.planned is None and state.locked
    assert state.started_at == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert detox.ends_at(state, clock.now()) == datetime(2026, 3, 18, 9, 0, tzinfo=UTC)


def test_a_clock_set_forward_does_not_bring_the_start_nearer_and_is_counted() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-04 09:00")
    clock.jump(3 * DAY)
    state = tick(state, clock)
    assert not state.active and state.planned is not None and state.planned.clock_jumps == 1
    assert planned.wait_left(state) == 2 * DAY
    # Shown against the (wrong) wall clock: still two real days away.
    assert planned.starts_at(state) == clock.now() + timedelta(days=2)
    clock.advance(2 * DAY)
    state = tick(state, clock)
    assert state.active and state.clock_jumps == 1  # the detox carries the count


def test_a_clock_set_back_does_not_put_the_start_off() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-04 09:00")
    clock.jump(-5 * DAY)
    state = tick(state, clock)
    clock.advance(2 * DAY)
    assert tick(state, clock).active


def test_a_daemon_restart_within_the_boot_loses_nothing() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-03 09:00")
    clock.advance(DAY / 2)  # the daemon was stopped for half a day: boot time went on
    state = tick(state, clock)
    assert planned.wait_left(state) == DAY / 2
    clock.advance(DAY / 2)
    assert tick(state, clock).active


def test_across_a_reboot_the_downtime_counts_once_the_clock_is_confirmed() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-04 09:00")
    clock.reboot(3 * DAY, "boot-2")  # off three days; the clock is not confirmed yet
    state = tick(state, clock)
    assert not state.active and planned.held_seconds(state) > 2.9 * DAY
    assert planned.cancel_locked(state)  # held time counts as passed for the lock: locked sooner
    clock.synchronise()
    clock.advance(60)
    state = tick(state, clock)
    assert state.active
    # It began a day late (the machine was off at 09:00): that day counts, it ends as planned.
    assert state.started_at == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert detox.ends_at(state, clock.now()) == datetime(2026, 3, 18, 9, 0, tzinfo=UTC)


def test_a_clock_set_forward_while_stopped_across_a_reboot_stays_held() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-09 09:00")
    clock.reboot(0, "boot-2")
    clock.jump(8 * DAY)  # the attack: stop, set forward, reboot; no NTP confirms it
    state = tick(state, clock)
    assert not state.active and planned.held_seconds(state) >= 8 * DAY - 60
    clock.advance(3600)
    state = tick(state, clock)
    assert not state.active  # only the boot's own hour counted


def test_a_time_zone_change_moves_neither_the_start_nor_the_wait() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-04 10:00", zone=BERLIN)  # 09:00 UTC
    clock.wall = clock.wall.astimezone(ZoneInfo("America/New_York"))  # the machine moved zones
    clock.advance(2 * DAY)
    state = tick(state, clock)
    assert state.active and state.started_at == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


def test_a_wait_across_the_spring_dst_change_begins_at_the_local_time_asked() -> None:
    clock = FakeClock(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    state = planned_state(clock, "2026-03-29 12:00")  # BST from 01:00 UTC: 11:00 UTC
    assert planned.wait_left(state) == DAY - 3600
    clock.advance(DAY - 3600)
    state = tick(state, clock)
    assert state.active and state.started_at.astimezone(LONDON).hour == 12  # type: ignore[union-attr]


def test_the_plan_is_kept_until_it_begins_and_a_running_detox_refuses_another() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-04 09:00", days=3)
    at = planned.parse_at("2026-03-05 09:00", LONDON, clock.now())
    assert isinstance(at, datetime)
    again = planned.plan(state, now=clock.now(), boot=reading(clock), starts_at=at, days=3, locked=True)
    assert isinstance(again, Refusal) and "already planned" in again.reason
    now = detox.start(state, now=clock.now(), boot=reading(clock), days=3, locked=True)
    assert isinstance(now, Refusal) and "detoxd cancel" in now.reason
    running = detox.start(DetoxState(), now=clock.now(), boot=reading(clock), days=3, locked=True)
    assert isinstance(running, DetoxState)
    refused = planned.plan(running, now=clock.now(), boot=reading(clock), starts_at=at, days=3, locked=True)
    assert isinstance(refused, Refusal) and "already running" in refused.reason


# ---- cancelling, and the lock by schedule ----

def test_an_unlocked_plan_can_be_cancelled_until_it_begins() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-04 09:00", locked=False)
    clock.advance(2 * DAY - 60)
    state = tick(state, clock)
    assert planned.cancellable_until(state) is None and not planned.cancel_locked(state)
    cancelled = planned.cancel(state)
    assert isinstance(cancelled, DetoxState) and cancelled.planned is None and not cancelled.active
    clock.advance(120)
    assert not tick(cancelled, clock).active


def test_a_locked_plan_is_locked_by_schedule_in_its_last_24_hours() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-05 09:00")
    assert planned.cancellable_until(state) == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    clock.advance(2 * DAY - 1)
    state = tick(state, clock)
    assert isinstance(planned.cancel(state), DetoxState)
    clock.advance(1)
    state = tick(state, clock)
    refusal = planned.cancel(state)
    assert isinstance(refusal, Refusal) and "cannot be cancelled in the 24 hours" in refusal.reason


def test_setting_the_clock_forward_does_not_lock_it_sooner_nor_back_later() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-05 09:00")
    clock.jump(2 * DAY)
    state = tick(state, clock)
    assert not planned.cancel_locked(state)
    clock.jump(-4 * DAY)
    clock.advance(2 * DAY)
    state = tick(state, clock)
    assert planned.cancel_locked(state)


def test_a_locked_plan_less_than_a_day_ahead_is_locked_at_once() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-02 21:00")
    assert planned.cancel_locked(state) and isinstance(planned.cancel(state), Refusal)
    nothing = planned.cancel(DetoxState())
    assert isinstance(nothing, Refusal) and "no detox is planned" in nothing.reason


def test_a_detox_due_during_a_long_power_off_begins_and_its_time_counts() -> None:
    clock = FakeClock(NOW)
    state = planned_state(clock, "2026-03-03 09:00", days=2)
    clock.synchronise()
    clock.reboot(10 * DAY, "boot-2")
    state = tick(state, clock)
    assert state.active and detox.remaining(state) == timedelta(0)
    assert not detox.tick(state, now=clock.now(), boot=reading(clock)).active  # then it ends


def test_the_plan_survives_in_the_state_as_written(tmp_path: object) -> None:
    from detoxd.service import state_store

    clock = FakeClock(NOW)
    state = tick(planned_state(clock, "2026-03-04 09:00"), clock)
    state = replace(state, clock_jumps=2)
    document = state_store.encode(state)
    assert state_store.decode(document) == state
    broken = {**document, "planned": {**document["planned"], "days": 0}}
    with pytest.raises(ValueError, match="planned days"):
        state_store.decode(broken)

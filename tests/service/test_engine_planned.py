"""`detoxd start --at` and `detoxd cancel`, in-process: a real Engine on scratch files, a FakeClock.

The daemon's own run (a restart, NSS seeing the block) is tests/integration/test_planned_daemon.py.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detoxd.clock import FakeClock
from detoxd.paths import Paths
from detoxd.protocol import Peer, Status
from detoxd.service import journal
from detoxd.service.engine import QUIET_SECONDS, Engine
from tests.service.enginekit import ROOT, blocked, scratch_paths

DAY = 86400.0
USER = Peer(pid=2, uid=1000, gid=1000)
SESSIONS = ('sessions:\n  first: "2026-03-05 10:00"\n  timezone: UTC\n'
            'peers: [Ada, Bob, Cy, Di, Ed]\n')


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist="domains: [twitter.com]\n",
                         main="detox:\n  days: 14\n  lock: true\n" + SESSIONS)


def utc_engine(paths: Paths, clock: FakeClock) -> Engine:
    engine = Engine(paths, clock)
    engine.detox.local_zone = lambda: ZoneInfo("UTC")
    engine.boot()
    return engine


@pytest.fixture
def engine(paths: Paths, clock: FakeClock) -> Any:
    engine = utc_engine(paths, clock)
    yield engine
    engine.shutdown()


def events(paths: Paths, kind: str) -> list[dict[str, Any]]:
    found, _ = journal.read_events(paths.state_dir / "journal")
    return [event for event in found if event["kind"] == kind]


def test_a_planned_detox_is_scheduled_then_begins_by_itself(engine: Engine, paths: Paths,
                                                            clock: FakeClock) -> None:
    # The clock fixture: Monday 2 March 2026, 09:00 UTC.
    reply = engine.handle({"cmd": "start", "at": "2026-03-04 09:00", "days": 10}, ROOT)
    assert reply["ok"], reply
    status = Status.from_json(engine.status())
    assert status.state == "scheduled" and status.starts_at == "2026-03-04T09:00:00+00:00"
    assert status.cancellable and status.cancellable_until == "2026-03-03T09:00:00+00:00"
    assert status.days_total == 10 and not blocked(paths)
    assert engine.one_line() == "detox planned for 2026-03-04T09:00:00+00:00"
    assert events(paths, "detox_planned")[0]["starts_at"] == "2026-03-04T09:00:00+00:00"
    # The loop sleeps until the next due thing: the lock by schedule, then the start.
    now = clock.monotonic()
    assert engine.next_tick_due(now) == now + QUIET_SECONDS
    clock.advance(DAY - 5)
    engine.tick()
    assert engine.next_tick_due(clock.monotonic()) == pytest.approx(clock.monotonic() + 5)
    published: list[dict[str, Any]] = []
    engine.publish_to = published.append
    clock.advance(DAY + 4)
    engine.tick()
    assert not engine.status()["cancellable"]
    assert published and published[-1]["status"]["cancellable"] is False  # the trays are told at once
    assert engine.next_tick_due(clock.monotonic()) == pytest.approx(clock.monotonic() + 1)
    clock.advance(1)
    engine.tick()
    status = Status.from_json(engine.status())
    assert status.state == "active" and status.started_at == "2026-03-04T09:00:00+00:00"
    assert status.starts_at is None and "twitter.com" in blocked(paths)
    started = events(paths, "detox_started")[-1]
    assert started["reason"] == "planned" and started["planned_for"] == "2026-03-04T09:00:00+00:00"


def test_cancel_before_the_lock_and_refused_after(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    assert engine.handle({"cmd": "cancel"}, ROOT)["code"] == "refused"  # nothing planned
    assert engine.handle({"cmd": "cancel"}, USER)["code"] == "not_authorized"
    assert engine.handle({"cmd": "start", "at": "2026-03-05 09:00"}, ROOT)["ok"]
    assert engine.handle({"cmd": "cancel"}, ROOT)["ok"]
    assert engine.status()["state"] == "idle"
    assert events(paths, "detox_plan_cancelled")[0]["by_uid"] == 0
    assert engine.handle({"cmd": "start", "at": "2026-03-05 09:00"}, ROOT)["ok"]
    clock.advance(2 * DAY)
    reply = engine.handle({"cmd": "cancel"}, ROOT)
    assert reply["code"] == "refused" and "24 hours" in reply["error"]
    assert engine.status()["state"] == "scheduled" and events(paths, "cancel_refused")


@pytest.mark.parametrize(("at", "why"), [
    ("2026-03-02 08:00", "in the past"), ("tomorrow", "not a date and time"),
    ("2028-01-01 09:00", "more than 365 days ahead")])
def test_bad_times_are_bad_requests_and_plan_nothing(engine: Engine, at: str, why: str) -> None:
    reply = engine.handle({"cmd": "start", "at": at}, ROOT)
    assert reply["code"] == "bad_request" and why in reply["error"]
    assert engine.status()["state"] == "idle"


def test_a_restart_keeps_the_plan_and_it_begins(paths: Paths, clock: FakeClock) -> None:
    engine = utc_engine(paths, clock)
    assert engine.handle({"cmd": "start", "at": "2026-03-03 09:00"}, ROOT)["ok"]
    engine.shutdown()
    saved = json.loads(paths.state_file.read_text())
    assert saved["phase"] == "idle" and saved["planned"]["starts_at"] == "2026-03-03T09:00:00+00:00"
    clock.advance(DAY)  # the daemon was stopped: boot time went on
    engine = utc_engine(paths, clock)
    try:
        status = engine.status()
        assert status["state"] == "active" and "twitter.com" in blocked(paths)
    finally:
        engine.shutdown()


def test_status_warns_of_sessions_outside_the_planned_window(engine: Engine, clock: FakeClock) -> None:
    assert not any("starts before the detox" in w for w in engine.status()["warnings"])
    assert engine.handle({"cmd": "start", "at": "2026-03-06 09:00", "days": 3}, ROOT)["ok"]
    warnings = engine.status()["warnings"]
    assert any("session 1" in w and "starts before the detox does" in w for w in warnings), warnings
    assert clock.now().tzinfo is UTC


def test_end_while_planned_points_at_cancel_and_uninstall_respects_the_lock(
        paths: Paths, clock: FakeClock) -> None:
    from detoxd.service.uninstall import end_detox_offline

    for at, locked in (("2026-03-05 09:00", False), ("2026-03-02 21:00", True)):  # 21:00: locked at once
        engine = utc_engine(paths, clock)
        try:
            assert engine.handle({"cmd": "start", "at": at}, ROOT)["ok"]
            reply = engine.handle({"cmd": "end"}, ROOT)
            assert reply["code"] == "refused" and "detoxd cancel" in reply["error"]
        finally:
            engine.shutdown()
        # `detoxd uninstall` with the daemon down: as `detoxd cancel`, refused once locked.
        reason = end_detox_offline(paths)
        kept = json.loads(paths.state_file.read_text())["planned"]
        if locked:
            assert reason is not None and "cannot be cancelled" in reason and kept is not None
        else:
            assert reason is None and kept is None


def test_sessions_on_the_detoxs_days_follow_a_planned_start(tmp_path: Path, clock: FakeClock) -> None:
    relative = SESSIONS.replace('"2026-03-05 10:00"', '"day 2 18:00"')
    paths = scratch_paths(tmp_path, blocklist="domains: [twitter.com]\n",
                          main="detox:\n  days: 14\n  lock: false\n" + relative)
    engine = utc_engine(paths, clock)
    try:
        assert engine.status()["next_session"] is None  # no detox to follow yet
        assert engine.handle({"cmd": "start", "at": "2026-03-09 09:00"}, ROOT)["ok"]
        assert engine.status()["next_session"]["start"] == "2026-03-10T18:00:00+00:00"
        calendar = engine.handle({"cmd": "calendar"}, ROOT)["ics"]
        assert "DTSTART:20260310T180000Z" in calendar or "20260310T180000" in calendar
        assert engine.handle({"cmd": "cancel"}, ROOT)["ok"]
        assert engine.status()["next_session"] is None
        assert engine.handle({"cmd": "start", "at": "2026-03-04 09:00"}, ROOT)["ok"]
        clock.advance(2 * DAY)
        engine.tick()  # it began: the same days
        status = engine.status()
        assert status["state"] == "active" and status["next_session"]["start"] == "2026-03-05T18:00:00+00:00"
        assert engine.handle({"cmd": "end"}, ROOT)["ok"]
        assert engine.status()["next_session"]["start"] == "2026-03-05T18:00:00+00:00"  # the latest's
    finally:
        engine.shutdown()


def test_the_wait_across_a_reboot_is_held_then_released_and_a_jump_journalled(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    assert engine.handle({"cmd": "start", "at": "2026-03-09 09:00"}, ROOT)["ok"]
    clock.jump(DAY)
    engine.tick()
    assert events(paths, "clock_jump")[-1] == {**events(paths, "clock_jump")[-1], "waiting": True}
    clock.reboot(2 * DAY, "boot-2")
    engine.tick()
    held = engine.status()["time_held"]
    assert held is not None and events(paths, "time_held")[-1]["waiting"] is True
    assert any("held, not credited yet" in warning for warning in engine.status()["warnings"])
    clock.synchronise()
    engine.tick()
    assert engine.status()["time_held"] is None and events(paths, "time_released")[-1]["waiting"] is True
    assert engine.status()["state"] == "scheduled"

"""Allowances in the engine, in-process: what the hosts file holds while one is open, the cut
requests, the journal, the published events, the lock. Time comes from a FakeClock.

logind is :class:`FixedLogind` (alice at the seat); the real sd-login is tested in test_seat.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detoxd.clock import FakeClock
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import journal
from detoxd.service.allowance_keeper import AllowanceKeeper
from detoxd.service.engine import Engine
from detoxd.service.seat import SessionFacts
from tests.service.enginekit import ROOT, blocked, scratch_paths

ALICE = Peer(pid=2, uid=1000, gid=1000)
NOBODY = Peer(pid=3, uid=65534, gid=65534)
BERLIN = ZoneInfo("Europe/Berlin")
BLOCKLIST = """domains: [twitter.com, x.com, pbs.twimg.com, facebook.com]
allowances:
  - name: twitter
    sites: [twitter.com]
    minutes_per_day: 20
    min_gap_minutes: 30
    windows: ["Mon-Fri 12:30-12:50"]
"""
TWITTER_NAMES = {"twitter.com", "www.twitter.com", "x.com", "www.x.com", "pbs.twimg.com", "www.pbs.twimg.com"}


class FixedLogind:
    def facts(self, uid: int, pid: int) -> SessionFacts:
        return SessionFacts(None, active_seats=("seat0",) if uid == 1000 else ())


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist=BLOCKLIST, hosts=b"127.0.0.1 localhost\n")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))  # Monday 09:00 in Berlin


def make_engine(paths: Paths, clock: FakeClock) -> Engine:
    keeper = AllowanceKeeper(paths.allowances_file, clock, timezone=lambda: BERLIN, logind=FixedLogind())
    engine = Engine(paths, clock, allowances=keeper)
    engine.boot()
    return engine


@pytest.fixture
def engine(paths: Paths, clock: FakeClock) -> Iterator[Engine]:
    engine = make_engine(paths, clock)
    yield engine
    engine.shutdown()


def cut_requests(paths: Paths) -> list[dict[str, Any]]:
    directory = paths.cutter_dir / "requests"
    found = [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]
    for path in directory.glob("*.json"):
        path.unlink()
    return found


def journalled(paths: Paths, kind: str) -> list[dict[str, Any]]:
    events = []
    for segment in sorted(journal.directory_for(paths.state_dir).glob("*.jsonl")):
        events += [json.loads(line) for line in segment.read_text().splitlines() if line.strip()]
    return [event for event in events if event["kind"] == kind]


def advance(engine: Engine, clock: FakeClock, minutes: float) -> None:
    for _ in range(int(minutes * 2)):  # the daemon ticks every second; every 30 s is enough here
        clock.advance(30)
        engine.tick()


def test_open_takes_the_site_out_of_the_block_and_puts_it_back(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    assert TWITTER_NAMES | {"facebook.com"} <= blocked(paths)
    cut_requests(paths)  # the start's own request
    reply = engine.handle({"cmd": "open", "name": "twitter", "minutes": 5}, ALICE)
    assert reply == {"ok": True, "message": "twitter is open for 5 min, until 09:05"}
    assert blocked(paths) & TWITTER_NAMES == set()
    assert "facebook.com" in blocked(paths)
    assert cut_requests(paths) == [{"version": 1, "block": [], "open": sorted(
        TWITTER_NAMES, key=lambda name: (len(name), name))}]
    status = engine.status()["allowances"]
    assert status == [{"name": "twitter", "open": True, "open_until": "2026-06-01T07:05:00+00:00",
                       "minutes_left_today": 15, "opens_left_today": None,
                       "next_window": "2026-06-01T10:30:00+00:00"}]
    advance(engine, clock, 5)
    assert blocked(paths) >= TWITTER_NAMES
    [request] = cut_requests(paths)
    assert set(request["block"]) == TWITTER_NAMES and request["open"] == []
    [opened] = journalled(paths, "allowance_opened")
    assert opened["uid"] == 1000 and opened["allowance"] == "twitter" and opened["minutes"] == 5
    assert set(opened["names"]) == TWITTER_NAMES
    [closed] = journalled(paths, "allowance_closed")
    assert closed["uid"] is None and closed["minutes_used"] == 5


def test_close_blocks_at_once(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    engine.handle({"cmd": "open", "name": "twitter"}, ALICE)
    advance(engine, clock, 2)
    reply = engine.handle({"cmd": "close", "name": "twitter"}, ALICE)
    assert reply == {"ok": True, "message": "twitter is blocked again; 18 min left today"}
    assert blocked(paths) >= TWITTER_NAMES


def test_refusals(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    idle = engine.handle({"cmd": "open", "name": "twitter"}, ALICE)
    assert idle["code"] == "refused" and "no detox is running" in idle["error"]
    engine.handle({"cmd": "start"}, ROOT)
    nobody = engine.handle({"cmd": "open", "name": "twitter"}, NOBODY)
    assert nobody["code"] == "not_authorized" and "system user" in nobody["error"]
    engine.handle({"cmd": "open", "name": "twitter", "minutes": 20}, ALICE)
    advance(engine, clock, 20)
    spent = engine.handle({"cmd": "open", "name": "twitter"}, ALICE)
    assert spent["code"] == "refused" and "used up" in spent["error"]
    assert blocked(paths) >= TWITTER_NAMES


def test_a_gap_not_yet_passed_is_refused(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    engine.handle({"cmd": "open", "name": "twitter", "minutes": 1}, ALICE)
    advance(engine, clock, 10)
    gap = engine.handle({"cmd": "open", "name": "twitter"}, ALICE)
    assert gap["code"] == "refused" and "can open again in 21 min" in gap["error"]


def test_a_window_opens_and_closes_by_itself_with_a_notice(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    events: list[dict[str, Any]] = []
    engine.publish_to = events.append
    engine.handle({"cmd": "start"}, ROOT)
    advance(engine, clock, 3.5 * 60)  # 12:30
    assert blocked(paths) & TWITTER_NAMES == set()
    advance(engine, clock, 18)
    notices = [event for event in events if event["event"] == "allowance_closing"]
    assert [(n["name"], n["closes_at"], n["seconds_left"]) for n in notices] == [
        ("twitter", "2026-06-01T10:50:00+00:00", 120)]
    advance(engine, clock, 2)
    assert blocked(paths) >= TWITTER_NAMES


def test_an_edit_raising_the_budget_during_the_lock_is_refused(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    (paths.config_dir / "blocklist.yaml").write_text(BLOCKLIST.replace("minutes_per_day: 20",
                                                                       "minutes_per_day: 90"))
    assert engine.handle({"cmd": "reload"}, ROOT)["ok"]
    status = engine.status()
    assert status["allowances"][0]["minutes_left_today"] == 20
    assert any("minutes_per_day: warning: raised from 20 to 90 during a locked detox" in warning
               for warning in status["warnings"])
    reply = engine.handle({"cmd": "open", "name": "twitter", "minutes": 60}, ALICE)
    assert reply["ok"] and "open for 20 min (all that is left today)" in reply["message"]


def test_a_restart_keeps_an_open_allowance_and_its_time(paths: Paths, clock: FakeClock) -> None:
    engine = make_engine(paths, clock)
    engine.handle({"cmd": "start"}, ROOT)
    engine.handle({"cmd": "open", "name": "twitter", "minutes": 10}, ALICE)
    advance(engine, clock, 4)
    engine.shutdown()
    restarted = make_engine(paths, clock)
    try:
        assert blocked(paths) & TWITTER_NAMES == set()
        advance(restarted, clock, 6)
        assert blocked(paths) >= TWITTER_NAMES
        assert restarted.status()["allowances"][0]["minutes_left_today"] == 10
        assert len(journalled(paths, "allowance_opened")) == 1  # not again after the restart
    finally:
        restarted.shutdown()


def test_when_the_detox_ends_the_budgets_and_the_ceiling_go(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    (paths.config_dir / "detoxd.yaml").write_text("detox:\n  days: 0.01\n  lock: true\n")
    engine.handle({"cmd": "reload"}, ROOT)
    engine.handle({"cmd": "start"}, ROOT)
    engine.handle({"cmd": "open", "name": "twitter", "minutes": 5}, ALICE)
    advance(engine, clock, 20)
    assert engine.status()["state"] == "idle"
    assert blocked(paths) == set()
    assert engine.allowances.state.ceiling is None
    assert all(usage.spent_seconds == 0 and usage.session is None
               for usage in engine.allowances.state.usage.values())


# ---- when the daemon's loop must wake (issue 26: not every second) ----

def test_idle_the_loop_sleeps_the_quiet_period(engine: Engine, clock: FakeClock) -> None:
    from detoxd.service.engine import QUIET_SECONDS

    now = clock.monotonic()
    assert engine.next_tick_due(now) == now + QUIET_SECONDS  # no detox: nothing else is due
    engine.handle({"cmd": "start"}, ROOT)
    engine.tick()
    assert engine.next_tick_due(now) == now + QUIET_SECONDS  # a 14-day detox, the window at 12:30
    assert engine.next_tick_due(now, watchdog=5.0) == now + 5.0  # the watchdog's ping is sooner


def test_the_loop_wakes_when_a_window_opens(engine: Engine, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    clock.advance(3 * 3600 + 29 * 60 + 50)  # Monday 12:29:50 in Berlin: the window opens at 12:30
    engine.tick()
    assert engine.next_tick_due(clock.monotonic()) == pytest.approx(clock.monotonic() + 10)


def test_the_loop_wakes_to_announce_and_to_close_an_open_allowance(
        engine: Engine, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    assert engine.handle({"cmd": "open", "name": "twitter", "minutes": 5}, ALICE)["ok"]
    engine.tick()
    now = clock.monotonic()
    assert engine.next_tick_due(now) == pytest.approx(now + 15)  # the quiet period comes first
    clock.advance(2 * 60 + 50)  # 2 min 10 s left: the notice is due 2 minutes before the close
    engine.tick()
    assert engine.next_tick_due(clock.monotonic()) == pytest.approx(clock.monotonic() + 10)
    clock.advance(10)
    engine.tick()  # announced now: the close is next, in 2 minutes
    clock.advance(110)
    engine.tick()
    assert engine.next_tick_due(clock.monotonic()) == pytest.approx(clock.monotonic() + 10)


def test_the_loop_wakes_at_the_detox_end(engine: Engine, clock: FakeClock) -> None:
    engine.handle({"cmd": "start", "days": 1}, ROOT)
    clock.advance(86400 - 5)
    engine.tick()
    assert engine.state.active
    assert engine.next_tick_due(clock.monotonic()) == pytest.approx(clock.monotonic() + 5, abs=0.01)


def test_app_rules_are_scanned_for_only_during_a_detox(paths: Paths, clock: FakeClock) -> None:
    from detoxd.core.apps import AppRule

    engine = make_engine(paths, clock)
    engine.apps.watcher.set_rules([AppRule("my-chat", ())])
    assert engine.next_scan_due(clock.monotonic()) is None  # no detox: no scan at all
    engine.handle({"cmd": "start"}, ROOT)
    assert engine.next_scan_due(clock.monotonic()) is None  # the config has no app rules
    engine.apps.watcher.set_rules([AppRule("my-chat", ())])
    assert engine.next_scan_due(clock.monotonic()) == clock.monotonic() + engine.apps.watcher.poll_seconds

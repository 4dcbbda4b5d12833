"""Weekly block windows in the engine, in-process: the hosts file (and every target, through the
one place names are computed) follows the windows with or without a detox, the loop's next wake-up,
the ratchet held across a restart under `lock: true`, the journal, status, `detox.after`.
Time comes from a FakeClock; the zone is the allowances' (Berlin here).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from detoxd.clock import FakeClock
from detoxd.core.network import CANARY
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import journal
from detoxd.service.allowance_keeper import AllowanceKeeper
from detoxd.service.engine import Engine
from detoxd.service.seat import SessionFacts
from tests.service.enginekit import ROOT, blocked, scratch_paths

BERLIN = ZoneInfo("Europe/Berlin")
BLOCKLIST = "domains: [reddit.com, news.example]\n"
MAIN = """detox:
  days: 1
  lock: false
schedule:
  - name: workdays
    days: [mon, tue, wed, thu, fri]
    from: "09:00"
    to: "17:30"
    block:
      domains: [news.example]
  - name: night
    days: [sun]
    from: "22:00"
    to: "07:00"
    lock: true
"""


def make_engine(paths: Paths, clock: FakeClock) -> Engine:
    keeper = AllowanceKeeper(paths.allowances_file, clock, timezone=lambda: BERLIN, logind=None)
    engine = Engine(paths, clock, allowances=keeper)
    engine.boot()
    return engine


def journalled(paths: Paths, kind: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for segment in sorted(journal.directory_for(paths.state_dir).glob("*.jsonl")):
        events += [json.loads(line) for line in segment.read_text().splitlines() if line.strip()]
    return [event for event in events if event["kind"] == kind]


def run_until(engine: Engine, clock: FakeClock, moment: datetime) -> None:
    """The daemon's loop: sleep until the engine's next due time, tick; until ``moment``."""
    while clock.now() < moment:
        now = clock.monotonic()
        wait = min(engine.next_tick_due(now) - now, (moment - clock.now()).total_seconds())
        clock.advance(max(wait, 0.001))
        engine.tick()


def test_windows_block_without_a_detox_and_the_loop_wakes_for_them(tmp_path: Path) -> None:
    paths = scratch_paths(tmp_path, blocklist=BLOCKLIST, main=MAIN)
    clock = FakeClock(datetime(2026, 6, 1, 6, 0, tzinfo=UTC))  # Monday 08:00 in Berlin
    engine = make_engine(paths, clock)
    try:
        assert blocked(paths) == set()
        assert engine.next_tick_due(clock.monotonic()) - clock.monotonic() == 15.0  # quiet: 15 s
        clock.advance(3600 - 5)
        engine.tick()
        assert engine.next_tick_due(clock.monotonic()) - clock.monotonic() == 5.0  # the window opens
        run_until(engine, clock, datetime(2026, 6, 1, 7, 0, 1, tzinfo=UTC))
        assert blocked(paths) == {"news.example", "www.news.example", CANARY}  # (Firefox's DoH off)
        [row, night] = engine.status()["schedule"]
        assert row["active"] and row["next_change"] == "2026-06-01T15:30:00+00:00"
        assert not night["active"] and night["next_change"] == "2026-06-07T20:00:00+00:00"
        run_until(engine, clock, datetime(2026, 6, 1, 15, 30, 1, tzinfo=UTC))
        assert blocked(paths) == set()
        # Sunday night: the whole blocklist, no detox running (the week between in one step, as
        # after a suspend: the tick that follows sees the time that passed).
        clock.advance((datetime(2026, 6, 7, 19, 59, tzinfo=UTC) - clock.now()).total_seconds())
        engine.tick()
        assert "reddit.com" not in blocked(paths)
        run_until(engine, clock, datetime(2026, 6, 7, 20, 0, 1, tzinfo=UTC))
        assert {"reddit.com", "news.example"} <= blocked(paths)
        opened = [event["entry"] for event in journalled(paths, "window_opened")]
        closed = [event["entry"] for event in journalled(paths, "window_closed")]
        assert opened == ["workdays", "night"] and closed == ["workdays"]
    finally:
        engine.shutdown()


def test_a_locked_window_removed_while_the_daemon_was_down_is_held(tmp_path: Path) -> None:
    paths = scratch_paths(tmp_path, blocklist=BLOCKLIST, main=MAIN)
    clock = FakeClock(datetime(2026, 6, 3, 10, 0, tzinfo=UTC))  # Wednesday
    engine = make_engine(paths, clock)
    engine.shutdown()
    (paths.config_dir / "detoxd.yaml").write_text(MAIN.split("  - name: night")[0])
    engine = make_engine(paths, clock)
    try:
        [_, night] = engine.status()["schedule"]
        assert night["pending"] == {"edit": "removed", "takes_effect": "2026-06-04T10:00:00+00:00"}
        assert any("schedule entry 'night' removed: held until Thu 2026-06-04 12:00" in warning
                   for warning in engine.status()["warnings"])
        [held] = journalled(paths, "schedule_edit_held")
        assert held["entry"] == "night" and held["locked"] is True
        # Still held after another restart, from the same moment.
        engine.shutdown()
        clock.advance(3600)
        engine = make_engine(paths, clock)
        assert engine.status()["schedule"][1]["pending"]["takes_effect"] == "2026-06-04T10:00:00+00:00"
        clock.advance((datetime(2026, 6, 4, 9, 59, tzinfo=UTC) - clock.now()).total_seconds())
        engine.tick()
        assert engine.status()["schedule"][1]["pending"] is not None
        run_until(engine, clock, datetime(2026, 6, 4, 10, 0, 1, tzinfo=UTC))
        assert [row["name"] for row in engine.status()["schedule"]] == ["workdays"]
        assert [event["entry"] for event in journalled(paths, "schedule_edit_released")] == ["night"]
    finally:
        engine.shutdown()


def test_after_entries_take_over_when_the_detox_ends(tmp_path: Path) -> None:
    main = MAIN.replace("  lock: false\n", "  lock: false\n  after: [workdays]\n")
    paths = scratch_paths(tmp_path, blocklist=BLOCKLIST, main=main)
    clock = FakeClock(datetime(2026, 6, 1, 8, 0, tzinfo=UTC))  # Monday 10:00: in the window
    engine = make_engine(paths, clock)
    try:
        assert "news.example" not in blocked(paths)  # waits for a detox to end
        assert engine.status()["schedule"][0]["waiting_for_detox_end"]
        published: list[dict[str, Any]] = []
        engine.publish_to = published.append
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        assert engine.handle({"cmd": "end"}, ROOT)["ok"]
        [ended] = [event for event in published if event["event"] == "detox_ended"]
        assert ended["continues"] == ["workdays (mon,tue,wed,thu,fri 09:00-17:30: news.example)"]
        assert blocked(paths) == {"news.example", "www.news.example", CANARY}
        assert journalled(paths, "schedule_after_detox")[0]["entries"] == ["workdays"]
    finally:
        engine.shutdown()


def test_a_blocklist_edit_reaches_a_whole_blocklist_window_and_a_zone_change_moves_it(tmp_path: Path) -> None:
    paths = scratch_paths(tmp_path, blocklist=BLOCKLIST, main=MAIN)
    clock = FakeClock(datetime(2026, 6, 7, 21, 0, tzinfo=UTC))  # Sunday 23:00 in Berlin: night
    zone = [BERLIN]
    keeper = AllowanceKeeper(paths.allowances_file, clock, timezone=lambda: zone[0], logind=None)
    engine = Engine(paths, clock, allowances=keeper)
    engine.boot()
    try:
        assert "reddit.com" in blocked(paths)
        (paths.config_dir / "blocklist.yaml").write_text("domains: [reddit.com, added.example]\n")
        engine.reload()
        assert "added.example" in blocked(paths)
        zone[0] = ZoneInfo("America/New_York")  # 17:00 on Sunday there: no window
        clock.advance(1)
        engine.tick()
        assert blocked(paths) == set()
        [_, night] = engine.status()["schedule"]
        assert not night["active"] and night["next_change"] == "2026-06-08T02:00:00+00:00"
    finally:
        engine.shutdown()


def test_a_window_that_names_an_app_closes_it_only_while_in_force(tmp_path: Path) -> None:
    from detoxd.service.appwatch import AppWatcher

    main = MAIN.replace("[news.example]\n", "[news.example]\n      apps: [slack]\n")
    paths = scratch_paths(tmp_path, blocklist=BLOCKLIST + "apps: [slack, discord]\n", main=main)
    clock = FakeClock(datetime(2026, 6, 1, 6, 59, tzinfo=UTC))  # Monday 08:59 in Berlin
    keeper = AllowanceKeeper(paths.allowances_file, clock, timezone=lambda: BERLIN, logind=None)
    engine = Engine(paths, clock, allowances=keeper, app_watcher=AppWatcher(grace_seconds=0.5))
    engine.boot()
    try:
        assert engine.app_watcher.rules == () and engine.next_scan_due(clock.monotonic()) is None
        run_until(engine, clock, datetime(2026, 6, 1, 7, 0, 1, tzinfo=UTC))
        assert [rule.name for rule in engine.app_watcher.rules] == ["slack"]  # not discord
        assert engine.next_scan_due(clock.monotonic()) is not None
        assert "app:slack" in engine.status()["schedule"][0]["blocks"]
    finally:
        engine.shutdown()


def test_block_apps_must_name_an_app_rule(tmp_path: Path) -> None:
    from detoxd.core.yamlsource import ConfigError
    from detoxd.service.loader import load_config

    main = MAIN.replace("[news.example]\n", "[news.example]\n      apps: [nosuch]\n")
    paths = scratch_paths(tmp_path, blocklist=BLOCKLIST, main=main)
    try:
        load_config(paths.config_dir)
    except ConfigError as error:
        assert [str(issue) for issue in error.issues] == [
            "detoxd.yaml:11: schedule[0].block.apps: no app rule named 'nosuch' in blocklist.yaml "
            "(apps: none: blocklist.yaml has no apps:)"]
    else:
        raise AssertionError("loaded a schedule naming an app rule that does not exist")


def test_a_schedule_state_that_cannot_be_saved_or_read_is_said_loudly(tmp_path: Path) -> None:
    paths = scratch_paths(tmp_path, blocklist=BLOCKLIST, main=MAIN)
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    paths.schedule_file.write_text("{not json")
    clock = FakeClock(datetime(2026, 6, 3, 10, 0, tzinfo=UTC))
    engine = make_engine(paths, clock)
    try:
        assert any("was unreadable" in warning and "edits held by the ratchet were lost" in warning
                   for warning in engine.status()["warnings"])
        paths.schedule_file.unlink()
        paths.schedule_file.mkdir()  # nothing can be renamed over a directory
        (paths.config_dir / "detoxd.yaml").write_text(MAIN.split("  - name: night")[0])  # held edit
        engine.reload()
        [problem] = [text for text in engine.status()["problems"] if "schedule" in text]
        assert "cannot save the schedule's held edits" in problem and "restart would forget" in problem
        assert journalled(paths, "schedule_state_unsaved")
        paths.schedule_file.rmdir()  # the obstacle goes, nothing else changes: the next tick saves
        clock.advance(15)
        engine.tick()
        assert not [text for text in engine.status()["problems"] if "schedule" in text]
        assert paths.schedule_file.is_file()
    finally:
        engine.shutdown()


class SeatOfAlice:
    def facts(self, uid: int, pid: int) -> SessionFacts:
        return SessionFacts(None, active_seats=("seat0",) if uid == ALICE.uid else ())


ALICE = Peer(pid=2, uid=1000, gid=1000)


def test_after_the_detox_the_allowances_open_what_a_window_blocks(tmp_path: Path) -> None:
    """Issue 24's step down: `detox.after`'s window *plus* the allowances, not a cliff."""
    main = MAIN.replace("  lock: false\n", "  lock: false\n  after: [workdays]\n")
    blocklist = (BLOCKLIST
                 + "allowances:\n  - name: news\n    sites: [news.example]\n    minutes_per_day: 10\n")
    paths = scratch_paths(tmp_path, blocklist=blocklist, main=main)
    clock = FakeClock(datetime(2026, 6, 1, 8, 0, tzinfo=UTC))  # Monday 10:00: in the window
    keeper = AllowanceKeeper(paths.allowances_file, clock, timezone=lambda: BERLIN, logind=SeatOfAlice())
    engine = Engine(paths, clock, allowances=keeper)
    engine.boot()
    try:
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        assert engine.handle({"cmd": "end"}, ROOT)["ok"]
        assert "news.example" in blocked(paths)  # the window took over
        assert engine.handle({"cmd": "open", "name": "news", "minutes": 5}, ALICE)["ok"]
        assert "news.example" not in blocked(paths)
        [news] = engine.status()["allowances"]
        assert news["open"]
        run_until(engine, clock, datetime(2026, 6, 1, 8, 5, 30, tzinfo=UTC))
        assert "news.example" in blocked(paths)  # closed by itself after its 5 minutes
        run_until(engine, clock, datetime(2026, 6, 1, 15, 31, tzinfo=UTC))  # 17:31: the window ended
        assert blocked(paths) == set()
        refused = engine.handle({"cmd": "open", "name": "news"}, ALICE)
        assert not refused["ok"] and "nothing is blocked" in refused["error"]
    finally:
        engine.shutdown()


def test_a_window_of_the_whole_blocklist_blocks_its_paths_too(tmp_path: Path) -> None:
    """`paths:` (pages, through the browsers' policies) follow a window without `block:` like
    the blocklist's names do; a window naming its own domains leaves them out."""
    blocklist = BLOCKLIST + "paths: [linkedin.com/feed]\n"
    paths = scratch_paths(tmp_path, blocklist=blocklist, main=MAIN)
    clock = FakeClock(datetime(2026, 6, 7, 19, 0, tzinfo=UTC))  # Sunday 21:00 in Berlin
    engine = make_engine(paths, clock)
    try:
        assert engine.status()["paths_blocked"] == []
        run_until(engine, clock, datetime(2026, 6, 7, 20, 0, 1, tzinfo=UTC))  # 22:00: "night" opens
        assert engine.status()["paths_blocked"] == ["linkedin.com/feed"]
        assert "reddit.com" in blocked(paths)
        run_until(engine, clock, datetime(2026, 6, 8, 7, 0, 1, tzinfo=UTC))  # Monday 09:00: workdays only
        assert engine.status()["paths_blocked"] == []
        assert blocked(paths) == {"news.example", "www.news.example", CANARY}
    finally:
        engine.shutdown()

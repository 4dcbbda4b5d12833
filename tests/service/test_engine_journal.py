"""What the engine journals, and the report and activity commands, in-process with a FakeClock.

A real Engine on scratch files; tampering and blocked apps are real (the test edits the scratch
hosts file; the app is a real process of an ordinary user, uid 4242).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from detoxd.clock import FakeClock
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import journal
from detoxd.service.appwatch import AppWatcher
from detoxd.service.engine import Engine
from tests.service.enginekit import ROOT, scratch_paths

ADA = Peer(pid=2, uid=1000, gid=1000)
BOB = Peer(pid=3, uid=1001, gid=1001)
DAY = 86400.0
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist="domains: [twitter.com, linkedin.com]\napps: [slack]\n")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def engine(paths: Paths, clock: FakeClock) -> Iterator[Engine]:
    engine = Engine(paths, clock, app_watcher=AppWatcher(grace_seconds=0.5))
    engine.boot()
    yield engine
    engine.shutdown()


def events(paths: Paths) -> list[dict[str, Any]]:
    found, _ = journal.read_events(paths.state_dir / "journal")
    return found


def kinds(paths: Paths) -> list[str]:
    return [event["kind"] for event in events(paths)]


def tamper(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    paths.hosts_file.write_bytes(b"127.0.0.1\tlocalhost\n")
    engine.hosts.handle_events()
    clock.advance(1.0)
    engine.check(clock.monotonic(), full=True)
    clock.advance(1.0)
    engine.settle(clock.monotonic())


def test_a_detox_is_journalled_from_start_to_end(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    tamper(engine, paths, clock)
    clock.jump(3 * 3600)  # someone sets the clock forward
    engine.tick()
    (paths.config_dir / "blocklist.yaml").write_text("domains: [twitter..com]\n")
    engine.reload()
    clock.advance(14 * DAY)
    engine.tick()
    journalled = events(paths)
    assert [event["kind"] for event in journalled] == [
        "daemon_started", "detox_started", "tamper", "clock_jump", "config_error", "detox_ended"]
    started, tampered, jumped, config, ended = journalled[1:]
    assert started["locked"] is True and started["names"] == 5 and started["by_uid"] == 0
    assert started["ends_at"] == "2026-03-16T09:00:00+00:00"
    assert tampered["target"] == "hosts file" and "restored" in tampered and tampered["restored"]
    assert 3 * 3600 - 5 <= jumped["seconds"] <= 3 * 3600 + 5
    assert config["errors"] == 1 and "blocklist.yaml:1" in config["first"]
    assert ended["early"] is False and ended["reason"] == "finished"


def test_the_report_command_summarises_the_detox(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    for _ in range(3):
        tamper(engine, paths, clock)
    clock.advance(14 * DAY)
    engine.tick()
    reply = engine.handle({"cmd": "report"}, ADA)
    assert reply["ok"]
    document = reply["report"]
    assert document["scope"] == "uid 1000" and document["detox"]["state"] == "over"
    assert document["summary"] == ("14 days: 3 tamper attempts, time on blocked sites not measured "
                                   "(no ActivityWatch)")
    assert document["journal"]["corrupt_lines"] == 0 and document["journal"]["events"] >= 5


def test_activity_reports_keep_only_blocked_names_and_the_senders_uid(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    before_day = (START - timedelta(days=3)).date().isoformat()
    request = {"cmd": "activity_report", "available": True, "days": [
        {"date": before_day, "sites": {"twitter.com": 1200, "my-bank.example": 600}, "apps": {"slack": 60}},
        {"date": START.date().isoformat(), "sites": {"linkedin.com": 30}, "apps": {"firefox": 900}},
    ]}
    reply = engine.handle(request, ADA)
    assert reply == {"ok": True, "journalled": 2, "ignored_names": 2}
    assert engine.handle(request, ADA)["journalled"] == 0  # unchanged days are not journalled twice
    days = [event for event in events(paths) if event["kind"] == "activity_day"]
    assert [(day["uid"], day["date"], day["phase"], day["sites"], day["apps"]) for day in days] == [
        (1000, before_day, "before", {"twitter.com": 1200.0}, {"slack": 60.0}),
        (1000, "2026-03-02", "during", {"linkedin.com": 30.0}, {}),
    ]
    # Ada sees her time; Bob does not; root sees it.
    ada = engine.handle({"cmd": "report"}, ADA)["report"]
    bob = engine.handle({"cmd": "report"}, BOB)["report"]
    root = engine.handle({"cmd": "report"}, ROOT)["report"]
    assert ada["totals"]["before"]["blocked_site_seconds"] == 1200
    assert ada["activitywatch"]["available"] is True
    assert bob["totals"]["before"]["blocked_site_seconds"] is None
    assert bob["activitywatch"]["available"] is False
    assert root["totals"]["during"]["blocked_site_seconds"] == 30


@pytest.mark.parametrize(("request_fields", "error"), [
    ({"available": "yes"}, "available must be true or false"),
    ({"available": True, "days": "all"}, "days must be a list"),
    ({"available": True, "days": [{"date": "2026-13-01"}]}, "does not exist"),
    ({"available": True, "days": [{"date": "2025-01-01"}]}, "outside the detox"),
    ({"available": True, "days": [{"date": "2026-03-02", "sites": {"twitter.com": -1}}]}, "seconds must be"),
    ({"available": True, "days": [{"date": "2026-03-02", "sites": {"x.com": True}}]}, "seconds must be"),
    ({"available": True, "days": [{"date": "2026-03-02"}] * 32}, "at most 31 days"),
    ({"available": True, "days": [{"date": "2026-03-02",
                                   "sites": {f"s{i}.com": 1 for i in range(65)}}]}, "at most 64 names"),
    ({"available": False}, "reason must be a string"),
])
def test_bad_activity_reports_are_refused(engine: Engine, request_fields: dict[str, Any], error: str) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    reply = engine.handle({"cmd": "activity_report", **request_fields}, ADA)
    assert reply["ok"] is False and reply["code"] == "bad_request" and error in reply["error"]


def test_activity_without_a_detox_is_refused(engine: Engine) -> None:
    reply = engine.handle({"cmd": "activity_report", "available": True, "days": []}, ADA)
    assert reply["code"] == "no_detox"


def test_activitywatch_missing_is_journalled_once_per_reason(engine: Engine, paths: Paths) -> None:
    for _ in range(3):
        reply = engine.handle({"cmd": "activity_report", "available": False,
                               "reason": "aw-server is not running"}, ADA)
        assert reply["ok"]
    unavailable = [event for event in events(paths) if event["kind"] == "activity_unavailable"]
    assert [(event["uid"], event["reason"]) for event in unavailable] == [(1000, "aw-server is not running")]
    report = engine.handle({"cmd": "report"}, ADA)["report"]
    assert "aw-server is not running" in report["activitywatch"]["message"]


def test_agents_connecting_and_disappearing_during_a_detox(engine: Engine, paths: Paths,
                                                           clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    for _ in range(3):
        engine.handle({"cmd": "agent_report", "notifications_silenced": True, "backend": "dunst"}, ADA)
        clock.advance(10)
        engine.tick()
    clock.advance(120)  # Ada's agent stopped reporting
    engine.tick()
    agents = [(event["kind"], event["uid"], event["during_detox"]) for event in events(paths)
              if event["kind"].startswith("agent_")]
    assert agents == [("agent_connected", 1000, True), ("agent_disconnected", 1000, True)]


def test_an_agent_whose_subscription_stays_open_needs_no_report_to_stay_known(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    """Issue 26: the tray reports when something changes; its open subscription says it lives."""
    subscribed = {1000}
    engine.agents.subscribed = lambda: frozenset(subscribed)
    engine.handle({"cmd": "start"}, ROOT)
    engine.handle({"cmd": "agent_report", "notifications_silenced": True, "backend": "dunst"}, ADA)
    clock.advance(3600)
    engine.tick()
    assert [report["uid"] for report in engine.status()["agents"]] == [1000]
    subscribed.clear()  # the agent's connection closed
    engine.tick()
    agents = [event["kind"] for event in events(paths) if event["kind"].startswith("agent_")]
    assert agents == ["agent_connected", "agent_disconnected"]


def test_hot_seat_handovers_are_journalled(engine: Engine, paths: Paths) -> None:
    details = {"session": 1, "seat": 1, "of": 6, "name": "Robert Craven",
               "starts_at": "2026-03-05T09:00:00+00:00", "ends_at": "2026-03-05T09:30:00+00:00",
               "next_name": "Ada Lovelace"}
    engine._publish_session_event("hot_seat", details)  # what the scheduler's job calls
    engine._publish_session_event("hot_seat", {**details, "seat": 2, "name": "Ada Lovelace"})
    journalled = [event for event in events(paths) if event["kind"] in ("session_started", "hot_seat")]
    assert [(event["kind"], event.get("person")) for event in journalled] == [
        ("session_started", None), ("hot_seat", "Robert Craven"), ("hot_seat", "Ada Lovelace")]


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a process as another user (uid 4242)")
def test_a_closed_app_is_journalled_with_its_user(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    name = f"slack-{uuid.uuid4().hex[:6]}"
    (paths.config_dir / "blocklist.yaml").write_text(
        f"domains: [twitter.com]\napps:\n  - name: chat\n    match: [{name}]\n")
    engine.reload()
    engine.handle({"cmd": "start"}, ROOT)
    directory = Path(tempfile.mkdtemp(prefix="detoxd-test-"))  # readable by uid 4242
    directory.chmod(0o755)
    binary = directory / name
    shutil.copy("/bin/sleep", binary)
    binary.chmod(0o755)
    process = subprocess.Popen([str(binary), "60"], user=4242, group=4242)
    try:
        for _ in range(200):
            engine.watch_apps(clock.monotonic())
            if process.poll() is not None:
                break
            clock.advance(0.05)
        process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(directory)
    closed = [event for event in events(paths) if event["kind"] == "app_closed"]
    assert [(event["app"], event["uid"], event["pid"]) for event in closed] == [("chat", 4242, process.pid)]


def test_a_user_cannot_flood_the_journal_with_activity(engine: Engine, paths: Paths,
                                                        clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    day = START.date().isoformat()
    replies = [engine.handle({"cmd": "activity_report", "available": True,
                              "days": [{"date": day, "sites": {"twitter.com": seconds}}]}, ADA)
               for seconds in range(1, 100)]
    assert [reply["ok"] for reply in replies] == [True] * 64 + [False] * 35
    assert replies[-1]["code"] == "busy"
    assert engine.handle({"cmd": "activity_report", "available": True,  # unchanged: costs nothing
                          "days": [{"date": day, "sites": {"twitter.com": 64}}]}, ADA)["ok"]
    assert engine.handle({"cmd": "activity_report", "available": True,  # another user has their own
                          "days": [{"date": day, "sites": {"twitter.com": 5}}]}, BOB)["ok"]
    clock.advance(601)
    assert engine.handle({"cmd": "activity_report", "available": True,
                          "days": [{"date": day, "sites": {"twitter.com": 500}}]}, ADA)["ok"]
    assert kinds(paths).count("activity_day") == 64 + 1 + 1


def test_blocked_lookups_from_an_engine_keep_only_blocked_names(engine: Engine, paths: Paths) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    entries = [
        {"date": "2026-03-02", "device": "192.168.1.23", "counts": {"twitter.com": 4, "my-bank.example": 9}},
        {"date": "2026-03-02", "device": "192.168.1.24", "counts": {"linkedin.com": 0}},
        {"date": "not a date", "device": "x", "counts": {"twitter.com": 1}},
        {"date": "2026-03-02", "device": "192.168.1.25", "counts": {"twitter.com": True}},
    ]
    assert engine.record_blocked_lookups(entries) == 1
    assert engine.record_blocked_lookups(entries[:1]) == 0  # unchanged counts are not journalled again
    lookups = [event for event in events(paths) if event["kind"] == "blocked_lookups"]
    assert [(event["device"], event["counts"]) for event in lookups] == [("192.168.1.23", {"twitter.com": 4})]
    document = engine.handle({"cmd": "report"}, ROOT)["report"]
    assert document["totals"]["during"]["blocked_lookups"] == 4

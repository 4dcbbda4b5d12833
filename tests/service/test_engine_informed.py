"""`peers_informed:` in-process: a real Engine on scratch files with a FakeClock; the tampering
is real (the test edits the scratch hosts file). What is queued for the peers, and when."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from detoxd.clock import FakeClock
from detoxd.outbox import Outbox
from detoxd.paths import Paths
from detoxd.service.appwatch import AppWatcher
from detoxd.service.engine import Engine
from tests.service.enginekit import ROOT, scratch_paths
from tests.service.test_engine_journal import tamper

DAY = 86400.0
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PEOPLE = ("detox:\n  days: 14\n  lock: true\n"
          "me: {name: Robert, email: robert@example.com}\n"
          "peers:\n  - {name: Ada, email: ada@example.com}\n  - {name: Grace, email: grace@example.com}\n"
          "  - Alan\n"
          "mail: {server: smtp.example.com, from: robert@example.com}\n")


def make(tmp_path: Path, main: str) -> tuple[Engine, Paths, FakeClock]:
    paths = scratch_paths(tmp_path, blocklist="domains: [twitter.com]\n", main=main)
    clock = FakeClock(START)
    engine = Engine(paths, clock, app_watcher=AppWatcher(grace_seconds=0.5))
    engine.boot()
    return engine, paths, clock


@pytest.fixture
def informed(tmp_path: Path) -> Iterator[tuple[Engine, Paths, FakeClock]]:
    made = make(tmp_path, PEOPLE + "peers_informed: [tamper, end_attempt]\n")
    yield made
    made[0].shutdown()


def messages(paths: Paths, start: int = 0) -> list[tuple[str, str, str]]:
    found = []
    for item in Outbox(paths.state_dir / "outbox").pending()[start:]:
        message = message_from_bytes(item.data, policy=policy.default)
        found.append((item.recipient, str(message["Subject"]), message.get_content().replace("\r\n", "\n")))
    return found


def test_the_first_goes_at_the_next_tick_later_ones_at_most_hourly_and_a_closing_note(
        informed: tuple[Engine, Paths, FakeClock]) -> None:
    engine, paths, clock = informed
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    engine.tick()
    assert messages(paths) == []  # nothing happened yet
    tamper(engine, paths, clock)
    assert not engine.handle({"cmd": "end"}, ROOT)["ok"]  # locked: an attempt to end early
    engine.tick()
    first = messages(paths)
    assert [to for to, _, _ in first] == ["ada@example.com", "grace@example.com"]  # Alan has no email
    _, subject, text = first[0]
    assert subject == "Robert's detox: 2 events"
    assert "- 1 change to the block, put back\n- 1 attempt to end the detox early\n" in text
    assert "You may ask Robert about it" in text
    assert "twitter" not in text  # never which sites

    tamper(engine, paths, clock)
    tamper(engine, paths, clock)
    clock.advance(30 * 60)
    engine.tick()
    assert len(messages(paths)) == 2  # within the hour: gathered, not sent
    clock.advance(31 * 60)
    engine.tick()
    second = messages(paths, 2)
    assert len(second) == 2 and second[0][1].startswith("Robert's detox: 2 events since the last message")
    assert "- 2 changes to the block, put back\n" in second[0][2]

    clock.advance(14 * DAY)
    engine.tick()  # the detox ends
    engine.tick()
    closing = messages(paths, 4)
    assert [(to, subject) for to, subject, _ in closing] == [("ada@example.com", "Robert's detox is over"),
                                                             ("grace@example.com", "Robert's detox is over")]
    assert "14 days: 3 tamper attempts" in closing[0][2]
    assert "not measured" not in closing[0][2]  # no ActivityWatch words without share_activity
    assert "- 3 changes to the block, put back\n- 1 attempt to end the detox early\n" in closing[0][2]


def test_counts_survive_a_restart(tmp_path: Path) -> None:
    engine, paths, clock = make(tmp_path, PEOPLE + "peers_informed: [tamper, end_attempt]\n")
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    tamper(engine, paths, clock)
    engine.tick()
    assert len(messages(paths)) == 2
    tamper(engine, paths, clock)
    engine.tick()  # counted and saved, not due yet
    engine.shutdown()
    again = Engine(paths, clock, app_watcher=AppWatcher(grace_seconds=0.5))
    again.boot()  # a restart during the detox: a "stop", not chosen here
    try:
        clock.advance(3600)
        again.tick()
        later = messages(paths, 2)
        assert len(later) == 2 and "- 1 change to the block, put back\n" in later[0][2]
        assert "stop" not in later[0][2]
    finally:
        again.shutdown()


def test_nothing_is_queued_when_peers_informed_is_absent(tmp_path: Path) -> None:
    engine, paths, clock = make(tmp_path, PEOPLE)
    try:
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        tamper(engine, paths, clock)
        assert not engine.handle({"cmd": "end"}, ROOT)["ok"]
        engine.tick()
        clock.advance(14 * DAY)
        engine.tick()
        engine.tick()
        assert engine.status()["tamper_events"] == 1
        assert messages(paths) == []
        assert not (paths.state_dir / "outbox" / "informed.json").exists()
    finally:
        engine.shutdown()


def test_a_restart_during_the_detox_is_a_stop(tmp_path: Path) -> None:
    engine, paths, clock = make(tmp_path, PEOPLE + "peers_informed: [stop]\n")
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    engine.tick()
    engine.shutdown()
    assert messages(paths) == []
    again = Engine(paths, clock, app_watcher=AppWatcher(grace_seconds=0.5))
    again.boot()
    try:
        again.tick()
        told = messages(paths)
        assert len(told) == 2
        assert "- 1 stop of the detox service (or a restart of the computer)\n" in told[0][2]
    finally:
        again.shutdown()

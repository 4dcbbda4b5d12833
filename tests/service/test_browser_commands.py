"""browser_check, browser_attempt, browser_time: the extension's commands on a real Engine
(scratch files, a FakeClock), with who may call each (SO_PEERCRED's uid and logind's word, as
test_commands.py) and what reaches the journal (issue 23)."""

from __future__ import annotations

import threading
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
from tests.service.enginekit import ROOT, scratch_paths
from tests.service.test_commands import ALICE, NOBODY, REMOTE_BOB, SeatLogind

BERLIN = ZoneInfo("Europe/Berlin")
BLOCKLIST = """domains: [twitter.com, facebook.com]
paths: [linkedin.com/feed]
allowances:
  - name: social
    sites: [facebook.com]
    minutes_per_day: 20
"""
CAROL = Peer(pid=6, uid=1002, gid=1002)  # at the seat too (SeatLogind: only 1000 is)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist=BLOCKLIST)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, 21, 30, tzinfo=UTC))  # 23:30 in Berlin


@pytest.fixture
def engine(paths: Paths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr("detoxd.service.commands.local_zone", lambda: BERLIN)
    keeper = AllowanceKeeper(paths.allowances_file, clock, timezone=lambda: BERLIN, logind=SeatLogind())
    engine = Engine(paths, clock, allowances=keeper)
    engine.boot()
    yield engine
    engine.shutdown()


def events(engine: Engine, kind: str) -> list[dict[str, Any]]:
    found, _ = journal.read_events(engine.journal.directory)
    return [event for event in found if event["kind"] == kind]


def check(engine: Engine, url: object, peer: Peer = NOBODY) -> dict[str, Any]:
    return engine.handle({"cmd": "browser_check", "url": url}, peer)


def test_anyone_may_check_and_the_answer_follows_the_detox_and_the_allowances(engine: Engine) -> None:
    assert check(engine, "https://twitter.com/") == {"ok": True, "blocked": False, "kind": None,
                                                      "rule": None, "allowance": None}
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    assert check(engine, "https://twitter.com/home") == {"ok": True, "blocked": True, "kind": "domain",
                                                         "rule": "twitter.com", "allowance": None}
    assert check(engine, "https://www.linkedin.com/feed/") == {
        "ok": True, "blocked": True, "kind": "path", "rule": "linkedin.com/feed", "allowance": None}
    assert check(engine, "https://www.linkedin.com/in/me")["blocked"] is False
    assert check(engine, "https://facebook.com/")["allowance"] == "social"
    assert check(engine, "https://facebook.com/")["blocked"] is True
    assert engine.handle({"cmd": "open", "name": "social", "minutes": 5}, ALICE)["ok"]
    assert check(engine, "https://facebook.com/") == {"ok": True, "blocked": False, "kind": None,
                                                       "rule": None, "allowance": "social"}
    for bad in (None, 7, "https://exa mple.com", "x" * 9000):
        reply = check(engine, bad)
        assert reply["ok"] is False and reply["code"] == "bad_request", bad


@pytest.mark.parametrize(("peer", "reason"), [
    (NOBODY, "uid 65534 is a system user"),
    (REMOTE_BOB, "session c7 is remote"),
    (CAROL, "uid 1002 has no active session at this machine's seat"),
])
def test_only_a_person_at_the_seat_may_record(engine: Engine, peer: Peer, reason: str) -> None:
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    for request in ({"cmd": "browser_attempt", "url": "https://twitter.com/"},
                    {"cmd": "browser_time", "day": "2026-06-01", "seconds": {"twitter.com": 60}}):
        reply = engine.handle(request, peer)
        assert reply["ok"] is False and reply["code"] == "not_authorized", request
        assert reply["error"].startswith(reason)
    assert events(engine, "browser_attempts") == [] and events(engine, "browser_day") == []


def test_attempts_are_counted_per_rule_per_local_day_and_journalled(engine: Engine, clock: FakeClock) -> None:
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    attempt = {"cmd": "browser_attempt", "url": "https://twitter.com/x"}
    assert engine.handle(attempt, ALICE) == {"ok": True, "attempts_today": 1, "blocked": True,
                                             "rule": "twitter.com", "date": "2026-06-01"}
    assert engine.handle(attempt, ALICE)["attempts_today"] == 2
    path_attempt = {"cmd": "browser_attempt", "url": "https://linkedin.com/feed"}
    assert engine.handle(path_attempt, ALICE)["attempts_today"] == 1
    assert engine.handle(attempt, ROOT)["attempts_today"] == 1  # each user's own count
    # not blocked: neither counted nor journalled (nothing else a person browsed is kept)
    assert engine.handle({"cmd": "browser_attempt", "url": "https://bank.example/"}, ALICE) == {
        "ok": True, "attempts_today": 0, "blocked": False}
    clock.advance(3600)  # past midnight in Berlin: a new day
    assert engine.handle(attempt, ALICE) == {"ok": True, "attempts_today": 1, "blocked": True,
                                             "rule": "twitter.com", "date": "2026-06-02"}
    found = [(event["uid"], event["date"], event["counts"], event["source"])
             for event in events(engine, "browser_attempts")]
    assert found == [(1000, "2026-06-01", {"twitter.com": 1}, "browser"),
                     (1000, "2026-06-01", {"twitter.com": 1}, "browser"),
                     (1000, "2026-06-01", {"linkedin.com/feed": 1}, "browser"),
                     (0, "2026-06-01", {"twitter.com": 1}, "browser"),
                     (1000, "2026-06-02", {"twitter.com": 1}, "browser")]


def test_attempts_over_the_journal_budget_are_journalled_later_not_lost(engine: Engine,
                                                                       clock: FakeClock) -> None:
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    attempt = {"cmd": "browser_attempt", "url": "https://twitter.com/x"}
    for count in range(1, 101):
        assert engine.handle(attempt, ALICE)["attempts_today"] == count
    journalled = events(engine, "browser_attempts")
    assert len(journalled) == 64 and sum(event["counts"]["twitter.com"] for event in journalled) == 64
    # The time reports have a budget of their own: still taken.
    time_request = {"cmd": "browser_time", "day": "2026-06-01", "seconds": {"twitter.com": 60}}
    assert engine.handle(time_request, ALICE)["journalled"] == 1
    clock.advance(600)
    assert engine.handle(attempt, ALICE)["attempts_today"] == 101
    assert sum(event["counts"]["twitter.com"] for event in events(engine, "browser_attempts")) == 101


def test_time_replaces_the_days_totals_and_keeps_only_blocked_rules_and_allowances(engine: Engine) -> None:
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    request = {"cmd": "browser_time", "day": "2026-06-01",
               "seconds": {"twitter.com": 60, "linkedin.com/feed": 30, "social": 120, "bank.example": 999}}
    assert engine.handle(request, ALICE) == {"ok": True, "journalled": 1, "ignored": 1}
    assert engine.handle(request, ALICE) == {"ok": True, "journalled": 0, "ignored": 1}  # unchanged
    assert engine.handle({**request, "seconds": {"twitter.com": 90}}, ALICE)["journalled"] == 1
    assert [(event["uid"], event["date"], event["seconds"]) for event in events(engine, "browser_day")] == [
        (1000, "2026-06-01", {"linkedin.com/feed": 30, "social": 120, "twitter.com": 60}),
        (1000, "2026-06-01", {"twitter.com": 90})]
    for bad in ({"day": "2026-06-03"}, {"day": "2026-13-01"}, {"day": None}, {"seconds": []},
                {"seconds": {"twitter.com": -5}}, {"seconds": {"twitter.com": "60"}}):
        reply = engine.handle({**request, **bad}, ALICE)
        assert reply["ok"] is False and reply["code"] == "bad_request", bad


def test_a_check_never_waits_for_a_busy_engine(engine: Engine) -> None:
    """A navigation waits for browser_check: it is answered while another thread holds the lock."""
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        answers: list[dict[str, Any]] = []
        asking = threading.Thread(target=lambda: answers.append(check(engine, "https://twitter.com/")))
        asking.start()
        asking.join(10)
        assert answers and answers[0]["blocked"] is True
    finally:
        release.set()
        holder.join()

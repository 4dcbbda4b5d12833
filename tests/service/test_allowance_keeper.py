"""The daemon's allowances in-process: a FakeClock, a real state file, who may open.

logind is replaced by :class:`FixedLogind`, which answers what sd-login would for a user at the
seat (or not): the real sd-login calls are tested in tests/service/test_seat.py and in the daemon
test (libsystemd reading a scratch /run/systemd inside a mount namespace).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detoxd.clock import FakeClock
from detoxd.core import allowances as al
from detoxd.core.yamlsource import Source, parse_document
from detoxd.protocol import ErrorReply, Peer
from detoxd.service.allowance_keeper import AllowanceKeeper
from detoxd.service.seat import SessionFacts

BERLIN = ZoneInfo("Europe/Berlin")
ROOT = Peer(pid=1, uid=0, gid=0)
ALICE = Peer(pid=2, uid=1000, gid=1000)
REMOTE_BOB = Peer(pid=3, uid=1001, gid=1001)
NOBODY = Peer(pid=4, uid=65534, gid=65534)
DAEMON_USER = Peer(pid=5, uid=110, gid=110)

TWITTER = """allowances:
  - name: twitter
    sites: [twitter.com]
    minutes_per_day: 20
    max_opens_per_day: 2
    min_gap_minutes: 60
    windows: ["Mon-Fri 12:30-12:50"]
"""


class FixedLogind:
    """alice sits at seat0; bob is logged in over ssh only."""

    def facts(self, uid: int, pid: int) -> SessionFacts:
        if uid == 1000:
            return SessionFacts(None, active_seats=("seat0",))
        if uid == 1001:
            return SessionFacts("c7", session_remote=True)
        return SessionFacts(None)


def rules(text: str = TWITTER) -> tuple[al.Allowance, ...]:
    source = Source("blocklist.yaml")
    root = parse_document(text, source)
    assert root is not None
    parsed = al.parse_allowances(source, root.value["allowances"], "allowances", al.builtin_catalog())
    assert not source.errors
    return parsed


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))  # Monday 09:00 in Berlin


def keeper(path: Path, clock: FakeClock, text: str = TWITTER, *, locked: bool = True) -> AllowanceKeeper:
    kept = AllowanceKeeper(path / "allowances.json", clock, timezone=lambda: BERLIN, logind=FixedLogind())
    kept.configure(rules(text))
    return kept


def answer(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The reply, as the command table makes it of a refusal the keeper raises."""
    try:
        return call()
    except ErrorReply as error:
        return error.reply()


BLOCK = frozenset({"twitter.com", "www.twitter.com", "api.twitter.com", "pbs.twimg.com", "facebook.com"})


def test_open_lets_the_site_through_and_it_closes_by_itself(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=True)
    assert kept.unblocked(BLOCK, detox_active=True) == frozenset()
    response = kept.open({"name": "twitter", "minutes": 10}, ALICE, detox_active=True)
    assert response == {"ok": True, "message": "twitter is open for 10 min, until 09:10"}
    assert kept.unblocked(BLOCK, detox_active=True) == BLOCK - {"facebook.com"}
    clock.advance(9 * 60)
    assert not kept.tick()
    assert kept.status(detox_active=True)[0]["minutes_left_today"] == 10
    clock.advance(60)
    assert kept.tick()  # closed: the engine applies the block again
    assert kept.unblocked(BLOCK, detox_active=True) == frozenset()


def test_root_may_open(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=True)
    assert kept.open({"name": "twitter", "minutes": 1}, ROOT, detox_active=True)["ok"] is True


def test_bad_requests(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    bad: list[dict[str, object]] = [{}, {"name": 3}, {"name": "twitter", "minutes": "ten"},
                                    {"name": "twitter", "minutes": True}]
    for request in bad:
        assert answer(lambda: kept.open(request, ROOT, detox_active=True))["code"] == "bad_request"
    assert answer(lambda: kept.open({"name": "reddit"}, ROOT, detox_active=True))["error"] == (
        "no allowance named 'reddit' (allowances: twitter)")


def test_outside_a_detox_nothing_opens_or_is_let_through(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    response = answer(lambda: kept.open({"name": "twitter"}, ROOT, detox_active=False))
    assert response["code"] == "refused" and "no detox is running" in response["error"]
    clock.advance(3.5 * 3600)  # the 12:30 window
    kept.tick()
    assert kept.unblocked(BLOCK, detox_active=False) == frozenset()


def test_spent_budget_and_gap_are_refused(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=True)
    assert kept.open({"name": "twitter", "minutes": 5}, ALICE, detox_active=True)["ok"]
    clock.advance(5 * 60)
    kept.tick()
    gap = answer(lambda: kept.open({"name": "twitter"}, ALICE, detox_active=True))
    assert gap["code"] == "refused" and "can open again in 60 min" in gap["error"]
    clock.advance(60 * 60)
    kept.tick()
    assert kept.open({"name": "twitter"}, ALICE, detox_active=True)["ok"]  # the 15 min left
    clock.advance(15 * 60)
    kept.tick()
    clock.advance(60 * 60)
    kept.tick()
    spent = answer(lambda: kept.open({"name": "twitter"}, ALICE, detox_active=True))
    assert spent["code"] == "refused" and "used up" in spent["error"]


def test_time_spent_survives_a_restart_and_a_clock_set_back(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=True)
    assert kept.open({"name": "twitter", "minutes": 8}, ALICE, detox_active=True)["ok"]
    clock.advance(3 * 60)
    kept.tick()
    # A new daemon process (same boot): the open allowance is still open, its time still runs.
    restarted = keeper(tmp_path, clock)
    assert restarted.unblocked(BLOCK, detox_active=True)
    clock.advance(5 * 60)
    clock.jump(-86_400)  # and someone sets the clock back a day
    restarted.tick()
    assert restarted.unblocked(BLOCK, detox_active=True) == frozenset()
    assert restarted.status(detox_active=True)[0]["minutes_left_today"] == 12
    again = keeper(tmp_path, clock)
    assert again.status(detox_active=True)[0]["minutes_left_today"] == 12


def test_an_edit_raising_the_budget_during_a_lock_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=True)
    kept.configure(rules(TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 60")))
    assert kept.warnings == ["blocklist.yaml:4: allowances[0].minutes_per_day: warning: raised from 20 to "
                             "60 during a locked detox: refused until it ends"]
    assert kept.status(detox_active=True)[0]["minutes_left_today"] == 20
    # Lowered, then raised back to the original: the lower value is the new ceiling.
    kept.configure(rules(TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 10")))
    assert kept.warnings == []
    kept.configure(rules())
    assert "raised from 10 to 20" in kept.warnings[0]
    restarted = keeper(tmp_path, clock)  # the ceiling is in the state file
    assert restarted.status(detox_active=True)[0]["minutes_left_today"] == 10
    restarted.detox_ended()
    restarted.configure(rules(TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 60")))
    assert restarted.warnings == []


def test_an_unlocked_detox_has_no_ceiling(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=False)
    kept.configure(rules(TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 60")))
    assert kept.warnings == []
    assert kept.status(detox_active=True)[0]["minutes_left_today"] == 60


def test_a_notice_two_minutes_before_a_window_closes_once(tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=True)
    clock.advance(3.5 * 3600)  # 12:30
    assert kept.tick()
    assert kept.notices(detox_active=True) == []
    clock.advance(18 * 60)  # 12:48
    kept.tick()
    assert kept.notices(detox_active=True) == [
        {"name": "twitter", "closes_at": "2026-06-01T10:50:00+00:00", "seconds_left": 120}]
    clock.advance(1)
    kept.tick()
    assert kept.notices(detox_active=True) == []


def test_a_damaged_state_file_is_moved_aside(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "allowances.json").write_text('{"version": 1, "clock": 5}')
    kept = keeper(tmp_path, clock)
    assert (tmp_path / "allowances.corrupt").exists()
    assert kept.status(detox_active=False)[0]["minutes_left_today"] == 20
    assert json.loads((tmp_path / "allowances.json").read_text())["version"] == 1


def test_an_open_session_does_not_write_the_state_file_every_second(
        tmp_path: Path, clock: FakeClock) -> None:
    kept = keeper(tmp_path, clock)
    kept.detox_started(locked=True)
    assert kept.open({"name": "twitter", "minutes": 10}, ALICE, detox_active=True)["ok"]
    state_file = tmp_path / "allowances.json"
    written = state_file.stat().st_mtime_ns, state_file.read_bytes()
    for _ in range(30):
        clock.advance(1)
        kept.tick()
    assert (state_file.stat().st_mtime_ns, state_file.read_bytes()) == written
    clock.advance(10 * 60)
    kept.tick()  # the session ended: that is written
    assert state_file.read_bytes() != written[1]

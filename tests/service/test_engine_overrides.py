"""Issue 21, bullets 1 and 9, in-process: a line giving a blocked name another address is
neutralised, counted, journalled and shown; a tamper landing during a config change is counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detoxd.clock import FakeClock
from detoxd.core.hosts import NEUTRALISED_MARKER
from detoxd.paths import Paths
from detoxd.service import journal
from detoxd.service.engine import Engine
from tests.service.enginekit import ROOT, blocked, scratch_paths

USER_LINES = b"127.0.0.1\tlocalhost\n# mine, keep me\n192.168.1.10 nas.home nas\n"
ATTACK = b"104.244.42.1 foo.example twitter.com\n"
UNLOCKED = "detox:\n  days: 14\n  lock: false\n"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist="domains: [twitter.com, linkedin.com]\n", hosts=USER_LINES,
                         main=UNLOCKED)


def events(paths: Paths, kind: str) -> list[dict[str, Any]]:
    found, _ = journal.read_events(paths.state_dir / "journal")
    return [event for event in found if event["kind"] == kind]


def settle(engine: Engine, clock: FakeClock) -> None:
    engine.hosts.handle_events()
    clock.advance(1.0)
    engine.settle(clock.monotonic())


def test_an_overriding_line_is_shown_while_present_then_neutralised_counted_and_given_back(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    settle(engine, clock)  # our own write's events
    paths.hosts_file.write_bytes(ATTACK + paths.hosts_file.read_bytes())
    status = engine.status()
    assert status["hosts_in_sync"] is False
    assert status["hosts_overrides"] == [{"line": ATTACK.decode().strip(), "names": ["twitter.com"]}]
    assert any("1 line of " in problem and "gives a blocked name another address" in problem
               and "twitter.com" in problem
               for problem in status["problems"])

    settle(engine, clock)
    assert paths.hosts_file.read_bytes().startswith(NEUTRALISED_MARKER + ATTACK)
    status = engine.status()
    assert status["hosts_in_sync"] is True and status["hosts_overrides"] == [] and status["problems"] == []
    assert status["tamper_events"] == 1
    [neutralised] = events(paths, "hosts_line_neutralised")
    assert neutralised["line"] == ATTACK.decode().strip() and neutralised["names"] == ["twitter.com"]
    assert neutralised["addresses"] == ["104.244.42.1"]
    assert "104.244.42.1 foo.example twitter.com" in events(paths, "tamper")[-1]["restored"]

    assert engine.handle({"cmd": "end"}, ROOT)["ok"]
    assert paths.hosts_file.read_bytes() == ATTACK + USER_LINES


def test_a_line_there_before_the_start_is_neutralised_and_journalled_not_counted(
        paths: Paths, clock: FakeClock) -> None:
    paths.hosts_file.write_bytes(USER_LINES + ATTACK)
    engine = Engine(paths, clock)
    engine.boot()
    try:
        engine.handle({"cmd": "start"}, ROOT)
        assert NEUTRALISED_MARKER + ATTACK in paths.hosts_file.read_bytes()
        assert engine.status()["tamper_events"] == 0
        assert [event["names"] for event in events(paths, "hosts_line_neutralised")] == [["twitter.com"]]
        assert engine.handle({"cmd": "end"}, ROOT)["ok"]
        assert paths.hosts_file.read_bytes() == USER_LINES + ATTACK
    finally:
        engine.shutdown()


@pytest.mark.parametrize("new_names", [True, False], ids=["names change", "same names"])
def test_a_tamper_settling_while_the_config_is_reloaded_is_counted(
        engine: Engine, paths: Paths, clock: FakeClock, new_names: bool) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    settle(engine, clock)
    paths.hosts_file.write_bytes(USER_LINES)  # the block removed
    engine.hosts.handle_events()  # seen; before it settles, the config worker applies an edit
    assert engine.hosts.deadline() is not None
    extra = ", x.com" if new_names else ""
    blocklist = f"domains: [twitter.com, linkedin.com{extra}]\n# edited\n"
    (paths.config_dir / "blocklist.yaml").write_text(blocklist)
    assert engine.reload() is None
    assert "twitter.com" in blocked(paths) and ("x.com" in blocked(paths)) is new_names
    assert engine.status()["tamper_events"] == 1
    assert len(events(paths, "tamper")) == 1
    settle(engine, clock)  # nothing left to settle, and nothing counted twice
    assert engine.status()["tamper_events"] == 1

"""The command table: one place says each command's handler and who may call it, and every
refusal or error comes back in one shape (protocol.error_response).

A real Engine on scratch files with a FakeClock; logind is :class:`SeatLogind` (alice at the seat,
bob over ssh only); the real sd-login calls are tested in test_seat.py.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import detoxd
from detoxd import protocol
from detoxd.clock import FakeClock
from detoxd.commands import arguments
from detoxd.paths import Paths
from detoxd.protocol import ANYONE, CALLERS, COMMANDS, ROOT, Peer
from detoxd.service import commands
from detoxd.service.allowance_keeper import AllowanceKeeper
from detoxd.service.engine import Engine
from detoxd.service.seat import SessionFacts
from tests.service.enginekit import ROOT as ROOT_PEER
from tests.service.enginekit import blocked, scratch_paths

ALICE = Peer(pid=2, uid=1000, gid=1000)  # at the seat
REMOTE_BOB = Peer(pid=3, uid=1001, gid=1001)
NOBODY = Peer(pid=4, uid=65534, gid=65534)
DAEMON_USER = Peer(pid=5, uid=110, gid=110)
BERLIN = ZoneInfo("Europe/Berlin")
BLOCKLIST = """domains: [twitter.com, facebook.com]
allowances:
  - name: twitter
    sites: [twitter.com]
    minutes_per_day: 20
"""


class SeatLogind:
    def facts(self, uid: int, pid: int) -> SessionFacts:
        if uid == 1000:
            return SessionFacts(None, active_seats=("seat0",))
        if uid == 1001:
            return SessionFacts("c7", session_remote=True)
        return SessionFacts(None)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist=BLOCKLIST)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))


@pytest.fixture
def engine(paths: Paths, clock: FakeClock) -> Iterator[Engine]:
    keeper = AllowanceKeeper(paths.allowances_file, clock, timezone=lambda: BERLIN, logind=SeatLogind())
    engine = Engine(paths, clock, allowances=keeper)
    engine.boot()
    yield engine
    engine.shutdown()


def test_every_wire_command_has_a_handler_and_a_rule_for_who_may_call_it() -> None:
    assert commands.unbound() == frozenset()
    assert set(commands.TABLE) == set(COMMANDS) - {protocol.SUBSCRIBE_COMMAND}
    for name, entry in commands.TABLE.items():
        assert entry.name == name and entry.who in CALLERS, name
    # The contract kept: what needed root before the table needs it still, and nothing else does.
    assert {"start", "cancel", "end", "reload"} == protocol.MUTATING_COMMANDS
    assert ({name for name, entry in commands.TABLE.items() if entry.who == ROOT}
            == {"start", "cancel", "end", "reload", "exec_events"})  # exec_events: root, not mutating


def test_a_command_declared_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="'status' declared twice"):
        commands.command("status")(lambda engine, request, peer: {"ok": True})


def test_a_seat_user_is_refused_a_root_command_in_the_one_shape(engine: Engine, paths: Paths) -> None:
    for name in ("start", "end", "reload"):
        reply = engine.handle({"cmd": name}, ALICE)
        assert reply == {"ok": False, "error": f"'{name}' needs root", "code": "not_authorized"}
    assert engine.status()["state"] == "idle" and not blocked(paths)


def test_only_root_may_pass_on_exec_events_and_they_change_how_apps_are_found(engine: Engine) -> None:
    request = {"cmd": "exec_events", "pids": [], "watching": True, "lease_seconds": 150}
    assert engine.handle(request, ALICE) == {"ok": False, "error": "'exec_events' needs root",
                                             "code": "not_authorized"}
    assert engine.status()["apps_watch"] == "polling"
    assert engine.handle(request, ROOT_PEER) == {"ok": True}
    assert engine.status()["apps_watch"] == "exec_events"
    for bad in ({"pids": ["1"]}, {"pids": [0]}, {"pids": list(range(1, 1026))}, {"lease_seconds": 601}):
        assert engine.handle({**request, **bad}, ROOT_PEER)["code"] == "bad_request", bad
    assert engine.handle({**request, "watching": False}, ROOT_PEER) == {"ok": True}  # the watcher stops
    assert engine.status()["apps_watch"] == "polling"


def test_only_the_network_agent_may_sync(engine: Engine) -> None:
    reply = engine.handle({"cmd": "network_sync", "agent": "pihole"}, ALICE)
    assert reply == {"ok": False, "error": "'network_sync' is for the network agent",
                     "code": "not_authorized"}


def test_unknown_commands_get_the_one_error_reply(engine: Engine) -> None:
    assert engine.handle({"cmd": "pause"}, ROOT_PEER) == {
        "ok": False, "error": "unknown command 'pause'", "code": "bad_request"}
    assert engine.handle({"cmd": "subscribe"}, ROOT_PEER)["error"] == "unknown command 'subscribe'"
    assert engine.handle({}, ROOT_PEER)["error"] == "unknown command None"


@pytest.mark.parametrize(("peer", "reason"), [
    (NOBODY, "uid 65534 is a system user"),
    (DAEMON_USER, "uid 110 is a system user"),
    (REMOTE_BOB, "session c7 is remote"),
])
def test_who_may_not_open_or_close(engine: Engine, paths: Paths, peer: Peer, reason: str) -> None:
    assert engine.handle({"cmd": "start"}, ROOT_PEER)["ok"]
    for name in ("open", "close"):
        reply = engine.handle({"cmd": name, "name": "twitter"}, peer)
        assert reply["ok"] is False and reply["code"] == "not_authorized"
        assert set(reply) == {"ok", "error", "code"}
        assert reply["error"].startswith(reason)
    assert "twitter.com" in blocked(paths)
    assert engine.handle({"cmd": "open", "name": "twitter", "minutes": 1}, ALICE)["ok"]
    assert "twitter.com" not in blocked(paths)


def test_without_logind_only_root_may_open(engine: Engine, paths: Paths) -> None:
    engine.allowances.logind = None
    assert engine.handle({"cmd": "start"}, ROOT_PEER)["ok"]
    assert "logind is not available" in engine.handle({"cmd": "open", "name": "twitter"}, ALICE)["error"]
    assert engine.handle({"cmd": "open", "name": "twitter", "minutes": 1}, ROOT_PEER)["ok"]


def test_a_refusal_raised_deep_down_becomes_the_one_reply_with_its_details(engine: Engine) -> None:
    reply = engine.handle({"cmd": "peer_lock"}, ALICE)  # anyone may ask; no peer lock runs
    assert reply == {"ok": False, "error": "no detox started with `lock: peers` is running",
                     "code": "no_peer_lock", "earlier_share_sets": []}
    assert engine.handle({"cmd": "start", "days": "14"}, ROOT_PEER) == {
        "ok": False, "error": "days must be more than 0 and at most 365", "code": "bad_request"}
    assert engine.handle({"cmd": "open", "name": "twitter"}, ALICE) == {
        "ok": False, "code": "refused",
        "error": ("no detox is running and no block window is in force: nothing is blocked, so "
                  "there is nothing to open")}


def test_an_unknown_caller_level_is_refused() -> None:
    authorizer = commands.Authorizer(lambda: None, privileged=frozenset({0}))
    assert authorizer.refusal("status", ANYONE, NOBODY) is None
    assert authorizer.refusal("x", "nobody-knows", ROOT_PEER) == "'x' has no rule for who may call it"


def test_no_error_reply_is_built_by_hand_in_the_daemon() -> None:
    """Every `{"ok": False, ...}` of the daemon comes from protocol.error_response."""
    package = Path(detoxd.__file__).parent
    found = []
    for source in sorted((package / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Dict) and any(
                    isinstance(key, ast.Constant) and key.value == "ok" and isinstance(value, ast.Constant)
                    and value.value is False for key, value in zip(node.keys, node.values, strict=True)):
                found.append(f"{source.relative_to(package)}:{node.lineno}")
    assert found == []


def sent_commands() -> set[str]:
    """The command names detoxd's clients send: ``x.request("name", ...)``, ``ask("name")`` and
    the CLI's ``_ask(paths, "name")`` (``ask_or_exit``) anywhere outside the daemon."""
    package = Path(detoxd.__file__).parent
    found: set[str] = set()
    for source in sorted(package.rglob("*.py")):
        if source.is_relative_to(package / "service"):
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in ("request", "ask", "_ask", "ask_or_exit"):
                continue
            for arg in node.args[:2]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                        and re.fullmatch(r"[a-z][a-z_]*", arg.value):
                    found.add(arg.value)
                    break
    return found


def test_every_command_a_client_sends_is_in_the_table() -> None:
    sent = sent_commands()
    assert {"status", "start", "end", "reload", "open", "close", "report", "network_sync"} <= sent
    assert sent - set(COMMANDS) == set()


def test_root_sees_everything_a_user_their_own(engine: Engine) -> None:
    assert engine.handle({"cmd": "report"}, ROOT_PEER)["report"]["scope"] == "all"
    assert engine.handle({"cmd": "report"}, ALICE)["report"]["scope"] == "uid 1000"
    assert commands.viewer(ROOT_PEER) is None and commands.viewer(ALICE) == 1000


@pytest.mark.parametrize("days", [0, -1, 366, 1e9])
def test_the_cli_and_the_daemon_refuse_a_length_by_one_rule(engine: Engine, days: float) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        arguments.DAYS(str(days))
    reply = engine.handle({"cmd": "start", "days": days}, ROOT_PEER)
    assert reply == {"ok": False, "error": str(refused.value), "code": "bad_request"}
    assert arguments.DAYS("365") == 365.0 and engine.status()["state"] == "idle"

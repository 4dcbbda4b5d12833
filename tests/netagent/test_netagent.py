"""The network agent and the daemon's side of it, in-process: a real Engine (scratch files,
FakeClock), a NetAgent whose requests go straight to the engine's handler (what the control
socket would carry), and DNS engines that record what they were told — the real classes are
tested against real engines in tests/integration and against the stand-ins in tests/netagent/standins.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detoxd.clock import FakeClock
from detoxd.core.network import CANARY, DnsEngineConfig
from detoxd.netagent.agent import NetAgent, SecretError, read_secret
from detoxd.netagent.engines import DnsEngine, DnsEngineError
from detoxd.paths import Paths
from detoxd.protocol import DaemonUnreachable, Peer
from detoxd.service.engine import Engine

ROOT = Peer(pid=1, uid=0, gid=0)
NOBODY = Peer(pid=2, uid=65534, gid=65534)
DAY = 86400.0
NETWORK = ("network:\n"
           "  - engine: pihole\n    url: https://pi.hole\n    password_file: pihole.secret\n"
           "  - engine: unbound\n    conf_dir: /etc/unbound/unbound.conf.d\n")


class RecordingEngine(DnsEngine):
    """Holds what it was told; ``down`` makes every call fail as an unreachable engine would."""

    @classmethod
    def from_config(cls, config: DnsEngineConfig, secret: str | None) -> RecordingEngine:
        return cls(config, secret)

    def __init__(self, config: DnsEngineConfig, secret: str | None) -> None:
        self.config, self.secret = config, secret
        self.held: tuple[str, ...] = ()
        self.down: str | None = None
        self.tampered: list[str] = []
        self.calls: list[str] = []

    def _maybe_fail(self) -> None:
        if self.down:
            raise DnsEngineError(self.down, f"{self.config.key}: {self.down}")

    def apply(self, names: Sequence[str], allowed: Sequence[str]) -> None:
        self.calls.append("apply")
        self._maybe_fail()
        self.held = tuple(names)

    def check(self) -> list[str]:
        self.calls.append("check")
        self._maybe_fail()
        found, self.tampered = self.tampered, []
        return found

    def remove(self) -> None:
        self.calls.append("remove")
        self._maybe_fail()
        self.held = ()

    def describe(self) -> str:
        return "recording"


class InProcessClient:
    def __init__(self, engine: Engine, peer: Peer = ROOT) -> None:
        self.engine, self.peer, self.reachable = engine, peer, True

    def request(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        if not self.reachable:
            raise DaemonUnreachable("the daemon is stopped")
        return self.engine.handle({**args, "cmd": cmd}, self.peer)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text("domains: [twitter.com]\nallow: [business.twitter.com]\n")
    (config / "detoxd.yaml").write_text("detox:\n  days: 14\n  lock: true\n" + NETWORK)
    secret = config / "pihole.secret"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    return Paths(config, tmp_path / "state", tmp_path / "hosts", tmp_path / "control.sock")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def engine(paths: Paths, clock: FakeClock) -> Iterator[Engine]:
    paths.hosts_file.write_text("127.0.0.1 localhost\n")
    engine = Engine(paths, clock)
    engine.boot()
    yield engine
    engine.shutdown()


def agent_for(engine: Engine, paths: Paths, clock: FakeClock) -> tuple[NetAgent, dict[str, RecordingEngine]]:
    targets: dict[str, RecordingEngine] = {}

    def make(config: DnsEngineConfig, secret: str | None) -> RecordingEngine:
        targets[config.engine] = RecordingEngine(config, secret)
        return targets[config.engine]

    agent = NetAgent(InProcessClient(engine), paths.config_dir, make=make,
                     monotonic=clock.monotonic, check_seconds=15)
    return agent, targets


def rows(engine: Engine) -> dict[str, dict[str, Any]]:
    return {row["engine"]: row for row in engine.status()["network"]}


def test_a_detox_reaches_every_engine_and_the_status_says_so(engine: Engine, paths: Paths,
                                                              clock: FakeClock) -> None:
    agent, targets = agent_for(engine, paths, clock)
    agent.round()
    assert {row["state"] for row in rows(engine).values()} == {"no_agent"}  # reports come next sync
    agent.round()
    assert {row["state"] for row in rows(engine).values()} == {"idle"}
    assert targets["pihole"].secret == "hunter2"  # read from the 0600 file, never reported
    assert "hunter2" not in repr(engine.status())

    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    agent.round()
    for target in targets.values():
        assert set(target.held) == {"twitter.com", "www.twitter.com", CANARY}
    agent.round()
    status = rows(engine)
    assert status["pihole"]["state"] == "in_sync" and status["pihole"]["names"] == 3
    assert status["pihole"]["url"] == "https://pi.hole" and status["pihole"]["last_ok"]


def test_tampering_reported_by_the_agent_counts_with_the_engine_named(engine: Engine, paths: Paths,
                                                                      clock: FakeClock) -> None:
    agent, targets = agent_for(engine, paths, clock)
    engine.handle({"cmd": "start"}, ROOT)
    agent.round()
    targets["pihole"].tampered = ["2 entries missing (e.g. twitter.com): re-added"]
    clock.advance(10)
    agent.round()
    assert targets["pihole"].calls.count("check") == 0  # not due yet: every 15 s
    clock.advance(6)
    agent.round()
    assert targets["pihole"].calls.count("check") == 1
    before = engine.status()["tamper_events"]
    agent.round()  # the next sync delivers the report
    assert engine.status()["tamper_events"] == before + 1
    assert rows(engine)["pihole"]["tamper_events"] == 1


def test_an_engine_that_is_down_is_retried_with_backoff_and_shown(engine: Engine, paths: Paths,
                                                                  clock: FakeClock) -> None:
    agent, targets = agent_for(engine, paths, clock)
    engine.handle({"cmd": "start"}, ROOT)
    agent.round()
    targets["unbound"].down = "unreachable"
    targets["unbound"].held = ()
    agent.engines[next(k for k in agent.engines if k.startswith("unbound"))].held = None  # must re-apply
    tries = []
    for _ in range(40):
        clock.advance(1)
        before = len(targets["unbound"].calls)
        agent.round()
        if len(targets["unbound"].calls) > before:
            tries.append(clock.monotonic())
    gaps = [round(b - a) for a, b in itertools.pairwise(tries)]
    assert gaps[:4] == [2, 4, 8, 16], gaps  # backoff, capped at 60 s
    assert rows(engine)["unbound"]["state"] == "unreachable"
    assert rows(engine)["pihole"]["state"] == "in_sync"  # the others carry on
    assert engine.status()["hosts_in_sync"] is True  # the local block is untouched
    targets["unbound"].down = None
    clock.advance(61)
    agent.round()
    agent.round()
    assert rows(engine)["unbound"]["state"] == "in_sync"


def test_daemon_unreachable_the_agent_holds_and_keeps_checking(engine: Engine, paths: Paths,
                                                               clock: FakeClock) -> None:
    agent, targets = agent_for(engine, paths, clock)
    engine.handle({"cmd": "start"}, ROOT)
    agent.round()
    agent.client.reachable = False  # type: ignore[attr-defined]
    clock.advance(16)
    agent.round()
    assert "remove" not in targets["pihole"].calls and targets["pihole"].calls[-1] == "check"
    assert targets["pihole"].held


def test_a_fresh_agent_never_removes_before_the_daemon_answered(engine: Engine, paths: Paths,
                                                                clock: FakeClock) -> None:
    agent, targets = agent_for(engine, paths, clock)
    agent.client.reachable = False  # type: ignore[attr-defined]
    agent.round()
    assert targets == {}  # it knows no engine: touches none


def test_removing_an_engine_from_the_config_during_a_locked_detox_keeps_it(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    agent, targets = agent_for(engine, paths, clock)
    engine.handle({"cmd": "start"}, ROOT)
    agent.round()
    (paths.config_dir / "detoxd.yaml").write_text("detox:\n  days: 14\n  lock: true\n")
    engine.reload()
    assert set(rows(engine)) == {"pihole", "unbound"}  # a ratchet, like the names
    restarted = Engine(paths, clock)  # also across a daemon restart
    restarted.boot()
    assert set(rows(restarted)) == {"pihole", "unbound"}
    restarted.shutdown()

    clock.advance(15 * DAY)
    engine.tick()
    agent.round()
    assert targets["pihole"].calls[-1] == "remove" and targets["unbound"].held == ()
    agent.round()  # reports idle: the end was carried out, the engine leaves the list
    assert rows(engine) == {}


def test_only_root_and_the_agent_user_may_sync(engine: Engine) -> None:
    reply = engine.handle({"cmd": "network_sync", "agent": "remote"}, NOBODY)
    assert reply["ok"] is False and reply["code"] == "not_authorized"
    reply = engine.handle({"cmd": "network_sync", "agent": "remote"}, ROOT)
    assert [e["engine"] for e in reply["engines"]] == ["pihole"]
    reply = engine.handle({"cmd": "network_sync", "agent": "local"}, ROOT)
    assert [e["engine"] for e in reply["engines"]] == ["unbound"]
    reply = engine.handle({"cmd": "network_sync", "agent": "unbound"}, ROOT)
    assert [e["engine"] for e in reply["engines"]] == ["unbound"]
    assert engine.handle({"cmd": "network_sync", "agent": "dnsmasq"}, ROOT)["engines"] == []
    assert engine.handle({"cmd": "network_sync", "agent": "x"}, ROOT)["code"] == "bad_request"


def test_secrets_from_systemd_credentials_or_a_private_file(paths: Paths, tmp_path: Path) -> None:
    config = DnsEngineConfig("pihole", 0, 2, url="https://pi.hole", password_file="pihole.secret")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "detoxd_pihole.secret").write_text("from-systemd\n")
    systemd = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert read_secret(config, paths.config_dir, systemd) == "from-systemd"
    assert read_secret(config, paths.config_dir, {}) == "hunter2"
    (paths.config_dir / "pihole.secret").chmod(0o644)
    with pytest.raises(SecretError) as caught:
        read_secret(config, paths.config_dir, {})
    assert "mode 0600" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(SecretError, match=r"no credential detoxd_pihole\.secret"):
        read_secret(config, paths.config_dir, {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_names_are_sent_again_only_when_they_change(engine: Engine) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    first = engine.handle({"cmd": "network_sync", "agent": "all"}, ROOT)
    assert "twitter.com" in first["names"]
    again = engine.handle({"cmd": "network_sync", "agent": "all", "have": first["digest"]}, ROOT)
    assert "names" not in again and again["digest"] == first["digest"] and again["active"] is True
    (engine.paths.config_dir / "blocklist.yaml").write_text("domains: [twitter.com, x.com]\n")
    engine.reload()
    changed = engine.handle({"cmd": "network_sync", "agent": "all", "have": first["digest"]}, ROOT)
    assert "x.com" in changed["names"] and changed["digest"] != first["digest"]


def test_agent_reports_are_cleaned_before_status_shows_them(engine: Engine) -> None:
    key = engine.handle({"cmd": "network_sync", "agent": "local"}, ROOT)["engines"][0]
    report = [{"key": "unbound /etc/unbound/unbound.conf.d", "state": "<script>", "names": "many",
               "error": "x" * 5000, "tamper_events": -3, "extra": "ignored"}]
    engine.handle({"cmd": "network_sync", "agent": "local", "report": report}, ROOT)
    row = rows(engine)["unbound"]
    assert key["engine"] == "unbound"
    assert row["state"] == "error" and row["names"] == 0 and row["tamper_events"] == 0
    assert len(row["error"]) == 300 and "extra" not in row


def test_an_unwritable_network_state_file_never_stops_the_local_block(engine: Engine, paths: Paths) -> None:
    (paths.state_dir / "network.json").unlink(missing_ok=True)
    (paths.state_dir / "network.json").mkdir()  # cannot be replaced by a file
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    assert "twitter.com" in paths.hosts_file.read_text()
    assert {row["engine"] for row in engine.status()["network"]} == {"pihole", "unbound"}

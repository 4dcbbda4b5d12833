"""Blocked lookups per device per day, from the engines' query logs to the journal and the report.

A real Engine (scratch files, FakeClock) and a real NetAgent driving the real Pi-hole and AdGuard
Home targets against the stand-in servers of tests/netagent/standins.py (written from
FTL's OpenAPI spec, API version 6.0 / FTL v6.4.1, queries.yaml; and AdGuard Home's
openapi/openapi.yaml, API version 0.107: neither engine can be installed here). The agent's
requests go straight to the engine's handler, as the control socket would carry them, and are
recorded: the test looks at every byte the daemon received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detoxd.clock import FakeClock
from detoxd.core.lookups import MAX_DEVICES, MAX_NAMES_PER_ENTRY
from detoxd.netagent.agent import NetAgent
from detoxd.paths import Paths
from detoxd.protocol import MAX_REQUEST_BYTES, Peer
from detoxd.service import journal
from detoxd.service.engine import Engine
from detoxd.service.scheduler import system_timezone
from tests.netagent.standins import StandIn, adguard_standin, pihole_standin
from tests.service.enginekit import ROOT, scratch_paths

NOBODY = Peer(pid=2, uid=65534, gid=65534)
PHONE, TABLET = "192.168.1.23", "192.168.1.40"
OTHER_BROWSING = ("my-bank.example", "news.example", "ads.example", "m.twitter.com", "doctor.example")
ZONE = ZoneInfo(system_timezone())


class RecordingClient:
    """What the control socket would carry, recorded as the daemon received it."""

    def __init__(self, engine: Engine, peer: Peer = ROOT) -> None:
        self.engine, self.peer = engine, peer
        self.received: list[dict[str, Any]] = []

    def request(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        request = json.loads(json.dumps({**args, "cmd": cmd}))  # exactly what JSON framing carries
        self.received.append(request)
        return self.engine.handle(request, self.peer)


@pytest.fixture
def standins() -> Iterator[tuple[StandIn, StandIn]]:
    with pihole_standin(password="correct horse") as pihole, adguard_standin() as agh:
        yield pihole, agh


@pytest.fixture
def paths(tmp_path: Path, standins: tuple[StandIn, StandIn]) -> Paths:
    pihole, agh = standins
    network = (f"network:\n  - engine: pihole\n    url: {pihole.url}\n    password_file: pihole.secret\n"
               f"  - engine: adguardhome\n    url: {agh.url}\n    password_file: agh.secret\n")
    paths = scratch_paths(tmp_path, blocklist="domains: [twitter.com, linkedin.com]\n",
                          main="detox:\n  days: 14\n  lock: true\n" + network)
    for name, secret in (("pihole.secret", "correct horse\n"), ("agh.secret", "admin:s3cret\n")):
        (paths.config_dir / name).write_text(secret)
        (paths.config_dir / name).chmod(0o600)
    return paths


def agent_for(engine: Engine, paths: Paths, clock: FakeClock) -> tuple[NetAgent, RecordingClient]:
    client = RecordingClient(engine)
    agent = NetAgent(client, paths.config_dir, monotonic=clock.monotonic,  # type: ignore[arg-type]
                     wall=clock.now, tz=ZONE, lookup_seconds=300)
    return agent, client


def lookups_journalled(paths: Paths) -> list[tuple[str, str, dict[str, int]]]:
    found, _ = journal.read_events(paths.state_dir / "journal")
    return [(e["date"], e["device"], e["counts"]) for e in found if e["kind"] == "blocked_lookups"]


def query_logs(engine: Engine) -> dict[str, Any]:
    return {row["engine"]: (row["state"], row["query_log"]) for row in engine.status()["network"]}


def test_counts_per_device_per_day_reach_the_journal_and_the_report_and_nothing_else_leaves(
        engine: Engine, paths: Paths, clock: FakeClock, standins: tuple[StandIn, StandIn]) -> None:
    pihole, agh = standins
    engine.handle({"cmd": "start"}, ROOT)
    agent, client = agent_for(engine, paths, clock)
    agent.round()
    agent.round()
    assert query_logs(engine) == {"pihole": ("in_sync", "available"), "adguardhome": ("in_sync", "available")}
    assert lookups_journalled(paths) == []  # nothing looked up yet

    now = clock.now()
    at = [now + timedelta(seconds=s) for s in range(10, 20)]
    for moment in at[:3]:  # the phone, through the Pi-hole: detoxd's exact deny entry blocks it
        pihole.state.log_query(moment.timestamp(), PHONE, "twitter.com", "DENYLIST")
    pihole.state.log_query(at[3].timestamp(), PHONE, "my-bank.example", "DENYLIST")  # the user's own entry
    pihole.state.log_query(at[4].timestamp(), PHONE, "news.example", "FORWARDED")
    pihole.state.log_query(at[5].timestamp(), TABLET, "doctor.example", "GRAVITY")
    agh.state.log_query(at[6], PHONE, "twitter.com", "FilteredBlackList")  # also through AdGuard Home
    for moment in at[7:9]:  # ||twitter.com^ blocks the names under it: counted as twitter.com
        agh.state.log_query(moment, TABLET, "m.twitter.com", "FilteredBlackList")
    agh.state.log_query(at[9], TABLET, "ads.example", "FilteredBlackList")  # the household's own rule
    agh.state.log_query(at[9], TABLET, "linkedin.com", "NotFilteredNotFound")  # not blocked: not counted

    clock.advance(301)  # the next read of the query logs is due
    agent.round()  # reads them
    agent.round()  # hands the counts to the daemon
    today = now.astimezone(ZONE).date().isoformat()
    assert sorted(lookups_journalled(paths)) == [(today, PHONE, {"twitter.com": 4}),
                                                 (today, TABLET, {"twitter.com": 2})]
    sent = [r["lookups"] for r in client.received if "lookups" in r]
    assert sent[-1] == [{"date": today, "device": PHONE, "counts": {"twitter.com": 4}},
                        {"date": today, "device": TABLET, "counts": {"twitter.com": 2}}]
    everything = json.dumps(client.received)
    assert not [name for name in OTHER_BROWSING if name in everything]

    document = engine.handle({"cmd": "report"}, ROOT)["report"]  # what `detoxd report --json` prints
    assert document["totals"]["during"]["blocked_lookups"] == 6
    day = next(row for row in document["days"] if row["date"] == today)
    assert (day["blocked_lookups"], day["lookups_by_site"]) == (6, {"twitter.com": 6})

    clock.advance(301)  # read again, nothing new: nothing journalled again, nothing sent
    agent.round()
    agent.round()
    assert len(lookups_journalled(paths)) == 2
    assert len([r for r in client.received if "lookups" in r]) == len(sent)


def test_engines_without_a_readable_query_log_say_not_available_and_hold_the_block(
        engine: Engine, paths: Paths, clock: FakeClock, standins: tuple[StandIn, StandIn]) -> None:
    pihole, agh = standins
    pihole.state.queries_endpoint = False  # 404
    agh.state.querylog_enabled = False  # the household switched AdGuard Home's query log off
    engine.handle({"cmd": "start"}, ROOT)
    agent, client = agent_for(engine, paths, clock)
    agent.round()
    agent.round()
    assert query_logs(engine) == {"pihole": ("in_sync", "not_available"),
                                  "adguardhome": ("in_sync", "not_available")}
    assert "twitter.com" in pihole.state.domains  # the block is there all the same
    assert not [r for r in client.received if "lookups" in r]
    agh.state.querylog_endpoint = False  # an AdGuard Home that answers 404: the same
    agh.state.querylog_enabled = True
    clock.advance(301)
    agent.round()
    assert query_logs(engine)["adguardhome"] == ("in_sync", "not_available")
    document = engine.handle({"cmd": "report"}, ROOT)["report"]
    assert document["totals"]["during"]["blocked_lookups"] is None  # no engine could tell


def test_only_the_network_agent_may_hand_in_lookups(engine: Engine) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    today = engine.clock.now().astimezone(ZONE).date().isoformat()
    entries = [{"date": today, "device": PHONE, "counts": {"twitter.com": 5}}]
    refused = engine.handle({"cmd": "network_sync", "agent": "all", "lookups": entries}, NOBODY)
    assert refused["code"] == "not_authorized"
    accepted = engine.handle({"cmd": "network_sync", "agent": "all", "lookups": entries}, ROOT)
    assert accepted["ok"] and accepted["journalled_lookups"] == 1


def test_a_query_log_that_fails_for_a_moment_leaves_the_engine_in_sync(
        engine: Engine, paths: Paths, clock: FakeClock, standins: tuple[StandIn, StandIn],
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    agent, _ = agent_for(engine, paths, clock)
    agent.round()
    pihole, _ = standins
    with pihole.lock:
        pihole.state.queries_endpoint = True
    from detoxd.netagent import pihole as pihole_module
    from detoxd.netagent.engines import DnsEngineError

    def broken(self: object, since: datetime, until: datetime) -> None:
        raise DnsEngineError("unreachable", "pi.hole: connection lost")

    monkeypatch.setattr(pihole_module.PiholeEngine, "read_query_log", broken)
    clock.advance(301)
    agent.round()
    agent.round()
    assert query_logs(engine)["pihole"] == ("in_sync", "available")  # as last read; retried in 5 min


def test_a_big_household_is_sent_in_bounded_requests_and_arrives_whole(
        engine: Engine, paths: Paths, clock: FakeClock, standins: tuple[StandIn, StandIn]) -> None:
    pihole, _ = standins
    names = [f"site{i:02d}-with-a-longish-name.example" for i in range(MAX_NAMES_PER_ENTRY)]
    (paths.config_dir / "blocklist.yaml").write_text(f"domains: [{', '.join(names)}]\n")
    assert engine.handle({"cmd": "reload"}, ROOT)["ok"]
    engine.handle({"cmd": "start"}, ROOT)
    agent, client = agent_for(engine, paths, clock)
    agent.round()
    base = clock.now().timestamp() + 5
    devices = [f"fd00:1234:5678:9abc:def0:1234:{i // 256:x}:{i % 256:x}" for i in range(MAX_DEVICES)]
    for device in devices:
        for name in names:
            pihole.state.log_query(base, device, name, "DENYLIST")
    clock.advance(301)
    for _ in range(30):
        agent.round()
    sizes = [len(json.dumps(request)) for request in client.received]
    assert max(sizes) < MAX_REQUEST_BYTES
    assert len([r for r in client.received if "lookups" in r]) > 5  # it took several requests
    journalled = lookups_journalled(paths)
    assert len(journalled) == MAX_DEVICES
    assert {device for _, device, _ in journalled} == set(devices)
    assert all(counts == dict.fromkeys(names, 1) for _, _, counts in journalled)

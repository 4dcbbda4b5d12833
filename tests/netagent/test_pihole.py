"""The Pi-hole target against the stand-in Pi-hole v6 API (see standins.py: written from FTL's
OpenAPI spec, API version 6.0 / FTL v6.4.1, since Pi-hole cannot be installed here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detoxd.core.network import CANARY, MARKER_COMMENT, DnsEngineConfig, engine_names
from detoxd.netagent.engines import DnsEngineError
from detoxd.netagent.pihole import QUERY_PAGE, PiholeEngine
from detoxd.netagent.webapi import fingerprint_text

from .standins import StandIn, der_fingerprint, pihole_standin, self_signed_certificate

PASSWORD = "correct horse"
NAMES = engine_names(["twitter.com", "www.twitter.com"])


@pytest.fixture
def pihole() -> Iterator[StandIn]:
    with pihole_standin(password=PASSWORD) as standin:
        yield standin


def config(url: str, clients: tuple[str, ...] = (), pin: bytes | None = None) -> DnsEngineConfig:
    return DnsEngineConfig("pihole", 0, 2, url=url, password_file="pihole.secret", tls_fingerprint=pin,
                        clients=clients)


def test_apply_adds_marked_entries_for_every_device_and_logs_out(pihole: StandIn) -> None:
    pihole.state.domains["mine.example"] = {"domain": "mine.example", "comment": "my own", "groups": [0],
                                            "enabled": True, "type": "deny", "kind": "exact"}
    target = PiholeEngine(config(pihole.url), PASSWORD)
    target.apply(NAMES, ())
    domains = pihole.state.domains
    assert set(domains) == {*NAMES, "mine.example"}
    assert all(domains[n]["comment"] == MARKER_COMMENT and domains[n]["groups"] == [0] for n in NAMES)
    assert CANARY in domains
    assert pihole.state.sessions == set()  # the seat was given back
    assert target.check() == []
    target.apply(NAMES, ())  # again: nothing added twice
    assert len(domains) == len(NAMES) + 1


def test_tampering_in_the_web_interface_is_undone(pihole: StandIn) -> None:
    target = PiholeEngine(config(pihole.url, clients=("192.168.1.23", "aa:bb:cc:dd:ee:ff")), PASSWORD)
    target.apply(NAMES, ())
    state = pihole.state
    gid = state.groups["detoxd"]["id"]
    assert state.clients["192.168.1.23"]["groups"] == [0, gid]
    assert all(state.domains[n]["groups"] == [gid] for n in NAMES)

    del state.domains["twitter.com"]                        # entry deleted
    state.domains["www.twitter.com"]["enabled"] = False     # entry disabled
    state.clients["192.168.1.23"]["groups"] = [0]           # client taken out of the group
    state.blocking = "disabled"                              # blocking paused
    drift = target.check()
    assert len(drift) == 4, drift
    assert "twitter.com" in state.domains and state.domains["www.twitter.com"]["enabled"] is True
    assert state.clients["192.168.1.23"]["groups"] == [0, gid]
    assert state.blocking == "enabled"
    assert target.check() == []


def test_end_removes_exactly_what_detoxd_added(pihole: StandIn) -> None:
    state = pihole.state
    state.domains["mine.example"] = {"domain": "mine.example", "comment": "mine", "groups": [0],
                                     "enabled": True, "type": "deny", "kind": "exact"}
    state.clients["192.168.1.50"] = {"client": "192.168.1.50", "comment": "kid's tablet", "groups": [0],
                                     "id": 99}
    target = PiholeEngine(config(pihole.url, clients=("192.168.1.23", "192.168.1.50")), PASSWORD)
    target.apply(NAMES, ())
    assert state.clients["192.168.1.50"]["groups"] != [0]
    PiholeEngine(config(pihole.url, clients=("192.168.1.23", "192.168.1.50")), PASSWORD).remove()
    assert set(state.domains) == {"mine.example"}
    assert "detoxd" not in state.groups
    assert state.clients == {"192.168.1.50": {"client": "192.168.1.50", "comment": "kid's tablet",
                                              "groups": [0], "id": 99}}
    assert state.sessions == set()


def test_wrong_password_session_limit_and_duplicates(pihole: StandIn) -> None:
    with pytest.raises(DnsEngineError) as caught:
        PiholeEngine(config(pihole.url), "wrong").apply(NAMES, ())
    assert caught.value.state == "auth_failed" and "wrong" not in str(caught.value)

    pihole.state.max_sessions = 0
    with pytest.raises(DnsEngineError) as caught:
        PiholeEngine(config(pihole.url), PASSWORD).apply(NAMES, ())
    assert caught.value.state == "refused" and "max_sessions" in str(caught.value)

    pihole.state.max_sessions = 16
    # The user denies one of the names themselves: detoxd leaves that entry alone, now and at the end.
    pihole.state.domains["twitter.com"] = {"domain": "twitter.com", "comment": "mine", "groups": [0],
                                           "enabled": True, "type": "deny", "kind": "exact"}
    target = PiholeEngine(config(pihole.url), PASSWORD)
    target.apply(NAMES, ())
    assert pihole.state.domains["twitter.com"]["comment"] == "mine"
    target.remove()
    assert set(pihole.state.domains) == {"twitter.com"}


def test_self_signed_certificate_needs_the_pin(tmp_path: Path) -> None:
    key, cert = self_signed_certificate(tmp_path)
    with pihole_standin((key, cert), password=PASSWORD) as pihole:
        with pytest.raises(DnsEngineError) as caught:
            PiholeEngine(config(pihole.url), PASSWORD).apply(NAMES, ())
        assert caught.value.state == "tls_error"
        assert fingerprint_text(der_fingerprint(cert)) in str(caught.value)  # shown so it can be pinned
        assert pihole.requests == []  # the password never left

        wrong_pin = bytes(32)
        with pytest.raises(DnsEngineError) as caught:
            PiholeEngine(config(pihole.url, pin=wrong_pin), PASSWORD).apply(NAMES, ())
        assert caught.value.state == "tls_error" and "does not match" in str(caught.value)
        assert pihole.requests == []

        PiholeEngine(config(pihole.url, pin=der_fingerprint(cert)), PASSWORD).apply(NAMES, ())
        assert set(pihole.state.domains) == set(NAMES)


def test_unreachable_is_reported_without_secrets() -> None:
    with pytest.raises(DnsEngineError) as caught:
        PiholeEngine(config("http://127.0.0.1:9"), PASSWORD).apply(NAMES, ())
    assert caught.value.state == "unreachable" and PASSWORD not in str(caught.value)


CHILD = """
import sys
from detoxd.core.network import DnsEngineConfig, engine_names
from detoxd.netagent.pihole import PiholeEngine
config = DnsEngineConfig("pihole", 0, 2, url=sys.argv[1], password_file="s", clients=("192.168.1.23",))
PiholeEngine(config, sys.argv[2]).apply(engine_names(["a.com", "b.com", "c.com"]), ())
"""


@pytest.mark.parametrize("kill_at", [2, 4, 6, 8])
def test_kill_9_between_calls_then_restart_no_duplicates_nothing_left(pihole: StandIn, kill_at: int) -> None:
    """A real kill -9 of an agent process while it waits for the Pi-hole's answer to its
    ``kill_at``-th request; a fresh agent then applies (no duplicates) and ends (nothing left)."""
    reached, release = threading.Event(), threading.Event()
    original = pihole.server.RequestHandlerClass._dispatch  # type: ignore[attr-defined]

    def holding(handler: object) -> None:
        if len(pihole.requests) == kill_at - 1:
            reached.set()
            release.wait(10)
        original(handler)

    pihole.server.RequestHandlerClass._dispatch = holding  # type: ignore[attr-defined]
    child = subprocess.Popen([sys.executable, "-c", CHILD, pihole.url, PASSWORD])
    try:
        assert reached.wait(10), "the agent never reached that call"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
    finally:
        release.set()
        pihole.server.RequestHandlerClass._dispatch = original  # type: ignore[attr-defined]
    time.sleep(0.05)
    pihole.state.sessions.clear()  # the killed agent's session would expire by itself
    names = engine_names(["a.com", "b.com", "c.com"])
    cfg = DnsEngineConfig("pihole", 0, 2, url=pihole.url, password_file="s", clients=("192.168.1.23",))
    PiholeEngine(cfg, PASSWORD).apply(names, ())
    assert sorted(pihole.state.domains) == sorted(names)
    assert [g["name"] for g in pihole.state.groups.values()].count("detoxd") == 1
    PiholeEngine(cfg, PASSWORD).remove()
    assert pihole.state.domains == {} and "detoxd" not in pihole.state.groups
    assert pihole.state.clients == {}


def test_detoxd_check_reaches_the_engine_and_says_what_it_found(
        pihole: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from detoxd.cli import main
    (tmp_path / "detoxd.yaml").write_text(
        f"network:\n  - engine: pihole\n    url: {pihole.url}\n    password_file: pihole.secret\n"
        "  - engine: adguardhome\n    url: http://127.0.0.1:9\n    password_file: pihole.secret\n")
    secret = tmp_path / "pihole.secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    assert main(["--config-dir", str(tmp_path), "check"]) == 4  # valid files, an engine not reached
    out = capsys.readouterr().out
    assert f"[  ok] Pi-hole at {pihole.url}: FTL v6.4.1, password accepted" in out
    assert "[FAIL] adguardhome http://127.0.0.1:9: " in out
    assert PASSWORD not in out
    assert pihole.state.sessions == set()


def test_a_duplicate_reply_is_not_an_error(pihole: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """Someone adds a name between detoxd's read and its POST: FTL answers with
    processed.errors ("UNIQUE constraint failed") for an array, HTTP 400 database_error for one."""
    target = PiholeEngine(config(pihole.url), PASSWORD)
    pihole.state.domains["twitter.com"] = {"domain": "twitter.com", "comment": "raced", "groups": [0],
                                           "enabled": True, "type": "deny", "kind": "exact"}
    with caplog.at_level("INFO", logger="detoxd.network"):
        target._add(["twitter.com", "www.twitter.com"], 0)  # the array form
        target._add(["twitter.com"], 0)
    target._logout()
    assert "UNIQUE constraint failed" in caplog.text
    assert pihole.state.domains["twitter.com"]["comment"] == "raced"
    assert pihole.state.domains["www.twitter.com"]["comment"] == MARKER_COMMENT


def test_the_query_log_is_read_page_by_page_blocked_lookups_only(pihole: StandIn) -> None:
    """queries.yaml: status=DENYLIST from/until, pages of ``length`` from the first ``cursor``."""
    target = PiholeEngine(config(pihole.url), PASSWORD)
    since = datetime(2026, 3, 2, tzinfo=UTC)
    base = since.timestamp()
    pihole.state.log_query(base - 60, "192.168.1.23", "twitter.com", "DENYLIST")  # before the window
    for i in range(QUERY_PAGE + 5):
        pihole.state.log_query(base + i, "192.168.1.23", "twitter.com", "DENYLIST")
    pihole.state.log_query(base + 5000, "192.168.1.23", "news.example", "FORWARDED")
    found = target.read_query_log(since, datetime.fromtimestamp(base + 9000, UTC))
    assert found is not None and len(found) == QUERY_PAGE + 5
    assert {(f.device, f.name) for f in found} == {("192.168.1.23", "twitter.com")}
    assert min(f.at for f in found) == since
    paths = [path for method, path, _, _ in pihole.requests if path.startswith("/api/queries")]
    assert len(paths) == 2 and "status=DENYLIST" in paths[0] and "cursor=" in paths[1]
    assert pihole.state.sessions == set()  # the seat was given back
    pihole.state.queries_endpoint = False
    assert target.read_query_log(since, datetime.fromtimestamp(base + 9000, UTC)) is None

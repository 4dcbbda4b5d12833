"""The tray's ActivityWatch reader against a real aw-server (ActivityWatch's Python server from
PyPI, in ``.venv-activitywatch``; scripts/setup installs it) on a loopback port, with a scratch
data directory and ``--testing``.

Events go in through aw-server's REST API the way the watchers write them: aw-watcher-web's
bucket (``web.tab.current``, data ``{url, title, audible, incognito, tabCount}``, by heartbeat),
aw-watcher-window's (``currentwindow``, ``{app, title}``) and aw-watcher-afk's (``afkstatus``).
The expected seconds are summed by hand in the comments.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from detoxd.agent.activitywatch import ActivityWatch, Reporter, Unavailable, measure
from detoxd.clock import FakeClock
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import journal
from detoxd.service.control import ControlServer
from detoxd.service.engine import Engine

AW_SERVER = Path(__file__).resolve().parents[2] / ".venv-activitywatch" / "bin" / "aw-server"
HOST = socket.gethostname()
START = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)  # the detox started
NOW = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
BLOCKED = ["facebook.com", "www.facebook.com", "x.com", "www.x.com"]
APPS = {"slack": ["com.slack.Slack", "slack"]}
WEB = f"aw-watcher-web-firefox_{HOST}"
WINDOW = f"aw-watcher-window_{HOST}"
AFK = f"aw-watcher-afk_{HOST}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(self.url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text.strip() else None

    def bucket(self, bucket: str, kind: str, client: str) -> None:
        self.call("POST", f"/api/0/buckets/{bucket}", {"client": client, "type": kind, "hostname": HOST})

    def event(self, bucket: str, start: datetime, seconds: float, **data: Any) -> None:
        self.call("POST", f"/api/0/buckets/{bucket}/events",
                  [{"timestamp": start.isoformat(), "duration": seconds, "data": data}])

    def heartbeat(self, bucket: str, at: datetime, pulsetime: float, **data: Any) -> None:
        self.call("POST", f"/api/0/buckets/{bucket}/heartbeat?pulsetime={pulsetime}",
                  {"timestamp": at.isoformat(), "duration": 0, "data": data})


def tab(url: str, title: str) -> dict[str, Any]:
    return {"url": url, "title": title, "audible": False, "incognito": False, "tabCount": 3}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.fixture(scope="module")
def aw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not AW_SERVER.exists():
        pytest.skip(f"aw-server is not installed in {AW_SERVER.parent.parent} (scripts/setup --test)")
    home = tmp_path_factory.mktemp("aw-home")
    port = free_port()
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
    log = (home / "aw-server.log").open("wb")
    process = subprocess.Popen([str(AW_SERVER), "--testing", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}")

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"aw-server exited: {(home / 'aw-server.log').read_text()}")
        with contextlib.suppress(OSError):
            return bool(server.call("GET", "/api/0/info")["testing"])
        return False

    try:
        wait_for(answers, timeout=60, what="aw-server")
        fill(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def fill(server: Server) -> None:
    server.bucket(WEB, "web.tab.current", "aw-client-web")
    server.bucket(WINDOW, "currentwindow", "aw-watcher-window")
    server.bucket(AFK, "afkstatus", "aw-watcher-afk")
    # 10 November (before): Firefox focused 10:00–11:00, at the keyboard.
    server.event(AFK, at(10, 10), 3600, status="not-afk")
    server.event(WINDOW, at(10, 10), 3600, app="Firefox", title="Mozilla Firefox")
    server.event(WEB, at(10, 10), 1200, **tab("https://www.facebook.com/", "Facebook"))  # 1200 s
    server.event(WEB, at(10, 10, 20), 600, **tab("https://x.com/home", "Home / X"))  # 600 s
    server.event(WEB, at(10, 10, 30), 1800, **tab("https://news.example.org/", "News"))  # not blocked
    # 10 November 14:00–14:30: Facebook open in the focused browser, but the user was away.
    server.event(AFK, at(10, 14), 1800, status="afk")
    server.event(WINDOW, at(10, 14), 1800, app="Firefox", title="Facebook")
    server.event(WEB, at(10, 14), 1800, **tab("https://www.facebook.com/", "Facebook"))  # 0 s
    # 11 November 09:00–09:30: Facebook is the browser's tab, but Slack has the focus.
    server.event(AFK, at(11, 9), 1800, status="not-afk")
    server.event(WINDOW, at(11, 9), 1800, app="Slack", title="general | Slack")  # app: 1800 s
    server.event(WEB, at(11, 9), 1800, **tab("https://www.facebook.com/", "Facebook"))  # 0 s
    # 12 November 23:50 – 13 November 00:10: across midnight, 600 s on each day.
    server.event(AFK, at(12, 23, 50), 1200, status="not-afk")
    server.event(WINDOW, at(12, 23, 50), 1200, app="firefox", title="Facebook")
    server.event(WEB, at(12, 23, 50), 1200, **tab("https://facebook.com/groups", "Groups"))
    # 1 November: more than 14 days before the detox's first day: not asked for.
    server.event(AFK, at(1, 10), 3600, status="not-afk")
    server.event(WINDOW, at(1, 10), 3600, app="Firefox", title="Facebook")
    server.event(WEB, at(1, 10), 3600, **tab("https://www.facebook.com/", "Facebook"))
    # 17 November 08:30–09:30: the detox starts at 09:00. The morning of the first day belongs to
    # neither side; 09:00–09:30 is during: 1800 s.
    server.event(AFK, at(17, 8, 30), 3600, status="not-afk")
    server.event(WINDOW, at(17, 8, 30), 3600, app="Firefox", title="Facebook")
    server.event(WEB, at(17, 8, 30), 3600, **tab("https://www.facebook.com/", "Facebook"))
    # 18 November: X by heartbeats every 60 s from 10:00 to 10:05, as aw-watcher-web sends them:
    # the server merges them into one event of 300 s. Then Slack for 120 s.
    server.event(AFK, at(18, 10), 600, status="not-afk")
    server.event(WINDOW, at(18, 10), 600, app="Firefox", title="X")
    for minute in range(6):
        server.heartbeat(WEB, at(18, 10, minute), 65, **tab("https://x.com/home", "Home / X"))
    server.event(AFK, at(18, 11), 300, status="not-afk")
    server.event(WINDOW, at(18, 11), 120, app="Slack", title="general | Slack")


EXPECTED = {
    "2026-11-10": ({"facebook.com": 1200.0, "x.com": 600.0}, {}),
    "2026-11-11": ({}, {"slack": 1800.0}),
    "2026-11-12": ({"facebook.com": 600.0}, {}),
    "2026-11-13": ({"facebook.com": 600.0}, {}),
    "2026-11-17": ({"facebook.com": 1800.0}, {}),
    "2026-11-18": ({"x.com": 300.0}, {"slack": 120.0}),
}


def targets() -> dict[str, Any]:
    return {"ok": True, "names": BLOCKED, "apps": APPS,
            "detox": {"started_at": START.isoformat(), "ends_at": (START + timedelta(days=14)).isoformat(),
                      "ended_at": None}}


def test_the_query_counts_only_blocked_names_in_focus_and_at_the_keyboard(aw_server: Server) -> None:
    days = measure(ActivityWatch(aw_server.url), targets(), NOW, UTC)
    # The first event of the 14 days before is on 10 November: the days before it were not
    # watched (ActivityWatch was not there yet), which the report must not count as 0 minutes.
    assert [day.day.isoformat() for day in days if day.phase == "before"] == [
        f"2026-11-{d}" for d in range(10, 17)]
    assert [day.day.isoformat() for day in days if day.phase == "during"] == [
        "2026-11-17", "2026-11-18", "2026-11-19"]
    found = {day.day.isoformat(): (day.sites, day.apps) for day in days if day.sites or day.apps}
    assert found == EXPECTED
    before = sum(sum(day.sites.values()) for day in days if day.phase == "before")
    during = sum(sum(day.sites.values()) for day in days if day.phase == "during")
    assert (before, during) == (1200 + 600 + 600 + 600, 1800 + 300)


def test_the_agent_sends_the_days_and_the_daemon_journals_them(aw_server: Server, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text("presets: []\ndomains: [facebook.com, x.com]\napps: [slack]\n")
    (config / "detoxd.yaml").write_text("detox:\n  days: 14\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    paths = Paths(config, tmp_path / "state", hosts, tmp_path / "control.sock")
    clock = FakeClock(START)
    engine = Engine(paths, clock)
    engine.boot()
    server = ControlServer(paths.socket, engine.handle)
    server.start()
    try:
        assert engine.handle({"cmd": "start"}, Peer(1, 0, 0))["ok"]
        clock.advance((NOW - START).total_seconds())
        engine.tick()
        reporter = Reporter(paths.socket, ActivityWatch(aw_server.url))
        assert reporter.report_once(now=NOW, tz=UTC) == {"sent": 10, "why": None}
        assert reporter.report_once(now=NOW, tz=UTC) == {"sent": 0, "why": None}  # nothing changed
        journalled = [event for event in journal.read_events(paths.state_dir / "journal")[0]
                      if event["kind"] == "activity_day"]
        assert len(journalled) == 10
        found = {event["date"]: (event["sites"], event["apps"]) for event in journalled
                 if event["sites"] or event["apps"]}
        assert found == EXPECTED
        document = engine.handle({"cmd": "report"}, Peer(1, 0, 0))["report"]
        assert document["totals"]["before"]["blocked_site_seconds"] == 3000
        assert document["totals"]["during"]["blocked_site_seconds"] == 2100
        assert document["totals"]["before"]["blocked_app_seconds"] == 1800
        assert document["activitywatch"]["available"] is True
        assert document["totals"]["before"]["days_with_activitywatch"] == 7
        # Per day watched: 2100 s over 3 days = 11.7 min; 3000 s over 7 days = 7.1 min.
        assert document["summary"].endswith("0 h 12 min a day on blocked sites vs 0 h 7 min a day before")
    finally:
        server.close()
        engine.shutdown()


def test_without_activitywatch_the_daemon_is_told_why(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(Unavailable, match=f"aw-server is not running at http://127.0.0.1:{port}"):
        ActivityWatch(f"http://127.0.0.1:{port}").buckets()


def test_only_loopback_addresses_are_asked() -> None:
    for url in ("http://192.0.2.1:5600", "http://example.org:5600", "file:///etc/passwd"):
        with pytest.raises(ValueError):
            ActivityWatch(url)
    ActivityWatch("http://[::1]:5600")
    ActivityWatch("http://localhost:5600")


def test_the_agents_thread_tells_the_daemon_when_activitywatch_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text("domains: [facebook.com]\n")
    (config / "detoxd.yaml").write_text("detox:\n  days: 14\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    paths = Paths(config, tmp_path / "state", hosts, tmp_path / "control.sock")
    engine = Engine(paths, FakeClock(START))
    engine.boot()
    server = ControlServer(paths.socket, engine.handle)
    server.start()
    stopping = threading.Event()
    port = free_port()
    thread = threading.Thread(target=Reporter(paths.socket, ActivityWatch(f"http://127.0.0.1:{port}")).run,
                              args=(stopping, 0.05))
    try:
        engine.handle({"cmd": "start"}, Peer(1, 0, 0))
        thread.start()

        def unavailable() -> list[dict[str, Any]]:
            return [event for event in journal.read_events(paths.state_dir / "journal")[0]
                    if event["kind"] == "activity_unavailable"]

        found = wait_for(unavailable, what="activity_unavailable in the journal")
        assert f"aw-server is not running at http://127.0.0.1:{port}" in found[0]["reason"]
        report = engine.handle({"cmd": "report"}, Peer(1, 0, 0))["report"]
        assert "aw-server is not running" in report["activitywatch"]["message"]
        assert len(unavailable()) == 1  # sent every round, journalled once
    finally:
        stopping.set()
        thread.join(timeout=10)
        server.close()
        engine.shutdown()
    assert not thread.is_alive()

"""The tray's report page: the daemon's report over a real control socket, rendered and saved."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detoxd.agent import reportpage
from detoxd.clock import FakeClock
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service.control import ControlServer
from detoxd.service.engine import Engine


def test_the_page_is_written_for_this_user_and_private(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text("domains: [twitter.com]\n")
    (config / "detoxd.yaml").write_text("detox:\n  days: 14\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    paths = Paths(config, tmp_path / "state", hosts, tmp_path / "control.sock")
    engine = Engine(paths, FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)))
    engine.boot()
    server = ControlServer(paths.socket, engine.handle)
    server.start()
    try:
        engine.handle({"cmd": "start"}, Peer(1, 0, 0))
        page = reportpage.write_page(paths.socket, tmp_path / "cache")
    finally:
        server.close()
        engine.shutdown()
    assert page == tmp_path / "cache" / "report.html"
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    text = page.read_text()
    assert "Day 1 of 14 so far: 0 tamper attempts" in text and "<svg" in text


def test_without_a_daemon_the_user_is_told(tmp_path: Path) -> None:
    with pytest.raises(reportpage.ReportUnavailable, match="not reachable"):
        reportpage.write_page(tmp_path / "nothing.sock", tmp_path / "cache")

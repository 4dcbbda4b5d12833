"""The tray's allowance item, clicked the way a panel does it: "Open twitter for 10 minutes
(20 left today)" opens the allowance through the real daemon; the title then counts down.

Real pieces as in test_appindicator.py (GTK appindicator on Xvfb, a private session bus, the
real daemon and agent); the one stand-in is the panel's StatusNotifierWatcher. The agent runs as
the test's user (root here), which may open allowances.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DetoxdEnv, have, wait_for
from desktop import Desktop, desktop_session, start_tray

pytest.importorskip("gi", reason="python3-gi is needed for the appindicator back-end")
from jeepney.io.blocking import open_dbus_connection
from sni_watcher import FakeWatcher
from test_appindicator import Panel

pytestmark = pytest.mark.skipif(not all(have(p) for p in ("Xvfb", "dbus-daemon")),
                                reason="needs Xvfb and dbus-daemon")

BLOCKLIST = """domains: [twitter.com, x.com, facebook.com]
allowances:
  - name: twitter
    sites: [twitter.com]
    minutes_per_day: 20
"""
ITEM = "Open twitter for 10 minutes (20 left today)"


@pytest.fixture
def session(detoxd_env: DetoxdEnv, tmp_path: Path) -> Iterator[tuple[Desktop, FakeWatcher]]:
    detoxd_env.write_blocklist(BLOCKLIST)
    detoxd_env.start_daemon()
    with desktop_session(tmp_path / "desktop") as desktop:
        watcher = FakeWatcher(desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        try:
            yield desktop, watcher
        finally:
            watcher.close()


def test_the_tray_opens_an_allowance_within_its_budget(session: tuple[Desktop, FakeWatcher],
                                                       detoxd_env: DetoxdEnv) -> None:
    desktop, watcher = session
    assert detoxd_env.cli("start").returncode == 0
    agent = start_tray(desktop, detoxd_env, "appindicator")
    assert watcher.registered.wait(60), "the item never registered:\n" + desktop.log("tray")
    connection = open_dbus_connection(bus=desktop.env["DBUS_SESSION_BUS_ADDRESS"])
    try:
        panel = Panel(connection, *watcher.items[0])
        wait_for(lambda: ITEM in panel.layout(), timeout=60, what="the allowance item")
        # The menu shows the detox as it is now (a menu rebuilt between the look and the click
        # gets new item ids, and a click on an id that is gone does nothing, as in a panel).
        wait_for(lambda: panel.property("Title") == "detoxd: Day 1 of 14, 14 days left", timeout=60,
                 what="the tray to show the running detox")
        assert b"0.0.0.0 twitter.com" in detoxd_env.hosts.read_bytes()
        panel.click(ITEM)
        wait_for(lambda: detoxd_env.status()["allowances"][0]["open"], timeout=30,
                 what="the allowance to open")
        hosts = detoxd_env.hosts.read_bytes()
        assert b"0.0.0.0 twitter.com" not in hosts and b"0.0.0.0 x.com" not in hosts
        assert b"0.0.0.0 facebook.com" in hosts
        wait_for(lambda: panel.property("Title") == "detoxd: Day 1 of 14, twitter open, 10 min left",
                 timeout=60, what="the countdown in the title")
        labels = panel.layout()
        assert "twitter open — 10 min left" in labels
        # The daemon's answer stays in the menu: a notification may be held by do-not-disturb.
        assert any(label.startswith("twitter is open for 10 min") for label in labels), labels
        assert not any(label.startswith("Open twitter") for label in labels), "no second open"
        assert "allowance twitter opened by uid 0 for 10.0 min" in detoxd_env.log()
        assert "Quit tray" not in labels  # during a detox quitting would lift the silence
        agent.terminate()  # the agent this test started
        agent.wait(timeout=60)
    finally:
        connection.close()

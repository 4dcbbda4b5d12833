"""The appindicator menu as a desktop panel sees it: the StatusNotifierItem and its dbusmenu.

Real pieces: python3-gi + ayatana appindicator + GTK 3 on Xvfb, a private session bus started
from a config with no service directories, a real daemon, the real agent. The one stand-in
is the panel's ``org.kde.StatusNotifierWatcher`` (tests/integration/sni_watcher.py): no
desktop shell runs here. Items are found by label, since pystray rebuilds the menu (and so
renumbers its items) on every update.
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DetoxdEnv, have, wait_for, wait_quietly
from desktop import Desktop, desktop_session, start_tray

pytest.importorskip("gi", reason="python3-gi is needed for the appindicator back-end")
from jeepney import DBusAddress, MatchRule, Properties, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from sni_watcher import FakeWatcher

pytestmark = pytest.mark.skipif(not all(have(p) for p in ("Xvfb", "dbus-daemon")),
                                reason="needs Xvfb and dbus-daemon")

ITEM_INTERFACE = "org.kde.StatusNotifierItem"
MENU_INTERFACE = "com.canonical.dbusmenu"


class Panel:
    """What a panel does with a tray item: read its properties and menu, click items."""

    def __init__(self, connection: DBusConnection, name: str, path: str) -> None:
        self.connection = connection
        self.item = DBusAddress(path, bus_name=name, interface=ITEM_INTERFACE)
        self.name = name

    def property(self, prop: str) -> Any:
        reply = self.connection.send_and_get_reply(Properties(self.item).get(prop), timeout=10)
        return reply.body[0][1]

    def menu(self) -> DBusAddress:
        return DBusAddress(self.property("Menu"), bus_name=self.name, interface=MENU_INTERFACE)

    def layout(self) -> dict[str, dict[str, Any]]:
        """label → {id, enabled, ...} for every item (separators have no label)."""
        reply = self.connection.send_and_get_reply(
            new_method_call(self.menu(), "GetLayout", "iias", (0, -1, [])), timeout=10)
        _revision, root = reply.body
        found: dict[str, dict[str, Any]] = {}

        def walk(node: tuple[int, dict[str, tuple[str, Any]], list[tuple[str, Any]]]) -> None:
            item_id, props, children = node
            values = {key: value for key, (_sig, value) in props.items()}
            if "label" in values:
                found[values["label"]] = {"id": item_id, **values}
            for _signature, child in children:
                walk(child)

        walk(root)
        return found

    def click(self, label: str) -> None:
        item = self.layout()[label]
        self.connection.send_and_get_reply(
            new_method_call(self.menu(), "Event", "isvu",
                            (item["id"], "clicked", ("s", ""), int(time.time()))), timeout=10)


@pytest.fixture
def indicator_session(detoxd_env: DetoxdEnv, tmp_path: Path) -> Iterator[tuple[Desktop, FakeWatcher]]:
    detoxd_env.write_main("detox:\n  days: 14\n  lock: false\n")
    detoxd_env.start_daemon()
    with desktop_session(tmp_path / "desktop") as desktop:
        watcher = FakeWatcher(desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        try:
            yield desktop, watcher
        finally:
            watcher.close()


def fake_opener(desktop: Desktop) -> Path:
    """A stand-in ``xdg-open`` that records what it was asked to open (no real desktop here)."""
    bin_dir = desktop.root / "bin"
    bin_dir.mkdir()
    record = desktop.root / "opened.txt"
    opener = bin_dir / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {record}\n')
    opener.chmod(opener.stat().st_mode | stat.S_IXUSR)
    return record


def test_panel_reads_the_item_menu_and_clicks(indicator_session: tuple[Desktop, FakeWatcher],
                                              detoxd_env: DetoxdEnv) -> None:
    desktop, watcher = indicator_session
    record = fake_opener(desktop)
    path = f"{desktop.root / 'bin'}{os.pathsep}{desktop.env['PATH']}"
    agent = start_tray(desktop, detoxd_env, "appindicator", {"PATH": path})
    assert watcher.registered.wait(60), "the item never registered:\n" + desktop.log("tray")
    assert "tray back-end: appindicator" in desktop.log("tray")

    connection = open_dbus_connection(bus=desktop.env["DBUS_SESSION_BUS_ADDRESS"])
    try:
        panel = Panel(connection, *watcher.items[0])
        wait_for(lambda: panel.property("Title") == "detoxd: no detox running", timeout=60,
                 what="the idle title")
        assert panel.property("Status") == "Active"
        labels = panel.layout()
        assert labels["No detox running"]["enabled"] is False, "status lines are not clickable"
        assert {"Open blocklist (read-only; edit with sudoedit)", "About detoxd", "Quit tray"} <= set(labels)
        assert not any("end" in label.lower().split() for label in labels), "nothing ends a detox"

        def click_opens_the_blocklist() -> bool:
            # Clicked again if nothing happens: a click can carry the id of a menu the tray has
            # just rebuilt (its items get new ids), which the panel then ignores.
            panel.click("Open blocklist (read-only; edit with sudoedit)")
            return bool(wait_quietly(record.exists, timeout=5))

        wait_for(click_opens_the_blocklist, timeout=60, what="the blocklist to be opened")
        assert record.read_text().strip() == str(detoxd_env.config_dir / "blocklist.yaml")

        updates: deque[Any] = deque()
        rule = MatchRule(type="signal", interface=MENU_INTERFACE, member="LayoutUpdated")
        connection.send_and_get_reply(message_bus.AddMatch(rule), timeout=10)
        with connection.filter(rule, queue=updates):
            assert detoxd_env.cli("start").returncode == 0
            connection.recv_until_filtered(updates, timeout=60)
        wait_for(lambda: any(label.startswith("Day 1 of 14 — ends ") for label in panel.layout()),
                 timeout=60, what="the detox in a new layout")
        assert f"{detoxd_env.status()['domains_blocked']} names blocked" in panel.layout()
        assert panel.property("Title") == "detoxd: Day 1 of 14, 14 days left"

        assert "Quit tray" not in panel.layout(), "during a detox quitting would lift the silence"

        assert detoxd_env.cli("end").returncode == 0
        wait_for(lambda: "Quit tray" in panel.layout(), timeout=60, what="Quit once the detox is over")
        panel.click("Quit tray")
        assert agent.wait(timeout=60) == 0
        assert "menu: quit" in desktop.log("tray")
    finally:
        connection.close()

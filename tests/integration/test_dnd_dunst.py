"""The tray agent silences a real dunst on a private session bus for the detox, and puts back
what the user had. Real daemon, real agent, real dunst on Xvfb; nothing mocked."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DetoxdEnv, have, wait_for
from desktop import Desktop, desktop_session, start_dunst, start_tray, stop

pytestmark = pytest.mark.skipif(
    not all(have(p) for p in ("Xvfb", "dbus-daemon", "dunst", "dunstctl", "notify-send")),
    reason="needs Xvfb, dbus-daemon, dunst, dunstctl and notify-send (apt-get install xvfb dbus-daemon "
           "dunst libnotify-bin)")


@pytest.fixture
def session(detoxd_env: DetoxdEnv, tmp_path: Path) -> Iterator[Desktop]:
    detoxd_env.write_main("detox:\n  days: 14\n  lock: false\n")
    detoxd_env.start_daemon()
    with desktop_session(tmp_path / "desktop") as desktop:
        start_dunst(desktop)
        yield desktop


def paused(desktop: Desktop) -> bool:
    answer = desktop.run("dunstctl", "is-paused").stdout.strip()
    assert answer in ("true", "false"), answer
    return answer == "true"


def count(desktop: Desktop, which: str) -> int:
    return int(desktop.run("dunstctl", "count", which).stdout.strip())


def saved_file(desktop: Desktop) -> Path:
    return Path(desktop.env["XDG_STATE_HOME"]) / "detoxd" / "dnd.json"


def wait_connected(desktop: Desktop) -> None:
    wait_for(lambda: "connected to the daemon" in desktop.log("tray"), timeout=60,
             what="the agent to connect:\n" + desktop.log("tray"))


def test_dunst_is_paused_for_the_detox_and_the_held_notification_shows_after(
        session: Desktop, detoxd_env: DetoxdEnv) -> None:
    assert not paused(session)
    start_tray(session, detoxd_env, "xorg")
    wait_connected(session)
    assert not paused(session), "no detox yet: nothing silenced"

    assert detoxd_env.cli("start").returncode == 0
    wait_for(lambda: paused(session), timeout=30, what="the agent to pause dunst")
    assert json.loads(saved_file(session).read_text())["prior"] == {"silenced": False}
    assert "do-not-disturb back-end: dunst" in session.log("tray")
    # The agent reports back, so `detoxd status` and `detoxd doctor` know the desktop is silent.
    reports = wait_for(lambda: (agents := detoxd_env.status()["agents"]) and agents, timeout=30,
                       what="the agent's report")
    assert reports[0]["notifications_silenced"] is True and reports[0]["backend"] == "dunst"

    session.run("notify-send", "Someone liked your post")
    wait_for(lambda: count(session, "waiting") == 1, timeout=30, what="dunst to hold the notification")
    assert count(session, "displayed") == 0, "held back, not shown"

    assert detoxd_env.cli("end").returncode == 0
    wait_for(lambda: not paused(session), timeout=30, what="the agent to unpause dunst")
    wait_for(lambda: count(session, "displayed") + count(session, "history") >= 1, timeout=30,
             what="the held notification to show")
    assert count(session, "waiting") == 0
    assert not saved_file(session).exists()


def test_users_own_pause_survives_and_switching_it_off_is_undone(
        session: Desktop, detoxd_env: DetoxdEnv) -> None:
    session.run("dunstctl", "set-paused", "true")  # the user's own do-not-disturb
    start_tray(session, detoxd_env, "xorg")
    wait_connected(session)
    assert detoxd_env.cli("start").returncode == 0
    wait_for(saved_file(session).exists, timeout=30, what="the saved setting")
    assert json.loads(saved_file(session).read_text())["prior"] == {"silenced": True}

    session.run("dunstctl", "set-paused", "false")  # the user tries to get notifications back
    wait_for(lambda: json.loads(saved_file(session).read_text())["reasserted"] == 1, timeout=30,
             what="the agent to re-assert do-not-disturb")
    assert paused(session)
    assert "switched back on during the detox" in session.log("tray")

    assert detoxd_env.cli("end").returncode == 0
    wait_for(lambda: not saved_file(session).exists(), timeout=30, what="the restore")
    assert paused(session), "the user's own 'paused' is put back, not forced to unpaused"


def test_an_agent_that_missed_the_end_restores_when_it_starts(
        session: Desktop, detoxd_env: DetoxdEnv) -> None:
    agent = start_tray(session, detoxd_env, "xorg")
    wait_connected(session)
    assert detoxd_env.cli("start").returncode == 0
    wait_for(lambda: paused(session), timeout=30, what="the agent to pause dunst")

    stop(agent, signal.SIGKILL)  # no chance to clean up, like a crash or a logout
    assert detoxd_env.cli("end").returncode == 0
    assert paused(session), "nobody restored it yet"

    start_tray(session, detoxd_env, "xorg")
    wait_for(lambda: not paused(session), timeout=60, what="the new agent to restore dunst")
    assert not saved_file(session).exists()


# ---- KDE Plasma: Inhibit, held on a connection, against a stand-in server ----------------


def test_kde_inhibit_is_held_reasserted_after_a_server_restart_and_released(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No KDE is installable here, so ``FakePlasmaNotifications`` (tests/integration/desktop.py)
    plays plasmashell's notification server on a private bus; the back-end code is the real one."""
    from desktop import FakePlasmaNotifications, start_session_bus

    from detoxd.agent.dnd import DndKeeper, available, probe_session
    from detoxd.agent.dnd.kde import KdeBackend

    desktop = Desktop(tmp_path / "session", {})
    desktop.root.mkdir()
    desktop.env = dict(os.environ)
    try:
        start_session_bus(desktop)
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        monkeypatch.setenv("XDG_CURRENT_DESKTOP", "KDE")
        plasma = FakePlasmaNotifications(desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        backend = available(probe_session())
        assert isinstance(backend, KdeBackend)
        keeper = DndKeeper(backend, tmp_path / "state")

        keeper.update(True)
        assert len(plasma.inhibitions) == 1 and backend.is_silenced()

        plasma.close()  # plasmashell restarts: the new server knows nothing of us
        plasma = FakePlasmaNotifications(desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        assert not backend.is_silenced()
        keeper.update(True)
        assert len(plasma.inhibitions) == 1, "inhibited again on the new server"
        assert keeper.reasserted == 1

        keeper.update(False)
        assert plasma.inhibitions == {}, "released when the detox ends"

        keeper.update(True)
        backend._drop()  # the agent dies: its connection closes and so does the inhibition
        wait_for(lambda: plasma.inhibitions == {}, timeout=30,
                 what="the inhibition to end with the connection")
        plasma.close()
    finally:
        desktop.stop_all()

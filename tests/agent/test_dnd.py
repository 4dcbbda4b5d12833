"""DndKeeper's bookkeeping: save, silence, measure, re-assert, restore, survive a restart of the
agent; and the choice of back-end by the running notification server.

The back-end here is an in-memory stand-in (``SwitchBackend``) so the rules can be checked
exhaustively; the real back-ends run against the real programs in tests/integration
(test_dnd_desktops.py: dunst, mako, SwayNC, xfce4-notifyd, mate-notification-daemon, the GNOME
and Cinnamon schemas on dconf; test_dnd_dunst.py; and a stand-in Plasma ``Inhibit`` service).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from detoxd.agent.dnd import (
    NO_SERVER,
    Backend,
    DesktopSession,
    DndKeeper,
    Problem,
    all_backends,
    available,
    choose,
    state_dir,
)


class SwitchBackend(Backend):
    name: ClassVar[str] = "switch"
    label: ClassVar[str] = "Switch"

    def __init__(self, silenced: bool = False, here: bool = True) -> None:
        super().__init__()
        self.silenced = silenced
        self.here = here
        self.calls: list[str] = []

    def serves(self, session: DesktopSession) -> bool:
        return self.here

    def is_silenced(self) -> bool:
        return self.silenced

    def silence(self) -> None:
        self.calls.append("silence")
        self.silenced = True

    def unsilence(self) -> None:
        self.calls.append("unsilence")
        self.silenced = False


class BrokenBackend(SwitchBackend):
    name: ClassVar[str] = "broken"

    def serves(self, session: DesktopSession) -> bool:
        raise RuntimeError("probe exploded")


class NoEffectBackend(SwitchBackend):
    """silence() returns but the program keeps showing notifications (mako without a config)."""

    name: ClassVar[str] = "noeffect"

    def silence(self) -> None:
        self.calls.append("silence")


def saved(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "dnd.json").read_text())  # type: ignore[no-any-return]


def test_silences_saves_the_prior_setting_and_restores_it(tmp_path: Path) -> None:
    backend = SwitchBackend(silenced=False)
    keeper = DndKeeper(backend, tmp_path, [backend])
    keeper.update(True)
    assert backend.silenced
    assert saved(tmp_path)["prior"] == {"silenced": False}
    assert keeper.silencing
    keeper.update(False)
    assert not backend.silenced
    assert not (tmp_path / "dnd.json").exists()
    assert not keeper.silencing


def test_users_own_do_not_disturb_stays_on_after_the_detox(tmp_path: Path) -> None:
    backend = SwitchBackend(silenced=True)
    keeper = DndKeeper(backend, tmp_path, [backend])
    keeper.update(True)
    assert "silence" not in backend.calls, "already silenced: nothing to change"
    keeper.update(False)
    assert backend.silenced, "restored to the user's own 'on', not forced off"


def test_switching_notifications_back_on_is_undone_and_counted(tmp_path: Path) -> None:
    backend = SwitchBackend()
    keeper = DndKeeper(backend, tmp_path, [backend])
    keeper.update(True)
    for expected in (1, 2):
        backend.silenced = False  # the user flips the switch
        keeper.update(True)
        assert backend.silenced
        assert keeper.reasserted == expected
    keeper.update(True)
    assert keeper.reasserted == 2, "no change, no count"
    assert saved(tmp_path)["prior"] == {"silenced": False}, "the prior setting is never overwritten"


def test_a_user_who_already_had_dnd_on_is_not_counted_as_reasserting(tmp_path: Path) -> None:
    backend = SwitchBackend(silenced=True)
    keeper = DndKeeper(backend, tmp_path, [backend])
    keeper.update(True)
    keeper.update(True)
    assert keeper.reasserted == 0


def test_an_agent_started_after_the_detox_ended_restores(tmp_path: Path) -> None:
    backend = SwitchBackend()
    DndKeeper(backend, tmp_path, [backend]).update(True)
    # The agent stops; the detox ends; a new agent starts and sees the daemon idle.
    later = DndKeeper(backend, tmp_path, [backend])
    assert later.silencing
    later.update(False)
    assert not backend.silenced
    assert not (tmp_path / "dnd.json").exists()


def test_nothing_saved_nothing_restored(tmp_path: Path) -> None:
    backend = SwitchBackend(silenced=True)
    DndKeeper(backend, tmp_path, [backend]).update(False)
    assert backend.calls == []


def test_a_failed_restore_keeps_the_saved_setting_for_the_next_try(tmp_path: Path) -> None:
    backend = SwitchBackend()
    keeper = DndKeeper(backend, tmp_path, [backend])
    keeper.update(True)

    def fail() -> None:
        raise OSError("notification daemon gone")

    backend.unsilence = fail  # type: ignore[method-assign]
    with pytest.raises(OSError):
        keeper.update(False)
    assert (tmp_path / "dnd.json").exists()


def test_restores_with_the_backend_named_in_the_file(tmp_path: Path) -> None:
    old = SwitchBackend()
    DndKeeper(old, tmp_path, [old]).update(True)
    # Next login has no back-end at all (say, the notification daemon is not up yet).
    DndKeeper(None, tmp_path, [old]).update(False)
    assert not old.silenced


def test_unreadable_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "dnd.json").write_text("{not json")
    backend = SwitchBackend()
    keeper = DndKeeper(backend, tmp_path, [backend])
    keeper.update(True)
    assert saved(tmp_path)["backend"] == "switch"


def test_available_picks_the_first_and_survives_a_broken_probe() -> None:
    session = DesktopSession(("GNOME",), "gnome-shell")
    first, second = SwitchBackend(here=False), SwitchBackend(here=True)
    assert available(session, [BrokenBackend(), first, second]) is second
    assert available(session, [first]) is None


def test_real_backends_are_chosen_by_the_notification_server() -> None:
    """Which back-end claims which server (their ``check`` of xfconfd or a schema aside)."""

    def chosen(session: DesktopSession) -> str:
        return type(next(b for b in all_backends() if b.serves(session))).__name__

    assert chosen(DesktopSession((), "dunst", "dunst", 10)) == "DunstBackend"
    assert chosen(DesktopSession(("sway",), "mako", "mako", 10)) == "MakoBackend"
    assert chosen(DesktopSession(("sway",), "SwayNotificationCenter", "swaync", 10)) == "SwayncBackend"
    assert chosen(DesktopSession(("KDE",), "Plasma", "plasmashell", 10)) == "KdeBackend"
    assert chosen(DesktopSession(("XFCE",), "Xfce Notify Daemon", "xfce4-notifyd", 10)) == "XfceBackend"
    assert chosen(DesktopSession(("GNOME",), "gnome-shell", "gnome-shell", 10)) == "GnomeBackend"
    assert chosen(DesktopSession(("X-Cinnamon",), "cinnamon", "cinnamon", 10)) == "CinnamonBackend"
    # mate-notification-daemon calls itself "Notification Daemon": found by its executable,
    # under any desktop (the issue: under XFCE it was not found).
    mate = DesktopSession(("XFCE",), "Notification Daemon", "mate-notification-daemon", 10)
    assert chosen(mate) == "MateBackend"


def test_the_server_on_the_bus_decides_not_the_desktop_name() -> None:
    """dunst under XFCE is silenced as dunst; XFCE with no server at all gets no back-end."""
    assert type(available(DesktopSession(("XFCE",), "dunst", "dunst", 10))).__name__ == "DunstBackend"
    assert available(DesktopSession(("XFCE",), "dunst", "dunst", 10), [SwitchBackend(here=False)]) is None
    backend, problem = choose(DesktopSession(("XFCE",), None))
    assert backend is None and problem is not None
    assert "no notification server" in problem.reason and problem.fix
    backend, problem = choose(DesktopSession(("GNOME",), "Fancy Notifier", "fancyd", 42))
    assert backend is None and problem is not None
    assert "'Fancy Notifier' (fancyd, pid 42)" in problem.reason
    assert "by hand" in problem.fix


@pytest.mark.skipif(not Path("/usr/share/glib-2.0/schemas/org.mate.NotificationDaemon.gschema.xml").exists(),
                    reason="apt-get install mate-notification-daemon-common")
def test_a_server_dbus_starts_on_demand_is_silenced_beforehand_through_its_settings() -> None:
    """No owner yet, but the bus would start mate-notification-daemon for the first notification:
    its setting lives in dconf, so it is switched on before that notification arrives."""
    mate = DesktopSession(("MATE",), None, activatable=("mate-notification-daemon",))
    assert type(available(mate)).__name__ == "MateBackend"
    alone = DesktopSession(("sway",), None, activatable=("mate-notification-daemon",))
    assert type(available(alone)).__name__ == "MateBackend", "the only one D-Bus can start"
    several = DesktopSession(("sway",), None, activatable=("mate-notification-daemon", "xfce4-notifyd"))
    assert choose(several)[1] is not None, "several could start and the desktop names none"
    dunst = DesktopSession(("sway",), None, activatable=("dunst",))
    assert choose(dunst) == (None, NO_SERVER), "dunst keeps its switch in the process: nothing to set yet"


def test_a_backend_whose_silence_has_no_effect_is_reported_and_not_counted(tmp_path: Path) -> None:
    backend = NoEffectBackend()
    keeper = DndKeeper(backend, tmp_path, [backend])
    for _ in range(5):  # every round of the agent tries again
        report = keeper.update(True)
        assert report.silenced is False
        assert report.problem is not None and "still shows notifications" in report.problem.reason
        assert report.problem.fix
    assert keeper.reasserted == 0, "a switch that never took is not the user switching it back on"
    assert backend.calls == ["silence"] * 5


def test_the_report_is_measured_after_the_change(tmp_path: Path) -> None:
    backend = SwitchBackend()
    keeper = DndKeeper(backend, tmp_path, [backend])
    report = keeper.update(True)
    assert (report.silenced, report.backend, report.problem) == (True, "Switch", None)
    backend.silenced = False
    assert keeper.update(True).reasserted == 1


def test_a_failing_backend_reports_its_error_as_the_reason(tmp_path: Path) -> None:
    class Gone(SwitchBackend):
        def is_silenced(self) -> bool:
            raise OSError("org.freedesktop.DBus.Error.ServiceUnknown")

    report = DndKeeper(Gone(), tmp_path).update(True)
    assert report.silenced is False and report.problem is not None
    assert "ServiceUnknown" in report.problem.reason


def test_no_backend_reports_why(tmp_path: Path) -> None:
    why = Problem("the notification server 'x' is not one detoxd can silence", "by hand")
    report = DndKeeper(None, tmp_path, problem=why).update(True)
    assert (report.silenced, report.problem) == (False, why)


def test_session_desktop_match_is_case_insensitive() -> None:
    assert DesktopSession(("ubuntu", "GNOME"), None).on_desktop("gnome")
    assert not DesktopSession(("KDE",), None).on_desktop("GNOME")


def test_state_dir_follows_xdg(tmp_path: Path) -> None:
    assert state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "detoxd"
    assert state_dir({"HOME": str(tmp_path)}) == tmp_path / ".local/state/detoxd"


GNOME_SCRIPT = """
import json, sys
from detoxd.agent.dnd import DndKeeper, DesktopSession
from detoxd.agent.dnd.gnome import GnomeBackend
from pathlib import Path
backend = GnomeBackend()
seen = {"available": backend.serves(DesktopSession(("GNOME",), "gnome-shell")),
        "not_on_kde": backend.serves(DesktopSession(("KDE",), "Plasma"))}
keeper = DndKeeper(backend, Path(sys.argv[1]), [backend])
keeper.update(True)
seen["silenced"] = backend.is_silenced()
keyfile = Path(sys.argv[2]) / "glib-2.0/settings/keyfile"
seen["keyfile_during"] = keyfile.read_text()
keeper.update(False)
seen["silenced_after"] = backend.is_silenced()
seen["keyfile_after"] = keyfile.read_text()
print(json.dumps(seen))
"""


def gnome_schema_installed() -> bool:
    return Path("/usr/share/glib-2.0/schemas/org.gnome.desktop.notifications.gschema.xml").exists()


@pytest.mark.skipif(not gnome_schema_installed(),
                    reason="needs the org.gnome.desktop.notifications schema (apt-get install "
                           "gsettings-desktop-schemas)")
def test_gnome_show_banners_through_the_gsettings_keyfile_backend(tmp_path: Path) -> None:
    """GSettings' keyfile back-end instead of dconf: the same API GNOME Shell reads, in a temp dir.
    Run in a child process because GLib picks its settings back-end once per process."""
    pytest.importorskip("gi", reason="python3-gi is needed for the GSettings back-ends")
    import os
    import subprocess
    import sys

    config = tmp_path / "config"
    env = {**os.environ, "GSETTINGS_BACKEND": "keyfile", "XDG_CONFIG_HOME": str(config),
           "HOME": str(tmp_path)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    result = subprocess.run([sys.executable, "-c", GNOME_SCRIPT, str(tmp_path / "state"), str(config)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["available"] is True
    assert seen["not_on_kde"] is False
    assert seen["silenced"] is True
    assert "[org/gnome/desktop/notifications]" in seen["keyfile_during"]
    assert "show-banners=false" in seen["keyfile_during"]
    assert seen["silenced_after"] is False
    assert "show-banners" not in seen["keyfile_after"], "never set before: reset, not written"

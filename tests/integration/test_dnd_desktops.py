"""The tray agent against the real notification servers of Debian 12, under a headless sway.

One sway (``WLR_BACKENDS=headless``, pixman renderer), one private session bus, dconf-service
and xfconfd serve the whole module; each server runs in turn: dunst, mako, SwayNC,
xfce4-notifyd and mate-notification-daemon. For each, with a real daemon and the real agent:

- before the detox a ``notify-send`` is shown (a screenshot with grim is not empty): the check
  below can see a notification;
- during the detox do-not-disturb is on by the program's own query, and a ``notify-send`` is not
  shown (the screenshot shows only sway's background);
- the user switching it off is undone by the change signal: the agent's poll is set to 60 s, so
  only the signal (or the watched method call, for mako) can explain a re-assertion; the time is
  printed here and measured properly in benchmarks/dnd_bench.py;
- after the detox the user's setting is back exactly, from "never set", "off" and "on".

GNOME Shell and Cinnamon do not run here (too heavy for CI): their back-ends run against their
real GSettings schemas on the real dconf service, with a stand-in notification server that only
answers ``GetServerInformation`` as gnome-shell / cinnamon do (the spec's method), so the agent
chooses them as it would on those desktops. No notification can be shown without the shells.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import DetoxdEnv, have, wait_for
from desktop import (
    MATE_NOTIFICATION_DAEMON,
    XFCE4_NOTIFYD,
    XFCONFD,
    WaylandDesktop,
    screen_is_empty,
    session_user,
    tray_command,
    wayland_session,
)
from fake_bus import FakeBusService

pytestmark = pytest.mark.skipif(
    not all(have(p) for p in ("sway", "grim", "dbus-daemon", "notify-send", "gsettings", "dconf")),
    reason="needs sway, grim, dbus-daemon, libnotify-bin, gsettings and dconf-cli "
           "(apt-get install sway grim dbus-daemon libnotify-bin libglib2.0-bin dconf-cli)")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DetoxdEnv]:
    """One daemon for the module (an unlocked detox, so the test can end it)."""
    root = tmp_path_factory.mktemp("daemon")
    socket_dir = Path(tempfile.mkdtemp(prefix="detoxd-test-"))
    socket_dir.chmod(0o755)
    (root / "config").mkdir()
    (root / "hosts").write_text("127.0.0.1 localhost\n")
    env = DetoxdEnv(root, root / "hosts", root / "config", root / "state",
                    socket_dir / "run" / "control.sock")
    env.write_main("detox:\n  days: 14\n  lock: false\n")
    env.write_blocklist("domains:\n  - twitter.com\n")
    env.start_daemon()
    try:
        yield env
    finally:
        if env.process is not None and env.process.poll() is None:
            env.stop_daemon()
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sway() -> Iterator[WaylandDesktop]:
    root = Path(tempfile.mkdtemp(prefix=f"detoxd-sway-{os.getpid()}-"))
    root.chmod(0o755)  # the session's user (nobody, when run as root) must reach its directory
    try:
        with wayland_session(root / "session") as desktop:
            yield desktop
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- the programs, each through its own command-line tool ------------------------------------


@dataclass
class Program:
    """A notification server and the user's own ways to look at and change its do-not-disturb."""

    name: str  # the back-end label the agent logs
    command: list[str]
    priors: tuple[str, ...]  # the user's settings to start a detox from

    def ready(self, d: WaylandDesktop) -> bool:
        return d.run("gdbus", "call", "--session", "-d", "org.freedesktop.Notifications", "-o",
                     "/org/freedesktop/Notifications", "-m",
                     "org.freedesktop.Notifications.GetServerInformation", check=False).returncode == 0

    def is_on(self, d: WaylandDesktop) -> bool:
        raise NotImplementedError

    def switch_off(self, d: WaylandDesktop) -> None:
        raise NotImplementedError

    def set_prior(self, d: WaylandDesktop, prior: str) -> None:
        raise NotImplementedError

    def value(self, d: WaylandDesktop) -> Any:
        """Everything the restore must put back, exactly."""
        raise NotImplementedError

    def clear(self, d: WaylandDesktop) -> None:
        """Dismiss what is shown (for the positive control)."""

    def held(self, d: WaylandDesktop) -> int | None:
        """The program's own count of notifications it has but does not show, if it has one."""
        return None


def gsetting(d: WaylandDesktop, schema: str, key: str) -> str:
    return d.run("gsettings", "get", schema, key).stdout.strip()


def dconf_read(d: WaylandDesktop, path: str) -> str:
    return d.run("dconf", "read", path).stdout.strip()  # empty: never set


class Dunst(Program):
    def is_on(self, d: WaylandDesktop) -> bool:
        return d.run("dunstctl", "is-paused").stdout.strip() == "true"

    def switch_off(self, d: WaylandDesktop) -> None:
        d.run("dunstctl", "set-paused", "false")

    def set_prior(self, d: WaylandDesktop, prior: str) -> None:
        d.run("dunstctl", "set-paused", "true" if prior == "on" else "false")

    def value(self, d: WaylandDesktop) -> Any:
        return d.run("dunstctl", "is-paused").stdout.strip()

    def clear(self, d: WaylandDesktop) -> None:
        d.run("dunstctl", "close-all")

    def held(self, d: WaylandDesktop) -> int | None:
        return int(d.run("dunstctl", "count", "waiting").stdout.strip())


class Mako(Program):
    """"never": no config at all (Debian ships none); "off": the user's own config, without a
    final newline; "on": the user's config has its own do-not-disturb section, mode on."""

    OWN = "font=DejaVu Sans 11\nbackground-color=#285577"
    OWN_DND = OWN + "\n\n[mode=do-not-disturb]\ninvisible=1\n"

    def config(self, d: WaylandDesktop) -> Path:
        return Path(d.env["XDG_CONFIG_HOME"]) / "mako" / "config"

    def modes(self, d: WaylandDesktop) -> list[str]:
        return d.run("makoctl", "mode").stdout.split()

    def is_on(self, d: WaylandDesktop) -> bool:
        return "do-not-disturb" in self.modes(d)

    def switch_off(self, d: WaylandDesktop) -> None:
        d.run("makoctl", "mode", "-r", "do-not-disturb")

    def set_prior(self, d: WaylandDesktop, prior: str) -> None:
        config = self.config(d)
        if prior == "never":
            d.run("rm", "-rf", str(config.parent))
        else:
            d.run("mkdir", "-p", str(config.parent))
            d.run("sh", "-c", 'printf "%s" "$1" > "$2"', "sh", self.OWN_DND if prior == "on" else self.OWN,
                  str(config))
        d.run("makoctl", "reload", check=False)
        d.run("makoctl", "mode", "-a" if prior == "on" else "-r", "do-not-disturb")

    def value(self, d: WaylandDesktop) -> Any:
        config = self.config(d)
        text = config.read_text() if config.exists() else None
        return {"config": text, "directory": config.parent.exists(), "modes": self.modes(d)}

    def clear(self, d: WaylandDesktop) -> None:
        d.run("makoctl", "dismiss", "-a")

    def held(self, d: WaylandDesktop) -> int | None:
        listing = json.loads(d.run("makoctl", "list").stdout)
        return len(listing["data"][0])


class Swaync(Program):
    def is_on(self, d: WaylandDesktop) -> bool:
        return d.run("swaync-client", "--get-dnd").stdout.strip() == "true"

    def switch_off(self, d: WaylandDesktop) -> None:
        d.run("swaync-client", "--dnd-off")

    def set_prior(self, d: WaylandDesktop, prior: str) -> None:
        d.run("swaync-client", "--dnd-on" if prior == "on" else "--dnd-off")
        if prior == "on":  # swaync stores the switch in dconf a moment later
            wait_for(lambda: dconf_read(d, "/org/erikreider/swaync/dnd-state") == "true", timeout=10,
                     what="swaync to store its switch")
        if prior == "never":
            d.run("gsettings", "reset", "org.erikreider.swaync", "dnd-state")

    def value(self, d: WaylandDesktop) -> Any:
        return (self.is_on(d), dconf_read(d, "/org/erikreider/swaync/dnd-state"))

    def clear(self, d: WaylandDesktop) -> None:
        d.run("swaync-client", "--close-all")

    def held(self, d: WaylandDesktop) -> int | None:
        return int(d.run("swaync-client", "--count").stdout.strip())


class Xfce(Program):
    def query(self, d: WaylandDesktop) -> str:
        result = d.run("xfconf-query", "-c", "xfce4-notifyd", "-p", "/do-not-disturb", check=False)
        return result.stdout.strip() if result.returncode == 0 else "never set"

    def is_on(self, d: WaylandDesktop) -> bool:
        return self.query(d) == "true"

    def switch_off(self, d: WaylandDesktop) -> None:
        d.run("xfconf-query", "-c", "xfce4-notifyd", "-p", "/do-not-disturb", "-n", "-t", "bool",
              "-s", "false")

    def set_prior(self, d: WaylandDesktop, prior: str) -> None:
        if prior == "never":
            d.run("xfconf-query", "-c", "xfce4-notifyd", "-p", "/do-not-disturb", "-r", check=False)
        else:
            d.run("xfconf-query", "-c", "xfce4-notifyd", "-p", "/do-not-disturb", "-n", "-t", "bool", "-s",
                  "true" if prior == "on" else "false")

    def value(self, d: WaylandDesktop) -> Any:
        return self.query(d)


class GSettingsProgram(Program):
    schema = key = path = ""
    silenced_value = "true"

    def is_on(self, d: WaylandDesktop) -> bool:
        return gsetting(d, self.schema, self.key) == self.silenced_value

    def switch_off(self, d: WaylandDesktop) -> None:
        d.run("gsettings", "set", self.schema, self.key, "false" if self.silenced_value == "true" else "true")

    def set_prior(self, d: WaylandDesktop, prior: str) -> None:
        if prior == "never":
            d.run("gsettings", "reset", self.schema, self.key)
            return
        on = prior == "on"
        value = self.silenced_value if on else ("false" if self.silenced_value == "true" else "true")
        d.run("gsettings", "set", self.schema, self.key, value)

    def value(self, d: WaylandDesktop) -> Any:
        return dconf_read(d, self.path)


class Mate(GSettingsProgram):
    schema, key, path = ("org.mate.NotificationDaemon", "do-not-disturb",
                         "/org/mate/notification-daemon/do-not-disturb")


class Gnome(GSettingsProgram):
    schema, key, path = ("org.gnome.desktop.notifications", "show-banners",
                         "/org/gnome/desktop/notifications/show-banners")
    silenced_value = "false"


class Cinnamon(GSettingsProgram):
    schema, key, path = ("org.cinnamon.desktop.notifications", "display-notifications",
                         "/org/cinnamon/desktop/notifications/display-notifications")
    silenced_value = "false"


DUNSTRC = "[global]\n    timeout = 0\n    idle_threshold = 0\n"
PRIORS = ("never", "off", "on")
REAL_PROGRAMS = [
    pytest.param(Dunst("dunst", ["dunst", "-config", "dunstrc"], ("off", "on")), id="dunst",
                 marks=pytest.mark.skipif(not have("dunst"), reason="apt-get install dunst")),
    pytest.param(Mako("mako", ["mako"], PRIORS), id="mako",
                 marks=pytest.mark.skipif(not have("mako"), reason="apt-get install mako-notifier")),
    pytest.param(Swaync("SwayNC", ["swaync"], PRIORS), id="swaync",
                 marks=pytest.mark.skipif(not have("swaync"),
                                          reason="apt-get install sway-notification-center")),
    pytest.param(Xfce("XFCE", [XFCE4_NOTIFYD], PRIORS), id="xfce4-notifyd",
                 marks=pytest.mark.skipif(not (Path(XFCE4_NOTIFYD).exists() and Path(XFCONFD).exists()),
                                          reason="apt-get install xfce4-notifyd xfconf")),
    pytest.param(Mate("MATE", [MATE_NOTIFICATION_DAEMON], PRIORS), id="mate-notification-daemon",
                 marks=pytest.mark.skipif(not Path(MATE_NOTIFICATION_DAEMON).exists(),
                                          reason="apt-get install mate-notification-daemon")),
]


# ---- the agent ----------------------------------------------------------------------------


def start_agent(d: WaylandDesktop, daemon: DetoxdEnv) -> Any:
    env = {**d.env, "DETOXD_SOCKET": str(daemon.socket), "DETOXD_CONFIG_DIR": str(daemon.config_dir),
           "PYSTRAY_BACKEND": "appindicator", "DETOXD_TRAY_RECHECK_SECONDS": "60"}
    (d.root / "tray.log").unlink(missing_ok=True)
    agent = d.spawn(tray_command(d.user), "tray", env=env)
    wait_for(lambda: "connected to the daemon" in d.log("tray"), timeout=60,
             what="the agent to connect:\n" + d.log("tray"))
    return agent


def end_cleanly(d: WaylandDesktop, daemon: DetoxdEnv) -> None:
    """End the detox and give the agent time to restore (a failed test must not leak its state)."""
    if daemon.cli("end").returncode == 0:
        deadline = time.monotonic() + 10
        while saved(d).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def saved(d: WaylandDesktop) -> Path:
    return Path(d.env["XDG_STATE_HOME"]) / "detoxd" / "dnd.json"


def notify(d: WaylandDesktop, summary: str, milliseconds: int) -> None:
    d.run("notify-send", "-t", str(milliseconds), summary, "a notification the detox must hide")


def shown(d: WaylandDesktop, name: str) -> bool:
    return not screen_is_empty(d, name)


def wait_state(d: WaylandDesktop, predicate: Callable[[], bool], what: str) -> None:
    def logs() -> str:  # read at the timeout: the agent's and the servers' last words
        servers = "".join(f"\n--- {path.stem}:\n{path.read_text(errors='replace')[-2000:]}"
                          for path in sorted(d.root.glob("*.log")) if path.stem != "tray")
        return f"{what}\n--- agent:\n{d.log('tray')}{servers}"
    wait_for(predicate, timeout=30, what=logs)


def reassert_seconds(d: WaylandDesktop, program: Program) -> float:
    program.switch_off(d)
    start = time.monotonic()
    wait_state(d, lambda: program.is_on(d), "the agent to switch do-not-disturb back on")
    return time.monotonic() - start


def run_detoxes(d: WaylandDesktop, daemon: DetoxdEnv, program: Program, *, can_show: bool) -> None:
    for number, prior in enumerate(program.priors):
        program.set_prior(d, prior)
        before = program.value(d)
        if number == 0 and can_show:
            notify(d, "Visible before the detox", 800)
            wait_state(d, lambda: shown(d, "before.png"), "the control notification to show")
            program.clear(d)
            wait_state(d, lambda: not shown(d, "cleared.png"), "the control notification to go")

        assert daemon.cli("start").returncode == 0
        wait_state(d, lambda: program.is_on(d), f"do-not-disturb on ({prior} before)")
        wait_state(d, lambda: bool(daemon.status().get("agents")), "the agent's report")
        report = next(a for a in daemon.status()["agents"] if a["uid"] == (session_user() or os.getuid()))
        assert report["notifications_silenced"] is True, report
        assert report["backend"] == program.name
        if number == 0:
            if can_show:
                notify(d, "Someone liked your post", 20000)
                time.sleep(1.0)  # what a server shows, it shows within milliseconds
                assert not shown(d, f"during-{program.name}.png"), "a notification was shown during the detox"
                held = program.held(d)
                assert held is None or held >= 1, "the server has the notification, held back"
                # Gone before do-not-disturb is switched: Debian 12's mako 1.7.1 can segfault when
                # its modes change while it has a notification to show (emersion/mako#493, fixed
                # in 1.9; a session's D-Bus activation starts it again, which this bus lacks).
                program.clear(d)
            elapsed = reassert_seconds(d, program)
            print(f"{program.name}: switched off by the user, back on after {elapsed * 1000:.0f} ms")
            wait_state(d, lambda: "switched back on during the detox" in d.log("tray"),
                       "the agent to log the re-assertion (it measures first)")

        assert daemon.cli("end").returncode == 0
        wait_state(d, lambda: not saved(d).exists(), f"the restore ({prior} before)")
        assert program.value(d) == before, f"restored exactly from {prior!r}"
    assert "Traceback" not in d.log("tray"), d.log("tray")


MAKO_ATTEMPTS = 3


@pytest.mark.parametrize("program", REAL_PROGRAMS)
def test_real_server_is_silenced_reasserted_and_restored(sway: WaylandDesktop, daemon: DetoxdEnv,
                                                         program: Program) -> None:
    if isinstance(program, Dunst):
        (sway.root / "dunstrc").write_text(DUNSTRC)
    for attempt in range(1, MAKO_ATTEMPTS + 1):
        server = sway.spawn(program.command, program.name)
        agent = None
        try:
            wait_for(lambda: program.ready(sway), timeout=30, what=f"{program.name} on the bus:\n"
                     + sway.log(program.name))
            agent = start_agent(sway, daemon)
            run_detoxes(sway, daemon, program, can_show=True)
            assert f"do-not-disturb back-end: {program.name}" in sway.log("tray")
            return
        except AssertionError:
            # Debian 12's mako 1.7.1 segfaults now and then when its modes change (seen 1 run in
            # 8-15 here, in mako itself: SIGSEGV; emersion/mako#493's family, fixed in 1.9). A
            # session's D-Bus activation would start it again; here the whole round runs again.
            # Any other failure, or a crash every time, fails the test.
            crashed = isinstance(program, Mako) and server.poll() == -signal.SIGSEGV
            if not crashed or attempt == MAKO_ATTEMPTS:
                raise
            print(f"mako crashed (SIGSEGV) in attempt {attempt}: running the rounds again")
        finally:
            end_cleanly(sway, daemon)  # whatever failed, the next program starts without a detox
            if agent is not None:
                sway.forget(agent)
            sway.forget(server)


class StandInShell(FakeBusService):
    """Owns org.freedesktop.Notifications and answers GetServerInformation like gnome-shell or
    cinnamon (name, vendor, version, spec version); nothing else of the shell."""

    def __init__(self, bus_address: str, server_name: str) -> None:
        super().__init__(bus_address, "org.freedesktop.Notifications")
        self.server_name = server_name
        self.start()

    def _answer(self, message: Any) -> Any:
        from jeepney import HeaderFields, new_error, new_method_return

        member = message.header.fields.get(HeaderFields.member)
        if member == "GetServerInformation":
            return new_method_return(message, "ssss", (self.server_name, "stand-in", "43.9", "1.2"))
        return new_error(message, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"no {member}",))


@pytest.mark.parametrize(("program", "server_name"), [
    (Gnome("GNOME", [], PRIORS), "gnome-shell"),
    (Cinnamon("Cinnamon", [], PRIORS), "cinnamon"),
], ids=["gnome", "cinnamon"])
def test_shell_settings_on_dconf_are_silenced_reasserted_and_restored(
        sway: WaylandDesktop, daemon: DetoxdEnv, program: GSettingsProgram, server_name: str) -> None:
    if not gsetting(sway, program.schema, program.key):
        pytest.skip(f"the {program.schema} schema is not installed")
    shell = StandInShell(sway.env["DBUS_SESSION_BUS_ADDRESS"], server_name)
    agent = None
    try:
        agent = start_agent(sway, daemon)
        run_detoxes(sway, daemon, program, can_show=False)
        assert f"do-not-disturb back-end: {program.name}" in sway.log("tray")
    finally:
        end_cleanly(sway, daemon)
        if agent is not None:
            sway.forget(agent)
        shell.close()


def test_an_unknown_server_is_reported_with_reason_and_fix(sway: WaylandDesktop, daemon: DetoxdEnv) -> None:
    shell = StandInShell(sway.env["DBUS_SESSION_BUS_ADDRESS"], "Fancy Notifier")
    agent = None
    try:
        agent = start_agent(sway, daemon)
        assert daemon.cli("start").returncode == 0
        try:
            report = wait_for(lambda: next((a for a in daemon.status().get("agents", [])
                                            if a.get("reason")), None), timeout=30,
                              what="a report with a reason:\n" + sway.log("tray"))
            assert report["notifications_silenced"] is False
            assert "'Fancy Notifier'" in report["reason"] and "by hand" in report["fix"]
            doctor = daemon.cli("doctor")
            assert "Fancy Notifier" in doctor.stdout and "by hand" in doctor.stdout, doctor.stdout
        finally:
            assert daemon.cli("end").returncode == 0
    finally:
        if agent is not None:
            sway.forget(agent)
        shell.close()



@pytest.mark.skipif(not have("mako"), reason="apt-get install mako-notifier")
def test_mako_with_a_config_it_cannot_change_is_reported_not_claimed(sway: WaylandDesktop,
                                                                     daemon: DetoxdEnv) -> None:
    """The user's mako config is not writable for them (a managed dotfile): the agent must not
    claim "silenced"; doctor says why and which lines to add. The file is left untouched."""
    config = Path(sway.env["XDG_CONFIG_HOME"]) / "mako" / "config"
    shutil.rmtree(config.parent, ignore_errors=True)  # what the other mako test's user left
    config.parent.mkdir()
    config.write_text(Mako.OWN)
    config.chmod(0o444)
    config.parent.chmod(0o555)  # owned by root when the session runs as nobody: not theirs to write
    server = sway.spawn(["mako"], "mako-readonly")
    agent = None
    try:
        wait_for(lambda: Mako("mako", [], ()).ready(sway), timeout=30, what="mako on the bus")
        agent = start_agent(sway, daemon)
        assert daemon.cli("start").returncode == 0
        report = wait_for(lambda: next((a for a in daemon.status().get("agents", []) if a.get("reason")),
                                       None), timeout=30, what="a report with a reason:\n" + sway.log("tray"))
        assert report["notifications_silenced"] is False and report["backend"] == "mako"
        assert "cannot add detoxd's do-not-disturb section" in report["reason"]
        assert "invisible=1" in report["fix"] and str(config) in report["fix"]
        doctor = daemon.cli("doctor")
        assert doctor.returncode != 0 and "not silenced for uid" in doctor.stdout, doctor.stdout
        assert config.read_text() == Mako.OWN, "the user's file is untouched"
        assert "switched back on" not in sway.log("tray"), "a failed silence is not a user's re-enable"
    finally:
        end_cleanly(sway, daemon)
        if agent is not None:
            sway.forget(agent)
        sway.forget(server)
        config.parent.chmod(0o755)
        config.unlink()
        config.parent.rmdir()

"""A throwaway desktop session for tests: Xvfb, a private session bus, the tray agent.

Everything lives in temporary directories: HOME and the XDG directories point there before
anything starts, and the bus config has no service directories, so nothing auto-starts and
the host's desktop is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import DetoxdEnv, wait_for
from fake_bus import FakeBusService

from tests.otheruser import python_for

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass
class Desktop:
    """A session: its environment, and the processes started in it (stopped in reverse)."""

    root: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, command: list[str], log_name: str, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{log_name}.log").open("ab")
        process = subprocess.Popen(command, env=env or self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(command), env=self.env, capture_output=True, text=True,
                              timeout=60, check=check)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop(process)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def session_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
                 "XDG_RUNTIME_DIR"):
        directory = root / name.lower()
        directory.mkdir(mode=0o700)
        env[name] = str(directory)
    for name in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY", "XDG_CURRENT_DESKTOP",
                 "PYSTRAY_BACKEND", "GSETTINGS_BACKEND"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_AT_BRIDGE"] = "1"  # GTK would otherwise look for the accessibility bus
    # Never the developer's own ActivityWatch (localhost:5600): nothing listens on port 9.
    env["DETOXD_ACTIVITYWATCH_URL"] = "http://127.0.0.1:9"
    return env


@contextlib.contextmanager
def desktop_session(root: Path, *, screen: str = "640x200x24") -> Iterator[Desktop]:
    """Xvfb plus a private session bus, with HOME and XDG_* in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    desktop = Desktop(root, session_env(root))
    try:
        start_xvfb(desktop, screen)
        start_session_bus(desktop)
        yield desktop
    finally:
        desktop.stop_all()


def _start_and_read_line(desktop: Desktop, name: str, command: Callable[[int], list[str]]) -> str:
    """Start a server that writes one line (its display or address) to the fd it is given."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        command(write_end), env=desktop.env, pass_fds=(write_end,),
        stdout=(desktop.root / f"{name}.log").open("ab"), stderr=subprocess.STDOUT)
    os.close(write_end)
    desktop.processes.append(process)
    with os.fdopen(read_end) as pipe:
        line = pipe.readline().strip()
    assert line, f"{name} did not start:\n{desktop.log(name)}"
    return line


def start_xvfb(desktop: Desktop, screen: str) -> None:
    number = _start_and_read_line(desktop, "xvfb", lambda fd: [
        "Xvfb", "-displayfd", str(fd), "-screen", "0", screen, "-nolisten", "tcp"])
    desktop.env["DISPLAY"] = f":{number}"


def start_session_bus(desktop: Desktop) -> None:
    socket = desktop.root / "bus.sock"
    config = desktop.root / "session-bus.conf"
    config.write_text(BUS_CONFIG.format(socket=socket))
    desktop.env["DBUS_SESSION_BUS_ADDRESS"] = _start_and_read_line(desktop, "dbus", lambda fd: [
        "dbus-daemon", f"--config-file={config}", "--nofork", f"--print-address={fd}"])


def start_dunst(desktop: Desktop) -> subprocess.Popen[bytes]:
    config = desktop.root / "dunstrc"
    config.write_text("[global]\n    timeout = 0\n    idle_threshold = 0\n")
    process = desktop.spawn(["dunst", "-config", str(config)], "dunst")
    wait_for(lambda: desktop.run("dunstctl", "is-paused", check=False).returncode == 0,
             timeout=30, what="dunst on the session bus")
    return process


def tray_command(user: int | None = None) -> list[str]:
    return [python_for(user), "-m", "detoxd", "tray", "-v"]


def start_tray(desktop: Desktop, detoxd: DetoxdEnv, backend: str,
               extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    client = {"DETOXD_SOCKET": str(detoxd.socket), "DETOXD_CONFIG_DIR": str(detoxd.config_dir)}
    env = {**desktop.env, **client, "PYSTRAY_BACKEND": backend,
           "DETOXD_TRAY_RECHECK_SECONDS": "0.5", **(extra_env or {})}
    return desktop.spawn(tray_command(), "tray", env=env)


class FakePlasmaNotifications(FakeBusService):
    """Stand-in for plasmashell's notification server (no KDE in this test image): owns
    ``org.freedesktop.Notifications``, says it is "Plasma", and implements ``Inhibit`` /
    ``UnInhibit`` / ``Inhibited`` as Plasma documents them, including that an inhibition ends
    when the connection that asked for it goes away. Served from a thread with jeepney."""

    def __init__(self, bus_address: str) -> None:
        from jeepney import MatchRule
        from jeepney.bus_messages import message_bus

        super().__init__(bus_address, "org.freedesktop.Notifications")
        gone = MatchRule(type="signal", interface="org.freedesktop.DBus", member="NameOwnerChanged")
        self.connection.send_and_get_reply(message_bus.AddMatch(gone), timeout=10)
        self.unique_name = self.connection.unique_name
        self.inhibitions: dict[int, str] = {}  # cookie → the connection that holds it
        self._next_cookie = 1
        self.start()

    def _on_signal(self, message: object) -> None:
        """NameOwnerChanged: a connection that vanished loses its inhibitions."""
        name, _old, new = message.body  # type: ignore[attr-defined]
        if not new:
            self.inhibitions = {c: owner for c, owner in self.inhibitions.items() if owner != name}

    def _answer(self, message: object) -> object:
        from jeepney import HeaderFields, new_error, new_method_return

        fields = message.header.fields  # type: ignore[attr-defined]
        member, body = fields.get(HeaderFields.member), message.body  # type: ignore[attr-defined]
        if member == "GetServerInformation":
            return new_method_return(message, "ssss", ("Plasma", "KDE", "6.0", "1.2"))
        if member == "Inhibit":
            cookie, self._next_cookie = self._next_cookie, self._next_cookie + 1
            self.inhibitions[cookie] = fields[HeaderFields.sender]
            return new_method_return(message, "u", (cookie,))
        if member == "UnInhibit":
            self.inhibitions.pop(body[0], None)
            return new_method_return(message)
        if member == "Get" and body[1] == "Inhibited":
            return new_method_return(message, "v", (("b", bool(self.inhibitions)),))
        return new_error(message, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"no {member}",))


# ---- a headless sway session with the notification daemons that run under it ----------------

SWAY_BUS_POLICY_ROOT = '<allow user="root"/>'
NOBODY = 65534
SWAY_CONFIG = "output HEADLESS-1 resolution 640x360\n"  # no bar, no wallpaper: a plain background
XFCONFD = "/usr/lib/x86_64-linux-gnu/xfce4/xfconf/xfconfd"
XFCE4_NOTIFYD = "/usr/lib/x86_64-linux-gnu/xfce4/notifyd/xfce4-notifyd"
MATE_NOTIFICATION_DAEMON = "/usr/lib/mate-notification-daemon/mate-notification-daemon"
DCONF_SERVICE = "/usr/libexec/dconf-service"


def session_user() -> int | None:
    """sway refuses to run as root: as root the session runs as nobody, else as ourselves."""
    return NOBODY if os.geteuid() == 0 else None


@dataclass
class WaylandDesktop(Desktop):
    """A session of its own user (see ``session_user``): processes spawned in it run as that user."""

    user: int | None = None

    def spawn(self, command: list[str], log_name: str, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{log_name}.log").open("ab")
        process = subprocess.Popen(command, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=self.root, **self._as_user())
        self.processes.append(process)
        return process

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(list(command), env=self.env, capture_output=True, text=True, timeout=60,
                                check=False, cwd=self.root, **self._as_user())
        if check and result.returncode != 0:  # say why: a bare CalledProcessError hides stderr
            raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def _as_user(self) -> dict[str, object]:
        if self.user is None:
            return {}
        return {"user": self.user, "group": self.user, "extra_groups": []}

    def forget(self, process: subprocess.Popen[bytes]) -> None:
        stop(process)
        self.processes.remove(process)


@contextlib.contextmanager
def wayland_session(root: Path) -> Iterator[WaylandDesktop]:
    """A private bus, headless sway (pixman renderer), dconf-service and xfconfd, all as the
    session user, with HOME and XDG_* in ``root`` (which that user owns)."""
    import shutil as _shutil

    user = session_user()
    root.mkdir(parents=True)
    root.chmod(0o755)
    env = session_env(root)
    desktop = WaylandDesktop(root, env, user=user)
    if user is not None:
        for path in [root, *root.rglob("*")]:
            os.chown(path, user, user)
        # The test process (root) talks to the session's bus too, e.g. for stand-in servers.
    try:
        socket = root / "bus.sock"
        config = root / "session-bus.conf"
        config.write_text(BUS_CONFIG.format(socket=socket).replace(
            '<policy context="default">', f'<policy context="default">\n    {SWAY_BUS_POLICY_ROOT}'))
        desktop.spawn(["dbus-daemon", f"--config-file={config}", "--nofork"], "dbus")
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={socket}"
        wait_for(socket.exists, timeout=30, what="the session bus")
        (root / "sway.conf").write_text(SWAY_CONFIG)
        sway_env = {**env, "WLR_BACKENDS": "headless", "WLR_RENDERER": "pixman",
                    "WLR_LIBINPUT_NO_DEVICES": "1"}
        desktop.spawn(["sway", "-c", str(root / "sway.conf")], "sway", env=sway_env)
        runtime = Path(env["XDG_RUNTIME_DIR"])

        def sway_socket() -> str | None:
            return next((p.name for p in runtime.glob("wayland-*") if not p.name.endswith(".lock")), None)

        display = wait_for(sway_socket, timeout=30, what="sway's socket:\n" + desktop.log("sway"))
        env["WAYLAND_DISPLAY"] = display
        env["XDG_CURRENT_DESKTOP"] = "sway"
        env["GDK_BACKEND"] = "wayland"
        if _shutil.which(DCONF_SERVICE) or Path(DCONF_SERVICE).exists():
            desktop.spawn([DCONF_SERVICE], "dconf")
        if Path(XFCONFD).exists():
            desktop.spawn([XFCONFD], "xfconfd")
        wait_for(lambda: desktop.run("grim", str(root / "probe.png"), check=False).returncode == 0,
                 timeout=30, what="sway to take a screenshot:\n" + desktop.log("sway"))
        yield desktop
    finally:
        desktop.stop_all()


def screen_is_empty(desktop: WaylandDesktop, name: str) -> bool:
    """A screenshot (grim) of the headless output shows nothing but sway's plain background."""
    from PIL import Image

    path = desktop.root / name
    desktop.run("grim", str(path))
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=4)
    return colours is not None and len(colours) == 1

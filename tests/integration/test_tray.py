"""``detoxd tray`` with pystray's xorg back-end, docked in a real tray (trayer on Xvfb), against
a real daemon: the screenshot shows the detox state, a click shows the status, and the icon
follows the daemon going away and coming back. The screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DetoxdEnv, have, wait_for, wait_quietly
from desktop import Desktop, desktop_session, start_tray, stop
from PIL import Image, ImageChops, ImageStat

from detoxd.core.icon import PALETTES, Face, Kind, render_opaque

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PANEL_HEIGHT = 32

pytestmark = pytest.mark.skipif(
    not all(have(p) for p in ("Xvfb", "dbus-daemon", "trayer", "xwininfo", "xdotool", "import", "xmessage")),
    reason="needs Xvfb, dbus-daemon, trayer, x11-utils, xdotool and imagemagick")


@dataclass(frozen=True)
class Window:
    title: str
    width: int
    height: int
    x: int
    y: int


@pytest.fixture
def tray_session(detoxd_env: DetoxdEnv, tmp_path: Path) -> Iterator[Desktop]:
    detoxd_env.write_main("detox:\n  days: 14\n  lock: false\n")
    detoxd_env.start_daemon()
    with desktop_session(tmp_path / "desktop", screen="320x240x24") as desktop:
        start_trayer(desktop)
        yield desktop


TRAYER = ["trayer", "--edge", "top", "--align", "left", "--widthtype", "pixel", "--width", "160",
          "--height", str(PANEL_HEIGHT), "--transparent", "false", "--SetDockType", "true"]


def start_trayer(desktop: Desktop, command: list[str] = TRAYER) -> None:
    """trayer sometimes never maps its panel on a loaded machine (about 1 start in 10 here);
    one restart is allowed, and printed, so that this flake of the stand-in panel does not
    hide what the test is about."""
    for attempt in (1, 2):
        process = desktop.spawn(command, "trayer")
        if wait_quietly(lambda: '"panel"' in tree(desktop), timeout=20):
            return
        print(f"trayer attempt {attempt}: no panel after 20s (exit code {process.poll()}); restarting")
        stop(process)
    raise AssertionError("trayer's panel never appeared\n" + desktop.log("trayer"))


def tree(desktop: Desktop) -> str:
    return desktop.run("xwininfo", "-root", "-tree", check=False).stdout


def tray_icon(desktop: Desktop) -> Window | None:
    """The agent's window, if it is docked (a descendant of trayer's panel)."""
    text = tree(desktop)
    panel = text.find('"panel"')
    match = re.search(r'"(detoxd:[^"]*)": \("detoxdSystemTrayIcon" "detoxd"\)\s+(\d+)x(\d+)\+-?\d+\+-?\d+'
                      r"\s+\+(-?\d+)\+(-?\d+)", text)
    if panel < 0 or match is None or match.start() < panel:
        return None
    title, width, height, x, y = match.groups()
    return Window(title, int(width), int(height), int(x), int(y))


def docked_with(desktop: Desktop, fragment: str) -> Window:
    try:
        return wait_for(lambda: (icon := tray_icon(desktop)) and fragment in icon.title and icon,  # type: ignore[return-value]
                        timeout=60, what=f"a docked icon titled …{fragment}…")
    except AssertionError as error:
        details = f"--- windows:\n{tree(desktop)}\n--- agent:\n{desktop.log('tray')}"
        raise AssertionError(f"{error}\n{details}") from None


def screenshot(desktop: Desktop, name: str) -> Image.Image:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    desktop.run("import", "-window", "root", "-crop", f"160x{PANEL_HEIGHT}+0+0", "+repage", str(path))
    image = Image.open(path).convert("RGB")
    image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST).save(
        path.with_name(path.stem + "-4x.png"))
    return image


def icon_pixels(desktop: Desktop, window: Window, name: str) -> Image.Image:
    box = (window.x, window.y, window.x + window.width, window.y + window.height)
    return screenshot(desktop, name).crop(box)


def expected_pixels(face: Face, window: Window) -> Image.Image:
    """What the agent draws into pystray's xorg window: the face at the window's exact size, opaque."""
    return render_opaque(face, window.width, window.height)


def difference(shot: Image.Image, face: Face, window: Window) -> float:
    return max(ImageStat.Stat(ImageChops.difference(shot, expected_pixels(face, window))).mean)


def shows(desktop: Desktop, window: Window, face: Face, name: str) -> Image.Image:
    """The icon's pixels once they show ``face`` (the X server paints a moment after the title)."""
    shots: list[Image.Image] = []

    def painted() -> bool:
        nonlocal window
        window = tray_icon(desktop) or window  # trayer may still resize the icon
        shots.append(icon_pixels(desktop, window, name))
        return difference(shots[-1], face, window) < 12

    try:
        wait_for(painted, timeout=30, what=f"the docked icon to show {face}")
    except AssertionError as error:
        raise AssertionError(f"{error}: mean difference {difference(shots[-1], face, window)}") from None
    assert_looks_like(shots[-1], face, window)
    return shots[-1]


def assert_looks_like(shot: Image.Image, face: Face, window: Window) -> None:
    assert difference(shot, face, window) < 12, f"the docked icon does not show {face}"
    wanted_corner = PALETTES[face.kind].background
    right, bottom = window.width - 1, window.height - 1
    for corner in ((0, 0), (right, 0), (0, bottom), (right, bottom)):
        pixel = shot.getpixel(corner)
        assert sum(abs(a - b) for a, b in zip(pixel, wanted_corner)) < 40, f"corner {corner} is {pixel}"
    centre_band = shot.crop((0, window.height // 4, window.width, window.height * 3 // 4))
    colours = centre_band.getcolors(window.width * window.height) or []
    dominant = max(colours)[1]
    wanted = PALETTES[face.kind].background
    assert sum(abs(a - b) for a, b in zip(dominant, wanted)) < 40, (dominant, wanted)


def test_tray_icon_docks_and_follows_the_detox(tray_session: Desktop, detoxd_env: DetoxdEnv) -> None:
    start_tray(tray_session, detoxd_env, "xorg")
    idle = docked_with(tray_session, "no detox running")
    assert "tray back-end: xorg" in tray_session.log("tray")
    shows(tray_session, idle, Face(Kind.IDLE, None), "tray-xorg-idle.png")

    assert detoxd_env.cli("start").returncode == 0
    active = docked_with(tray_session, "Day 1 of 14, 14 days left")
    shot = shows(tray_session, active, Face(Kind.ACTIVE, "14"), "tray-xorg.png")
    white = sum(1 for p in shot.convert("L").histogram()[201:])
    assert white >= 0.05 * active.width * active.height, "the white number is visible"


def test_the_tray_hears_a_pushed_change_without_polling(tray_session: Desktop,
                                                        detoxd_env: DetoxdEnv) -> None:
    """Issue 26: the tray's safety-net poll set to a day and the daemon's keepalive a minute
    apart, a detox started still shows at once: the daemon pushed it and the tray woke for it."""
    start_tray(tray_session, detoxd_env, "xorg", {"DETOXD_TRAY_RECHECK_SECONDS": "86400"})
    docked_with(tray_session, "no detox running")
    assert detoxd_env.cli("start").returncode == 0
    docked_with(tray_session, "Day 1 of 14, 14 days left")


def test_click_shows_the_full_status_in_a_window(tray_session: Desktop, detoxd_env: DetoxdEnv) -> None:
    start_tray(tray_session, detoxd_env, "xorg")
    assert detoxd_env.cli("start").returncode == 0
    window = docked_with(tray_session, "Day 1 of 14")
    def click_opens_the_window() -> bool:
        # Clicked again if nothing appears: a click can land while trayer is still mapping the icon.
        tray_session.run("xdotool", "mousemove", str(window.x + window.width // 2),
                         str(window.y + window.height // 2), "click", "1")
        return wait_quietly(lambda: '"detoxd status"' in tree(tray_session), timeout=5)

    wait_for(click_opens_the_window, timeout=60, what="the status window after a click")
    assert "menu: show_status" in tray_session.log("tray")


def test_icon_shows_an_unreachable_daemon_and_reconnects(tray_session: Desktop,
                                                         detoxd_env: DetoxdEnv) -> None:
    start_tray(tray_session, detoxd_env, "xorg")
    assert detoxd_env.cli("start").returncode == 0
    docked_with(tray_session, "Day 1 of 14")

    detoxd_env.stop_daemon()
    gone = docked_with(tray_session, "daemon not reachable")
    shows(tray_session, gone, Face(Kind.UNREACHABLE, "?"), "tray-xorg-unreachable.png")
    # What it last knew, and that nothing undoes tampering now.
    assert gone.title == ("detoxd: daemon not reachable, retrying; tampering is not undone "
                          "(14 days left, last known)")

    detoxd_env.start_daemon()
    docked_with(tray_session, "Day 1 of 14")
    assert tray_session.log("tray").count("connected to the daemon") >= 2


STATUS_TEXT = ("Day 1 of 14 — ends Tue 15 Dec 09:00\n145 sites blocked\nNotifications silenced (dunst)\n"
               "Open blocklist (read-only; edit with sudoedit) — and a long line that must wrap to fit")


def window_geometry(desktop: Desktop, title: str) -> Window | None:
    result = desktop.run("xwininfo", "-name", title, check=False)
    if result.returncode != 0:
        return None
    values = dict(re.findall(r"^\s*(Absolute upper-left [XY]|Width|Height):\s+(-?\d+)", result.stdout, re.M))
    if len(values) < 4:
        return None
    return Window(title, int(values["Width"]), int(values["Height"]),
                  int(values["Absolute upper-left X"]), int(values["Absolute upper-left Y"]))


def test_status_window_renders_utf8_and_fits_the_screen(tray_session: Desktop) -> None:
    """The window the xorg tray opens for "Show status" (textwindow), on a 320x240 screen:
    its screenshot is exactly the UTF-8 text drawn by textimage, wrapped to fit, not cut."""
    import subprocess
    import sys

    from detoxd.agent.textwindow import SCREEN_MARGIN
    from detoxd.core import textimage

    window_process = subprocess.Popen([sys.executable, "-m", "detoxd.agent.textwindow", "detoxd status"],
                                      stdin=subprocess.PIPE, env=tray_session.env)
    try:
        assert window_process.stdin is not None
        with window_process.stdin:
            window_process.stdin.write(STATUS_TEXT.encode())
        window = wait_for(lambda: window_geometry(tray_session, "detoxd status"), timeout=30,
                          what="the status window")
        style = textimage.Style(max_width=320 - SCREEN_MARGIN, max_height=240 - SCREEN_MARGIN)
        expected = textimage.render("detoxd status", STATUS_TEXT, style)
        assert (window.width, window.height) == expected.size
        assert window.x >= 0 and window.y >= 0, "on the screen"
        assert window.x + window.width <= 320 and window.y + window.height <= 240, "fits the screen"
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / "status-window.png"

        def painted() -> bool:
            tray_session.run("import", "-window", "root", "-crop",
                             f"{window.width}x{window.height}+{window.x}+{window.y}", "+repage", str(path))
            shot = Image.open(path).convert("RGB")
            return ImageChops.difference(shot, expected).getbbox() is None

        wait_for(painted, timeout=30, what="the window to show exactly the rendered text")
        words = [line for line, _ in textimage.layout("detoxd status", STATUS_TEXT, style)]
        assert " ".join(words[1:]).split() == STATUS_TEXT.split(), "nothing cut"
        tray_session.run("xdotool", "mousemove", str(window.x + 10), str(window.y + 10), "click", "1")
        assert window_process.wait(timeout=30) == 0, "a click closes it"
    finally:
        if window_process.poll() is None:
            window_process.kill()
            window_process.wait()


@pytest.mark.parametrize("height", [16, 22, 24, 30])
def test_docked_icon_is_clean_at_panel_height(detoxd_env: DetoxdEnv, tmp_path: Path, height: int) -> None:
    """trayer at each panel height: the docked icon has no black corners and is exactly what
    render_opaque draws for its window (so not stretched, whatever shape trayer gives it)."""
    detoxd_env.start_daemon()
    with desktop_session(tmp_path / "desktop", screen="320x240x24") as desktop:
        command = [*TRAYER]
        command[command.index("--height") + 1] = str(height)
        start_trayer(desktop, command)
        start_tray(desktop, detoxd_env, "xorg")
        window = docked_with(desktop, "no detox running")
        assert min(window.width, window.height) <= height
        shows(desktop, window, Face(Kind.IDLE, None), f"tray-xorg-{height}px.png")

"""pystray's xorg back-end, made to work: clicks, an icon drawn to fit its window, and updates
that do not wait on pystray's X thread (for XEmbed trays such as trayer)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from detoxd.core import icon as icons

log = logging.getLogger(__name__)


def enable_clicks_on_xorg(icon: Any) -> None:
    """pystray 0.19.5's xorg window never selects ButtonPress, so clicks are lost (pystray#151)."""
    import importlib

    x = importlib.import_module("Xlib.X")  # python-xlib, a dependency of pystray; untyped
    window, display = getattr(icon, "_window", None), getattr(icon, "_display", None)
    if window is None or display is None:
        log.warning("cannot enable clicks on this pystray version: no _window")
        return
    window.change_attributes(event_mask=x.ExposureMask | x.StructureNotifyMask | x.ButtonPressMask)
    display.flush()


def draw_to_fit_on_xorg(icon: Any, face: Callable[[], icons.Face]) -> None:
    """pystray's xorg back-end scales the icon to its window on black: transparent corners turn
    black and a window trayer makes wider than high stretches it. Draw the face for the window's
    exact size instead, opaque (``icon.render_opaque``)."""

    def assert_icon_data(width: int, height: int) -> None:
        data = getattr(icon, "_icon_data", None)
        if data is not None and data.size == (width, height):
            return  # pystray resets it to None when the icon changes
        data = icons.render_opaque(face(), width, height)
        # As pystray does, for old python-xlib; setattr: typed Pillow (PyPI) has no such attribute,
        # Debian's untyped python3-pil says nothing, and mypy must pass with both.
        setattr(data, "tostring", data.tobytes)  # noqa: B010
        icon._icon_data = data

    if not hasattr(icon, "_assert_icon_data"):
        log.warning("cannot draw the icon to fit on this pystray version")
        return
    icon._assert_icon_data = assert_icon_data


def show_on_xorg(icon: Any) -> None:
    """``icon.visible = True`` without pystray's waiting dispatcher (see update_on_xorg)."""
    implementation = type(icon)
    if not icon._icon_valid:  # what the setter does first
        implementation._update_icon(icon)
    implementation._show(icon)
    icon._visible = True
    push_to_x_server(icon)


def update_on_xorg(icon: Any, image: Any, title: str) -> None:
    """pystray's xorg setters hand the work to its X thread by a client message and then wait,
    without a timeout, for the answer; python-xlib shared between threads can leave that message
    unsent, and the tray froze on its first status (seen in about one start in five under load).
    pystray imports Xlib.threaded, so requests are safe from this thread: do the work here, with
    the class's own implementations (the instance's are the waiting dispatchers)."""
    implementation = type(icon)
    if image is not None:
        icon._icon, icon._icon_valid = image, False
        if icon.visible:
            implementation._update_icon(icon)
    if title != icon._title:
        icon._title = title
        if icon.visible:
            implementation._update_title(icon)
    push_to_x_server(icon)


def push_to_x_server(icon: Any) -> None:
    """Send what pystray's X thread queued. python-xlib shared between threads can leave the last
    request of a burst (the new title or image) unsent until the next one; a round trip sends it."""
    display = getattr(icon, "_display", None)
    if display is not None:
        display.sync()

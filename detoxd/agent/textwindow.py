"""A small X window that shows text (the xorg tray's status window): ``python -m
detoxd.agent.textwindow TITLE`` with the text on stdin.

The text is drawn by :mod:`detoxd.core.textimage` (Pillow, DejaVu Sans: any UTF-8 the font has)
into an image that fits the screen, and shown with python-xlib (pystray's own dependency, so
this needs nothing the xorg tray does not). The title is set as UTF-8 (``_NET_WM_NAME``). A
click, a key or the window manager's close button closes it. Its own process: python-xlib's
display must not be shared with pystray's thread.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from detoxd.core import textimage

SCREEN_MARGIN = 16


def show(title: str, text: str) -> int:
    display_module = importlib.import_module("Xlib.display")  # python-xlib ships no type hints
    x = importlib.import_module("Xlib.X")
    xatom = importlib.import_module("Xlib.Xatom")
    xutil = importlib.import_module("Xlib.Xutil")
    display = display_module.Display()
    screen = display.screen()
    style = textimage.Style(max_width=screen.width_in_pixels - SCREEN_MARGIN,
                            max_height=screen.height_in_pixels - SCREEN_MARGIN)
    image = textimage.render(title, text, style)
    left = (screen.width_in_pixels - image.width) // 2
    top = (screen.height_in_pixels - image.height) // 2
    window = screen.root.create_window(
        left, top, image.width, image.height, 0, screen.root_depth, x.InputOutput, x.CopyFromParent,
        background_pixel=screen.white_pixel,
        event_mask=x.ExposureMask | x.ButtonPressMask | x.KeyPressMask | x.StructureNotifyMask)
    _name(display, window, xatom, title)
    window.set_wm_class("detoxd-status", "detoxd")
    window.set_wm_normal_hints(flags=xutil.PPosition | xutil.PMinSize | xutil.PMaxSize, x=left, y=top,
                               min_width=image.width,
                               min_height=image.height, max_width=image.width, max_height=image.height)
    delete = display.intern_atom("WM_DELETE_WINDOW")
    window.change_property(display.intern_atom("WM_PROTOCOLS"), xatom.ATOM, 32, [delete])
    gc = window.create_gc()
    window.map()
    display.flush()
    while True:
        event = display.next_event()
        if event.type == x.Expose and event.count == 0:
            window.put_pil_image(gc, 0, 0, image)
            display.flush()
        elif _closes(event, x, delete):
            break
    display.close()
    return 0


def _closes(event: Any, x: Any, delete: int) -> bool:
    if event.type in (x.ButtonPress, x.KeyPress, x.DestroyNotify):
        return True
    return bool(event.type == x.ClientMessage and event.data[1][0] == delete)


def _name(display: Any, window: Any, xatom: Any, title: str) -> None:
    """The title as UTF-8 for window managers and panels, and as Latin-1 for old ones."""
    window.change_property(display.intern_atom("_NET_WM_NAME"), display.intern_atom("UTF8_STRING"), 8,
                           title.encode())
    window.set_wm_name(title.encode("latin-1", "replace").decode("latin-1"))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    title = args[0] if args else "detoxd"
    return show(title, sys.stdin.read())


if __name__ == "__main__":
    sys.exit(main())

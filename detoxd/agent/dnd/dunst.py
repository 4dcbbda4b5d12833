"""dunst: the ``paused`` property of ``org.dunstproject.cmd0`` (what ``dunstctl set-paused`` sets).

While paused, dunst holds notifications back and shows them when unpaused. dunst 1.9 also has
``pauseLevel`` (0–100; paused is 100): the user's level is saved and put back as it was.
dunst announces every change with ``PropertiesChanged``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

from detoxd.agent.dnd import Backend, Problem, Watch
from detoxd.agent.dnd.bus import BusError, address, get_property, set_property

INTERFACE = "org.dunstproject.cmd0"
DUNST = address("/org/freedesktop/Notifications", "org.freedesktop.Notifications", INTERFACE)


class DunstBackend(Backend):
    name: ClassVar[str] = "dunst"
    label: ClassVar[str] = "dunst"
    servers: ClassVar[tuple[str, ...]] = ("dunst",)
    programs: ClassVar[tuple[str, ...]] = ("dunst",)

    def is_silenced(self) -> bool:
        return bool(get_property(DUNST, "paused"))

    def silence(self) -> None:
        set_property(DUNST, "paused", "b", True)

    def unsilence(self) -> None:
        set_property(DUNST, "paused", "b", False)

    def prior(self) -> dict[str, Any]:
        prior: dict[str, Any] = {"silenced": self.is_silenced()}
        with contextlib.suppress(BusError):  # dunst before 1.9: paused or not, nothing in between
            prior["pause_level"] = int(get_property(DUNST, "pauseLevel"))
        return prior

    def restore(self, prior: Mapping[str, Any]) -> None:
        level = prior.get("pause_level")
        if isinstance(level, int) and not isinstance(level, bool):
            set_property(DUNST, "pauseLevel", "u", level)
        else:
            super().restore(prior)

    def watch(self) -> Watch:
        return Watch(signals=({"type": "signal", "interface": "org.freedesktop.DBus.Properties",
                               "member": "PropertiesChanged", "path": "/org/freedesktop/Notifications",
                               "arg0": INTERFACE},))

    def not_silenced(self) -> Problem:
        return Problem("dunst still reports paused=false after detoxd paused it",
                       "dunstctl set-paused true")

"""dunst: the ``paused`` property of ``org.dunstproject.cmd0`` (what ``dunstctl set-paused`` sets).

While paused, dunst holds notifications back and shows them when unpaused.
"""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import Backend, Session
from detoxd.agent.dnd.bus import address, get_property, set_property

DUNST = address("/org/freedesktop/Notifications", "org.freedesktop.Notifications", "org.dunstproject.cmd0")


class DunstBackend(Backend):
    name: ClassVar[str] = "dunst"
    label: ClassVar[str] = "dunst"

    def available(self, session: Session) -> bool:
        return session.server_name == "dunst"

    def is_silenced(self) -> bool:
        return bool(get_property(DUNST, "paused"))

    def silence(self) -> None:
        set_property(DUNST, "paused", "b", True)

    def unsilence(self) -> None:
        set_property(DUNST, "paused", "b", False)

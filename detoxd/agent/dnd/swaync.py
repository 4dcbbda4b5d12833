"""SwayNotificationCenter: ``GetDnd``/``SetDnd`` of its control centre (``swaync-client --dnd-on``)."""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import Backend, Session
from detoxd.agent.dnd.bus import address, call, name_has_owner

SWAYNC_NAME = "org.erikreider.swaync.cc"
SWAYNC = address("/org/erikreider/swaync/cc", SWAYNC_NAME, "org.erikreider.swaync.cc")


class SwayncBackend(Backend):
    name: ClassVar[str] = "swaync"
    label: ClassVar[str] = "SwayNC"

    def available(self, session: Session) -> bool:
        return session.server_name == "SwayNotificationCenter" or name_has_owner(SWAYNC_NAME)

    def is_silenced(self) -> bool:
        return bool(call(SWAYNC, "GetDnd")[0])

    def silence(self) -> None:
        call(SWAYNC, "SetDnd", "b", (True,))

    def unsilence(self) -> None:
        call(SWAYNC, "SetDnd", "b", (False,))

"""XFCE: xfconf channel ``xfce4-notifyd``, property ``/do-not-disturb``, over xfconfd's D-Bus API."""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import Backend, Session
from detoxd.agent.dnd.bus import BusError, address, call

XFCONF = address("/org/xfce/Xfconf", "org.xfce.Xfconf", "org.xfce.Xfconf")
CHANNEL = "xfce4-notifyd"
PROPERTY = "/do-not-disturb"


class XfceBackend(Backend):
    name: ClassVar[str] = "xfce"
    label: ClassVar[str] = "XFCE"

    def available(self, session: Session) -> bool:
        return session.server_name == "Xfce Notify Daemon" or session.on_desktop("XFCE")

    def is_silenced(self) -> bool:
        try:
            _signature, value = call(XFCONF, "GetProperty", "ss", (CHANNEL, PROPERTY))[0]
        except BusError as error:
            if "PropertyNotFound" in str(error) or "InvalidProperty" in str(error):
                return False  # never set: notifications are shown
            raise
        return bool(value)

    def silence(self) -> None:
        call(XFCONF, "SetProperty", "ssv", (CHANNEL, PROPERTY, ("b", True)))

    def unsilence(self) -> None:
        call(XFCONF, "SetProperty", "ssv", (CHANNEL, PROPERTY, ("b", False)))

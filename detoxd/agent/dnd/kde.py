"""KDE Plasma: ``org.freedesktop.Notifications.Inhibit`` on Plasma's notification server.

An inhibition lasts as long as the D-Bus connection that asked for it, so this back-end holds
its own connection for the whole detox and closes it to end the inhibition. If plasmashell
restarts, the new server knows nothing of it: ``is_silenced`` notices that the name changed
owner and the keeper inhibits again. Nothing needs saving: an inhibition never changes the
user's own do-not-disturb setting, and it ends by itself if the agent dies.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from detoxd.agent.dnd import Backend, Problem, Watch
from detoxd.agent.dnd.bus import DBUS, NOTIFICATIONS, BusError, call, connect, get_property

log = logging.getLogger(__name__)
SERVICE = "org.freedesktop.Notifications"


class KdeBackend(Backend):
    name: ClassVar[str] = "kde"
    label: ClassVar[str] = "KDE Plasma"
    servers: ClassVar[tuple[str, ...]] = ("Plasma",)
    programs: ClassVar[tuple[str, ...]] = ("plasmashell",)

    def __init__(self) -> None:
        super().__init__()
        self._connection: Any = None
        self._cookie: int | None = None
        self._server: str | None = None  # unique bus name of the server that granted it

    def prior(self) -> dict[str, Any]:
        return {}

    def restore(self, prior: object) -> None:
        self.unsilence()

    def is_silenced(self) -> bool:
        if self._connection is None or self._server is None:
            return False
        try:
            if _owner() != self._server:
                log.info("the notification server restarted: the inhibition is gone")
                self._drop()
                return False
            return bool(get_property(NOTIFICATIONS, "Inhibited"))
        except BusError:
            self._drop()
            return False

    def silence(self) -> None:
        self._drop()
        connection = connect()
        try:
            reply = call(NOTIFICATIONS, "Inhibit", "ssa{sv}", ("detoxd-tray", "Digital detox", {}),
                         connection=connection)
            server = _owner()
        except BaseException:
            connection.close()
            raise
        self._connection, self._cookie, self._server = connection, int(reply[0]), server

    def unsilence(self) -> None:
        if self._connection is not None and self._cookie is not None:
            try:
                call(NOTIFICATIONS, "UnInhibit", "u", (self._cookie,), connection=self._connection)
            except BusError as error:
                log.info("UnInhibit failed (%s); closing the connection ends it anyway", error)
        self._drop()

    def watch(self) -> Watch:
        """Plasma announces ``Inhibited`` changing; a restarted plasmashell shows as a new owner."""
        return Watch(signals=({"type": "signal", "interface": "org.freedesktop.DBus.Properties",
                               "member": "PropertiesChanged", "path": "/org/freedesktop/Notifications",
                               "arg0": SERVICE},))

    def not_silenced(self) -> Problem:
        return Problem("Plasma accepted the inhibition but does not report Inhibited=true",
                       "switch on Do Not Disturb in Plasma's notification applet")

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._cookie, self._server = None, None, None


def _owner() -> str:
    return str(call(DBUS, "GetNameOwner", "s", (SERVICE,))[0])

"""The user's session bus through jeepney: the few calls the do-not-disturb back-ends and the
tray's desktop notifications need. jeepney is imported only here (it ships no type hints).

Every helper opens a short-lived connection: jeepney's blocking connections are not
thread-safe, and these calls are rare. The KDE back-end holds its own long-lived one.
"""

from __future__ import annotations

from typing import Any

from jeepney import (  # type: ignore[import-untyped]
    DBusAddress,
    DBusErrorResponse,
    MessageType,
    Properties,
    new_method_call,
)
from jeepney.io.blocking import DBusConnection, open_dbus_connection  # type: ignore[import-untyped]

CALL_TIMEOUT = 5.0

NOTIFICATIONS = DBusAddress(
    "/org/freedesktop/Notifications",
    bus_name="org.freedesktop.Notifications",
    interface="org.freedesktop.Notifications",
)
DBUS = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")


class BusError(Exception):
    """No session bus, no such service, or the service answered with an error."""


def connect() -> DBusConnection:
    try:
        return open_dbus_connection(bus="SESSION")
    except (OSError, KeyError, ValueError) as error:  # KeyError: no DBUS_SESSION_BUS_ADDRESS
        raise BusError(f"no session bus: {error!r}") from error


def address(path: str, bus_name: str, interface: str) -> Any:
    return DBusAddress(path, bus_name=bus_name, interface=interface)


def call(
    target: Any, method: str, signature: str | None = None, body: tuple[Any, ...] = (),
    connection: DBusConnection | None = None,
) -> tuple[Any, ...]:
    """Call a method and return the reply's body. Raises BusError."""
    return _send(new_method_call(target, method, signature, body), connection)


def get_property(target: Any, name: str, connection: DBusConnection | None = None) -> Any:
    """The value of a property (the variant unwrapped). Raises BusError."""
    _signature, value = _send(Properties(target).get(name), connection)[0]
    return value


def set_property(target: Any, name: str, signature: str, value: Any) -> None:
    _send(Properties(target).set(name, signature, value), None)


def name_has_owner(name: str) -> bool:
    try:
        return bool(call(DBUS, "NameHasOwner", "s", (name,))[0])
    except BusError:
        return False


def notification_server_name() -> str | None:
    """The notification daemon's own name (``dunst``, ``gnome-shell``, ``Plasma``, ...)."""
    try:
        return str(call(NOTIFICATIONS, "GetServerInformation")[0])
    except BusError:
        return None


def notify(summary: str, body: str, *, urgency: int = 1, replaces: int = 0) -> int:
    """Show a desktop notification; returns its id (pass it as ``replaces`` to update it)."""
    hints = {"urgency": ("y", urgency), "desktop-entry": ("s", "detoxd-tray")}
    reply = call(NOTIFICATIONS, "Notify", "susssasa{sv}i",
                 ("detoxd", replaces, "", summary, body, [], hints, -1))
    return int(reply[0])


def _send(message: Any, connection: DBusConnection | None) -> tuple[Any, ...]:
    own = connection is None
    try:
        conn = connect() if connection is None else connection
        try:
            reply = conn.send_and_get_reply(message, timeout=CALL_TIMEOUT)
        finally:
            if own:
                conn.close()
    except (OSError, TimeoutError) as error:
        raise BusError(f"D-Bus call failed: {error!r}") from error
    if reply.header.message_type == MessageType.error:
        raise BusError(f"{DBusErrorResponse(reply).name}: {reply.body}")
    return tuple(reply.body)

"""A small ``org.kde.StatusNotifierWatcher`` for tests, written with jeepney.

What a desktop panel (GNOME's AppIndicator extension, KDE, waybar, ...) provides: the name
on the session bus that tray items register with. It records who registered and claims a
host is present, which is all libayatana-appindicator needs to export its item and menu
instead of falling back to an XEmbed icon.
"""

from __future__ import annotations

import threading
from typing import Any

from fake_bus import FakeBusService
from jeepney import DBusAddress, HeaderFields, new_error, new_method_return, new_signal

WATCHER_NAME = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
INTROSPECTION = """<node><interface name="org.kde.StatusNotifierWatcher">
<method name="RegisterStatusNotifierItem"><arg name="service" type="s" direction="in"/></method>
<method name="RegisterStatusNotifierHost"><arg name="service" type="s" direction="in"/></method>
<property name="RegisteredStatusNotifierItems" type="as" access="read"/>
<property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
<property name="ProtocolVersion" type="i" access="read"/>
<signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
<signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
<signal name="StatusNotifierHostRegistered"/>
</interface></node>"""


class FakeWatcher(FakeBusService):
    """Serves the watcher interface from a background thread until ``close``."""

    def __init__(self, bus_address: str) -> None:
        super().__init__(bus_address, WATCHER_NAME)
        self.items: list[tuple[str, str]] = []  # (bus name, object path)
        self.registered = threading.Event()
        self.start()

    def _answer(self, message: Any) -> Any:
        fields = message.header.fields
        interface, member = fields.get(HeaderFields.interface), fields.get(HeaderFields.member)
        if member == "RegisterStatusNotifierItem":
            return self._register(message)
        if member == "RegisterStatusNotifierHost":
            return new_method_return(message)
        if interface == "org.freedesktop.DBus.Properties" and member in ("Get", "GetAll"):
            properties = self._properties()
            if member == "GetAll":
                return new_method_return(message, "a{sv}", (properties,))
            name = message.body[1]
            if name in properties:
                return new_method_return(message, "v", (properties[name],))
        if member == "Introspect":
            return new_method_return(message, "s", (INTROSPECTION,))
        return new_error(message, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"no {member}",))

    def _register(self, message: Any) -> Any:
        sender = message.header.fields[HeaderFields.sender]
        service = message.body[0]
        item = (sender, service) if service.startswith("/") else (service, "/StatusNotifierItem")
        self.items.append(item)
        self.connection.send(new_method_return(message))
        emitter = DBusAddress(WATCHER_PATH, interface=WATCHER_NAME)
        self.registered.set()
        return new_signal(emitter, "StatusNotifierItemRegistered", "s", (f"{item[0]}{item[1]}",))

    def _properties(self) -> dict[str, tuple[str, Any]]:
        return {
            "RegisteredStatusNotifierItems": ("as", [f"{name}{path}" for name, path in self.items]),
            "IsStatusNotifierHostRegistered": ("b", True),
            "ProtocolVersion": ("i", 0),
        }

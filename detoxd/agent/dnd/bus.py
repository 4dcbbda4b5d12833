"""The user's session bus through jeepney: the few calls the do-not-disturb back-ends and the
tray's desktop notifications need. jeepney is imported only here (it ships no type hints).

Every helper opens a short-lived connection: jeepney's blocking connections are not
thread-safe, and these calls are rare. The KDE back-end holds its own long-lived one, and
:class:`BusWatcher` two more (one for change signals, one monitor for method calls).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jeepney import (  # type: ignore[import-untyped]
    DBusAddress,
    DBusErrorResponse,
    MatchRule,
    MessageType,
    Properties,
    new_method_call,
)
from jeepney.bus_messages import Monitoring, message_bus  # type: ignore[import-untyped]
from jeepney.io.blocking import DBusConnection, open_dbus_connection  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0
NOTIFICATIONS_NAME = "org.freedesktop.Notifications"

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


def name_owner(name: str, connection: DBusConnection | None = None) -> str | None:
    """The unique name (``:1.42``) that owns ``name``, or None."""
    try:
        return str(call(DBUS, "GetNameOwner", "s", (name,), connection)[0])
    except BusError:
        return None


def name_has_owner(name: str) -> bool:
    try:
        return bool(call(DBUS, "NameHasOwner", "s", (name,))[0])
    except BusError:
        return False


def notification_server_name() -> str | None:
    """The notification daemon's own name (``dunst``, ``gnome-shell``, ``Plasma``, ...)."""
    return notification_server()[0]


def notification_server() -> tuple[str | None, str | None, int | None]:
    """What owns ``org.freedesktop.Notifications``: (GetServerInformation's name, the owner's
    executable name, its pid); all None when nothing owns it (or there is no bus)."""
    try:
        connection = connect()
    except BusError:
        return None, None, None
    try:
        owner = name_owner(NOTIFICATIONS_NAME, connection)
        if owner is None:
            return None, None, None
        try:
            pid: int | None = int(call(DBUS, "GetConnectionUnixProcessID", "s", (owner,), connection)[0])
        except BusError:
            pid = None
        try:
            name: str | None = str(call(NOTIFICATIONS, "GetServerInformation", connection=connection)[0])
        except BusError as error:
            log.info("the notification server %s does not answer GetServerInformation: %s", owner, error)
            name = None
        return name, program_of(pid), pid
    finally:
        connection.close()


def activatable_servers(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The executables the session bus would start for ``org.freedesktop.Notifications``, from
    the D-Bus service files in the XDG data directories (only if the bus says it can start one)."""
    try:
        names = call(DBUS, "ListActivatableNames")[0]
    except BusError:
        return ()
    if NOTIFICATIONS_NAME not in names:
        return ()
    home = environ.get("XDG_DATA_HOME") or os.path.join(environ.get("HOME", "/nonexistent"), ".local/share")
    dirs = [home, *(environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":")]
    programs: list[str] = []
    for directory in dirs:
        services = os.path.join(directory, "dbus-1", "services")
        try:
            entries = sorted(os.listdir(services))
        except OSError:
            continue
        for entry in entries:
            program = _service_program(os.path.join(services, entry))
            if program and program not in programs:
                programs.append(program)
    return tuple(programs)


def _service_program(path: str) -> str | None:
    """The Exec's executable name of a D-Bus .service file for the notifications name."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle]
    except OSError:
        return None
    if f"Name={NOTIFICATIONS_NAME}" not in lines:
        return None
    command = next((line.removeprefix("Exec=") for line in lines if line.startswith("Exec=")), "")
    return os.path.basename(command.split()[0]) if command.split() else None


def program_of(pid: int | None) -> str | None:
    """The executable's name of a process (``mate-notification-daemon``), from /proc."""
    if pid is None:
        return None
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip() or None
    except OSError:
        return None


def match_rule(spec: Mapping[str, Any]) -> Any:
    """A jeepney MatchRule from a plain dict; ``arg0`` / ``arg0path`` add argument conditions."""
    spec = dict(spec)
    arg0, arg0path = spec.pop("arg0", None), spec.pop("arg0path", None)
    rule = MatchRule(**spec)
    if arg0 is not None:
        rule.add_arg_condition(0, arg0)
    if arg0path is not None:
        rule.add_arg_condition(0, arg0path, kind="path")
    return rule


class BusWatcher:
    """Calls ``on_change(what)`` from its own threads when a watched message arrives.

    Signals come through an ordinary connection with match rules. Method calls (for programs
    that announce no change, like mako's ``SetModes``) come through a second connection that
    asks the bus to ``BecomeMonitor`` with narrow rules; a bus that refuses it is logged and
    left to the caller's poll. The owner of ``org.freedesktop.Notifications`` changing is
    always watched (``what`` is then ``"server"``).
    """

    STOP_TIMEOUT = 1.0  # how long stop() waits for a thread to see its connection shut down

    def __init__(self, on_change: Callable[[str], None]) -> None:
        self.on_change = on_change
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Their threads block in receive() with no timeout (issue 26: no wake-ups while the bus is
        # quiet); stop() shuts the sockets down, which ends the receive.
        self._connections: list[DBusConnection] = []
        self.monitoring = False  # BecomeMonitor was granted

    def start(self, signals: Sequence[Mapping[str, Any]], calls: Sequence[Mapping[str, Any]]) -> None:
        self.stop()
        self._stop = threading.Event()
        server = {"type": "signal", "interface": "org.freedesktop.DBus", "member": "NameOwnerChanged",
                  "arg0": NOTIFICATIONS_NAME}
        connection = connect()
        try:
            for spec in (server, *signals):
                _send(message_bus.AddMatch(match_rule(spec)), connection)
        except BaseException:
            connection.close()
            raise
        self._spawn(connection, self._stop, "signals")
        self.monitoring = False
        if calls:
            monitor = connect()
            try:
                rules = [match_rule({"type": "method_call", **spec}).serialise() for spec in calls]
                _send(Monitoring().BecomeMonitor(rules), monitor)
                self.monitoring = True
                self._spawn(monitor, self._stop, "calls")
            except BusError as error:
                monitor.close()
                log.warning("cannot monitor the session bus (%s); falling back to polling", error)

    def stop(self) -> None:
        self._stop.set()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=self.STOP_TIMEOUT)
        self._threads, self._connections = [], []

    def _spawn(self, connection: DBusConnection, stop: threading.Event, kind: str) -> None:
        thread = threading.Thread(target=self._receive, args=(connection, stop, kind),
                                  name=f"detoxd-tray-watch-{kind}", daemon=True)
        self._threads.append(thread)
        self._connections.append(connection)
        thread.start()

    def _receive(self, connection: DBusConnection, stop: threading.Event, kind: str) -> None:
        try:
            while not stop.is_set():
                message = connection.receive()
                what = _describe(message, kind)
                if what is not None:
                    self.on_change(what)
        except (OSError, ValueError) as error:  # the bus went away
            if not stop.is_set():
                log.warning("stopped watching the session bus: %r", error)
                self.on_change("bus")
        finally:
            connection.close()


def _describe(message: Any, kind: str) -> str | None:
    """``"server"``, ``"Interface.Member"`` for a change, or None for the bus's own chatter."""
    from jeepney import HeaderFields

    fields = message.header.fields
    member = fields.get(HeaderFields.member)
    interface = fields.get(HeaderFields.interface, "")
    if kind == "signals" and message.header.message_type != MessageType.signal:
        return None
    if interface == "org.freedesktop.DBus":
        if member == "NameOwnerChanged" and message.body and message.body[0] == NOTIFICATIONS_NAME:
            return "server"
        return None  # NameAcquired and the like, addressed to us
    return f"{interface}.{member}"


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

"""The part every stand-in D-Bus service of the tests shares: own a name, answer on a thread."""

from __future__ import annotations

import threading
from typing import Any

from jeepney import MessageType
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection


class FakeBusService:
    """Owns ``name`` on the bus at ``bus_address``; subclasses answer method calls (``_answer``)
    and may watch signals (``_on_signal``). Call ``start`` once their own state is set up."""

    def __init__(self, bus_address: str, name: str) -> None:
        self.connection = open_dbus_connection(bus=bus_address)
        reply = self.connection.send_and_get_reply(message_bus.RequestName(name), timeout=10)
        assert reply.body[0] == 1, f"could not own {name}: {reply.body}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"fake {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.connection.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                message = self.connection.receive(timeout=0.1)
            except TimeoutError:
                continue
            except OSError:
                return
            if message.header.message_type == MessageType.method_call:
                self.connection.send(self._answer(message))
            elif message.header.message_type == MessageType.signal:
                self._on_signal(message)

    def _answer(self, message: Any) -> Any:
        raise NotImplementedError

    def _on_signal(self, message: Any) -> None:
        """Signals the service subscribed to; none by default."""

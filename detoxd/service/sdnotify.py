"""The sd_notify protocol, in pure stdlib: tell systemd we are ready, alive, reloading, stopping.

systemd passes an ``AF_UNIX`` datagram socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` for
the abstract namespace) and, with ``WatchdogSec=``, the deadline in ``WATCHDOG_USEC``. Every
message is one datagram of ``KEY=value`` lines. Without ``NOTIFY_SOCKET`` (started by hand,
in tests) every method is a no-op, so callers never need to ask.

The daemon should call :meth:`Notifier.watchdog` from its main loop only after checking that
its worker threads are alive and that it did its job lately (detoxd: the hosts file verified
within the last 10 s): a hung or dead thread, or a loop kept from settling a change, then stops
the pings and systemd restarts the service, which is the point of the watchdog.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notifier:
    """Sends state changes to the service manager. ``address`` None means "not under systemd"."""

    address: str | None = None
    watchdog_usec: int | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        if address is None:  # nobody to ping, so no watchdog either
            return cls()
        return cls(address=address, watchdog_usec=_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) finished: systemd marks the unit active."""
        return self._send(READY="1", STATUS=status)

    def reloading(self, status: str | None = None) -> bool:
        """A reload began. MONOTONIC_USEC lets systemd ≥ 253 (Type=notify-reload) match the
        following READY=1 to this reload; systemd 252 ignores the extra field."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(RELOADING="1", MONOTONIC_USEC=str(monotonic_usec), STATUS=status)

    def stopping(self, status: str | None = None) -> bool:
        return self._send(STOPPING="1", STATUS=status)

    def status(self, text: str) -> bool:
        """Free text shown by ``systemctl status``."""
        return self._send(STATUS=text)

    def watchdog(self) -> bool:
        """Proof of life; only meaningful when :meth:`watchdog_interval` is not None."""
        if self.watchdog_usec is None:
            return False
        return self._send(WATCHDOG="1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the deadline, as sd_watchdog_enabled(3) advises."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def _send(self, **fields: str | None) -> bool:
        """Send one datagram. Returns whether it was sent; failures are logged, not raised,
        because losing a status line must never take the daemon down."""
        if self.address is None:
            return False
        message = "".join(f"{key}={value}\n" for key, value in fields.items() if value is not None)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as error:
            log.warning("sd_notify to %r failed: %s", self.address, error)
            return False
        return True


def _socket_address(value: str) -> str | None:
    """``@name`` is an abstract socket: on the wire its name starts with a NUL byte."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # unset, empty, or a vsock address we do not support


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """The deadline, if the watchdog is meant for this process (WATCHDOG_PID, when set,
    names the one process systemd watches; a child that inherited the variable must not ping)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid is not None and watchdog_pid != str(os.getpid()):
        return None
    return usec if usec > 0 else None

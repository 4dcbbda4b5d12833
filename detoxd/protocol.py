"""The control socket's protocol: JSON lines between the root daemon and its clients.

- request ``{"cmd": "status", ...args}`` → response ``{"ok": true, ...}`` or
  ``{"ok": false, "error": "<message>", "code": "<code>"}``; a connection may carry
  several requests, one after another.
- request ``{"cmd": "subscribe"}`` → ``{"ok": true, "subscribed": true}``, then the
  current state and every event the daemon publishes, one ``{"event": "...", ...}`` per line,
  until either side closes.

Anyone who can reach the socket may read (it is 0666); mutating commands need the peer's
uid, from ``SO_PEERCRED``, to be root (or the server's own euid).

Shared by the client (:mod:`detoxd.client`) and the server (:mod:`detoxd.service.control`);
standard library only, so that ``detoxd status`` starts quickly.
"""

from __future__ import annotations

import json
import time
from collections import namedtuple
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import socket
    from typing import Any, NamedTuple

DEFAULT_SOCKET_PATH = Path("/run/detoxd/control.sock")
MUTATING_COMMANDS: frozenset[str] = frozenset({"start", "end", "reload"})
SUBSCRIBE_COMMAND = "subscribe"

MAX_REQUEST_BYTES = 64 * 1024
# Responses and events come from the (trusted) daemon and may carry a whole status.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024

SOCKET_DIR_MODE = 0o755
# World-writable on purpose: authorisation is per request, by SO_PEERCRED.
SOCKET_MODE = 0o666

# Error codes sent in ``{"ok": false, "code": ...}``.
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
TIMEOUT = "timeout"
NOT_AUTHORIZED = "not_authorized"
BUSY = "busy"
INTERNAL_ERROR = "internal_error"



class ControlError(Exception):
    """Base of the errors this module raises."""


class DaemonUnreachable(ControlError):
    """No daemon answers: no socket, connection refused, timeout, or connection lost."""


class ProtocolError(ControlError):
    """The daemon answered something that is not a JSON-lines reply."""


class RequestRefused(ControlError):
    """The daemon answered ``{"ok": false, ...}`` where the client needs success."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(f"{response.get('code', 'error')}: {response.get('error', '')}")
        self.response = response


class AlreadyRunning(ControlError):
    """Another live server answers on the socket path."""


if TYPE_CHECKING:
    class Peer(NamedTuple):
        """Who is at the other end of a connection, from SO_PEERCRED."""

        pid: int
        uid: int
        gid: int
else:  # the same tuple, without importing typing at run time
    Peer = namedtuple("Peer", "pid uid gid")


class LineTooLong(Exception):
    """A line longer than the size limit."""


class IncompleteLine(Exception):
    """The peer closed its sending side in the middle of a line."""


class LineReader:
    """Reads newline-terminated lines from a socket with a size cap and a deadline."""

    def __init__(self, sock: socket.socket, max_line: int) -> None:
        self._sock = sock
        self._max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0  # bytes already known to hold no newline

    @property
    def has_partial_line(self) -> bool:
        return bool(self._buffer)

    def read_line(self, deadline: float | None) -> bytes | None:
        """One line without its newline, or None at a clean end of stream.

        The deadline is for the whole line (``time.monotonic()``), so a peer trickling a
        byte at a time cannot hold the connection longer than one byte would.
        Raises TimeoutError, LineTooLong, IncompleteLine or OSError.
        """
        while True:
            newline = self._buffer.find(b"\n", self._scanned, self._max_line + 1)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                return line
            if len(self._buffer) > self._max_line:
                raise LineTooLong
            self._scanned = len(self._buffer)
            self._sock.settimeout(remaining(deadline))
            chunk = self._sock.recv(65536)
            if not chunk:
                if self._buffer:
                    raise IncompleteLine
                return None
            self._buffer += chunk


def remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_object(line: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN/Infinity) that must be an object. Raises ValueError."""
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except RecursionError as nested_too_deep:
        raise ValueError("JSON nested too deeply") from nested_too_deep
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode()



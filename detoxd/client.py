"""The client side of the control socket: the CLI (requests) and the tray (subscribe).

Never imports the server: ``detoxd status`` pays only for the standard library.
"""

from __future__ import annotations

# The socket module's C half: `socket` itself imports selectors and builds enum classes, a
# tenth of `detoxd status`'s start. Its sockets are the same (close-on-exec, timeouts, errors).
import _socket
import time

from detoxd.protocol import (
    DEFAULT_SOCKET_PATH,
    MAX_RESPONSE_BYTES,
    SUBSCRIBE_COMMAND,
    ControlError,
    DaemonUnreachable,
    IncompleteLine,
    LineReader,
    LineTooLong,
    ProtocolError,
    RequestRefused,
    decode_object,
    encode,
    remaining,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any

    SocketPath = str | PathLike[str]

__all__ = ["ControlClient", "ControlError", "DaemonUnreachable", "ProtocolError", "RequestRefused",
           "Subscription"]

class ControlClient:
    """Talks to a running daemon. Used by the CLI (requests) and the tray (subscribe)."""

    def __init__(self, path: SocketPath = DEFAULT_SOCKET_PATH) -> None:
        self.path = path

    def request(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        """Send one request and return the response, including ``{"ok": false}`` ones.

        ``timeout`` bounds the whole exchange. Raises DaemonUnreachable or ProtocolError.
        """
        deadline = time.monotonic() + timeout
        sock = self._connect(timeout)
        try:
            reader = LineReader(sock, MAX_RESPONSE_BYTES)
            self._send(sock, {**args, "cmd": cmd}, deadline)
            return _receive(reader, deadline, self.path)
        finally:
            sock.close()

    def subscribe(self, timeout: float | None = None) -> Subscription:
        """Subscribe to the daemon's events; iterate the result to receive them.

        Returns once the daemon has acknowledged, so nothing published afterwards is
        missed. ``timeout`` bounds the wait for each event (DaemonUnreachable when it
        passes); None waits forever, but connecting and the acknowledgement are still
        bounded. Raises DaemonUnreachable, ProtocolError, or RequestRefused if it says no.
        """
        setup_timeout = 5.0 if timeout is None else timeout
        deadline = time.monotonic() + setup_timeout
        sock = self._connect(setup_timeout)
        try:
            reader = LineReader(sock, MAX_RESPONSE_BYTES)
            self._send(sock, {"cmd": SUBSCRIBE_COMMAND}, deadline)
            acknowledgement = _receive(reader, deadline, self.path)
            if acknowledgement.get("ok") is not True:
                raise RequestRefused(acknowledgement)
        except BaseException:
            sock.close()
            raise
        return Subscription(sock, reader, timeout, self.path)

    def _connect(self, timeout: float) -> _socket.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
        except OSError as error:
            sock.close()
            raise DaemonUnreachable(f"cannot connect to {self.path}: {error}") from error
        return sock

    def _send(self, sock: _socket.socket, message: dict[str, Any], deadline: float) -> None:
        try:
            sock.settimeout(remaining(deadline))
            sock.sendall(encode(message))
        except OSError as error:
            raise DaemonUnreachable(f"sending to {self.path} failed: {error}") from error


class _EndOfStream(DaemonUnreachable):
    """The daemon closed the connection between lines."""

    def __init__(self) -> None:
        super().__init__("the daemon closed the connection")


class Subscription:
    """The stream of pushed events; iterating ends when the daemon closes it."""

    def __init__(
        self, sock: _socket.socket, reader: LineReader, timeout: float | None, path: SocketPath
    ) -> None:
        self._sock = sock
        self._reader = reader
        self._timeout = timeout
        self._path = path

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._sock.fileno() < 0:
            raise StopIteration
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            return _receive(self._reader, deadline, self._path)
        except _EndOfStream:
            self.close()
            raise StopIteration from None

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _receive(reader: LineReader, deadline: float | None, path: SocketPath) -> dict[str, Any]:
    """The next message from the daemon. Raises _EndOfStream at a clean end."""
    try:
        line = reader.read_line(deadline)
    except LineTooLong as error:
        raise ProtocolError(f"bad reply from {path}: a reply over {MAX_RESPONSE_BYTES} bytes") from error
    except IncompleteLine as error:
        raise ProtocolError(f"bad reply from {path}: the connection closed mid-reply") from error
    except OSError as error:  # includes TimeoutError
        raise DaemonUnreachable(f"no reply from {path}: {error!r}") from error
    if line is None:
        raise _EndOfStream
    try:
        return decode_object(line)
    except ValueError as error:
        raise ProtocolError(f"bad reply from {path}: {error}") from error



"""The control socket: JSON lines between the root daemon and its clients.

Protocol, one JSON object per line in each direction over a Unix stream socket:

- request ``{"cmd": "status", ...args}`` → response ``{"ok": true, ...}`` or
  ``{"ok": false, "error": "<message>", "code": "<code>"}``; a connection may carry
  several requests, one after another.
- request ``{"cmd": "subscribe"}`` → ``{"ok": true, "subscribed": true}``, then the
  current state (if the daemon gave a ``snapshot``) and every event passed to
  :meth:`ControlServer.publish`, one ``{"event": "...", ...}`` per line, until either side
  closes.

Anyone who can reach the socket may read (it is 0666); mutating commands need the peer's
uid, from ``SO_PEERCRED``, to be root (or the server's own euid). The server owns framing,
size limits, timeouts and that check; the daemon supplies the handler that does the work.

Server and client live here together, and both use only the standard library, so that
``detoxd status`` imports this module quickly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import logging


def _log() -> logging.Logger:
    """Only the server logs; importing logging lazily keeps ``detoxd status`` fast."""
    import logging

    return logging.getLogger(__name__)


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

_SO_PEERCRED_FORMAT = "3i"  # struct ucred: pid_t pid; uid_t uid; gid_t gid


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


class Peer(NamedTuple):
    pid: int
    uid: int
    gid: int


Handler = Callable[[dict[str, Any], Peer], dict[str, Any]]
Snapshot = Callable[[], dict[str, Any]]


def peer_credentials(sock: socket.socket) -> Peer:
    """Who is at the other end, as the kernel recorded it at ``connect()``: cannot be forged."""
    size = struct.calcsize(_SO_PEERCRED_FORMAT)
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    pid, uid, gid = struct.unpack(_SO_PEERCRED_FORMAT, raw)
    return Peer(pid=pid, uid=uid, gid=gid)


def error_response(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": message, "code": code}


# --- framing, shared by server and client ------------------------------------------------


class _LineTooLong(Exception):
    pass


class _IncompleteLine(Exception):
    """The peer closed its sending side in the middle of a line."""


class _LineReader:
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
        Raises TimeoutError, _LineTooLong, _IncompleteLine or OSError.
        """
        while True:
            newline = self._buffer.find(b"\n", self._scanned, self._max_line + 1)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                return line
            if len(self._buffer) > self._max_line:
                raise _LineTooLong
            self._scanned = len(self._buffer)
            self._sock.settimeout(_remaining(deadline))
            chunk = self._sock.recv(65536)
            if not chunk:
                if self._buffer:
                    raise _IncompleteLine
                return None
            self._buffer += chunk


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_object(line: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN/Infinity) that must be an object. Raises ValueError."""
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except RecursionError as nested_too_deep:
        raise ValueError("JSON nested too deeply") from nested_too_deep
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def _encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode()


# --- client ------------------------------------------------------------------------------


class ControlClient:
    """Talks to a running daemon. Used by the CLI (requests) and the tray (subscribe)."""

    def __init__(self, path: Path = DEFAULT_SOCKET_PATH) -> None:
        self.path = path

    def request(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        """Send one request and return the response, including ``{"ok": false}`` ones.

        ``timeout`` bounds the whole exchange. Raises DaemonUnreachable or ProtocolError.
        """
        deadline = time.monotonic() + timeout
        with self._connect(timeout) as sock:
            reader = _LineReader(sock, MAX_RESPONSE_BYTES)
            self._send(sock, {**args, "cmd": cmd}, deadline)
            return _receive(reader, deadline, self.path)

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
            reader = _LineReader(sock, MAX_RESPONSE_BYTES)
            self._send(sock, {"cmd": SUBSCRIBE_COMMAND}, deadline)
            acknowledgement = _receive(reader, deadline, self.path)
            if acknowledgement.get("ok") is not True:
                raise RequestRefused(acknowledgement)
        except BaseException:
            sock.close()
            raise
        return Subscription(sock, reader, timeout, self.path)

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
        except OSError as error:
            sock.close()
            raise DaemonUnreachable(f"cannot connect to {self.path}: {error}") from error
        return sock

    def _send(self, sock: socket.socket, message: dict[str, Any], deadline: float) -> None:
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(_encode(message))
        except OSError as error:
            raise DaemonUnreachable(f"sending to {self.path} failed: {error}") from error


class _EndOfStream(DaemonUnreachable):
    """The daemon closed the connection between lines."""

    def __init__(self) -> None:
        super().__init__("the daemon closed the connection")


class Subscription:
    """The stream of pushed events; iterating ends when the daemon closes it."""

    def __init__(
        self, sock: socket.socket, reader: _LineReader, timeout: float | None, path: Path
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


def _receive(reader: _LineReader, deadline: float | None, path: Path) -> dict[str, Any]:
    """The next message from the daemon. Raises _EndOfStream at a clean end."""
    try:
        line = reader.read_line(deadline)
    except (_LineTooLong, _IncompleteLine) as error:
        raise ProtocolError(f"bad reply from {path}: {type(error).__name__}") from error
    except OSError as error:  # includes TimeoutError
        raise DaemonUnreachable(f"no reply from {path}: {error!r}") from error
    if line is None:
        raise _EndOfStream
    try:
        return _decode_object(line)
    except ValueError as error:
        raise ProtocolError(f"bad reply from {path}: {error}") from error


# --- server ------------------------------------------------------------------------------


class _Connection:
    def __init__(self, sock: socket.socket, peer: Peer) -> None:
        self.sock = sock
        self.peer = peer
        # Other threads may disconnect us; the lock keeps them from hitting a descriptor
        # number that was closed and already reused by a new connection.
        self._closing_lock = threading.Lock()

    def disconnect(self) -> None:
        """Make the serving thread's blocked send or receive fail; safe from any thread."""
        with self._closing_lock:
            if self.sock.fileno() >= 0:
                _shutdown_quietly(self.sock)

    def close(self) -> None:
        with self._closing_lock:
            self.sock.close()


class _Subscriber:
    def __init__(self, connection: _Connection, queue_size: int) -> None:
        self.connection = connection
        self.lines: queue.Queue[bytes] = queue.Queue(maxsize=queue_size)
        self.dropped = threading.Event()


class ControlServer:
    """Serves the control socket from background threads: one per connection, capped.

    The handler is called concurrently from connection threads, so it must be
    thread-safe; it gets every request except ``subscribe`` that passed the checks here.
    """

    def __init__(
        self,
        path: Path,
        handler: Handler,
        *,
        snapshot: Snapshot | None = None,
        mutating: Collection[str] = MUTATING_COMMANDS,
        max_connections: int = 64,
        max_connections_per_uid: int = 16,
        request_timeout: float = 10.0,
        send_timeout: float = 5.0,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        subscriber_queue_size: int = 256,
    ) -> None:
        self.path = path
        self._handler = handler
        self._snapshot = snapshot
        self._mutating = frozenset(mutating)
        self._privileged_uids = frozenset({0, os.geteuid()})
        self._max_connections = max_connections
        self._max_connections_per_uid = max_connections_per_uid
        self._request_timeout = request_timeout
        self._send_timeout = send_timeout
        self._max_request_bytes = max_request_bytes
        self._subscriber_queue_size = subscriber_queue_size

        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._subscribers: set[_Subscriber] = set()
        self._listener: socket.socket | None = None
        self._socket_identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our file
        self._accept_thread: threading.Thread | None = None
        self._closing = threading.Event()

    # lifecycle

    def start(self) -> None:
        """Bind the socket and serve in background threads. Raises AlreadyRunning."""
        if self._listener is not None:
            raise RuntimeError("control server already started")
        self._prepare_directory()
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
        except BaseException:
            listener.close()
            raise
        try:
            os.chmod(self.path, SOCKET_MODE)
            info = os.lstat(self.path)
            listener.listen(64)
        except BaseException:
            listener.close()
            self.path.unlink(missing_ok=True)  # we just created it
            raise
        self._socket_identity = (info.st_dev, info.st_ino)
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="detoxd-control-accept", daemon=True
        )
        self._accept_thread.start()

    def close(self) -> None:
        """Stop accepting, disconnect everyone and remove our socket file. Idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._listener is not None:
            _shutdown_quietly(self._listener)  # wakes the thread blocked in accept()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.disconnect()
        self._remove_own_socket_file()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def is_alive(self) -> bool:
        """Still accepting connections: the daemon's watchdog checks this before each ping."""
        thread = self._accept_thread
        return thread is not None and thread.is_alive() and not self._closing.is_set()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        """Queue an event for every subscriber. Never blocks: a full queue drops its subscriber.

        Raises ValueError/TypeError for an event that has no "event" name or is not JSON.
        """
        if not isinstance(event.get("event"), str):
            raise ValueError("an event needs a string 'event' field")
        line = _encode(event)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.lines.put_nowait(line)
            except queue.Full:
                self._drop(subscriber, "too slow to read events")

    # start-up checks

    def _prepare_directory(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=SOCKET_DIR_MODE, parents=True)
        except FileExistsError:
            return
        os.chmod(directory, SOCKET_DIR_MODE)  # mkdir's mode is filtered by the umask

    def _remove_stale_socket(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            # Not ours to delete: someone put a file or symlink where the socket goes.
            raise FileExistsError(errno.EEXIST, "exists and is not a socket", str(self.path))
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(self.path))
        except ConnectionRefusedError:
            _log().info("removing stale control socket %s", self.path)
            self.path.unlink(missing_ok=True)
            return
        except TimeoutError as error:  # backlog full: alive but overloaded
            raise AlreadyRunning(f"a server is listening on {self.path}") from error
        except FileNotFoundError:
            return
        finally:
            probe.close()
        raise AlreadyRunning(f"another daemon answers on {self.path}")

    def _remove_own_socket_file(self) -> None:
        """Remove the socket file unless a newer server has replaced it since."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == self._socket_identity:
            self.path.unlink(missing_ok=True)

    # accepting

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError as error:
                if self._closing.is_set():
                    return
                _log().warning("control socket accept failed: %s", error)
                time.sleep(0.1)  # e.g. EMFILE: do not spin while descriptors are short
                continue
            try:
                self._admit(sock)
            except Exception:
                _log().exception("control connection could not be started")
                sock.close()

    def _admit(self, sock: socket.socket) -> None:
        connection = _Connection(sock, peer_credentials(sock))
        refusal = self._register(connection)
        if refusal is not None:
            _reply_without_blocking(sock, error_response(BUSY, refusal))
            sock.close()
            return
        thread = threading.Thread(
            target=self._serve, args=(connection,), name="detoxd-control-conn", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self._unregister(connection)
            raise

    def _register(self, connection: _Connection) -> str | None:
        """Count the connection in, or say why not. Privileged peers are never turned away."""
        uid = connection.peer.uid
        with self._lock:
            if uid not in self._privileged_uids:
                if len(self._connections) >= self._max_connections:
                    return "too many connections"
                same_user = sum(1 for c in self._connections if c.peer.uid == uid)
                if same_user >= self._max_connections_per_uid:
                    return "too many connections from this user"
            self._connections.add(connection)
        return None

    def _unregister(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
        connection.close()

    # serving one connection

    def _serve(self, connection: _Connection) -> None:
        try:
            self._serve_requests(connection)
        except OSError as error:
            _log().debug("control connection from pid %d ended: %s", connection.peer.pid, error)
        except Exception:
            _log().exception("control connection from pid %d failed", connection.peer.pid)
        finally:
            self._unregister(connection)

    def _serve_requests(self, connection: _Connection) -> None:
        reader = _LineReader(connection.sock, self._max_request_bytes)
        while not self._closing.is_set():
            try:
                line = reader.read_line(time.monotonic() + self._request_timeout)
            except _LineTooLong:
                limit = self._max_request_bytes
                self._send(connection, error_response(TOO_LARGE, f"request over {limit} bytes"))
                return
            except _IncompleteLine:
                message = "connection closed in the middle of a request"
                self._send(connection, error_response(BAD_REQUEST, message))
                return
            except TimeoutError:
                if reader.has_partial_line:
                    self._send(connection, error_response(TIMEOUT, "request took too long"))
                return  # an idle connection is closed silently
            if line is None:
                return
            if not line.strip():
                continue
            try:
                request = _decode_object(line)
            except ValueError as error:
                self._send(connection, error_response(BAD_REQUEST, f"invalid request: {error}"))
                continue
            if request.get("cmd") == SUBSCRIBE_COMMAND:
                self._serve_subscriber(connection)
                return
            self._send(connection, self._respond(request, connection.peer))

    def _respond(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        command = request.get("cmd")
        if not isinstance(command, str):
            return error_response(BAD_REQUEST, "request needs a string 'cmd'")
        if command in self._mutating and peer.uid not in self._privileged_uids:
            return error_response(NOT_AUTHORIZED, f"'{command}' needs root")
        try:
            response = self._handler(request, peer)
        except Exception:
            _log().exception("control handler failed on %r", command)
            return error_response(INTERNAL_ERROR, f"'{command}' failed inside the daemon")
        if not isinstance(response, dict):
            _log().error("control handler returned %r for %r", type(response), command)
            return error_response(INTERNAL_ERROR, f"'{command}' gave no valid response")
        return response

    def _send(self, connection: _Connection, message: dict[str, Any]) -> None:
        try:
            line = _encode(message)
        except (TypeError, ValueError):
            _log().exception("control response is not JSON: %r", message)
            line = _encode(error_response(INTERNAL_ERROR, "response could not be encoded"))
        self._send_line(connection, line)

    def _send_line(self, connection: _Connection, line: bytes) -> None:
        connection.sock.settimeout(self._send_timeout)  # total for sendall since 3.5
        connection.sock.sendall(line)

    # subscribers

    def _serve_subscriber(self, connection: _Connection) -> None:
        subscriber = _Subscriber(connection, self._subscriber_queue_size)
        # Registered before the acknowledgement and the snapshot, so nothing that happens
        # after the snapshot is missed (an event from just before it may arrive twice).
        with self._lock:
            self._subscribers.add(subscriber)
        try:
            self._send(connection, {"ok": True, "subscribed": True})
            if self._snapshot is not None:
                self._send(connection, self._current_state())
            self._stream_events(subscriber)
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)

    def _current_state(self) -> dict[str, Any]:
        state = dict(self._snapshot()) if self._snapshot is not None else {}
        state.setdefault("event", "status")
        return state

    def _stream_events(self, subscriber: _Subscriber) -> None:
        connection = subscriber.connection
        while not (self._closing.is_set() or subscriber.dropped.is_set()):
            try:
                line = subscriber.lines.get(timeout=0.5)
            except queue.Empty:
                if _peer_has_hung_up(connection.sock):
                    return
                continue
            try:
                self._send_line(connection, line)
            except TimeoutError:
                _log().info("dropping control subscriber pid %d: not reading", connection.peer.pid)
                return

    def _drop(self, subscriber: _Subscriber, reason: str) -> None:
        if subscriber.dropped.is_set():
            return
        subscriber.dropped.set()
        _log().info(
            "dropping control subscriber pid %d: %s", subscriber.connection.peer.pid, reason
        )
        # Wakes its thread if it is stuck in sendall(); the thread then cleans up.
        subscriber.connection.disconnect()


def _peer_has_hung_up(sock: socket.socket) -> bool:
    """True once a subscriber closed its end. Anything it sends is read and ignored."""
    sock.settimeout(0)  # with a timeout, recv() would first wait for data
    try:
        for _ in range(16):  # bounded, so a chatty subscriber cannot keep us here
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False


def _reply_without_blocking(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.setblocking(False)
        sock.send(_encode(message))
    except OSError:
        pass  # best effort: the refusal must never stall the accept loop


def _shutdown_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)

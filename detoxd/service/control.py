"""The control socket's server: framing, size limits, timeouts and SO_PEERCRED.

The daemon supplies the handler that does the work, and checks who may call each command (the
command table, :mod:`detoxd.service.commands`); the protocol is in :mod:`detoxd.protocol`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detoxd.protocol import (
    BAD_REQUEST,
    BUSY,
    INTERNAL_ERROR,
    MAX_REQUEST_BYTES,
    SOCKET_DIR_MODE,
    SOCKET_MODE,
    SUBSCRIBE_COMMAND,
    TIMEOUT,
    TOO_LARGE,
    AlreadyRunning,
    IncompleteLine,
    LineReader,
    LineTooLong,
    Peer,
    decode_object,
    encode,
    error_response,
)

_LOG = logging.getLogger(__name__)


def _log() -> logging.Logger:
    return _LOG


Handler = Callable[[dict[str, Any], Peer], dict[str, Any]]
Snapshot = Callable[[], dict[str, Any]]



_SO_PEERCRED_FORMAT = "3i"  # struct ucred: pid_t pid; uid_t uid; gid_t gid


def peer_credentials(sock: socket.socket) -> Peer:
    """Who is at the other end, as the kernel recorded it at ``connect()``: cannot be forged."""
    size = struct.calcsize(_SO_PEERCRED_FORMAT)
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    pid, uid, gid = struct.unpack(_SO_PEERCRED_FORMAT, raw)
    return Peer(pid=pid, uid=uid, gid=gid)


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
    """Its events, and a pipe that wakes its thread: the thread sleeps in one ``select()`` on the
    socket (a hang-up) and the pipe (an event) until its next heartbeat, never on a timer."""

    def __init__(self, connection: _Connection, queue_size: int) -> None:
        self.connection = connection
        self.lines: queue.Queue[bytes] = queue.Queue(maxsize=queue_size)
        self.dropped = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fd_lock = threading.Lock()  # publishers never write to a closed (reused) descriptor
        self.snapshot_wanted = False  # send the snapshot now (see ControlServer.push_snapshot)

    def put(self, line: bytes) -> None:
        """Raises queue.Full."""
        self.lines.put_nowait(line)
        self.wake()

    def wake(self) -> None:
        with self._fd_lock, contextlib.suppress(OSError):  # full: the thread is awake anyway
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")

    def wait(self, sock: socket.socket, timeout: float | None) -> bool:
        """Sleep until an event, the peer's side or ``timeout``; True if the socket is readable."""
        poller = select.poll()  # not select(): descriptors above 1023 are fine
        poller.register(sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(None if timeout is None else timeout * 1000)}
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        return sock.fileno() in ready

    def close(self) -> None:
        with self._fd_lock:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1


class ControlServer:
    """Serves the control socket from background threads: one per connection, capped.

    The handler is called concurrently from connection threads, so it must be
    thread-safe; it gets every request except ``subscribe`` that passed the checks here (framing
    and size: who may call what is the handler's to check, with the peer it is given).
    """

    def __init__(
        self,
        path: Path,
        handler: Handler,
        *,
        snapshot: Snapshot | None = None,
        max_connections: int = 64,
        max_connections_per_uid: int = 16,
        request_timeout: float = 10.0,
        send_timeout: float = 5.0,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        subscriber_queue_size: int = 256,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.path = path
        self._handler = handler
        self._snapshot = snapshot
        # A subscriber that heard nothing for this long gets the snapshot again: a status that
        # stopped changing (a stuck main loop) then shows its age instead of looking current.
        self._heartbeat_seconds = heartbeat_seconds
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
        line = encode(event)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.put(line)
            except queue.Full:
                self._drop(subscriber, "too slow to read events")

    def push_snapshot(self) -> None:
        """Send every subscriber the snapshot now (e.g. it just went stale): never blocks."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.snapshot_wanted = True
            subscriber.wake()

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
        reader = LineReader(connection.sock, self._max_request_bytes)
        while not self._closing.is_set():
            try:
                line = reader.read_line(time.monotonic() + self._request_timeout)
            except LineTooLong:
                limit = self._max_request_bytes
                self._send(connection, error_response(TOO_LARGE, f"request over {limit} bytes"))
                return
            except IncompleteLine:
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
                request = decode_object(line)
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
            line = encode(message)
        except (TypeError, ValueError):
            _log().exception("control response is not JSON: %r", message)
            line = encode(error_response(INTERNAL_ERROR, "response could not be encoded"))
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
            subscriber.close()

    def _current_state(self) -> dict[str, Any]:
        state = dict(self._snapshot()) if self._snapshot is not None else {}
        state.setdefault("event", "status")
        return state

    def _stream_events(self, subscriber: _Subscriber) -> None:
        """Send each event as it comes, and the snapshot after ``heartbeat_seconds`` of quiet.

        Between them the thread sleeps in select(): woken by an event, by the peer (hanging up,
        or sending something, read and ignored) or by the heartbeat, never by a timer of its own."""
        connection = subscriber.connection
        last_sent = time.monotonic()
        while not (self._closing.is_set() or subscriber.dropped.is_set()):
            try:
                line = subscriber.lines.get_nowait()
            except queue.Empty:
                timeout = 0.0 if subscriber.snapshot_wanted else self._until_heartbeat(last_sent)
                if subscriber.wait(connection.sock, timeout):
                    if _peer_has_hung_up(connection.sock):
                        return
                    continue
                if not (subscriber.snapshot_wanted or self._heartbeat_due(last_sent)):
                    continue
                subscriber.snapshot_wanted = False
                line = encode(self._current_state())
            try:
                self._send_line(connection, line)
                last_sent = time.monotonic()
            except TimeoutError:
                _log().info("dropping control subscriber pid %d: not reading", connection.peer.pid)
                return

    def _until_heartbeat(self, last_sent: float) -> float | None:
        """Seconds until the next heartbeat is due; None: no heartbeats, wait for an event."""
        beat = self._heartbeat_seconds
        if beat is None or self._snapshot is None:
            return None
        return max(0.0, last_sent + beat - time.monotonic())

    def _heartbeat_due(self, last_sent: float) -> bool:
        beat = self._heartbeat_seconds
        return beat is not None and self._snapshot is not None and time.monotonic() - last_sent >= beat

    @property
    def subscriber_uids(self) -> frozenset[int]:
        """The users with a subscription open now (their tray agents are alive)."""
        with self._lock:
            return frozenset(subscriber.connection.peer.uid for subscriber in self._subscribers)

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
        sock.send(encode(message))
    except OSError:
        pass  # best effort: the refusal must never stall the accept loop


def _shutdown_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)

"""The control socket, over real Unix sockets (and a real unprivileged process)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from detoxd.client import ControlClient, DaemonUnreachable
from detoxd.protocol import ANYONE, MAX_REQUEST_BYTES, ROOT, AlreadyRunning, Peer
from detoxd.service.commands import Authorizer, Command, CommandTable
from detoxd.service.control import ControlServer, peer_credentials
from tests.otheruser import user_python

NOBODY = 65534


class RecordingHandler:
    """Answers every command and remembers what reached it, and from whom."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Peer]] = []
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        with self._lock:
            self.calls.append((request, peer))
        return {"ok": True, "answered": request["cmd"]}

    def commands(self) -> list[str]:
        with self._lock:
            return [request["cmd"] for request, _ in self.calls]


def table_over(handler: RecordingHandler) -> CommandTable:
    """The command table's checks in front of ``handler``: status for anyone; start, pause for root."""
    def run(engine: Any, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return handler(request, peer)
    entries = {name: Command(name, who, run, locked=False)
               for name, who in (("status", ANYONE), ("start", ROOT), ("pause", ROOT))}
    return CommandTable(None, Authorizer(lambda: None), entries)  # type: ignore[arg-type]


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "c.sock"


@pytest.fixture
def make_server(
    socket_path: Path, handler: RecordingHandler
) -> Iterator[Callable[..., ControlServer]]:
    servers: list[ControlServer] = []

    def make(path: Path = socket_path, **options: Any) -> ControlServer:
        options.setdefault("request_timeout", 5.0)
        server = ControlServer(path, options.pop("handler", handler), **options)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def server(make_server: Callable[..., ControlServer]) -> ControlServer:
    return make_server()


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def read_message(reader: Any) -> dict[str, Any]:
    line = reader.readline()
    assert line.endswith(b"\n"), f"expected a full line, got {line!r}"
    message: dict[str, Any] = json.loads(line)
    return message


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


# --- requests ----------------------------------------------------------------------------


def test_peer_credentials_are_the_connecting_process() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == Peer(os.getpid(), os.getuid(), os.getgid())


def test_request_reaches_handler_with_args_and_peer(
    server: ControlServer, handler: RecordingHandler
) -> None:
    response = ControlClient(server.path).request("status", verbose=True)

    assert response == {"ok": True, "answered": "status"}
    [(request, peer)] = handler.calls
    assert request == {"cmd": "status", "verbose": True}
    assert peer == Peer(os.getpid(), os.getuid(), os.getgid())


def test_root_may_run_mutating_commands(
    make_server: Callable[..., ControlServer], handler: RecordingHandler
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: checks that uid 0 passes the mutating-command check")
    server = make_server(handler=table_over(handler))
    assert ControlClient(server.path).request("start")["ok"] is True
    assert handler.commands() == ["start"]


def test_one_connection_carries_several_requests(server: ControlServer) -> None:
    with connect(server.path) as sock, sock.makefile("rb") as reader:
        sock.sendall(b'{"cmd": "status"}\n\n{"cmd": "version"}\n')
        assert read_message(reader)["answered"] == "status"
        assert read_message(reader)["answered"] == "version"


@pytest.mark.parametrize(
    "line",
    [
        b"{nope",
        b"[1, 2]",
        b'"status"',
        b"{}",
        b'{"cmd": 7}',
        b'{"cmd": "status", "n": NaN}',
        b'{"cmd": "\xff\xfe"}',
        b"[" * 30_000 + b"]" * 30_000,
    ],
    ids=["syntax", "array", "string", "no-cmd", "cmd-not-string", "nan", "not-utf8", "deep"],
)
def test_malformed_request_gets_bad_request_and_connection_survives(
    server: ControlServer, handler: RecordingHandler, line: bytes
) -> None:
    with connect(server.path) as sock, sock.makefile("rb") as reader:
        sock.sendall(line + b"\n")
        reply = read_message(reader)
        assert reply["ok"] is False
        assert reply["code"] == "bad_request"
        assert reply["error"]

        sock.sendall(b'{"cmd": "status"}\n')
        assert read_message(reader) == {"ok": True, "answered": "status"}
    assert handler.commands() == ["status"]


def test_handler_failure_becomes_internal_error(
    make_server: Callable[..., ControlServer],
) -> None:
    def broken(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        if request["cmd"] == "status":
            raise RuntimeError("boom")
        return {"ok": True, "value": {1, 2}}  # a set is not JSON

    server = make_server(handler=broken)
    client = ControlClient(server.path)

    assert client.request("status")["code"] == "internal_error"
    assert client.request("other")["code"] == "internal_error"
    assert client.request("status")["code"] == "internal_error"  # still serving


def test_request_at_the_size_limit_is_served(server: ControlServer) -> None:
    skeleton = b'{"cmd": "status", "pad": ""}'
    line = skeleton[:-2] + b"x" * (MAX_REQUEST_BYTES - len(skeleton)) + skeleton[-2:]
    assert len(line) == MAX_REQUEST_BYTES

    with connect(server.path) as sock, sock.makefile("rb") as reader:
        sock.sendall(line + b"\n")
        assert read_message(reader)["ok"] is True


@pytest.mark.parametrize("newline", [b"", b"\n"], ids=["endless", "terminated"])
def test_oversized_request_is_refused_and_others_still_served(
    server: ControlServer, handler: RecordingHandler, newline: bytes
) -> None:
    with connect(server.path) as sock, sock.makefile("rb") as reader:
        sock.sendall(b'{"cmd": "start", "x": "' + b"x" * MAX_REQUEST_BYTES + newline)

        assert ControlClient(server.path).request("status")["ok"] is True
        assert read_message(reader)["code"] == "too_large"
        assert reader.readline() == b"", "the connection should be closed"
    assert handler.commands() == ["status"]


def test_silent_client_does_not_block_others(make_server: Callable[..., ControlServer]) -> None:
    server = make_server(request_timeout=0.5)
    with connect(server.path) as silent:
        assert ControlClient(server.path).request("status", timeout=2)["ok"] is True
        # Then the server gives up on it, without a word.
        assert silent.recv(100) == b""


def test_trickling_client_is_cut_off_by_the_request_deadline(
    make_server: Callable[..., ControlServer], handler: RecordingHandler
) -> None:
    server = make_server(request_timeout=0.5)
    with connect(server.path) as sock, sock.makefile("rb") as reader:
        sock.sendall(b'{"cmd"')
        assert ControlClient(server.path).request("status", timeout=2)["ok"] is True
        assert read_message(reader)["code"] == "timeout"
        assert reader.readline() == b""
    assert handler.commands() == ["status"]


def test_half_closed_mid_line_gets_error_and_nothing_runs(
    server: ControlServer, handler: RecordingHandler
) -> None:
    with connect(server.path) as sock, sock.makefile("rb") as reader:
        sock.sendall(b'{"cmd": "sta')
        sock.shutdown(socket.SHUT_WR)
        assert read_message(reader)["code"] == "bad_request"
        assert reader.readline() == b""
    assert handler.calls == []


def test_half_closed_after_a_full_line_still_gets_its_answer(server: ControlServer) -> None:
    with connect(server.path) as sock, sock.makefile("rb") as reader:
        sock.sendall(b'{"cmd": "status"}\n')
        sock.shutdown(socket.SHUT_WR)
        assert read_message(reader) == {"ok": True, "answered": "status"}
        assert reader.readline() == b""


# --- an unprivileged peer ----------------------------------------------------------------

UNPRIVILEGED_CLIENT = """
import json, sys
from pathlib import Path
from detoxd.client import ControlClient

client = ControlClient(Path(sys.argv[1]))
results = {cmd: client.request(cmd) for cmd in sys.argv[2:]}
with client.subscribe(timeout=5) as events:
    results["subscribe"] = next(events)
print(json.dumps(results))
"""

UNPRIVILEGED_HOG = """
import json, socket, sys

def connect():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(sys.argv[1])
    return sock

held = [connect() for _ in range(int(sys.argv[2]))]
extra = connect()
print(extra.makefile("rb").readline().decode(), end="")
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach: pytest's own base temp is private (0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as a real unprivileged user (uid 65534)")
    with tempfile.TemporaryDirectory(prefix="detoxd-control-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        yield directory


def run_as_nobody(script: str, *args: str) -> str:
    result = subprocess.run(
        [user_python(), "-c", script, *args],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_unprivileged_user_may_read_but_not_change(
    make_server: Callable[..., ControlServer], handler: RecordingHandler, shared_dir: Path
) -> None:
    server = make_server(
        shared_dir / "c.sock",
        handler=table_over(handler),
        snapshot=lambda: {"event": "status", "active": True},
    )

    output = run_as_nobody(UNPRIVILEGED_CLIENT, str(server.path), "status", "start", "pause")
    results = json.loads(output)

    assert results["status"] == {"ok": True, "answered": "status"}
    for command in ("start", "pause"):
        assert results[command]["ok"] is False
        assert results[command]["code"] == "not_authorized"
    assert results["subscribe"] == {"event": "status", "active": True}
    [(request, peer)] = handler.calls
    assert request["cmd"] == "status"
    assert (peer.uid, peer.gid) == (NOBODY, NOBODY)


def test_unprivileged_user_cannot_take_every_connection(
    make_server: Callable[..., ControlServer], shared_dir: Path
) -> None:
    server = make_server(shared_dir / "c.sock", max_connections_per_uid=3)

    reply = json.loads(run_as_nobody(UNPRIVILEGED_HOG, str(server.path), "3"))

    assert reply["code"] == "busy"
    assert ControlClient(server.path).request("status")["ok"] is True


# --- subscriptions -----------------------------------------------------------------------


def test_subscriber_receives_published_events_in_order(server: ControlServer) -> None:
    with ControlClient(server.path).subscribe(timeout=5) as events:
        for number in range(200):
            server.publish({"event": "tick", "n": number})
        received = [next(events) for _ in range(200)]
    assert received == [{"event": "tick", "n": number} for number in range(200)]


def test_subscription_starts_with_the_snapshot(make_server: Callable[..., ControlServer]) -> None:
    state = {"active": False}
    server = make_server(snapshot=lambda: dict(state))
    state["active"] = True  # the snapshot is taken at subscription, not at start

    with ControlClient(server.path).subscribe(timeout=5) as events:
        server.publish({"event": "ended"})
        assert next(events) == {"event": "status", "active": True}
        assert next(events) == {"event": "ended"}


def test_a_quiet_subscriber_gets_the_snapshot_again(make_server: Callable[..., ControlServer]) -> None:
    """The heartbeat: a status that stopped changing still arrives, with its age (a stuck loop
    shows in the tray as a stale status instead of the last one heard)."""
    state = {"seen": 0}

    def snapshot() -> dict[str, Any]:
        state["seen"] += 1
        return {"event": "status", "n": state["seen"]}

    server = make_server(snapshot=snapshot, heartbeat_seconds=0.05)
    with ControlClient(server.path).subscribe(timeout=5) as events:
        assert [next(events)["n"] for _ in range(3)] == [1, 2, 3]


def test_no_heartbeat_unless_asked(make_server: Callable[..., ControlServer]) -> None:
    server = make_server(snapshot=lambda: {"event": "status"})
    with ControlClient(server.path).subscribe(timeout=5) as events:
        assert next(events) == {"event": "status"}
        server.publish({"event": "ended"})
        assert next(events) == {"event": "ended"}  # nothing in between


def test_a_pushed_snapshot_arrives_at_once_not_at_the_next_heartbeat(
    make_server: Callable[..., ControlServer],
) -> None:
    """Issue 26: the keepalive is rare (once a minute in the daemon); a status that goes stale is
    pushed as an event instead of waiting for it."""
    state = {"seen": 0}

    def snapshot() -> dict[str, Any]:
        state["seen"] += 1
        return {"event": "status", "n": state["seen"]}

    server = make_server(snapshot=snapshot, heartbeat_seconds=3600)
    with ControlClient(server.path).subscribe(timeout=30) as events:
        assert next(events)["n"] == 1
        server.push_snapshot()
        assert next(events)["n"] == 2
        server.publish({"event": "tamper"})
        assert next(events) == {"event": "tamper"}
        assert server.subscriber_uids == frozenset({os.getuid()})
    wait_until(lambda: server.subscriber_count == 0)
    assert server.subscriber_uids == frozenset()


def test_subscribe_needs_no_privilege_and_bypasses_the_handler(
    server: ControlServer, handler: RecordingHandler
) -> None:
    with ControlClient(server.path).subscribe(timeout=5):
        wait_until(lambda: server.subscriber_count == 1)
    assert handler.calls == []


def test_subscriber_that_never_reads_does_not_block_publish(
    make_server: Callable[..., ControlServer],
) -> None:
    server = make_server(subscriber_queue_size=8, send_timeout=0.5)
    with connect(server.path) as stalled:
        stalled.sendall(b'{"cmd": "subscribe"}\n')
        wait_until(lambda: server.subscriber_count == 1)

        def publish_many() -> None:
            for _ in range(2000):
                server.publish({"event": "e", "p": "x" * 4096})

        publisher = threading.Thread(target=publish_many)
        publisher.start()
        publisher.join(timeout=60)
        assert not publisher.is_alive(), "publish blocked on a subscriber that never reads"

        wait_until(lambda: server.subscriber_count == 0)
        with stalled.makefile("rb") as reader:
            lines = reader.readlines()  # what got through, then the end of the stream
        assert 1 <= len(lines) < 2001

    with ControlClient(server.path).subscribe(timeout=5) as events:
        server.publish({"event": "after"})
        assert next(events) == {"event": "after"}


def test_subscriber_that_hangs_up_is_forgotten(server: ControlServer) -> None:
    events = ControlClient(server.path).subscribe(timeout=5)
    wait_until(lambda: server.subscriber_count == 1)
    events.close()
    wait_until(lambda: server.subscriber_count == 0 and server.connection_count == 0)


def test_publish_rejects_an_event_without_a_name(server: ControlServer) -> None:
    with pytest.raises(ValueError):
        server.publish({"n": 1})


# --- lifecycle ---------------------------------------------------------------------------


def test_socket_and_created_directory_have_explicit_modes(
    make_server: Callable[..., ControlServer], tmp_path: Path
) -> None:
    path = tmp_path / "run" / "detoxd" / "c.sock"
    old_umask = os.umask(0o077)
    try:
        make_server(path)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o666


def test_stale_socket_file_is_replaced(
    make_server: Callable[..., ControlServer], socket_path: Path
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path))  # closed without unlinking, as after a crash
    with pytest.raises(DaemonUnreachable):
        ControlClient(socket_path).request("status")

    make_server()
    assert ControlClient(socket_path).request("status")["ok"] is True


def test_second_server_refuses_while_the_first_is_live(
    server: ControlServer, handler: RecordingHandler
) -> None:
    second = ControlServer(server.path, handler)
    with pytest.raises(AlreadyRunning):
        second.start()

    assert ControlClient(server.path).request("status")["ok"] is True


def test_refuses_to_replace_something_that_is_not_a_socket(
    socket_path: Path, handler: RecordingHandler
) -> None:
    socket_path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        ControlServer(socket_path, handler).start()
    assert socket_path.read_text() == "not a socket"


def test_close_ends_subscriptions_and_removes_the_socket(
    make_server: Callable[..., ControlServer], socket_path: Path
) -> None:
    server = make_server()
    events = ControlClient(socket_path).subscribe(timeout=5)
    wait_until(lambda: server.subscriber_count == 1)

    server.close()

    assert list(events) == []
    assert not socket_path.exists()
    with pytest.raises(DaemonUnreachable):
        ControlClient(socket_path).request("status")


def test_is_alive_from_start_until_close(socket_path: Path, handler: RecordingHandler) -> None:
    server = ControlServer(socket_path, handler)
    assert not server.is_alive()
    server.start()
    assert server.is_alive()
    server.close()
    assert not server.is_alive()


def test_close_leaves_a_newer_servers_socket_alone(
    make_server: Callable[..., ControlServer], socket_path: Path
) -> None:
    old = make_server()
    socket_path.unlink()  # e.g. an admin cleaned up /run by hand
    make_server()

    old.close()

    assert ControlClient(socket_path).request("status")["ok"] is True


# --- client errors -----------------------------------------------------------------------


def test_client_reports_a_missing_socket(socket_path: Path) -> None:
    with pytest.raises(DaemonUnreachable):
        ControlClient(socket_path).request("status")
    with pytest.raises(DaemonUnreachable):
        ControlClient(socket_path).subscribe()


def test_client_times_out_on_a_server_that_never_answers(socket_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(socket_path))
        mute.listen(1)  # connections queue up but are never accepted
        with pytest.raises(DaemonUnreachable):
            ControlClient(socket_path).request("status", timeout=0.2)


def test_subscription_wait_is_bounded_by_its_timeout(server: ControlServer) -> None:
    with (
        ControlClient(server.path).subscribe(timeout=0.2) as events,
        pytest.raises(DaemonUnreachable),
    ):
        next(events)

"""sd_notify against real AF_UNIX datagram sockets owned by the test (the role systemd plays)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from detoxd.service.sdnotify import Notifier


def receive(sock: socket.socket) -> dict[str, str]:
    """One datagram as systemd parses it: KEY=value lines."""
    sock.settimeout(5)
    datagram = sock.recv(4096).decode()
    assert datagram.endswith("\n")
    return dict(line.split("=", 1) for line in datagram.splitlines())


def assert_nothing_received(sock: socket.socket) -> None:
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


@pytest.fixture
def manager_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket at a file-system path, plus the NOTIFY_SOCKET value naming it."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield sock, str(path)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"detoxd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield sock, "@" + name


def test_ready_with_status(manager_socket: tuple[socket.socket, str]) -> None:
    sock, address = manager_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.ready(status="enforcing 42 domains")
    assert receive(sock) == {"READY": "1", "STATUS": "enforcing 42 domains"}


def test_ready_over_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    assert Notifier.from_environment({"NOTIFY_SOCKET": address}).ready()
    assert receive(sock) == {"READY": "1"}


def test_reloading_carries_current_monotonic_time(
    manager_socket: tuple[socket.socket, str],
) -> None:
    sock, address = manager_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = receive(sock)
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_stopping_and_status(manager_socket: tuple[socket.socket, str]) -> None:
    sock, address = manager_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.status("detox ends in 13 days")
    assert receive(sock) == {"STATUS": "detox ends in 13 days"}
    assert notifier.stopping()
    assert receive(sock) == {"STOPPING": "1"}


def test_watchdog_for_this_process(manager_socket: tuple[socket.socket, str]) -> None:
    sock, address = manager_socket
    notifier = Notifier.from_environment(
        {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.watchdog_interval() == 15.0
    assert notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}


def test_watchdog_meant_for_another_process_is_ignored(
    manager_socket: tuple[socket.socket, str],
) -> None:
    sock, address = manager_socket
    notifier = Notifier.from_environment(
        {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval() is None
    assert not notifier.watchdog()
    assert_nothing_received(sock)


def test_without_watchdog_usec_there_is_no_interval(
    manager_socket: tuple[socket.socket, str],
) -> None:
    sock, address = manager_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.watchdog_interval() is None
    assert not notifier.watchdog()
    assert_nothing_received(sock)


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    assert not notifier.ready()
    assert not notifier.reloading()
    assert not notifier.stopping()
    assert not notifier.status("x")
    assert not notifier.watchdog()


def test_unreachable_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()


def test_daemon_process_notifies_from_the_real_environment(
    manager_socket: tuple[socket.socket, str],
) -> None:
    """As under systemd: the variables arrive in the environment of a separate process."""
    sock, address = manager_socket
    code = (
        "from detoxd.service.sdnotify import Notifier\n"
        "n = Notifier.from_environment()\n"
        "assert n.ready(status='up') and n.watchdog()\n"
        "print(n.watchdog_interval())\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "2.0"
    assert receive(sock) == {"READY": "1", "STATUS": "up"}
    assert receive(sock) == {"WATCHDOG": "1"}

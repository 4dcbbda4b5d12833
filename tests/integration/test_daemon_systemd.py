"""The daemon speaks sd_notify to a real AF_UNIX datagram socket that the test owns, as systemd's
would be (systemd itself is never booted here), and logs with journald priorities."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DetoxdEnv, wait_for


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def messages_until(sock: socket.socket, wanted: str, timeout: float = 20.0) -> list[dict[str, str]]:
    """Every datagram received until one holds ``wanted`` (e.g. "READY=1")."""
    received: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            datagram = sock.recv(4096).decode()
        except TimeoutError:
            continue
        fields = dict(line.split("=", 1) for line in datagram.splitlines() if "=" in line)
        received.append(fields)
        key, value = wanted.split("=", 1)
        if fields.get(key) == value:
            return received
    raise AssertionError(f"no {wanted} within {timeout}s; got {received}")


def test_ready_reloading_watchdog_and_stopping(detoxd_env: DetoxdEnv, notify_socket: socket.socket) -> None:
    detoxd_env.extra_env.update({
        "NOTIFY_SOCKET": notify_socket.getsockname(),
        "WATCHDOG_USEC": "2000000",  # WatchdogSec=2: a ping about every second
    })
    detoxd_env.start_daemon()
    ready = messages_until(notify_socket, "READY=1")[-1]
    assert ready["STATUS"] == "idle"

    messages_until(notify_socket, "WATCHDOG=1", timeout=5)

    assert detoxd_env.cli("reload").returncode == 0
    reload_messages = messages_until(notify_socket, "READY=1")
    reloading = next(m for m in reload_messages if m.get("RELOADING") == "1")
    assert int(reloading["MONOTONIC_USEC"]) > 0

    detoxd_env.stop_daemon()
    messages_until(notify_socket, "STOPPING=1", timeout=5)


def test_journald_priorities_when_started_by_systemd(detoxd_env: DetoxdEnv) -> None:
    # JOURNAL_STREAM names the device:inode of the stream on stderr: the log file here.
    log = detoxd_env.root / "daemon.log"
    log.touch()
    info = log.stat()
    detoxd_env.extra_env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
    detoxd_env.write_blocklist("domains: ['bad..name']\n")
    detoxd_env.start_daemon()
    # "running" is logged just after the socket starts answering: wait for it.
    wait_for(lambda: any(line.startswith("<6>") and "running" in line
                         for line in detoxd_env.log().splitlines()), what="the start-up line")
    assert any(line.startswith("<3>") and "config invalid" in line for line in detoxd_env.log().splitlines())

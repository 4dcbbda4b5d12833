"""The daemon speaks sd_notify to a real AF_UNIX datagram socket that the test owns, as systemd's
would be (systemd itself is never booted here), and logs with journald priorities."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import USER_HOSTS, DetoxdEnv, wait_for
from fourplaces import can_run_doctor, doctor, doctor_check, events, tray_text
from test_daemon import blocked
from threadstop import daemon_answers, main_thread_stopped


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def messages_until(sock: socket.socket, wanted: str, timeout: float = 20.0) -> list[dict[str, str]]:
    """Every datagram received until one holds ``wanted`` (e.g. "READY=1")."""
    key, value = wanted.split("=", 1)
    return datagrams_until(sock, lambda fields: fields.get(key) == value, timeout)


def datagrams_until(sock: socket.socket, predicate: Callable[[dict[str, str]], bool],
                    timeout: float = 30.0) -> list[dict[str, str]]:
    """Every datagram received until one satisfies ``predicate``."""
    received: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            received.append(_fields(sock.recv(4096)))
        except TimeoutError:
            continue
        if predicate(received[-1]):
            return received
    raise AssertionError(f"no wanted datagram within {timeout}s; got {received}")


def drain(sock: socket.socket) -> list[dict[str, str]]:
    """The datagrams waiting now."""
    received = []
    with contextlib.suppress(TimeoutError):
        while True:
            received.append(_fields(sock.recv(4096)))
    return received


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines() if "=" in line)


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


class FreezeAndThaw:
    """Issue 21's attack on the watchdog: stop the daemon, take the block out of the hosts file,
    let the daemon run for 15 ms, stop it again. Before, its threads lived, so it pinged on, while
    the change it saw never got to settle: the block stayed out and systemd never restarted it."""

    def __init__(self, env: DetoxdEnv, stopped: float = 0.5, running: float = 0.015) -> None:
        assert env.process is not None
        self.pid, self.hosts = env.process.pid, env.hosts
        self.stopped, self.running = stopped, running
        self.cycles = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FreezeAndThaw:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            while not self._done.is_set():
                os.kill(self.pid, signal.SIGSTOP)
                self.hosts.write_bytes(USER_HOSTS)  # in place: the block is out
                self._done.wait(self.stopped)
                os.kill(self.pid, signal.SIGCONT)
                time.sleep(self.running)  # the attack's duty cycle, not a wait for an outcome
                self.cycles += 1
        finally:
            os.kill(self.pid, signal.SIGCONT)

    def wait_cycles(self, count: int) -> None:
        target = self.cycles + count
        wait_for(lambda: self.cycles >= target, timeout=60, what=f"{count} freeze/thaw cycles")



def test_the_watchdog_is_fed_only_while_the_daemon_guards(
        detoxd_env: DetoxdEnv, notify_socket: socket.socket) -> None:
    """The socket stands in for systemd's notify socket (sd_notify(3): one datagram of KEY=value
    lines per message): systemd itself is not booted here, so the test reads what it would."""
    detoxd_env.extra_env.update({"NOTIFY_SOCKET": notify_socket.getsockname(),
                                 "WATCHDOG_USEC": "4000000"})  # WatchdogSec=4: a ping every 2 s
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    messages_until(notify_socket, "WATCHDOG=1", timeout=10)

    with FreezeAndThaw(detoxd_env) as attack:
        datagrams_until(notify_socket, lambda m: "not feeding systemd's watchdog" in m.get("STATUS", ""))
        drain(notify_socket)
        attack.wait_cycles(12)  # 6 s: three pings' worth, had it pinged on
        assert not [m for m in drain(notify_socket) if m.get("WATCHDOG") == "1"]
        # Loud meanwhile: status (asked in the moments the daemon runs), tray, journal, doctor.
        status = detoxd_env.status()
        assert status["hosts_in_sync"] is False
        assert any("watchdog is not fed" in p or "last verified" in p for p in status["problems"])
        assert "Problem: " in tray_text(status)
        assert events(detoxd_env, "watchdog_withheld")
        if can_run_doctor() and os.geteuid() == 0:
            assert doctor_check(doctor(detoxd_env), "detox")["level"] == "FAIL"

    datagrams_until(notify_socket, lambda m: m.get("WATCHDOG") == "1")  # fed again
    assert blocked(detoxd_env.hosts, "twitter.com")
    status = wait_for(lambda: (s := detoxd_env.status())["hosts_in_sync"] and s, what="in sync")
    assert status["problems"] == []
    assert events(detoxd_env, "watchdog_resumed")


def test_the_watchdog_is_not_fed_while_the_main_loop_is_stuck(
        detoxd_env: DetoxdEnv, notify_socket: socket.socket) -> None:
    """The main thread alone held (ptrace-stop, see threadstop): the control threads live, the
    loop cannot verify anything, and no WATCHDOG=1 comes until it runs again."""
    if os.geteuid() != 0:
        pytest.skip("ptrace of the daemon's thread needs root here")
    detoxd_env.extra_env.update({"NOTIFY_SOCKET": notify_socket.getsockname(),
                                 "WATCHDOG_USEC": "2000000"})
    detoxd_env.start_daemon()
    messages_until(notify_socket, "WATCHDOG=1", timeout=10)
    assert detoxd_env.process is not None
    with main_thread_stopped(detoxd_env.process.pid, daemon_answers(detoxd_env.socket)):
        drain(notify_socket)
        wait_for(lambda: detoxd_env.status()["stale"], what="a stale status")
        wait_for(lambda: detoxd_env.status()["snapshot_age_seconds"] > 4, what="two pings' worth")
        assert not [m for m in drain(notify_socket) if m.get("WATCHDOG") == "1"]
    messages_until(notify_socket, "WATCHDOG=1", timeout=10)

"""The exec watcher's reading of the kernel's process events (it closes nothing itself: the
daemon does, see tests/integration/test_apps_exec_events.py)."""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from detoxd.service import execwatch
from tests.pidns import NOT_INITIAL_REASON, in_initial_pid_namespace


def event(what: int, pid: int, tgid: int) -> bytes:
    body = struct.pack("=IIQII", what, 0, 123, pid, tgid)
    cn = struct.pack("=IIIIHH", execwatch.CN_IDX_PROC, execwatch.CN_VAL_PROC, 0, 0, len(body), 0) + body
    return struct.pack("=IHHII", 16 + len(cn), execwatch.NLMSG_DONE, 0, 0, 0) + cn


def test_exec_events_give_their_process_ids_and_nothing_else() -> None:
    fork = 0x00000001
    datagram = event(execwatch.PROC_EVENT_EXEC, 41, 40) + event(fork, 50, 50) + event(
        execwatch.PROC_EVENT_EXEC, 60, 60)
    assert execwatch.exec_pids(datagram) == [40, 60]
    assert execwatch.exec_pids(datagram[:-3]) == [40]  # a cut message is not read
    assert execwatch.exec_pids(b"") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the process connector needs CAP_NET_ADMIN")
@pytest.mark.skipif(not in_initial_pid_namespace(), reason=NOT_INITIAL_REASON)
def test_the_kernel_tells_of_an_exec_here() -> None:
    try:
        sock = execwatch.open_connector()
    except execwatch.EventsUnavailable as error:
        pytest.fail(f"this machine's kernel offers process events to root: {error}")
    with sock:
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        seen: list[int] = []
        while child.pid not in seen:
            assert select.select([sock], [], [], 10)[0], "no exec event within 10 s"
            seen.extend(execwatch.exec_pids(sock.recv(65536)))


@pytest.mark.skipif(os.geteuid() != 0, reason="the process connector needs CAP_NET_ADMIN")
@pytest.mark.skipif(not in_initial_pid_namespace(), reason=NOT_INITIAL_REASON)
def test_only_exec_events_wake_the_watcher() -> None:
    """The kernel's filter drops forks and exits before they reach the socket: a process that
    forks ten times and then execs a marker wakes the watcher with exec events only."""
    with execwatch.open_connector() as sock:
        forks = ("import os\nfor _ in range(10):\n    pid = os.fork()\n    if pid == 0: os._exit(0)\n"
                 "    os.waitpid(pid, 0)\nos.execv('/bin/true', ['true'])\n")
        child = subprocess.Popen([sys.executable, "-c", forks])
        child.wait()
        seen: list[int] = []
        while child.pid not in seen:
            assert select.select([sock], [], [], 10)[0], "no exec event within 10 s"
            datagram = sock.recv(65536)
            found = execwatch.exec_pids(datagram)
            assert found, f"a datagram without an exec event passed the filter: {datagram.hex()}"
            seen.extend(found)


class RecordingDaemon:
    """Stands in for the daemon's control socket: records each `exec_events` request."""

    path = "/nonexistent/control.sock"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.renewed = threading.Event()

    def request(self, command: str, **fields: Any) -> dict[str, Any]:
        assert command == "exec_events"
        self.requests.append(fields)
        if len(self.requests) > 1 and not fields["pids"]:
            self.renewed.set()  # a keepalive after the first word
        return {"ok": True}


def test_execs_the_daemon_cannot_see_do_not_put_off_its_keepalive() -> None:
    """On a laptop most execs are not the daemon's to close (system users, other namespaces):
    they reach the watcher but must not postpone the keepalive, or the daemon's lease ran out
    and it fell back to polling on a busy machine."""
    daemon = RecordingDaemon()
    watcher = execwatch.ExecWatcher(daemon, keepalive_seconds=0.2)  # type: ignore[arg-type]
    watcher.scope = execwatch.Scope.of(os.getpid())
    kernel, listener = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    no_such_pid = 4_194_305  # above any pid_max: nobody's, so not the daemon's
    loop = threading.Thread(target=watcher._loop, args=(listener,), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not daemon.renewed.is_set() and time.monotonic() < deadline:
            kernel.send(event(execwatch.PROC_EVENT_EXEC, no_such_pid, no_such_pid))
            daemon.renewed.wait(0.02)  # an exec every 20 ms, far more often than the keepalive
        assert daemon.renewed.is_set(), f"no keepalive while execs went on: {daemon.requests}"
        assert all(not request["pids"] for request in daemon.requests)
    finally:
        watcher.stop()
        loop.join(timeout=10)
        kernel.close()
        listener.close()

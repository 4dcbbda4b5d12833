"""Issue 21, bullets 1 and 9 on the real daemon: the block holds by its effect.

Bullet 1: a line of one's own that gives a blocked name another address (above detoxd's block,
below it, or as an alias on another line; glibc takes the first match) is commented out by the
daemon, every byte kept, counted as a tamper and journalled; while it is present (the daemon's
main thread held by the test) status, doctor and the tray say so; at the end of the detox the
user's bytes come back exactly, also after a kill -9 and a restart in between. Resolution is
checked with getaddrinfo (``getent ahosts``) inside ``unshare -m`` with the test's hosts file.

Bullet 9: a tamper that lands while the config is reloaded is counted. Provoked without timing:
the daemon's main thread is stopped, the block is removed and the blocklist changed, and the
reload runs on the control thread (`detoxd reload`) before the main thread ever reads the
tamper's inotify events. Before the fix the reload's write swallowed it (0 counted).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest
import threadstop
from conftest import USER_HOSTS, DetoxdEnv, wait_for
from fourplaces import can_run_doctor, doctor_check, machine_root, run_doctor, tray_text
from guardkit import NEEDS_ROOT_AND_UNSHARE, addresses, blocked, journal_events
from threadstop import daemon_answers

from detoxd.core.hosts import NEUTRALISED_MARKER

pytestmark = [NEEDS_ROOT_AND_UNSHARE, pytest.mark.skipif(not can_run_doctor(), reason="needs unshare")]

UNLOCKED = "detox:\n  days: 14\n  lock: false\n"
ATTACKS = {
    "above the block": ("104.244.42.1 twitter.com", "above"),
    "below the block": ("104.244.42.1 twitter.com", "below"),
    "an alias on another line": ("192.168.1.10 nas.home nas twitter.com", "alias"),
}


@contextlib.contextmanager
def main_thread_stopped(env: DetoxdEnv) -> Iterator[None]:
    """The daemon's main thread stopped where it does not hold the engine's lock (status is then
    answered live, not from a snapshot: the control thread got the lock at once)."""
    assert env.process is not None
    answers = daemon_answers(env.socket)

    def answered_live() -> bool:  # not while the stopped thread holds the GIL or the lock
        return answers() and "snapshot_age_seconds" not in env.status()
    with threadstop.main_thread_stopped(env.process.pid, answered_live):
        yield


def attacked(hosts_with_block: bytes, line: str, where: str) -> bytes:
    if where == "above":
        return line.encode() + b"\n" + hosts_with_block
    if where == "below":
        return hosts_with_block + line.encode() + b"\n"
    return hosts_with_block.replace(b"192.168.1.10 nas.home nas\n", line.encode() + b"\n", 1)


def original(line: str, where: str) -> bytes:
    """The user's hosts file with the attack, as it must come back at the end of the detox."""
    return attacked(USER_HOSTS, line, where)


@pytest.fixture
def detox(detoxd_env: DetoxdEnv) -> DetoxdEnv:
    detoxd_env.write_main(UNLOCKED)
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    assert blocked(detoxd_env.hosts, "twitter.com")
    return detoxd_env


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_line_overriding_a_blocked_name_is_neutralised_counted_loud_and_given_back_exactly(
        detox: DetoxdEnv, attack: str) -> None:
    line, where = ATTACKS[attack]
    hosts = detox.hosts
    root = machine_root(detox)

    with main_thread_stopped(detox):
        hosts.write_bytes(attacked(hosts.read_bytes(), line, where))
        # getaddrinfo gathers every matching line: the real address is among its answers.
        assert line.split()[0] in addresses(hosts, "twitter.com")
        status = detox.status()
        assert status["hosts_in_sync"] is False
        assert [found["names"] for found in status["hosts_overrides"]] == [["twitter.com"]]
        [problem] = [p for p in status["problems"] if "gives a blocked name another address" in p]
        assert problem.startswith("1 line of ")
        assert line in problem
        assert line in tray_text(status)  # the tray draws its lines from this status
        assert line in detox.cli("status").stdout
        code, report = run_doctor(detox, root)
        assert code == 1
        check = doctor_check(report, "hosts overrides")
        assert check["level"] == "FAIL" and "twitter.com" in check["message"] and check["fix"]

    [event] = wait_for(lambda: journal_events(detox, "hosts_line_neutralised"), what="the journal event")
    assert event["line"] == line and event["names"] == ["twitter.com"]
    status = wait_for(lambda: (s := detox.status())["hosts_in_sync"] and s, what="in sync again")
    assert status["tamper_events"] == 1 and status["problems"] == [] and status["hosts_overrides"] == []
    assert line in journal_events(detox, "tamper")[-1]["restored"]
    assert NEUTRALISED_MARKER + line.encode() + b"\n" in hosts.read_bytes()
    assert blocked(hosts, "twitter.com")  # as applications resolve it
    assert doctor_check(run_doctor(detox, root)[1], "hosts overrides")["level"] == "ok"

    # The user takes the marker off again: neutralised again, and counted.
    hosts.write_bytes(hosts.read_bytes().replace(NEUTRALISED_MARKER, b"", 1))
    wait_for(lambda: len(journal_events(detox, "hosts_line_neutralised")) == 2, what="neutralised again")
    assert wait_for(lambda: (s := detox.status())["hosts_in_sync"] and s)["tamper_events"] == 2
    assert blocked(hosts, "twitter.com")

    # A kill -9 and a restart keep the line; the end of the detox gives back every byte.
    assert detox.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    detox.start_daemon()
    assert blocked(hosts, "twitter.com")
    assert detox.cli("end").returncode == 0
    wait_for(lambda: hosts.read_bytes() == original(line, where), what="the user's bytes back")
    assert NEUTRALISED_MARKER not in hosts.read_bytes()


def test_a_tamper_landing_during_a_config_reload_is_counted(detox: DetoxdEnv) -> None:
    hosts = detox.hosts
    with main_thread_stopped(detox):
        hosts.write_bytes(USER_HOSTS)  # the block removed; the main thread sees nothing of it
        detox.write_blocklist("domains:\n  - twitter.com\n  - facebook.com\n  - x.com\n")
        assert detox.cli("reload").returncode == 0  # on the control thread, before any settle
        assert blocked(hosts, "x.com") and blocked(hosts, "twitter.com")
        status = detox.status()
        assert status["tamper_events"] == 1
        assert [event["target"] for event in journal_events(detox, "tamper")] == ["hosts file"]
    # The main thread then reads the events of the tamper and of the reload's write: nothing
    # more is counted. A second tamper, read after them, shows when they have been handled.
    hosts.write_bytes(USER_HOSTS)
    wait_for(lambda: len(journal_events(detox, "tamper")) >= 2, what="the second tamper")
    assert wait_for(lambda: (s := detox.status())["hosts_in_sync"] and s)["tamper_events"] == 2

"""Issue 21, bullet 2 on the real daemon: a writer in a loop cannot keep the block out.

The attack from the issue, on the test's own scratch hosts file: ``while :; do : > /etc/hosts;
sleep 0.4; done`` (and every 20 ms, and with no pause at all) used to keep the block out for as
long as it ran, with ``hosts_in_sync: true`` and no tamper counted. Here every truncate is undone
and counted (status ``tamper_events``, a ``tamper`` event in the journal each), the block comes
back as getaddrinfo sees it, and while the file is not as it should be that shows in status, the
CLI, the tray's lines and doctor. How fast, and the share of time the block is present under
each loop, is benchmarks/guard_restore.py's business: nothing here is timed.

The writer is the test's own thread on the test's own file.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import DetoxdEnv, wait_for
from fourplaces import can_run_doctor, doctor, doctor_check, tray_text
from guardkit import NEEDS_ROOT_AND_UNSHARE, blocked, journal_events

pytestmark = NEEDS_ROOT_AND_UNSHARE

BEGIN = b"# BEGIN detoxd block"


def truncate(env: DetoxdEnv) -> None:
    """`: > hosts`: open with O_TRUNC, close."""
    os.close(os.open(env.hosts, os.O_WRONLY | os.O_TRUNC))


def started(env: DetoxdEnv) -> bytes:
    """A running, locked detox; its block as the daemon wrote it."""
    env.start_daemon()
    assert env.cli("start").returncode == 0
    content = env.hosts.read_bytes()
    assert blocked(env.hosts, "twitter.com")
    return content[content.index(BEGIN):]


def block_in(env: DetoxdEnv, block: bytes) -> bool:
    return block in env.hosts.read_bytes()


def tampers(env: DetoxdEnv) -> int:
    return int(env.status()["tamper_events"])


@pytest.mark.parametrize("period", [0.02, 0.4])
def test_each_truncate_of_a_loop_is_undone_and_counted(detoxd_env: DetoxdEnv, period: float) -> None:
    """The loop's pace is the attacker's (a truncate every ``period``); before each truncate the
    test waits for the block to be back (an event: the file read until it holds the block)."""
    block = started(detoxd_env)
    before, journalled = tampers(detoxd_env), len(journal_events(detoxd_env, "tamper"))
    rounds = 12
    next_at = time.monotonic()
    for _ in range(rounds):
        wait_for(lambda: block_in(detoxd_env, block), timeout=30, what="the block back")
        time.sleep(max(0.0, next_at - time.monotonic()))  # the loop's pace, not a wait for the daemon
        next_at = time.monotonic() + period
        truncate(detoxd_env)
    wait_for(lambda: block_in(detoxd_env, block), timeout=30, what="the block back after the loop")
    assert blocked(detoxd_env.hosts, "twitter.com") and blocked(detoxd_env.hosts, "facebook.com")
    # Every interruption counted: in status and in the journal (one event each).
    assert wait_for(lambda: tampers(detoxd_env) - before == rounds, timeout=30, what="every tamper counted")
    events = journal_events(detoxd_env, "tamper")[journalled:]
    assert len(events) == rounds and all(event["target"] == "hosts file" for event in events)
    status = wait_for(lambda: (s := detoxd_env.status())["hosts_in_sync"] and s, what="in sync")
    assert status["problems"] == [] and status["stale"] is False
    assert detoxd_env.hosts.read_bytes() == block  # the writer emptied it; nothing but the block


def test_a_writer_that_never_pauses_cannot_keep_the_block_out_and_it_shows_everywhere(
        detoxd_env: DetoxdEnv) -> None:
    block = started(detoxd_env)
    before, journalled = tampers(detoxd_env), len(journal_events(detoxd_env, "tamper"))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            truncate(detoxd_env)

    writer = threading.Thread(target=loop)
    writer.start()
    try:
        # Restores happen while it runs, each counted (before the cap: none at all, 0 tampers).
        wait_for(lambda: tampers(detoxd_env) - before >= 5, timeout=60, what="restores under the loop")
        assert len(journal_events(detoxd_env, "tamper")) - journalled >= 5
        # While it runs, the file is out of sync much of the time, and every place says so
        # when it looks at such a moment (waited for, not timed).
        status = wait_for(lambda: (s := detoxd_env.status())["hosts_in_sync"] is False and s,
                          timeout=60, what="hosts_in_sync false under the loop")
        assert "hosts file out of sync" in tray_text(status), tray_text(status)
        wait_for(lambda: "(OUT OF SYNC)" in detoxd_env.cli("status").stdout, timeout=60,
                 what="the CLI saying so")
        if can_run_doctor():
            wait_for(lambda: doctor_check(doctor(detoxd_env), "hosts block")["level"] == "FAIL",
                     timeout=180, what="doctor failing the hosts block")
        # Restores go on under the same writer: it never keeps the block out for good.
        resumed = tampers(detoxd_env)
        wait_for(lambda: tampers(detoxd_env) > resumed, timeout=60, what="more restores")
    finally:
        stop.set()
        writer.join(timeout=30)
    wait_for(lambda: block_in(detoxd_env, block), timeout=30, what="the block back after the loop")
    status = wait_for(lambda: (s := detoxd_env.status())["hosts_in_sync"] and s["problems"] == [] and s,
                      timeout=30, what="in sync, no problems")
    assert status["stale"] is False and status["tamper_events"] - before >= 6
    assert blocked(detoxd_env.hosts, "twitter.com")
    assert "(in sync)" in detoxd_env.cli("status").stdout
    if can_run_doctor():
        assert doctor_check(doctor(detoxd_env), "hosts block")["level"] == "ok"

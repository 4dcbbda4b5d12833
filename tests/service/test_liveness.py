"""The watchdog's decision (detoxd.service.liveness): fed only while the daemon guards."""

from __future__ import annotations

from datetime import UTC, datetime

from detoxd.clock import FakeClock
from detoxd.service.engine import QUIET_SECONDS
from detoxd.service.liveness import (
    LATE_SECONDS,
    VERIFIED_WITHIN_SECONDS,
    HeldUp,
    SuspendWatch,
    not_guarding,
)


def test_a_loop_that_wakes_when_it_asked_is_never_held_up() -> None:
    held = HeldUp(window=10.0)
    for tick in range(100):
        held.woke(asked=tick * 0.2, woke=tick * 0.2 + LATE_SECONDS / 2)  # a busy machine's delay
    assert held.seconds(now=20.0) == 0.0


def test_stops_count_within_the_window_only() -> None:
    held = HeldUp(window=10.0)
    held.woke(asked=0.0, woke=20.0)  # stopped 20 s (SIGSTOP), continued
    assert held.seconds(now=20.0) == 10.0  # clipped to the window
    assert held.seconds(now=25.0) == 5.0
    assert held.seconds(now=31.0) == 0.0
    for cycle in range(20):  # stopped 0.5 s of every 0.52 s
        start = 40.0 + cycle * 0.52
        held.woke(asked=start, woke=start + 0.5)
    assert held.seconds(now=40.0 + 20 * 0.52) > 9.0


def test_fed_only_while_verified_lately_and_not_held_up() -> None:
    # The default window is VERIFIED_WITHIN_SECONDS (40 s: two idle checks, QUIET_SECONDS apart).
    assert not_guarding(100.0, checked_at=85.0, held_up=0.0) is None
    assert not_guarding(100.0, checked_at=None, held_up=0.0) == "the hosts file was last verified never"
    assert not_guarding(100.0, checked_at=50.0, held_up=0.0) == "the hosts file was last verified 50 s ago"
    reason = not_guarding(100.0, checked_at=99.9, held_up=4.0, window=10.0)  # restored at each thaw
    assert reason is not None and "held up (stopped and continued?) for 4 s of the last 10 s" in reason
    assert not_guarding(100.0, checked_at=99.0, held_up=2.0, window=10.0) is None
    assert not_guarding(100.0, checked_at=97.0, held_up=0.0, window=2.0) is not None  # WatchdogSec=2


def test_the_window_outlasts_two_idle_checks() -> None:
    """Issue 26: idle, the loop checks the hosts file every QUIET_SECONDS, not every second."""
    assert VERIFIED_WITHIN_SECONDS >= 2 * QUIET_SECONDS
    assert not_guarding(100.0, checked_at=100.0 - 2 * QUIET_SECONDS, held_up=0.0) is None


def test_a_suspend_is_told_once_and_a_busy_or_frozen_loop_is_not_a_suspend() -> None:
    """A real suspend cannot be made on a test machine: the clocks are injected (FakeClock's
    ``suspend`` moves wall time and CLOCK_BOOTTIME, not CLOCK_MONOTONIC, as the kernel does)."""
    clock = FakeClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    watch = SuspendWatch(clock, threshold=1.0)
    clock.advance(600.0)  # ten minutes running, or frozen by SIGSTOP: monotonic time passed too
    assert watch.slept() == 0.0
    clock.suspend(3600.0)  # the lid closed for an hour
    assert watch.slept() == 3600.0
    assert watch.slept() == 0.0  # told once
    clock.suspend(0.5)  # below the threshold: a clock's jitter, not a suspend
    assert watch.slept() == 0.0
    clock.reboot(60.0, "boot-2")
    assert SuspendWatch(clock, threshold=1.0).slept() == 0.0

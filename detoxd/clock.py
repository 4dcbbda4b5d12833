"""The one place that reads time for detoxd's decisions.

Everything that decides (the engine, the guard's settle deadlines, the tray's view) receives a
:class:`Clock`, so that 14-day and 7-day logic is tested in milliseconds with :class:`FakeClock`
instead of sleeping. Deliberately outside it, and only there:

- socket deadlines in :mod:`detoxd.protocol`, :mod:`detoxd.client` and the control server
  (``time.monotonic``): they bound I/O with a peer, not the detox, and a fake clock would make
  a test's socket wait forever;
- APScheduler 3 has no pluggable clock: it fires the session jobs at their wall-clock run dates
  by its own reading of the system time. Which jobs are still due, and what a job announces, is
  decided from :meth:`Clock.now` (``scheduler.jobs_to_schedule``, tested with a FakeClock); only
  the moment of firing is APScheduler's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from detoxd.core.timesync import TimeSync

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware (UTC). Users can set it: never trust it alone."""

    def boottime(self) -> float:
        """Seconds since boot, counting suspend (CLOCK_BOOTTIME). Cannot be set by users."""

    def boot_id(self) -> str:
        """Identifies this boot: boottime values are only comparable within one boot."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for timeouts and periods within one run."""

    def time_sync(self) -> TimeSync:
        """Whether the wall clock is confirmed now (NTP-synchronised, as the kernel says):
        what lets downtime across a reboot be credited (see detoxd.core.detox, docs/time.md)."""


class SystemClock:
    def __init__(self, time_sync_stand_in: Path | None = None) -> None:
        """``time_sync_stand_in``: a test's file standing in for the kernel's answer."""
        self._stand_in = time_sync_stand_in
        self._time_sync: Callable[[], TimeSync] | None = None

    def time_sync(self) -> TimeSync:
        if self._time_sync is None:  # imported late: `detoxd status` never needs it
            from detoxd.service import timesync

            stand_in = self._stand_in
            read = timesync.read_kernel if stand_in is None else lambda: timesync.read_stand_in(stand_in)
            self._time_sync = timesync.Reader(lambda: self.now().timestamp() - self.boottime(),
                                              self.monotonic, read)
        return self._time_sync()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def boottime(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def boot_id(self) -> str:
        try:
            return BOOT_ID_PATH.read_text().strip()
        except OSError:  # not Linux, or /proc hidden: treat every start as a new boot
            return "unknown"


@dataclass
class FakeClock:
    """A clock tests move by hand. ``advance`` moves both clocks; ``jump`` only the wall clock."""

    wall: datetime
    boot: float = 1000.0
    boot_identity: str = "boot-1"
    asleep: float = 0.0  # seconds suspended this boot: counted by boottime, not by monotonic
    # What the kernel would say of the wall clock: not synchronised unless a test says so.
    sync: TimeSync = field(default_factory=lambda: TimeSync(False, "a fake clock"))

    def time_sync(self) -> TimeSync:
        return self.sync

    def synchronise(self, confirmed: bool = True) -> None:
        """NTP confirms the wall clock (or, with False, no longer does)."""
        self.sync = TimeSync(confirmed, "a fake clock")

    def now(self) -> datetime:
        return self.wall

    def boottime(self) -> float:
        return self.boot

    def boot_id(self) -> str:
        return self.boot_identity

    def monotonic(self) -> float:
        return self.boot - self.asleep

    def suspend(self, seconds: float) -> None:
        """The machine slept: wall time and boottime went on, the monotonic clock did not."""
        self.advance(seconds)
        self.asleep += seconds

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.boot += seconds

    def jump(self, seconds: float) -> None:
        """Someone set the wall clock; time did not really pass."""
        self.wall += timedelta(seconds=seconds)

    def reboot(self, downtime_seconds: float, boot_id: str) -> None:
        self.wall += timedelta(seconds=downtime_seconds)
        self.boot = 10.0
        self.asleep = 0.0
        self.boot_identity = boot_id

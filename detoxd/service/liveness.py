"""Whether the daemon is doing its job, for systemd's watchdog: not only alive, but guarding.

Threads that live are not enough. Frozen (SIGSTOP, a cgroup freezer, a debugger) and continued
for a few milliseconds now and then, the daemon used to ping on while the change it saw never got
to settle: 105 s without the block, never restored (issue 21). Two signs tell it apart:

- **the hosts file was checked lately**: seen as it should be, restored, or found impossible to
  enforce and said so (a restart would not help that) — the engine's ``hosts_checked_at``;
- **the loop was not held up**: it asks select() to wake it at a time (the next due thing, at
  least every :data:`~detoxd.service.engine.QUIET_SECONDS` and at every watchdog ping); waking
  much later means the process was not running (CLOCK_MONOTONIC does not count a suspend, so a
  closed lid is not mistaken for it). Held up for a quarter of the window, the daemon only ran in
  moments, whatever it restored in them. A pending change of the hosts file asks for a wake-up
  within milliseconds, so a freeze while one settles shows as lateness at once.

Either sign missing for the window, the daemon stops feeding the watchdog and systemd restarts it.
"""

from __future__ import annotations

from collections import deque

from detoxd.clock import Clock

# The window. Idle, the loop checks the hosts file every QUIET_SECONDS (15 s; issue 26 made it
# sleep that long instead of ticking every second): two checks and slack for a loaded machine.
VERIFIED_WITHIN_SECONDS = 40.0
LATE_SECONDS = 0.2  # waking later than asked by more than this is being held up
HELD_UP_SHARE = 0.25  # of the window; a loaded machine delays a wake-up by milliseconds


class HeldUp:
    """The periods the loop woke later than it asked, within the last ``window`` seconds."""

    def __init__(self, window: float = VERIFIED_WITHIN_SECONDS) -> None:
        self.window = window
        self._periods: deque[tuple[float, float]] = deque()

    def woke(self, asked: float, woke: float) -> None:
        """The loop asked to be woken at ``asked`` (or earlier, by an event) and woke at ``woke``."""
        if woke - asked > LATE_SECONDS:
            self._periods.append((asked, woke))

    def seconds(self, now: float) -> float:
        """How long the loop was held up within the window ending ``now``."""
        start = now - self.window
        while self._periods and self._periods[0][1] <= start:
            self._periods.popleft()
        return sum(min(end, now) - max(begin, start) for begin, end in self._periods)


class SuspendWatch:
    """Tells when the machine slept: CLOCK_BOOTTIME counts a suspend, CLOCK_MONOTONIC does not.

    The loop's timers run on CLOCK_MONOTONIC, so across a suspend whatever fell due meanwhile (an
    allowance closing, the detox's end) would wait for the rest of a sleep planned before it; the
    loop asks this after every wake-up and, when the machine slept, ticks at once."""

    def __init__(self, clock: Clock, threshold: float) -> None:
        self.clock = clock
        self.threshold = threshold
        self._gap = clock.boottime() - clock.monotonic()  # grows by the time spent suspended

    def slept(self) -> float:
        """Seconds the machine spent suspended since the last call (0.0 below the threshold)."""
        was, self._gap = self._gap, self.clock.boottime() - self.clock.monotonic()
        return self._gap - was if self._gap - was > self.threshold else 0.0


def not_guarding(now: float, checked_at: float | None, held_up: float,
                 window: float = VERIFIED_WITHIN_SECONDS) -> str | None:
    """Why the watchdog must not be fed now, for the log and status; None: feed it."""
    if checked_at is None or now - checked_at > window:
        when = "never" if checked_at is None else f"{now - checked_at:.0f} s ago"
        return f"the hosts file was last verified {when}"
    if held_up > HELD_UP_SHARE * window:
        return (f"the daemon was held up (stopped and continued?) for {held_up:.0f} s of the last "
                f"{window:.0f} s")
    return None

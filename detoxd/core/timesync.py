"""Whether the wall clock is confirmed right now, from what the kernel says of it. Pure.

The reading itself (``adjtimex(2)``, or systemd-timedated's ``NTPSynchronized`` where the
service's sandbox forbids that call) is the shell's (:mod:`detoxd.service.timesync`); the
decision is here, and :mod:`detoxd.core.detox` decides what a confirmation is worth. See
docs/time.md.

The rule is the one systemd-timedated and ``timedatectl`` use: the clock is synchronised when the
kernel's maximum error is under 16 s. An NTP client (systemd-timesyncd, chrony, ntpd) keeps it
small; setting the clock by hand (``date -s``, ``timedatectl set-time``) resets it to 16 s and
sets ``STA_UNSYNC``, so a clock set forward is not confirmed until NTP corrects it. ``STA_UNSYNC``
alone is not the test: chrony may keep it set while synchronised (to keep the kernel off the RTC).
"""

from __future__ import annotations

from dataclasses import dataclass

STA_UNSYNC = 0x0040
MAX_ERROR_US = 16_000_000  # the kernel's NTP_PHASE_LIMIT: past it, the clock is unsynchronised


@dataclass(frozen=True)
class TimeSync:
    """What a trustworthy source says of the wall clock now."""

    confirmed: bool
    source: str  # "the kernel (adjtimex)", "systemd-timedated", "a test stand-in", …
    detail: str = ""

    def __str__(self) -> str:
        state = "synchronised" if self.confirmed else "not synchronised"
        return f"{self.source}: {state}" + (f" ({self.detail})" if self.detail else "")


UNKNOWN = TimeSync(False, "no source", "neither adjtimex nor systemd-timedated could be asked")


def from_timex(maxerror_us: int, status: int, source: str = "the kernel (adjtimex)") -> TimeSync:
    """The decision on one ``adjtimex`` reading (modes 0: read only)."""
    flags = " , STA_UNSYNC" if status & STA_UNSYNC else ""
    detail = f"maximum error {maxerror_us / 1e6:g} s{flags}"
    return TimeSync(0 <= maxerror_us < MAX_ERROR_US, source, detail.replace(" ,", ","))

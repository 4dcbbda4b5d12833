"""Reads what the kernel says of the wall clock, for :mod:`detoxd.core.timesync` to decide.

In order, the first that answers:

1. ``adjtimex(2)`` with modes 0 (read only), through ctypes: works for `detoxd run` by hand.
2. systemd-timedated's ``NTPSynchronized`` over D-Bus (jeepney, AF_UNIX): the service's sandbox
   denies adjtimex even for reading (``ProtectClock=yes`` and ``~@privileged`` filter the whole
   @clock set, and allowing it back costs 0.4 of exposure), and timedated answers from the same
   kernel value by the same rule.
3. Nothing answers: not confirmed (docs/time.md says what that holds).

A reading is kept for :data:`MAX_AGE_SECONDS` (timedated is started on demand over D-Bus), but
never past a step of the wall clock: if wall time and boot time moved apart since the reading by
more than :data:`STEP_SECONDS`, someone set the clock, and the kernel is asked again.

For tests only, ``DETOXD_TIME_SYNC_FILE`` names a JSON file standing in for the kernel's answer
(``{"maxerror_us": …, "status": …}``); the daemon honours it only away from the system's own
paths, and logs it loudly (see :func:`stand_in_from_environment`).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from detoxd.core.timesync import UNKNOWN, TimeSync, from_timex

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 60.0  # a confirmation is kept this long (if the clock did not step)
UNCONFIRMED_AGE_SECONDS = 5.0  # "not synchronised" is asked again sooner: NTP may just have synced
STEP_SECONDS = 2.0
TIMEDATED_TIMEOUT = 5.0
STAND_IN_VARIABLE = "DETOXD_TIME_SYNC_FILE"


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h>: the kernel writes all of it, padding included."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
                ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_padding", ctypes.c_int * 11)]


def read_adjtimex() -> TimeSync | None:
    """The kernel's answer, or None when the call is not allowed (the sandbox) or not there."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = _Timex()  # modes 0: read only
        if libc.adjtimex(ctypes.byref(timex)) == -1:
            return None
    except (OSError, AttributeError):
        return None
    return from_timex(timex.maxerror, timex.status)


def read_timedated() -> TimeSync | None:
    """systemd-timedated's NTPSynchronized, or None when it cannot be asked."""
    # jeepney ships no type hints.
    from jeepney import DBusAddress, MessageType, Properties  # type: ignore[import-untyped]
    from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

    address = DBusAddress("/org/freedesktop/timedate1", bus_name="org.freedesktop.timedate1",
                          interface="org.freedesktop.timedate1")
    try:
        with open_dbus_connection(bus="SYSTEM") as connection:
            reply = connection.send_and_get_reply(Properties(address).get("NTPSynchronized"),
                                                  timeout=TIMEDATED_TIMEOUT)
    except (OSError, TimeoutError, ValueError, KeyError):
        return None
    if reply.header.message_type is MessageType.error:
        return None
    _signature, synchronized = reply.body[0]
    answer = "yes" if synchronized else "no"
    return TimeSync(bool(synchronized), "systemd-timedated", f"NTPSynchronized={answer}")


def read_stand_in(path: Path) -> TimeSync:
    """A test's stand-in for adjtimex: a JSON object with maxerror_us and status."""
    try:
        document = json.loads(path.read_text())
        return from_timex(int(document["maxerror_us"]), int(document.get("status", 0)),
                          source=f"a test stand-in ({path})")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return TimeSync(False, f"a test stand-in ({path})", f"unreadable: {error}")


def read_kernel() -> TimeSync:
    return read_adjtimex() or read_timedated() or UNKNOWN


class Reader:
    """What the clock's :meth:`~detoxd.clock.Clock.time_sync` returns: a kept reading, asked
    again when it is old or the clock stepped since (see the module docstring)."""

    def __init__(self, offset: Callable[[], float], monotonic: Callable[[], float],
                 read: Callable[[], TimeSync] = read_kernel) -> None:
        self._offset = offset  # wall clock minus boot time: changes only when the clock is set
        self._monotonic = monotonic
        self._read = read
        self._kept: tuple[TimeSync, float, float] | None = None  # reading, its offset, when

    def __call__(self) -> TimeSync:
        offset, now = self._offset(), self._monotonic()
        kept = self._kept
        if kept is not None and abs(offset - kept[1]) < STEP_SECONDS:
            max_age = MAX_AGE_SECONDS if kept[0].confirmed else UNCONFIRMED_AGE_SECONDS
            if now - kept[2] < max_age:
                return kept[0]
        reading = self._read()
        self._kept = (reading, offset, now)
        return reading


def stand_in_from_environment(state_dir: Path, system_state_dir: Path) -> Path | None:
    """The test stand-in's file, when the variable is set and this is not the system's detoxd."""
    value = os.environ.get(STAND_IN_VARIABLE)
    if not value:
        return None
    if state_dir == system_state_dir:
        log.error("%s is set but ignored: the system's detoxd asks the kernel", STAND_IN_VARIABLE)
        return None
    log.warning("the wall clock's confirmation comes from a test stand-in, %s, not the kernel", value)
    return Path(value)

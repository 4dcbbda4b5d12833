"""What the tray says: the daemon's status (and the agent's own notes) → title and menu. Pure.

The tray shell turns ``MenuEntry`` values into pystray items and ``Action`` values into
callables. There is deliberately no action that ends or shortens a detox. The one action that
changes enforcement opens an allowance (``detoxd open NAME 10``), offered only within its budget;
the daemon checks the budget again.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from detoxd.core import statustext
from detoxd.core.report import parse_time

if TYPE_CHECKING:
    from detoxd.protocol import AllowanceStatus, Status

SECONDS_PER_DAY = 86400
# The daemon sends its status at least once a minute (its keepalive, daemon.HEARTBEAT_SECONDS) and at
# every change; heard nothing for this long (the keepalive plus slack for a loaded machine), the tray says the
# status is old rather than go on showing "in sync" from a daemon that may be frozen.
SILENCE_SECONDS = 90.0


class Action(enum.Enum):
    SHOW_STATUS = "show_status"
    OPEN_BLOCKLIST = "open_blocklist"
    EXPORT_CALENDAR = "export_calendar"
    ABOUT = "about"
    QUIT = "quit"
    OPEN_ALLOWANCE = "open_allowance"  # the entry's ``allowance`` and ``minutes``
    OPEN_REPORT = "open_report"  # the detox report with its charts, in the browser


TRAY_OPEN_MINUTES = 10  # what the tray offers per open: a short look, not the whole budget


@dataclass(frozen=True)
class Notice:
    """A reminder or hot-seat handover pushed by the daemon, or the daemon's answer to what the
    tray asked (an allowance opened or refused), shown until ``until``: in the menu and as a dot
    on the icon, which do-not-disturb does not hide."""

    text: str
    until: datetime


@dataclass(frozen=True)
class TrayView:
    """Everything the tray shows. ``status`` is None while the daemon is unreachable."""

    status: Status | None
    now: datetime
    dnd_label: str | None = None  # the desktop whose notifications the agent silenced
    dnd_reasserted: int = 0  # times the user switched notifications back on during the detox
    tampered: bool = False  # the agent saw a ``tamper`` event recently
    notices: Sequence[Notice] = field(default_factory=tuple)
    dnd_problem: tuple[str, str] | None = None  # (reason, fix) when silencing did not take
    last_known: Status | None = None  # while the daemon is unreachable: what it last said

    def current_notices(self) -> list[Notice]:
        return [notice for notice in self.notices if notice.until > self.now]


@dataclass(frozen=True)
class MenuEntry:
    label: str
    action: Action | None = None  # None: an informational line, shown disabled
    default: bool = False  # what a click on the icon does where there is no menu
    allowance: str | None = None  # for OPEN_ALLOWANCE
    minutes: int = 0


SEPARATOR = MenuEntry("")


def unheard(status: Status, silence: float) -> Status:
    """``status`` as last heard ``silence`` seconds ago: past :data:`SILENCE_SECONDS`, stale (it
    can no longer say the hosts file is in sync)."""
    if silence <= SILENCE_SECONDS:
        return status
    age = silence + (status.snapshot_age_seconds or 0.0)
    return status.replace(stale=True, hosts_in_sync=False, snapshot_age_seconds=round(age, 1))


def title(view: TrayView) -> str:
    """The one-line status for the icon's title / tooltip."""
    status = view.status
    if status is None:
        last = view.last_known
        if last is not None and last.active:
            return (f"detoxd: daemon not reachable, retrying; tampering is not undone "
                    f"({_days_left_from(last, view.now)}, last known)")
        return "detoxd: daemon not reachable, retrying"
    if status.stale:
        return f"detoxd: the daemon is not responding (status {_age(status)} old)"
    if status.problems:
        return f"detoxd: {status.problems[0]}"
    if status.config_error:
        return "detoxd: config error, the last good blocklist stays in force"
    if not status.hosts_in_sync:
        return "detoxd: hosts file out of sync, restoring the block"
    if view.tampered:
        return "detoxd: hosts file was tampered with, block restored"
    if status.active:
        opened = [_open_text(item, view.now) for item in status.allowances if item.open]
        return f"detoxd: {day_of(status, view.now)}, " + (
            ", ".join(opened) or statustext.days_left(status.days_left))
    if status.state == "scheduled":
        return f"detoxd: {planned_line(status, view.now)}"
    windows = _schedule_lines(status, view.now)
    if windows:
        return f"detoxd: {windows[0]}"
    return "detoxd: no detox running"


def status_lines(view: TrayView) -> list[str]:
    """The informational lines at the top of the menu (and in the status window)."""
    status = view.status
    if status is None:
        return [*_unreachable_lines(view), *(notice.text for notice in view.current_notices())]
    lines = _detox_lines(status, view.now)
    lines += _health_lines(status, view)
    if view.dnd_problem and status.active and status.notifications_suppress:
        reason, fix = view.dnd_problem
        lines += [f"Notifications NOT silenced: {reason}", f"  Fix: {fix}"]
    elif view.dnd_label and status.active:
        lines.append(f"Notifications silenced ({view.dnd_label})")
        if view.dnd_reasserted:
            lines.append(f"Notifications switched back on {statustext.times(view.dnd_reasserted)}, "
                         "silenced again")
    lines += _plan_lines(status, view.now)
    lines += _allowance_lines(status, view.now)
    lines += _schedule_lines(status, view.now)
    lines += statustext.mail_lines(status)  # what was sent to the peers, to whom and when
    lines += [notice.text for notice in view.current_notices()]
    return lines


def entries(view: TrayView, *, has_menu: bool) -> list[MenuEntry]:
    """The whole menu: status lines, then actions. Without a menu, a click shows the status."""
    items = [MenuEntry(line) for line in status_lines(view)]
    items.append(SEPARATOR)
    if not has_menu:
        items.append(MenuEntry("Show status", Action.SHOW_STATUS, default=True))
    if view.status is not None:
        items += allowance_entries(view.status)
    items.append(MenuEntry("Open blocklist (read-only; edit with sudoedit)", Action.OPEN_BLOCKLIST))
    if view.status is not None:
        items.append(MenuEntry("Open the detox report", Action.OPEN_REPORT))
    if view.status is not None and view.status.next_session is not None:
        items.append(MenuEntry("Export sessions calendar", Action.EXPORT_CALENDAR))
    items.append(MenuEntry("About detoxd", Action.ABOUT))
    if view.status is not None and not view.status.active:
        # During a detox (or while the daemon cannot say there is none) the agent keeps
        # notifications silenced: there is no quitting it.
        items.append(MenuEntry("Quit tray", Action.QUIT))
    return items


def allowance_entries(status: Status) -> list[MenuEntry]:
    """"Open twitter for 10 minutes (14 left today)" for each allowance that can open now: during
    a detox, and while a block window is in force (the daemon's rule, Engine.allowances_in_force)."""
    if not status.active and not any(entry.active for entry in status.schedule):
        return []
    entries = []
    for item in status.allowances:
        left = item.minutes_left_today
        if item.open or left < 1 or item.opens_left_today == 0:
            continue
        minutes = min(TRAY_OPEN_MINUTES, left)
        entries.append(MenuEntry(f"Open {item.name} for {statustext.count(minutes, 'minute')} "
                                 f"({left} left today)", Action.OPEN_ALLOWANCE,
                                 allowance=item.name, minutes=minutes))
    return entries


def _open_text(item: AllowanceStatus, now: datetime) -> str:
    until = parse_time(item.open_until)
    left = f", {format_duration(until - now)} left" if until else ""
    return f"{item.name} open{left}"


def _allowance_lines(status: Status, now: datetime) -> list[str]:
    """An open allowance counts down; a closed one says what is left."""
    if not status.active:
        return []
    lines = []
    for item in status.allowances:
        if item.open:
            lines.append(_open_text(item, now).replace(" open, ", " open — ", 1))
        elif item.next_window and not item.minutes_left_today:
            start = parse_time(item.next_window)
            if start is not None:
                lines.append(f"{item.name}: next window {format_moment(start, now)}")
    return lines


def closing_text(continues: object) -> str:
    """The notice when a detox ends, with what continues (`detox.after`): a step down, not a cliff."""
    kept = [str(item) for item in continues] if isinstance(continues, list) else []
    if not kept:
        return "The detox is over: nothing is blocked any more"
    return "The detox is over. Continuing: " + "; ".join(kept)


def _schedule_lines(status: Status, now: datetime) -> list[str]:
    """"Blocked until 17:30 (workdays)" / "Next block 09:00 (workdays)": the soonest first."""
    found = []
    for entry in status.schedule:
        text = statustext.schedule_text(entry, now)
        if text is not None and not entry.waiting_for_detox_end:
            found.append((not entry.active, entry.next_change or "~", f"{text} ({entry.name})"))
    return [line for _, _, line in sorted(found)]


def day_of(status: Status, now: datetime) -> str:
    """``Day 3 of 14``: day 1 is the first 24 hours."""
    started = parse_time(status.started_at)
    ends = parse_time(status.ends_at)
    if started is None or ends is None:
        return "Detox active"
    # Rounded: a restart or a clock jump can move the end by seconds to hours, not a day.
    total = max(1, round((ends - started).total_seconds() / SECONDS_PER_DAY))
    elapsed = max(0.0, (now - started).total_seconds())
    return f"Day {min(total, int(elapsed // SECONDS_PER_DAY) + 1)} of {total}"


def format_moment(moment: datetime, now: datetime) -> str:
    """``Tue 9 Dec 08:00`` in the viewer's time zone (that of ``now``)."""
    local = moment.astimezone(now.tzinfo)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def format_duration(left: timedelta) -> str:
    minutes = max(0, math.ceil(left.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _unreachable_lines(view: TrayView) -> list[str]:
    """The daemon does not answer: the detox as last known, and that nothing guards it now."""
    lines = ["The detoxd daemon is not reachable"]
    last = view.last_known
    if last is not None and last.active:
        ends = parse_time(last.ends_at)
        lines.append(f"Last known: {day_of(last, view.now)}, {_days_left_from(last, view.now)}"
                     + (f" — ends {format_moment(ends, view.now)}" if ends else ""))
        lines.append("Tampering is not undone until the daemon is back")
    lines.append("Retrying; the block in /etc/hosts stays as it was")
    return lines


def _days_left_from(status: Status, now: datetime) -> str:
    """Whole days left at ``now`` (rounded up, as the daemon counts them), from the end it said."""
    ends = parse_time(status.ends_at)
    if ends is None:
        return statustext.days_left(status.days_left)
    return statustext.days_left(max(0, math.ceil((ends - now).total_seconds() / SECONDS_PER_DAY)))


def _detox_lines(status: Status, now: datetime) -> list[str]:
    if status.state == "scheduled":
        return _planned_lines(status, now)
    if not status.active:
        return ["No detox running", "Start one with: sudo detoxd start"]
    ends = parse_time(status.ends_at)
    first = day_of(status, now) + (f" — ends {format_moment(ends, now)}" if ends else "")
    lines = [first, statustext.names_blocked(status.domains_blocked)]
    if status.lock == "peers":
        lines.append(_peer_lock_line(status))
    elif status.locked:
        lines.append("Locked: it cannot be ended early")
    return lines


def planned_line(status: Status, now: datetime) -> str:
    """"Detox begins Mon 14 Dec 09:00" (`detoxd start --at`)."""
    start = parse_time(status.starts_at)
    return f"Detox begins {format_moment(start, now)}" if start else "Detox planned"


def _planned_lines(status: Status, now: datetime) -> list[str]:
    lines = [planned_line(status, now)]
    until = parse_time(status.cancellable_until)
    if not status.cancellable:
        lines.append("Locked: it can no longer be cancelled")
    elif until is not None:
        lines.append(f"Can be cancelled until {format_moment(until, now)}")
    return lines


def _peer_lock_line(status: Status) -> str:
    """`lock: peers`: how many of the peers' cards it takes to end the detox early."""
    needed = "?" if status.peers_needed is None else status.peers_needed
    of = f" of {len(status.peer_lock.holders)}" if status.peer_lock is not None else ""
    return f"Lock: peers — ending early needs {needed}{of} peers' cards"


def _age(status: Status) -> str:
    age = status.snapshot_age_seconds
    return f"{age:.0f} s" if age is not None else "some time"


def _health_lines(status: Status, view: TrayView) -> list[str]:
    lines: list[str] = []
    if status.stale:
        lines.append(f"This status is {_age(status)} old: the daemon is stuck or frozen, and "
                     "nothing confirms the block is in place")
    lines += [f"Problem: {problem}" for problem in status.problems if not problem.startswith(
        "the daemon's main loop")]  # said just above
    if status.state_error:
        lines.append(f"Detox state: {status.state_error}")
    held = status.time_held
    if held is not None and status.active:
        lines.append(f"{held.seconds / SECONDS_PER_DAY:.1f} days held: the clock is not confirmed (NTP); "
                     "credited once it is")
    elif held is not None and status.state == "scheduled":
        lines.append(f"{held.seconds / SECONDS_PER_DAY:.1f} days held: the planned start waits for the "
                     "clock to be confirmed (NTP)")
    if status.config_error:
        lines.append("Config error: the last good blocklist stays in force")
        lines += [f"  {line}" for line in status.config_error.splitlines()[:3]]
    if status.config_missing:
        lines.append(f"Config missing: {', '.join(status.config_missing)} (a detox cannot start)")
    problem = status.hosts_file_problem
    if problem is not None and problem.fix:  # the reason is among the problems
        lines.append(f"  Fix: {problem.fix}")
    elif not status.hosts_in_sync:
        lines.append(f"{status.hosts_file or 'The hosts file'} is out of sync: restoring")
    lines += [statustext.engine_line(row, details=False) for row in status.network]
    if status.tamper_events > 0:
        lines.append(statustext.tampering_undone(status.tamper_events))
    elif view.tampered:
        lines.append("The hosts file was tampered with: block restored")
    return lines


def _plan_lines(status: Status, now: datetime) -> list[str]:
    lines: list[str] = []
    seat = status.current_hot_seat
    if seat is not None:
        seat_ends = parse_time(seat.ends_at)
        left = f" — {format_duration(seat_ends - now)} left" if seat_ends else ""
        lines.append(f"Hot seat: {seat.name}{left}")
    session = status.next_session
    if session is not None:
        start = parse_time(session.start)
        if start is not None:
            first = f" — {session.hot_seat} in the hot seat first" \
                if session.hot_seat and not session.in_progress else ""
            lines.append(f"Next peer session: {format_moment(start, now)}{first}")
    return lines

"""Allowances: cut back instead of cutting off (pure: values in, values out).

An allowance names sites that may leave the block for a while during a detox:

- on demand (``detoxd open twitter 10``), within a daily budget (``minutes_per_day``), at most
  ``max_opens_per_day`` times, with ``min_gap_minutes`` between the end of one open and the next;
- in fixed weekly ``windows`` ("Mon-Fri 12:30-12:50", local time), which open and close on their own.

Outside a detox nothing is blocked, so allowances do nothing.

Time — which clock decides
--------------------------
Budgets, gaps, windows and day boundaries all read one *trusted* wall clock (:class:`TrustedClock`):
within a boot it advances only by ``CLOCK_BOOTTIME``, like the detox's credited time, so setting
the system clock back does not refill a day and setting it forward (or to 12:30) does not open a
window. Small differences (NTP slewing, up to :data:`detox.JUMP_TOLERANCE_SECONDS` plus drift) are
followed. Across a reboot it follows the wall clock again, but never backwards and never by less
than the new boot's uptime — the detox's known limit applies: a clock set forward while the machine
is off looks like real downtime.

Days start at ``day_starts_at`` (local time, default midnight) in the system's time zone. Windows
are local wall times: on the day clocks go back, a window in the repeated hour happens once, at its
first occurrence; a window start inside the hour that is skipped in spring begins when the clock
shows the time an hour later.

The ratchet
-----------
While a locked detox runs, the allowances may only get tighter: :func:`ratchet` (with the rules and
their parsing in :mod:`detoxd.core.allowance_rules`) keeps each allowance
within the rules in force when the detox started (or the tightest since): a lower budget, fewer
opens, a longer gap, shorter or fewer windows, fewer sites and a removed allowance take effect; an
addition or a raise is refused (reported as a warning naming file, line and key) until it ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Protocol

from detoxd.core import domains as domain_names
from detoxd.core.allowance_rules import (
    ALLOWANCE_KEYS,
    DAY_NAMES,
    MAX_ALLOWANCES,
    MAX_WINDOWS,
    MINUTES_PER_DAY,
    NOTICE_SECONDS,
    WEEK_MINUTES,
    Allowance,
    SiteCatalog,
    Window,
    builtin_catalog,
    intersect_windows,
    parse_allowances,
    parse_days,
    parse_time,
    parse_window,
    ratchet,
    site_of,
)
from detoxd.core.detox import (
    DRIFT_ALLOWANCE,
    JUMP_TOLERANCE_SECONDS,
    BootReading,
    Checkpoint,
    Refusal,
    credit_since,
)

__all__ = [  # the rules live in allowance_rules; callers keep importing them from here
    "ALLOWANCE_KEYS", "DAY_NAMES", "MAX_ALLOWANCES", "MAX_WINDOWS", "MINUTES_PER_DAY", "NOTICE_SECONDS",
    "WEEK_MINUTES", "Allowance", "AllowancesState", "Checkpoint", "HasWindows", "Opened", "RunningOpen",
    "SiteCatalog", "TrustedClock", "Usage", "Window", "builtin_catalog", "close_allowance", "closing_soon",
    "current_window", "day_of", "day_start", "ended", "find", "from_json", "intersect_windows",
    "is_open", "next_window", "open_allowance", "open_rules", "open_until", "parse_allowances",
    "parse_days", "parse_time", "parse_window", "ratchet", "settle", "site_of", "started", "status",
    "tick", "to_json", "unblocked", "window_spans",
]

# ---- the trusted clock ----

@dataclass(frozen=True)
class TrustedClock:
    """The wall time allowances believe, and the raw readings it was last brought forward from."""

    at: datetime
    checkpoint: Checkpoint

    @classmethod
    def first(cls, now: datetime, boot: BootReading) -> TrustedClock:
        return cls(now, Checkpoint(now, boot))

    def advance(self, now: datetime, boot: BootReading) -> TrustedClock:
        before = self.checkpoint.boot
        same_boot = before.boot_id == boot.boot_id and boot.seconds >= before.seconds
        credit, _ = credit_since(self.checkpoint, now=now, boot=boot)
        predicted = self.at + timedelta(seconds=credit)
        if same_boot:
            tolerance = JUMP_TOLERANCE_SECONDS + DRIFT_ALLOWANCE * credit
            if abs((now - predicted).total_seconds()) <= tolerance:
                predicted = now  # NTP slewing: follow the wall clock
        else:
            predicted = max(predicted, now)  # a new boot: the wall clock again, never backwards
        return TrustedClock(max(self.at, predicted), Checkpoint(now, boot))

    def to_wall(self, moment: datetime, wall_now: datetime) -> datetime:
        """A trusted moment as the (possibly wrong) system clock will show it, for display."""
        return wall_now + (moment - self.at)


# ---- usage (what survives restarts) ----

@dataclass(frozen=True)
class RunningOpen:
    """An open on demand, on the trusted clock."""

    until: datetime
    counted_to: datetime  # time spent is counted up to here


@dataclass(frozen=True)
class Usage:
    day: date | None = None  # the day spent_seconds and opens belong to
    spent_seconds: float = 0.0
    opens: int = 0
    last_closed: datetime | None = None  # when the last open ended (min_gap_minutes)
    session: RunningOpen | None = None
    window_closed_until: datetime | None = None  # `detoxd close` during a window


@dataclass(frozen=True)
class AllowancesState:
    clock: TrustedClock | None = None
    usage: Mapping[str, Usage] = field(default_factory=dict)
    # The rules a locked detox may only tighten; None when no locked detox runs.
    ceiling: tuple[Allowance, ...] | None = None

    def usage_of(self, name: str) -> Usage:
        return self.usage.get(name, Usage())

    def with_usage(self, name: str, usage: Usage) -> AllowancesState:
        return replace(self, usage={**self.usage, name: usage})


def tick(state: AllowancesState, now: datetime, boot: BootReading) -> AllowancesState:
    """Bring the trusted clock forward: call before every decision."""
    clock = TrustedClock.first(now, boot) if state.clock is None else state.clock.advance(now, boot)
    return replace(state, clock=clock)


def started(state: AllowancesState, rules: Sequence[Allowance], *, locked: bool) -> AllowancesState:
    """A detox starts: fresh budgets; a locked one fixes the ceiling."""
    return AllowancesState(state.clock, {}, tuple(rules) if locked else None)


def ended(state: AllowancesState) -> AllowancesState:
    return AllowancesState(state.clock, {}, None)


def day_of(moment: datetime, tz: tzinfo, day_starts_at: int) -> date:
    """The allowance day ``moment`` falls in: local days beginning at ``day_starts_at``."""
    local = moment.astimezone(tz).replace(tzinfo=None)
    return (local - timedelta(minutes=day_starts_at)).date()


def day_start(day: date, tz: tzinfo, day_starts_at: int) -> datetime:
    naive = datetime(day.year, day.month, day.day) + timedelta(minutes=day_starts_at)
    return _localize(naive, tz, fold=0)


def settle(
    state: AllowancesState, rules: Sequence[Allowance], tz: tzinfo
) -> AllowancesState:
    """Count time spent, start new days, end sessions that are due or over a lowered budget."""
    if state.clock is None:
        return state
    now = state.clock.at
    usage = dict(state.usage)
    for rule in rules:
        usage[rule.name] = _settle_one(usage.get(rule.name, Usage()), rule, now, tz)
    return replace(state, usage=usage)


def _settle_one(usage: Usage, rule: Allowance, now: datetime, tz: tzinfo) -> Usage:
    today = day_of(now, tz, rule.day_starts_at)
    if usage.day is None or today > usage.day:  # never backwards: a clock set back refills nothing
        usage = replace(usage, day=today, spent_seconds=0.0, opens=0)
        if usage.session is not None:  # what an open session spends from now on is today's
            begin = max(usage.session.counted_to, day_start(today, tz, rule.day_starts_at))
            usage = replace(usage, session=replace(usage.session, counted_to=min(begin, now)))
    session = usage.session
    if session is None:
        return usage
    counted = min(now, session.until)
    spent = usage.spent_seconds + max(0.0, (counted - session.counted_to).total_seconds())
    usage = replace(usage, spent_seconds=spent, session=replace(session, counted_to=counted))
    left = rule.minutes_per_day * 60 - spent
    until = min(session.until, now + timedelta(seconds=max(0.0, left)))  # a lowered budget
    if now >= until:
        return replace(usage, session=None, last_closed=until)
    return replace(usage, session=replace(usage.session or session, until=until))


# ---- opening and closing ----

@dataclass(frozen=True)
class Opened:
    state: AllowancesState
    until: datetime  # trusted clock
    message: str
    granted_seconds: float  # 0 when a window had it open already


def find(rules: Sequence[Allowance], name: str) -> Allowance | Refusal:
    for rule in rules:
        if rule.name == name:
            return rule
    known = ", ".join(rule.name for rule in rules) or "none in blocklist.yaml"
    return Refusal(f"no allowance named {name[:64]!r} (allowances: {known})")


def open_allowance(
    state: AllowancesState, rule: Allowance, tz: tzinfo, *, minutes: float | None,
    detox_active: bool,
) -> Opened | Refusal:
    """``detoxd open NAME [MINUTES]``: within the budget, the opens and the gap. Settle first."""
    if not detox_active:
        return Refusal("no detox is running and no block window is in force: nothing is blocked, "
                       "so there is nothing to open")
    if state.clock is None:
        raise ValueError("tick() before opening")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        return Refusal(f"minutes must be more than 0, not {minutes!r}")
    now = state.clock.at
    usage = state.usage_of(rule.name)
    if usage.session is not None:
        remaining = round((usage.session.until - now).total_seconds() / 60)
        return Refusal(f"{rule.name} is already open ({remaining} min left); "
                       f"`detoxd close {rule.name}` ends it")
    span = current_window(rule, now, tz)
    if span is not None and not _window_closed(usage, now):
        message = f"{rule.name} is open in its window until {_local(span[1], tz)}"
        return Opened(state, span[1], message, 0.0)
    refusal = _why_not(rule, usage, now, tz)
    if refusal is not None:
        return refusal
    left = rule.minutes_per_day * 60 - usage.spent_seconds
    granted: float = left if minutes is None else min(minutes * 60, left)
    until = now + timedelta(seconds=granted)
    opened = replace(usage, opens=usage.opens + 1, session=RunningOpen(until, now))
    shortened = minutes is not None and minutes * 60 > left
    message = f"{rule.name} is open for {_minutes(granted)} min" + (
        " (all that is left today)" if shortened else "") + f", until {_local(until, tz)}"
    return Opened(state.with_usage(rule.name, opened), until, message, granted)


def _why_not(rule: Allowance, usage: Usage, now: datetime, tz: tzinfo) -> Refusal | None:
    if rule.minutes_per_day <= 0:
        upcoming = next_window(rule, now, tz)
        when = f": next {_local(upcoming[0], tz, weekday=True)}" if upcoming else ""
        return Refusal(f"{rule.name} opens only in its windows{when}")
    next_day = day_start(usage.day + timedelta(days=1), tz, rule.day_starts_at) if usage.day else now
    new_day = f"a new day starts {_local(next_day, tz, weekday=True)}"
    if rule.minutes_per_day * 60 - usage.spent_seconds < 1:
        budget = _minutes(rule.minutes_per_day * 60)
        return Refusal(f"today's {budget} min for {rule.name} are used up; {new_day}")
    if rule.max_opens_per_day is not None and usage.opens >= rule.max_opens_per_day:
        times = "once" if rule.max_opens_per_day == 1 else f"{rule.max_opens_per_day} times"
        return Refusal(f"{rule.name} was already opened {times} today, the most allowed; {new_day}")
    if usage.last_closed is not None and rule.min_gap_minutes > 0:
        ready = usage.last_closed + timedelta(minutes=rule.min_gap_minutes)
        if now < ready:
            wait = math.ceil((ready - now).total_seconds() / 60)
            return Refusal(f"{rule.name} can open again in {wait} min, at {_local(ready, tz)} "
                           f"(min_gap_minutes: {rule.min_gap_minutes:g})")
    return None


def close_allowance(
    state: AllowancesState, rule: Allowance, tz: tzinfo
) -> tuple[AllowancesState, str] | Refusal:
    """``detoxd close NAME``: blocked again now; unused minutes stay for later. Settle first."""
    if state.clock is None:
        raise ValueError("tick() before closing")
    now = state.clock.at
    usage = state.usage_of(rule.name)
    span = current_window(rule, now, tz)
    if usage.session is None and (span is None or _window_closed(usage, now)):
        return Refusal(f"{rule.name} is not open")
    closed = usage
    if usage.session is not None:
        closed = replace(closed, session=None, last_closed=now)
    if span is not None:
        closed = replace(closed, window_closed_until=span[1])
    left = max(0.0, rule.minutes_per_day * 60 - closed.spent_seconds)
    message = f"{rule.name} is blocked again" + (
        f"; {_minutes(left)} min left today" if rule.minutes_per_day else "")
    return state.with_usage(rule.name, closed), message


def _window_closed(usage: Usage, now: datetime) -> bool:
    return usage.window_closed_until is not None and now < usage.window_closed_until


# ---- what is open ----

def is_open(state: AllowancesState, rule: Allowance, tz: tzinfo) -> bool:
    if state.clock is None:
        return False
    usage = state.usage_of(rule.name)
    now = state.clock.at
    in_window = current_window(rule, now, tz) is not None and not _window_closed(usage, now)
    return in_window or (usage.session is not None and now < usage.session.until)


def open_rules(state: AllowancesState, rules: Sequence[Allowance], tz: tzinfo) -> tuple[Allowance, ...]:
    return tuple(rule for rule in rules if is_open(state, rule, tz))


def unblocked(blocked: Iterable[str], opened: Sequence[Allowance]) -> frozenset[str]:
    """The blocked names that the open allowances let through."""
    if not opened:
        return frozenset()
    return frozenset(name for name in blocked if any(rule.opens(name) for rule in opened))


def open_until(state: AllowancesState, rule: Allowance, tz: tzinfo) -> datetime | None:
    """When an open allowance closes (the later of its session and its window), on the trusted clock."""
    if state.clock is None or not is_open(state, rule, tz):
        return None
    usage = state.usage_of(rule.name)
    ends = [usage.session.until] if usage.session is not None else []
    span = current_window(rule, state.clock.at, tz)
    if span is not None and not _window_closed(usage, state.clock.at):
        ends.append(span[1])
    return max(ends)


# ---- windows as moments ----

class HasWindows(Protocol):
    """Anything with weekly windows: an allowance, a schedule entry (detoxd.core.schedule)."""

    @property
    def windows(self) -> tuple[Window, ...]: ...


def window_spans(rule: HasWindows, around: datetime, tz: tzinfo, *,
                 days_ahead: int = 8) -> list[tuple[datetime, datetime]]:
    """The rule's windows from two days before ``around`` to ``days_ahead`` days after, as
    (start, end) moments, with touching windows joined (Sun 23:30-24:00 and Mon 00:00-00:30 are
    one). A window lasts at most a day, so two days back find every window still open."""
    today = around.astimezone(tz).date()
    spans: list[tuple[datetime, datetime]] = []
    for offset in range(-2, days_ahead + 1):
        day = today + timedelta(days=offset)
        midnight = datetime(day.year, day.month, day.day)
        for window in rule.windows:
            if window.day == day.weekday():
                start = _localize(midnight + timedelta(minutes=window.start), tz, fold=0)
                end = _localize(midnight + timedelta(minutes=window.end), tz, fold=0)
                if end > start:
                    spans.append((start, end))
    spans.sort()
    joined: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def current_window(rule: HasWindows, now: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
    if not rule.windows:
        return None
    # Two days ahead: enough to join windows that touch across midnights (called every tick).
    return next(((s, e) for s, e in window_spans(rule, now, tz, days_ahead=2) if s <= now < e), None)


def next_window(rule: HasWindows, now: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
    if not rule.windows:
        return None
    return next(((s, e) for s, e in window_spans(rule, now, tz) if s > now), None)


def closing_soon(
    state: AllowancesState, rules: Sequence[Allowance], tz: tzinfo, seconds: float = NOTICE_SECONDS
) -> list[tuple[Allowance, datetime]]:
    """Open allowances that close within ``seconds`` (for the desktop notice)."""
    if state.clock is None:
        return []
    found = []
    for rule in rules:
        until = open_until(state, rule, tz)
        if until is not None and (until - state.clock.at).total_seconds() <= seconds:
            found.append((rule, until))
    return found


def next_change(state: AllowancesState, rules: Sequence[Allowance], tz: tzinfo,
                notice_seconds: float = NOTICE_SECONDS) -> datetime | None:
    """The next moment, on the trusted clock, at which something about the allowances happens by
    itself: an open one closes or is announced as closing, a window opens. None: nothing is due.
    The daemon sleeps until then instead of ticking every second (issue 26)."""
    if state.clock is None:
        return None
    now = state.clock.at
    moments = []
    for rule in rules:
        until = open_until(state, rule, tz)
        if until is not None:
            moments += [until, until - timedelta(seconds=notice_seconds)]
        following = next_window(rule, now, tz)
        if following is not None:
            moments.append(following[0])
    later = [moment for moment in moments if moment > now]
    return min(later) if later else None


# ---- status ----

def status(
    state: AllowancesState, rules: Sequence[Allowance], tz: tzinfo, wall_now: datetime,
    *, detox_active: bool,
) -> list[dict[str, Any]]:
    """``allowances`` in ``status --json``: times as the system clock shows them."""
    clock = state.clock
    result: list[dict[str, Any]] = []
    for rule in rules:
        usage = state.usage_of(rule.name)
        until = open_until(state, rule, tz) if detox_active else None
        upcoming = next_window(rule, clock.at, tz) if clock is not None else None
        today = clock is not None and usage.day == day_of(clock.at, tz, rule.day_starts_at)
        spent = usage.spent_seconds if today else 0.0
        opens_today = usage.opens if today else 0
        left_seconds = max(0.0, rule.minutes_per_day * 60 - spent)
        if usage.session is not None and clock is not None:
            left_seconds = max(0.0, left_seconds - (usage.session.until - clock.at).total_seconds())
        result.append({
            "name": rule.name,
            "open": until is not None,
            "open_until": _iso(clock.to_wall(until, wall_now)) if until and clock else None,
            "minutes_left_today": math.floor(left_seconds / 60 + 1e-9),
            "opens_left_today": None if rule.max_opens_per_day is None
            else max(0, rule.max_opens_per_day - opens_today),
            "next_window": _iso(clock.to_wall(upcoming[0], wall_now)) if upcoming and clock else None,
        })
    return result


# ---- persistence (plain JSON; the shell writes it atomically) ----

def to_json(state: AllowancesState) -> dict[str, Any]:
    clock = state.clock
    return {
        "version": 1,
        "clock": None if clock is None else {
            "at": clock.at.isoformat(), "wall": clock.checkpoint.wall.isoformat(),
            "boot_id": clock.checkpoint.boot.boot_id, "boottime": clock.checkpoint.boot.seconds},
        "usage": {name: _usage_json(usage) for name, usage in state.usage.items()},
        "ceiling": None if state.ceiling is None else [_rule_json(rule) for rule in state.ceiling],
    }


def from_json(data: Any) -> AllowancesState:
    """Raises ValueError (or KeyError/TypeError) on anything malformed."""
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError("not a version 1 allowances state")
    raw_clock = data["clock"]
    clock = None if raw_clock is None else TrustedClock(
        _moment(raw_clock["at"]),
        Checkpoint(_moment(raw_clock["wall"]), BootReading(str(raw_clock["boot_id"]),
                                                           float(raw_clock["boottime"]))))
    usage = {str(name): _usage_from(value) for name, value in dict(data["usage"]).items()}
    raw_ceiling = data["ceiling"]
    ceiling = None if raw_ceiling is None else tuple(_rule_from(item) for item in raw_ceiling)
    return AllowancesState(clock, usage, ceiling)


def _usage_json(usage: Usage) -> dict[str, Any]:
    session = usage.session
    return {
        "day": usage.day.isoformat() if usage.day else None,
        "spent_seconds": usage.spent_seconds,
        "opens": usage.opens,
        "last_closed": _iso_full(usage.last_closed),
        "session": None if session is None else {
            "until": session.until.isoformat(), "counted_to": session.counted_to.isoformat()},
        "window_closed_until": _iso_full(usage.window_closed_until),
    }


def _usage_from(data: Any) -> Usage:
    session = data["session"]
    return Usage(
        day=date.fromisoformat(data["day"]) if data["day"] else None,
        spent_seconds=_finite(data["spent_seconds"]),
        opens=int(data["opens"]),
        last_closed=_moment(data["last_closed"]) if data["last_closed"] else None,
        session=None if session is None else RunningOpen(_moment(session["until"]),
                                                     _moment(session["counted_to"])),
        window_closed_until=_moment(data["window_closed_until"]) if data["window_closed_until"] else None,
    )


def _rule_json(rule: Allowance) -> dict[str, Any]:
    return {"name": rule.name, "domains": sorted(rule.domains), "minutes_per_day": rule.minutes_per_day,
            "max_opens_per_day": rule.max_opens_per_day, "min_gap_minutes": rule.min_gap_minutes,
            "windows": [[w.day, w.start, w.end] for w in rule.windows],
            "day_starts_at": rule.day_starts_at}


def _rule_from(data: Any) -> Allowance:
    domains = frozenset(str(name) for name in data["domains"])
    for name in domains:  # the state file is root's, but nothing unvalidated reaches a block
        if domain_names.normalize_domain(name).name != name:
            raise ValueError(f"invalid domain {name!r}")
    opens = data["max_opens_per_day"]
    return Allowance(
        str(data["name"]), domains, _finite(data["minutes_per_day"]),
        None if opens is None else int(opens), _finite(data["min_gap_minutes"]),
        tuple(Window(int(d), int(s), int(e)) for d, s, e in data["windows"]),
        int(data["day_starts_at"]))


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a finite, non-negative number")
    return number


def _moment(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


# ---- small helpers ----

def _localize(naive: datetime, tz: tzinfo, *, fold: int) -> datetime:
    """A local wall time as a UTC moment (zoneinfo semantics for gaps and repeats). UTC, because
    Python compares and subtracts two times of one zone by their wall clocks, wrong across DST."""
    return naive.replace(tzinfo=tz, fold=fold).astimezone(UTC)



def _minutes(seconds: float) -> str:
    return f"{math.floor(seconds / 60 + 1e-9):d}" if seconds >= 60 else f"{seconds / 60:.1f}"


def _local(moment: datetime, tz: tzinfo, *, weekday: bool = False) -> str:
    local = moment.astimezone(tz)
    return local.strftime("%a %H:%M" if weekday else "%H:%M")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _iso_full(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None

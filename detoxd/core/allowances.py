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
While a locked detox runs, the allowances may only get tighter: :func:`ratchet` keeps each allowance
within the rules in force when the detox started (or the tightest since): a lower budget, fewer
opens, a longer gap, shorter or fewer windows, fewer sites and a removed allowance take effect; an
addition or a raise is refused (reported as a warning naming file, line and key) until it ends.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from typing import Any

from detoxd.core import domains as domain_names
from detoxd.core.detox import (
    DRIFT_ALLOWANCE,
    JUMP_TOLERANCE_SECONDS,
    BootReading,
    Checkpoint,
    Refusal,
    credit_since,
)
from detoxd.core.yamlsource import (
    ConfigIssue,
    Node,
    Source,
    as_list,
    as_mapping,
    as_number,
    as_str,
    as_str_list,
    join,
)

MINUTES_PER_DAY = 1440
WEEK_MINUTES = 7 * MINUTES_PER_DAY
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_ALLOWANCES = 64
MAX_WINDOWS = 64
NOTICE_SECONDS = 120.0  # the desktop is told this long before a window closes
ALLOWANCE_KEYS = {"name", "sites", "minutes_per_day", "max_opens_per_day", "min_gap_minutes",
                  "windows", "day_starts_at"}


# ---- the rules (from blocklist.yaml) ----

@dataclass(frozen=True, order=True)
class Window:
    """A weekly window in local time: ``day`` 0 is Monday; ``start`` and ``end`` are minutes after
    that day's midnight, ``end`` above 1440 when the window runs past midnight."""

    day: int
    start: int
    end: int

    def week_span(self) -> tuple[int, int]:
        offset = self.day * MINUTES_PER_DAY
        return offset + self.start, offset + self.end

    def __str__(self) -> str:
        return f"{DAY_NAMES[self.day].title()} {_hhmm(self.start)}-{_hhmm(self.end % MINUTES_PER_DAY)}"


@dataclass(frozen=True)
class Allowance:
    name: str
    domains: frozenset[str]  # what it opens: these names and their sub-domains, where blocked
    minutes_per_day: float = 0.0  # 0: only in its windows
    max_opens_per_day: int | None = None
    min_gap_minutes: float = 0.0
    windows: tuple[Window, ...] = ()
    day_starts_at: int = 0  # minutes after local midnight
    line: int = 0  # where it is written, for the ratchet's warnings
    index: int = 0
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    def line_of(self, key: str) -> int:
        return dict(self.key_lines).get(key, self.line)

    def opens(self, name: str) -> bool:
        labels = name.split(".")
        return any(".".join(labels[i:]) in self.domains for i in range(len(labels)))


SiteCatalog = Mapping[str, frozenset[str]]
"""A site or preset name as written in ``sites:`` -> the domains it opens."""


@cache
def builtin_catalog() -> Mapping[str, frozenset[str]]:
    """Every preset (all its sites) and every site group of the presets, by name."""
    from detoxd.core import presets  # package data, read once per process

    catalog: dict[str, set[str]] = {}
    for preset in presets.PRESET_NAMES:
        groups = presets.load_groups(preset)
        catalog[preset] = {domain for group in groups.values() for domain in group}
        for site, group in groups.items():
            catalog.setdefault(site, set()).update(group)
    return {name: frozenset(found) for name, found in catalog.items()}


# ---- parsing `allowances:` ----

_TIME = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")
_WINDOW = re.compile(
    r"\s*(?:(?P<days>[A-Za-z,\s-]+?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*")


def parse_time(text: str, *, allow_24: bool = False) -> int | None:
    """Minutes after midnight of "HH:MM", or None."""
    match = _TIME.fullmatch(text.strip())
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours == 24 and (minutes or not allow_24):
        return None
    return hours * 60 + minutes


def parse_days(text: str) -> frozenset[int] | None:
    """"Mon-Fri", "Sat", "Mon,Wed,Fri", "Fri-Mon" (wraps), "daily"; None when not understood."""
    words = text.strip().lower()
    if words in ("daily", "every day", "mon-sun"):
        return frozenset(range(7))
    chosen: set[int] = set()
    for part in words.split(","):
        ends = [piece.strip()[:3] for piece in part.split("-")]
        if len(ends) not in (1, 2) or any(end not in DAY_NAMES for end in ends):
            return None
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        chosen.update((first + step) % 7 for step in range((last - first) % 7 + 1))
    return frozenset(chosen)


def parse_window(text: str) -> tuple[Window, ...] | str:
    """One ``windows:`` entry → its weekly windows, or the reason it is wrong."""
    match = _WINDOW.fullmatch(text)
    if not match:
        return f"{text!r} is not a window (expected like 'Mon-Fri 12:30-12:50')"
    days = parse_days(match.group("days")) if match.group("days") else frozenset(range(7))
    if days is None:
        return f"{match.group('days')!r}: days are Mon..Sun, ranges (Mon-Fri), lists (Sat,Sun) or daily"
    start, end = parse_time(match.group("start")), parse_time(match.group("end"), allow_24=True)
    if start is None or end is None:
        return f"{text!r}: times are HH:MM, from 00:00 to 24:00"
    if start == end % MINUTES_PER_DAY:
        return f"{text!r}: a window must not start when it ends"
    if end <= start:
        end += MINUTES_PER_DAY  # past midnight: ends the next day
    return tuple(Window(day, start, end) for day in sorted(days))


def parse_allowances(
    source: Source, node: Node, path: str, catalog: SiteCatalog
) -> tuple[Allowance, ...]:
    """The ``allowances:`` list of blocklist.yaml; every problem is reported to ``source``."""
    result: list[Allowance] = []
    names: dict[str, int] = {}
    entries = as_list(source, node, path) or []
    if len(entries) > MAX_ALLOWANCES:
        source.error(node.line, path, f"at most {MAX_ALLOWANCES} allowances")
        return ()
    for index, entry in enumerate(entries):
        item_path = join(path, index)
        allowance = _parse_one(source, entry, item_path, catalog, index)
        if allowance is None:
            continue
        if allowance.name in names:
            source.error(entry.line, join(item_path, "name"),
                         f"{allowance.name!r} is already the name of allowances[{names[allowance.name]}]")
            continue
        names[allowance.name] = index
        result.append(allowance)
    return tuple(result)


def _parse_one(
    source: Source, node: Node, path: str, catalog: SiteCatalog, index: int
) -> Allowance | None:
    fields = as_mapping(source, node, path, ALLOWANCE_KEYS)
    if fields is None:
        return None
    errors_before = len(source.errors)
    name = _name(source, fields, node, path)
    sites = _sites(source, fields, node, path, catalog)
    minutes = _number(source, fields, path, "minutes_per_day", 0.0, MINUTES_PER_DAY)
    opens = _number(source, fields, path, "max_opens_per_day", 1, 1000, integer=True)
    gap = _number(source, fields, path, "min_gap_minutes", 0.0, 7 * MINUTES_PER_DAY)
    windows = _windows(source, fields, path)
    day_start = _day_start(source, fields, path)
    if "minutes_per_day" not in fields and "windows" not in fields:
        source.error(node.line, path, "an allowance needs minutes_per_day, windows, or both")
    if len(source.errors) > errors_before or name is None:
        return None
    return Allowance(name, sites, minutes or 0.0, None if opens is None else int(opens), gap or 0.0,
                     windows, day_start, node.line, index, tuple(node.key_lines.items()))


def _name(source: Source, fields: dict[str, Node], node: Node, path: str) -> str | None:
    if "name" not in fields:
        source.error(node.line, path, "missing key name (what you type: detoxd open NAME)")
        return None
    name = as_str(source, fields["name"], join(path, "name"))
    if name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", name):
        source.error(fields["name"].line, join(path, "name"),
                     f"{name!r}: use lower-case letters, digits, '.', '_' or '-' (at most 64)")
        return None
    return name


def _sites(
    source: Source, fields: dict[str, Node], node: Node, path: str, catalog: SiteCatalog
) -> frozenset[str]:
    if "sites" not in fields:
        source.error(node.line, path, "missing key sites (names or presets it opens)")
        return frozenset()
    opened: set[str] = set()
    entries = as_str_list(source, fields["sites"], join(path, "sites"))
    if not entries and fields["sites"].kind == "seq":
        source.error(fields["sites"].line, join(path, "sites"), "list at least one site")
    for raw, line, item_path in entries:
        if raw in catalog:  # a preset (all its sites) or a site of one ("twitter")
            opened |= catalog[raw]
            continue
        checked = domain_names.normalize_domain(raw)
        if checked.warning:
            source.warn(line, item_path, checked.warning)
        if checked.name is None:
            source.error(line, item_path, (checked.error or f"{raw!r} is not a valid domain name")
                         + " (nor a preset or a site such as 'twitter')")
            continue
        opened |= site_of(checked.name, catalog)
    return frozenset(opened)


def site_of(name: str, catalog: SiteCatalog) -> frozenset[str]:
    """``name`` with the rest of its site: twitter.com brings x.com, t.co and twimg.com along.

    Sites are the smallest catalog entries that hold the name (a site group, not its preset)."""
    holders = [found for found in catalog.values() if any(_within(name, d) for d in found)]
    if not holders:
        return frozenset({name})
    smallest = min(len(found) for found in holders)
    return frozenset({name}).union(*(found for found in holders if len(found) == smallest))


def _within(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def _number(source: Source, fields: dict[str, Node], path: str, key: str, minimum: float,
            maximum: float, *, integer: bool = False) -> float | None:
    if key not in fields:
        return None
    return as_number(source, fields[key], join(path, key), minimum=minimum, maximum=maximum,
                     integer=integer)


def _windows(source: Source, fields: dict[str, Node], path: str) -> tuple[Window, ...]:
    if "windows" not in fields:
        return ()
    found: list[Window] = []
    for text, line, item_path in as_str_list(source, fields["windows"], join(path, "windows")):
        parsed = parse_window(text)
        if isinstance(parsed, str):
            source.error(line, item_path, parsed)
        else:
            found += parsed
    if len(found) > MAX_WINDOWS:
        source.error(fields["windows"].line, join(path, "windows"), f"at most {MAX_WINDOWS} windows a week")
    return tuple(sorted(set(found)))


def _day_start(source: Source, fields: dict[str, Node], path: str) -> int:
    if "day_starts_at" not in fields:
        return 0
    text = as_str(source, fields["day_starts_at"], join(path, "day_starts_at"))
    minutes = parse_time(text) if text is not None else None
    if text is not None and minutes is None:
        source.error(fields["day_starts_at"].line, join(path, "day_starts_at"),
                     f"{text!r} is not a time of day (HH:MM, quoted: \"04:00\")")
    return minutes or 0


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
class Session:
    """An open on demand, on the trusted clock."""

    until: datetime
    counted_to: datetime  # time spent is counted up to here


@dataclass(frozen=True)
class Usage:
    day: date | None = None  # the day spent_seconds and opens belong to
    spent_seconds: float = 0.0
    opens: int = 0
    last_closed: datetime | None = None  # when the last open ended (min_gap_minutes)
    session: Session | None = None
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
        return Refusal("no detox is running: nothing is blocked, so there is nothing to open")
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
    opened = replace(usage, opens=usage.opens + 1, session=Session(until, now))
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

def window_spans(rule: Allowance, around: datetime, tz: tzinfo, *,
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


def current_window(rule: Allowance, now: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
    if not rule.windows:
        return None
    # Two days ahead: enough to join windows that touch across midnights (called every tick).
    return next(((s, e) for s, e in window_spans(rule, now, tz, days_ahead=2) if s <= now < e), None)


def next_window(rule: Allowance, now: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
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


# ---- the ratchet ----

def ratchet(
    ceiling: Sequence[Allowance] | None, rules: Sequence[Allowance], file: str
) -> tuple[tuple[Allowance, ...], list[ConfigIssue]]:
    """``rules`` held within ``ceiling`` (None: no locked detox, everything applies as written).

    Returns the rules in force and a warning for each refused addition or raise."""
    if ceiling is None:
        return tuple(rules), []
    by_name = {rule.name: rule for rule in ceiling}
    kept: list[Allowance] = []
    issues: list[ConfigIssue] = []
    for rule in rules:
        path = f"allowances[{rule.index}]"
        old = by_name.get(rule.name)
        if old is None:
            issues.append(ConfigIssue(file, rule.line, path, f"new allowance {rule.name!r} refused: "
                                      "allowances cannot be added during a locked detox", "warning"))
            continue
        held, problems = _hold(old, rule)
        issues += [ConfigIssue(file, rule.line_of(key), join(path, key), problem + " during a locked "
                               "detox: refused until it ends", "warning") for key, problem in problems]
        kept.append(held)
    return tuple(kept), issues


def _hold(old: Allowance, new: Allowance) -> tuple[Allowance, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    minutes = new.minutes_per_day
    if minutes > old.minutes_per_day:
        problems.append(("minutes_per_day", f"raised from {old.minutes_per_day:g} to {minutes:g}"))
        minutes = old.minutes_per_day
    opens = new.max_opens_per_day
    if old.max_opens_per_day is not None and (opens is None or opens > old.max_opens_per_day):
        problems.append(("max_opens_per_day",
                         f"raised from {old.max_opens_per_day} to {opens or 'no limit'}"))
        opens = old.max_opens_per_day
    gap = new.min_gap_minutes
    if gap < old.min_gap_minutes:
        problems.append(("min_gap_minutes", f"lowered from {old.min_gap_minutes:g} to {gap:g}"))
        gap = old.min_gap_minutes
    sites = new.domains & old.domains
    if sites != new.domains:
        added = ", ".join(sorted(new.domains - old.domains)[:5])
        problems.append(("sites", f"sites added ({added})"))
    windows = intersect_windows(new.windows, old.windows)
    if windows != tuple(sorted(new.windows)):
        problems.append(("windows", "windows widened or added"))
    if new.day_starts_at != old.day_starts_at:
        # Moving the day's start could count one day's minutes twice.
        problems.append(("day_starts_at", "changed"))
    held = replace(new, domains=sites, minutes_per_day=minutes, max_opens_per_day=opens,
                   min_gap_minutes=gap, windows=windows, day_starts_at=old.day_starts_at)
    return held, problems


def intersect_windows(new: Sequence[Window], old: Sequence[Window]) -> tuple[Window, ...]:
    """The parts of ``new`` that lie within ``old``, on the weekly circle."""
    pieces: list[Window] = []
    for window in sorted(new):
        start, end = window.week_span()
        cuts: list[tuple[int, int]] = []
        for other in old:
            other_start, other_end = other.week_span()
            for shift in (-WEEK_MINUTES, 0, WEEK_MINUTES):
                low, high = max(start, other_start + shift), min(end, other_end + shift)
                if low < high:
                    cuts.append((low, high))
        for low, high in _merge(cuts):
            day = (low // MINUTES_PER_DAY) % 7
            offset = (low // MINUTES_PER_DAY) * MINUTES_PER_DAY
            pieces.append(Window(day, low - offset, high - offset))
    return tuple(sorted(set(pieces)))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


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
        session=None if session is None else Session(_moment(session["until"]),
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


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(seconds: float) -> str:
    return f"{math.floor(seconds / 60 + 1e-9):d}" if seconds >= 60 else f"{seconds / 60:.1f}"


def _local(moment: datetime, tz: tzinfo, *, weekday: bool = False) -> str:
    local = moment.astimezone(tz)
    return local.strftime("%a %H:%M" if weekday else "%H:%M")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _iso_full(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None

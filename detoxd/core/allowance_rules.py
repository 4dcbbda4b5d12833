"""Allowances' rules as blocklist.yaml writes them, and the ratchet that holds them during a
locked detox (pure: values in, values out). What they do over time is in
:mod:`detoxd.core.allowances`, which re-exports everything here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache

from detoxd.core import domains as domain_names
from detoxd.core.yamlsource import (
    ConfigIssue,
    Node,
    Source,
    as_mapping,
    as_named_list,
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
    return tuple(as_named_list(source, node, path, limit=MAX_ALLOWANCES, noun="allowances",
                               parse=lambda entry, item_path, index:
                               _parse_one(source, entry, item_path, catalog, index)))


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
    if name is not None and not valid_name(name):
        source.error(fields["name"].line, join(path, "name"),
                     f"{name!r}: use lower-case letters, digits, '.', '_' or '-' (at most 64)")
        return None
    return name


def valid_name(name: str) -> bool:
    """A name people type (`detoxd open NAME`) or read in status: allowances, schedule entries."""
    return re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", name) is not None


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



# ---- small helpers ----

def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


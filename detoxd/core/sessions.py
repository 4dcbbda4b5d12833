"""The `me`, `peers` and `sessions` sections of detoxd.yaml: who meets, and when (pure parsing).

The challenge: pick five peers you trust, meet as six, give each business 30 minutes in the
hot seat, and repeat seven days later. This module only reads and validates the settings;
:mod:`detoxd.core.plan` turns them into the two sessions.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detoxd.core.yamlsource import (
    Node,
    Source,
    as_list,
    as_mapping,
    as_number,
    as_str,
    join,
)

CHALLENGE_PEERS = 5
MAX_NAME_LENGTH = 100
MAX_LOCATION_LENGTH = 500
MAX_REMINDERS = 10
MAX_REMINDER = timedelta(days=30)
MAX_REPEAT_DAYS = 60
MAX_SLOT_MINUTES = 8 * 60
MAX_BREAK_MINUTES = 2 * 60

# Deliberately loose (local@domain.tld); it catches typos, not every RFC 5321 corner.
# The excluded characters would break the calendar's mailto: address or the worksheet.
_EMAIL = re.compile(r"[^@\s<>()\[\]\\,;:\"]+@[^@\s<>()\[\]\\,;:\"]+\.[^@\s<>()\[\]\\,;:\".]+")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
_FIRST_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")

SESSION_KEYS = {
    "first", "timezone", "repeat_after_days", "minutes_per_business", "break_minutes",
    "location", "reminders", "repeat",
}
REPEATS = ("weekly", "monthly")  # `sessions.repeat`: further sessions after the two


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None = None
    line: int = field(default=0, compare=False)  # where the entry is, for later cross-checks


@dataclass(frozen=True)
class SessionSettings:
    first: datetime  # naive: a wall-clock time in `timezone`
    timezone: str | None = None  # IANA name; None = the system's zone, resolved by the shell
    repeat_after_days: int = 7
    slot_length: timedelta = timedelta(minutes=30)
    break_length: timedelta = timedelta(0)
    location: str | None = None
    reminders: tuple[timedelta, ...] = ()  # before each session, longest first
    line: int = field(default=0, compare=False)  # of `sessions.first`, for warnings about it
    repeat: str | None = None  # "weekly" | "monthly": further sessions after the two, same peers
    # `first: "day N HH:MM"`: the detox's N-th day (day 1: the day it starts), then ``first``'s date
    # is a placeholder and :meth:`anchored` gives the real one; None: ``first`` is a calendar time.
    first_day: int | None = None

    def anchored(self, detox_day_one: date) -> SessionSettings:
        """The settings with ``first`` on the detox's day :attr:`first_day`, when it is relative."""
        if self.first_day is None:
            return self
        day = detox_day_one + timedelta(days=self.first_day - 1)
        return replace(self, first=datetime.combine(day, self.first.time()), first_day=None)


# ---- `me` and `peers` ----

def parse_me(source: Source, node: Node, path: str) -> Person | None:
    return _person(source, node, path)


def parse_peers(source: Source, node: Node, path: str) -> tuple[Person, ...]:
    items = as_list(source, node, path)
    if items is None:
        return ()
    people: list[Person] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        item_path = join(path, index)
        person = _person(source, item, item_path)
        if person is None:
            continue
        key = _name_key(person.name)
        if key in seen:
            source.error(item.line, join(item_path, "name"),
                         f"{person.name!r} is already a peer (line {seen[key]}); names must be unique")
            continue
        seen[key] = item.line
        people.append(person)
    if items and len(items) != CHALLENGE_PEERS:  # none at all: see check_people
        source.warn(node.line, path, f"the challenge is you and {CHALLENGE_PEERS} peers; "
                    f"{len(items)} listed (sessions will have {len(items) + 1} hot seats)")
    return tuple(people)


def _person(source: Source, node: Node, path: str) -> Person | None:
    if node.kind == "scalar" and isinstance(node.value, str):  # the short form: just a name
        name = _name(source, node, path)
        return Person(name, None, node.line) if name else None
    fields = as_mapping(source, node, path, {"name", "email"})
    if fields is None:
        return None
    if "name" not in fields:
        source.error(node.line, join(path, "name"), "required")
        return None
    name = _name(source, fields["name"], join(path, "name"))
    email = _email(source, fields["email"], join(path, "email")) if "email" in fields else None
    return Person(name, email, node.line) if name else None


def _name(source: Source, node: Node, path: str) -> str | None:
    text = as_str(source, node, path)
    if text is None:
        return None
    name = " ".join(text.split())
    if not name:
        source.error(node.line, path, "must not be empty")
    elif len(name) > MAX_NAME_LENGTH:
        source.error(node.line, path, f"longer than {MAX_NAME_LENGTH} characters")
    elif _has_control_characters(name):
        source.error(node.line, path, "must not contain control characters")
    else:
        return name
    return None


def _email(source: Source, node: Node, path: str) -> str | None:
    if node.kind == "scalar" and node.value is None:  # `email:` left blank = no email
        return None
    text = as_str(source, node, path)
    if text is None:
        return None
    email = text.strip()
    if _EMAIL.fullmatch(email) and not _has_control_characters(email):
        return email
    source.error(node.line, path, f"{text!r} does not look like an email address (name@example.com)")
    return None


def _name_key(name: str) -> str:
    return name.casefold()


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char).startswith("C") for char in text)


# ---- `sessions` ----

def parse_sessions(source: Source, node: Node, path: str) -> SessionSettings | None:
    fields = as_mapping(source, node, path, SESSION_KEYS)
    if fields is None:
        return None
    if "first" not in fields:
        source.error(node.line, join(path, "first"), "required: when the first session starts "
                     "(YYYY-MM-DD HH:MM, local time)")
    # Every key is read even when `first` is wrong, so that all errors are reported in one go.
    first = _first(source, fields["first"], join(path, "first")) if "first" in fields else None
    timezone = _timezone(source, fields, path)
    repeat_after_days = _repeat_days(source, fields, path)
    slot_length = _minutes(source, fields, path, "minutes_per_business", 30, MAX_SLOT_MINUTES,
                           allow_zero=False)
    break_length = _minutes(source, fields, path, "break_minutes", 0, MAX_BREAK_MINUTES,
                            allow_zero=True)
    location = _location(source, fields, path)
    reminders = _reminders(source, fields, path)
    repeat = _repeat(source, fields, path)
    if first is None:
        return None
    first_day = None
    if isinstance(first, tuple):  # `day N HH:MM`
        first_day, first = first
    return SessionSettings(first, timezone, repeat_after_days, slot_length, break_length,
                           location, reminders, line=fields["first"].line, repeat=repeat,
                           first_day=first_day)


_RELATIVE_FIRST = re.compile(r"day\s+(\d{1,3})\s+(\d{1,2}):(\d{2})", re.IGNORECASE)
MAX_FIRST_DAY = 365


def _first(source: Source, node: Node, path: str) -> datetime | tuple[int, datetime] | None:
    """A calendar time (naive, in `timezone`), or `day N HH:MM` as (N, that time on a placeholder
    date): the detox's N-th day, so the sessions follow the detox's start (`start --at` too)."""
    value = node.value if node.kind == "scalar" else None
    relative = _RELATIVE_FIRST.fullmatch(value.strip()) if isinstance(value, str) else None
    if relative is not None:
        day, hour, minute = (int(group) for group in relative.groups())
        if not 1 <= day <= MAX_FIRST_DAY or hour > 23 or minute > 59:
            source.error(node.line, path, f"{relative.group(0)!r}: day 1 to {MAX_FIRST_DAY} of the "
                         "detox, at a time from 00:00 to 23:59")
            return None
        return day, datetime(2000, 1, 1, hour, minute)
    if isinstance(value, datetime):  # a YAML timestamp (it needs seconds: 2026-12-03 09:00:00)
        if value.tzinfo is not None:
            source.error(node.line, path, "give the local time without a UTC offset; "
                         "the zone is sessions.timezone")
            return None
        return value
    if isinstance(value, date):
        source.error(node.line, path, "needs a time of day too: YYYY-MM-DD HH:MM")
        return None
    text = as_str(source, node, path)
    if text is None:
        return None
    for layout in _FIRST_FORMATS:
        try:
            return datetime.strptime(text.strip(), layout)
        except ValueError:
            continue
    source.error(node.line, path, f"{text!r} is not a date and time (YYYY-MM-DD HH:MM, or "
                 "day N HH:MM: the detox's N-th day)")
    return None


def _timezone(source: Source, fields: dict[str, Node], path: str) -> str | None:
    if "timezone" not in fields:
        return None
    node = fields["timezone"]
    name = as_str(source, node, join(path, "timezone"))
    if name is None:
        return None
    if valid_timezone(name):
        return name
    source.error(node.line, join(path, "timezone"),
                 f"unknown time zone {name!r} (an IANA name such as Europe/London)")
    return None


def valid_timezone(name: str) -> bool:
    """True for a zone in the tz database (its files are data, read like a lookup table)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _repeat(source: Source, fields: dict[str, Node], path: str) -> str | None:
    """`repeat: weekly|monthly` (left out: the two sessions only)."""
    if "repeat" not in fields:
        return None
    node, key_path = fields["repeat"], join(path, "repeat")
    text = as_str(source, node, key_path)
    if text is None:
        return None
    if text.strip().lower() in REPEATS:
        return text.strip().lower()
    source.error(node.line, key_path, f"{text!r} is not a repeat: weekly or monthly (or leave it "
                 "out for the two sessions only)")
    return None


def _repeat_days(source: Source, fields: dict[str, Node], path: str) -> int:
    if "repeat_after_days" not in fields:
        return 7
    days = as_number(source, fields["repeat_after_days"], join(path, "repeat_after_days"),
                     minimum=1, maximum=MAX_REPEAT_DAYS, integer=True)
    return 7 if days is None else int(days)


def _minutes(
    source: Source, fields: dict[str, Node], path: str, key: str, default: int, maximum: int,
    *, allow_zero: bool,
) -> timedelta:
    """A length as whole minutes (30) or as a duration (30m, 1h)."""
    if key not in fields:
        return timedelta(minutes=default)
    node, key_path = fields[key], join(path, key)
    length = duration(source, node, key_path)
    if length is None:
        return timedelta(minutes=default)
    if not (timedelta(0) if allow_zero else timedelta(minutes=1)) <= length <= timedelta(minutes=maximum):
        low = 0 if allow_zero else 1
        source.error(node.line, key_path, f"must be between {low} and {maximum} minutes")
        return timedelta(minutes=default)
    return length


def _location(source: Source, fields: dict[str, Node], path: str) -> str | None:
    if "location" not in fields:
        return None
    node, key_path = fields["location"], join(path, "location")
    text = as_str(source, node, key_path)
    if text is None:
        return None
    location = text.strip()
    if len(location) > MAX_LOCATION_LENGTH:
        source.error(node.line, key_path, f"longer than {MAX_LOCATION_LENGTH} characters")
    elif _has_control_characters(location):
        source.error(node.line, key_path, "must not contain control characters")
    else:
        return location or None
    return None


def _reminders(source: Source, fields: dict[str, Node], path: str) -> tuple[timedelta, ...]:
    if "reminders" not in fields:
        return ()
    node, key_path = fields["reminders"], join(path, "reminders")
    items = as_list(source, node, key_path) or []
    if len(items) > MAX_REMINDERS:
        source.error(node.line, key_path, f"at most {MAX_REMINDERS} reminders")
        return ()
    found: set[timedelta] = set()
    for index, item in enumerate(items):
        item_path = join(key_path, index)
        before = duration(source, item, item_path)
        if before is None:
            continue
        if not timedelta(minutes=1) <= before <= MAX_REMINDER:
            source.error(item.line, item_path, "must be between 1m and 30d before the session")
        elif before in found:
            source.warn(item.line, item_path, "the same reminder twice; it is sent once")
        else:
            found.add(before)
    return tuple(sorted(found, reverse=True))


def duration(source: Source, node: Node, path: str) -> timedelta | None:
    """``30m``, ``1h``, ``1d`` (or combined: ``1h30m``); a bare whole number means minutes."""
    value = node.value if node.kind == "scalar" else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(minutes=value)
    text = value.strip().lower() if isinstance(value, str) else None
    match = _DURATION.fullmatch(text) if text else None
    if match is None or not any(match.groups()):
        shown = repr(value) if isinstance(value, str) else _describe(node)
        source.error(node.line, path, f"{shown} is not a duration (such as 30m, 1h, 1d)")
        return None
    days, hours, minutes = (int(group or 0) for group in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def _describe(node: Node) -> str:
    if node.kind != "scalar":
        return "a mapping" if node.kind == "map" else "a list"
    return "empty" if node.value is None else repr(node.value)


# ---- rules that span sections ----

def check_people(
    source: Source, me: Person | None, peers: tuple[Person, ...], sessions: SessionSettings | None
) -> None:
    """Rules no single section can check: call after all sections are parsed."""
    if me is not None:
        for peer in peers:
            if _name_key(peer.name) == _name_key(me.name):
                source.error(peer.line, "peers", f"{peer.name!r} is also `me.name`; names must be unique")
    if sessions is None:
        return
    if me is None:
        source.warn(sessions.line, "me", "not set: your own hot seat is called 'You' "
                    "(add `me: {name: ..., email: ...}`)")
    if not peers:
        source.warn(sessions.line, "peers", f"no peers listed: the challenge is you and "
                    f"{CHALLENGE_PEERS} people you trust")

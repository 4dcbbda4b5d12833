"""Weekly block windows (`schedule:` in detoxd.yaml) and their ratchet (pure: values in, values out).

A schedule entry blocks names on a weekly rhythm, with or without a detox running::

    schedule:
      - name: workdays
        days: [mon, tue, wed, thu, fri]
        from: "09:00"
        to: "17:30"              # may cross midnight ("22:00" to "07:00")
        block:                   # leave it out: the whole blocklist
          presets: [social]
          domains: [news.ycombinator.com]
        lock: true               # loosening edits wait 24 hours

Times are local wall times, planned exactly as the allowances' windows are
(:func:`detoxd.core.allowances.window_spans`: DST gaps and repeats, time zone changes, the trusted
clock), so a clock set back or forward does not open or close a window.

The ratchet: a window in force cannot be shortened or removed until it ends, and an entry with
``lock: true`` keeps every loosening edit (removed, shorter, fewer days, fewer names, the lock
taken off) waiting :data:`LOCK_DELAY` before it takes effect. While an edit waits, the entry as
it was keeps blocking next to the entry as written, so adding or widening is immediate.
:func:`reconcile` decides this on each config load and :func:`release` as time passes; the state
(:class:`ScheduleState`) is saved by the daemon and survives restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from functools import cached_property
from typing import Any

from detoxd.core import domains as domain_names
from detoxd.core.allowance_rules import (
    DAY_NAMES,
    MINUTES_PER_DAY,
    Window,
    intersect_windows,
    parse_time,
    valid_name,
)
from detoxd.core.allowances import current_window, next_window, window_spans
from detoxd.core.yamlsource import (
    ConfigIssue,
    Node,
    Source,
    as_bool,
    as_mapping,
    as_named_list,
    as_str,
    as_str_list,
    join,
)

SCHEDULE_KEYS = {"name", "days", "from", "to", "block", "lock"}
BLOCK_KEYS = {"presets", "domains", "apps"}
MAX_ENTRIES = 64
LOCK_DELAY = timedelta(hours=24)


@dataclass(frozen=True)
class BlockWindow:
    """One schedule entry. ``presets`` None: the whole blocklist (``block:`` left out)."""

    name: str
    days: frozenset[int]  # 0 is Monday
    start: int  # minutes after midnight
    end: int  # minutes after the start day's midnight; above 1440 past midnight
    presets: tuple[str, ...] | None = None
    domains: tuple[str, ...] = ()
    lock: bool = False
    line: int = field(default=0, compare=False)
    apps: tuple[str, ...] = field(default=(), kw_only=True)  # app rules of blocklist.yaml, by name
    index: int = field(default=0, compare=False)
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    @cached_property
    def windows(self) -> tuple[Window, ...]:  # (read for every day planned: made once)
        return tuple(Window(day, self.start, self.end) for day in sorted(self.days))

    @property
    def whole_blocklist(self) -> bool:
        return self.presets is None

    def line_of(self, key: str) -> int:
        return dict(self.key_lines).get(key, self.line)

    def describe(self) -> str:
        days = ",".join(DAY_NAMES[day] for day in sorted(self.days))
        what = "the whole blocklist" if self.whole_blocklist else ", ".join(
            [*(self.presets or ()), *self.domains]) or "nothing"
        return f"{days} {_hhmm(self.start)}-{_hhmm(self.end % MINUTES_PER_DAY)}: {what}"


# ---- parsing ----

def parse_schedule(source: Source, node: Node, path: str) -> tuple[BlockWindow, ...]:
    """The ``schedule:`` list of detoxd.yaml; every problem is reported to ``source``."""
    from detoxd.core.presets import PRESET_NAMES  # package data: the names of its files

    return tuple(as_named_list(source, node, path, limit=MAX_ENTRIES, noun="schedule entries",
                               parse=lambda entry, item_path, index:
                               _parse_entry(source, entry, item_path, index, PRESET_NAMES)))


def _parse_entry(source: Source, node: Node, path: str, index: int,
                 known_presets: Sequence[str]) -> BlockWindow | None:
    fields = as_mapping(source, node, path, SCHEDULE_KEYS)
    if fields is None:
        return None
    before = len(source.errors)
    for key in ("name", "days", "from", "to"):
        if key not in fields:
            source.error(node.line, path, f"missing key {key}")
    name = as_str(source, fields["name"], join(path, "name")) if "name" in fields else None
    if name is not None and not valid_name(name):
        source.error(fields["name"].line, join(path, "name"),
                     f"{name!r}: use lower-case letters, digits, '.', '_' or '-' (at most 64)")
    days = _days(source, fields["days"], join(path, "days")) if "days" in fields else frozenset()
    start = _time(source, fields["from"], join(path, "from")) if "from" in fields else None
    end = _time(source, fields["to"], join(path, "to"), allow_24=True) if "to" in fields else None
    if start is not None and end is not None:
        if start == end % MINUTES_PER_DAY and end != MINUTES_PER_DAY:  # ("00:00" to "24:00": a day)
            source.error(fields["to"].line, join(path, "to"), "a window must not end when it starts")
        elif end <= start:
            end += MINUTES_PER_DAY  # past midnight: ends the next day
    presets: tuple[str, ...] | None = None
    names: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    if "block" in fields:
        presets, names, apps = _block(source, fields["block"], join(path, "block"), known_presets)
    lock = False
    if "lock" in fields:
        lock = bool(as_bool(source, fields["lock"], join(path, "lock")))
    if len(source.errors) > before or name is None or start is None or end is None:
        return None
    key_lines = tuple(node.key_lines.items())
    block = fields.get("block")
    if block is not None and block.kind == "map" and "apps" in block.value:
        key_lines += (("block.apps", block.value["apps"].line),)
    return BlockWindow(name, days, start, end, presets, names, lock, node.line, index, key_lines,
                       apps=apps)


def _days(source: Source, node: Node, path: str) -> frozenset[int]:
    chosen: set[int] = set()
    entries = as_str_list(source, node, path)
    if not entries and node.kind == "seq":
        source.error(node.line, path, "list at least one day")
    for text, line, item_path in entries:
        word = text.strip().lower()
        if len(word) < 3 or word[:3] not in DAY_NAMES or not _day_word(word):
            source.error(line, item_path, f"{text!r} is not a day (mon, tue, wed, thu, fri, sat, sun)")
            continue
        chosen.add(DAY_NAMES.index(word[:3]))
    return frozenset(chosen)


def _day_word(word: str) -> bool:
    full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    return any(day.startswith(word) for day in full)


def _time(source: Source, node: Node, path: str, *, allow_24: bool = False) -> int | None:
    value = node.value if node.kind == "scalar" else None
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 17:30 as the number 1050 (base 60).
        source.error(node.line, path, "write the time in quotes, like \"17:30\"")
        return None
    text = as_str(source, node, path)
    if text is None:
        return None
    minutes = parse_time(text, allow_24=allow_24)
    if minutes is None:
        source.error(node.line, path, f"{text!r} is not a time of day (\"HH:MM\", 00:00 to 24:00)")
    return minutes


def _block(source: Source, node: Node, path: str,
           known: Sequence[str]) -> tuple[tuple[str, ...] | None, tuple[str, ...], tuple[str, ...]]:
    fields = as_mapping(source, node, path, BLOCK_KEYS)
    if fields is None:
        return None, (), ()
    presets: list[str] = []
    for raw, line, item_path in (as_str_list(source, fields["presets"], join(path, "presets"))
                                 if "presets" in fields else []):
        if raw not in known:
            source.error(line, item_path, f"unknown preset {raw!r} (available: {', '.join(sorted(known))})")
        elif raw not in presets:
            presets.append(raw)
    names: list[str] = []
    for raw, line, item_path in (as_str_list(source, fields["domains"], join(path, "domains"))
                                 if "domains" in fields else []):
        checked = domain_names.normalize_domain(raw)
        if checked.warning:
            source.warn(line, item_path, checked.warning)
        if checked.name is None:
            source.error(line, item_path, checked.error or f"{raw!r} is not a valid domain name")
        elif checked.name not in names:
            names.append(checked.name)
    apps = tuple(dict.fromkeys(name for name, _, _ in (
        as_str_list(source, fields["apps"], join(path, "apps")) if "apps" in fields else [])))
    if not presets and not names and not apps:
        source.error(node.line, path, "name presets, domains or apps to block (or leave block: out "
                     "to block the whole blocklist)")
    return tuple(presets), tuple(names), apps


def check_apps(schedule: Sequence[BlockWindow], known: Iterable[str],
               file: str = "detoxd.yaml") -> list[ConfigIssue]:
    """`block.apps` names app rules of blocklist.yaml's `apps:` (a rule across the two files)."""
    names = set(known)
    listed = ", ".join(sorted(names)) or "none: blocklist.yaml has no apps:"
    return [ConfigIssue(file, rule.line_of("block.apps"), f"schedule[{rule.index}].block.apps",
                        f"no app rule named {app!r} in blocklist.yaml (apps: {listed})")
            for rule in schedule for app in rule.apps if app not in names]


def check_after(source: Source, after: Iterable[tuple[str, int, str]],
                schedule: Sequence[BlockWindow]) -> None:
    """`detox.after` names schedule entries (a rule across two sections)."""
    known = {rule.name for rule in schedule}
    for name, line, path in after:
        if name not in known:
            listed = ", ".join(sorted(known)) or "none: schedule: is empty"
            source.error(line, path, f"no schedule entry named {name!r} (schedule entries: {listed})")


# ---- the names a window blocks ----

def names_of(rule: BlockWindow, whole: frozenset[str], preset_hosts: Callable[[str], Iterable[str]],
             allow: Iterable[str]) -> frozenset[str]:
    """What ``rule`` blocks: the whole blocklist (``whole``), or its presets and domains with
    their www. variants, less the blocklist's ``allow:``."""
    if rule.presets is None:
        return whole
    return frozenset(domain_names.expand_in_order(
        domains=rule.domains, presets=[host for name in rule.presets for host in preset_hosts(name)],
        lists=[], allow=allow))


# ---- planning ----

def is_active(rule: BlockWindow, now: datetime, tz: tzinfo) -> bool:
    return current_window(rule, now, tz) is not None


def next_change_of(rule: BlockWindow, now: datetime, tz: tzinfo) -> datetime | None:
    """When ``rule`` next opens (inactive now) or closes (active now)."""
    span = current_window(rule, now, tz)
    if span is not None:
        return span[1]
    upcoming = next_window(rule, now, tz)
    return upcoming[0] if upcoming else None


def plan_rule(rule: BlockWindow, now: datetime, tz: tzinfo) -> tuple[bool, datetime | None]:
    """(active now, next change) from one look at the rule's spans (a tick's planning): the next
    two days first, the week when nothing is found there. A span cut at the end of what was looked
    at only makes the plan come back sooner."""
    for days_ahead in (1, 8):
        spans = window_spans(rule, now, tz, days_ahead=days_ahead)
        for start, end in spans:
            if start <= now < end:
                if days_ahead == 1 and end == spans[-1][1]:
                    break  # may go on past what was looked at: look at the week
                return True, end
            if start > now:
                return False, start
    return False, None


@dataclass(frozen=True)
class Plan:
    active: frozenset[str]  # names of the entries in force now
    blocked: frozenset[str]  # what they block
    whole_apps: bool  # an entry with the whole blocklist is in force: every app rule too
    apps: frozenset[str]  # the app rules the others name
    next_change: datetime | None  # when to plan again (trusted clock)


def plan(rules: Sequence[BlockWindow], names: Mapping[BlockWindow, frozenset[str]],
         state: ScheduleState, now: datetime, tz: tzinfo) -> Plan:
    """Everything a tick needs, each rule's spans computed once."""
    active: list[BlockWindow] = []
    moments = [held.takes_effect(now, tz) for held in state.held]
    for rule in rules:
        on, change = plan_rule(rule, now, tz)
        if on:
            active.append(rule)
        if change is not None:
            moments.append(change)
    found = [names.get(rule, frozenset()) for rule in active]
    blocked = found[0] if len(found) == 1 else frozenset().union(*found)
    later = [moment for moment in moments if moment > now]
    return Plan(frozenset(rule.name for rule in active), blocked,
                any(rule.whole_blocklist for rule in active),
                frozenset(app for rule in active for app in rule.apps), min(later) if later else None)


# ---- the ratchet ----

@dataclass(frozen=True)
class Held:
    """An entry as it was before a loosening edit: it keeps blocking until released."""

    rule: BlockWindow
    since: datetime  # when the edit was first seen (trusted clock)
    edit: str  # what the edit does, for status and warnings

    def not_before(self) -> datetime | None:
        """The lock's delay: None when the entry was not locked."""
        return self.since + LOCK_DELAY if self.rule.lock else None

    def takes_effect(self, now: datetime, tz: tzinfo) -> datetime:
        """When the edit will take effect: after the lock's delay, and never inside a window
        of the entry as it was."""
        moment = max(now, self.not_before() or now)
        span = current_window(self.rule, moment, tz)
        return span[1] if span is not None else moment


@dataclass(frozen=True)
class ScheduleState:
    """What survives restarts: the entries as last in force (what the next config is compared
    with), the held edits, and since when the after-detox entries take over."""

    known: tuple[BlockWindow, ...] = ()
    held: tuple[Held, ...] = ()
    after_since: datetime | None = None


def loosening(old: BlockWindow, new: BlockWindow | None) -> str | None:
    """What ``new`` gives up of ``old`` (None: nothing, it is as tight or tighter)."""
    if new is None:
        return "removed"
    given_up: list[str] = []
    if not old.days <= new.days:
        given_up.append("fewer days")
    elif intersect_windows(old.windows, new.windows) != tuple(sorted(old.windows)):
        given_up.append("shorter")
    if not new.whole_blocklist and (old.whole_blocklist or not (
            set(old.presets or ()) <= set(new.presets or ()) and set(old.domains) <= set(new.domains)
            and set(old.apps) <= set(new.apps))):
        given_up.append("fewer names")
    if old.lock and not new.lock:
        given_up.append("lock taken off")
    return ", ".join(dict.fromkeys(given_up)) or None


def reconcile(state: ScheduleState, written: Sequence[BlockWindow], now: datetime, tz: tzinfo,
              *, file: str = "detoxd.yaml") -> tuple[ScheduleState, list[ConfigIssue]]:
    """A config loaded: which edits take effect now and which are held (with a warning each)."""
    baseline = {held.rule.name: held.rule for held in state.held}
    for rule in state.known:
        baseline.setdefault(rule.name, rule)
    previous = {held.rule.name: held for held in state.held}
    by_name = {rule.name: rule for rule in written}
    held: list[Held] = []
    for name, old in baseline.items():
        new = by_name.get(name)
        edit = loosening(old, new)
        if edit is None:
            continue
        earlier = previous.get(name)
        since = earlier.since if earlier is not None else now
        candidate = Held(old, since, edit)
        if is_active(old, now, tz) or old.lock:
            held.append(candidate)
    kept = release(ScheduleState(tuple(written), tuple(held), state.after_since), now, tz)[0]
    return kept, held_issues(kept, written, now, tz, file)


def release(state: ScheduleState, now: datetime, tz: tzinfo) -> tuple[ScheduleState, list[Held]]:
    """Time passed: held edits whose time has come take effect. Returns the edits released."""
    done = [held for held in state.held if held.takes_effect(now, tz) <= now]
    if not done:
        return state, []
    return replace(state, held=tuple(held for held in state.held if held not in done)), done


def held_issues(state: ScheduleState, written: Sequence[BlockWindow], now: datetime, tz: tzinfo,
                file: str = "detoxd.yaml") -> list[ConfigIssue]:
    by_name = {rule.name: rule for rule in written}
    issues: list[ConfigIssue] = []
    for held in state.held:
        new = by_name.get(held.rule.name)
        where = new if new is not None else held.rule
        path = f"schedule[{where.index}]"
        why = "its window is in force" if is_active(held.rule, now, tz) else "it has lock: true"
        if held.rule.lock and is_active(held.rule, now, tz):
            why = "it has lock: true and its window is in force"
        when = held.takes_effect(now, tz).astimezone(tz).strftime("%a %Y-%m-%d %H:%M")
        issues.append(ConfigIssue(file, where.line, path, f"schedule entry {held.rule.name!r} "
                                  f"{held.edit}: held until {when} because {why}", "warning"))
    return issues


def in_force(state: ScheduleState, written: Sequence[BlockWindow],
             *, detox_active: bool, after: Iterable[str]) -> tuple[BlockWindow, ...]:
    """The entries that block (when their windows are open): as written, plus the held versions.
    Entries named in `detox.after` start when a detox ends (``state.after_since``)."""
    waiting = set() if state.after_since is not None or detox_active else set(after)
    rules = [rule for rule in written if rule.name not in waiting]
    rules += [held.rule for held in state.held]
    return tuple(rules)


def active_names(rules: Sequence[BlockWindow], names: Mapping[BlockWindow, frozenset[str]],
                 now: datetime, tz: tzinfo) -> frozenset[str]:
    """Every name the active windows block now (``names``: each entry's, see :func:`names_of`)."""
    found: list[frozenset[str]] = [names.get(rule, frozenset()) for rule in rules
                                   if is_active(rule, now, tz)]
    if not found:
        return frozenset()
    if len(found) == 1:
        return found[0]
    return frozenset().union(*found)


def next_change(rules: Sequence[BlockWindow], state: ScheduleState, now: datetime,
                tz: tzinfo) -> datetime | None:
    """The next moment a window opens or closes or a held edit takes effect (None: never)."""
    moments = [moment for rule in rules if (moment := next_change_of(rule, now, tz)) is not None]
    moments += [held.takes_effect(now, tz) for held in state.held]
    later = [moment for moment in moments if moment > now]
    return min(later) if later else None


def status(rules: Sequence[BlockWindow], written: Sequence[BlockWindow], state: ScheduleState,
           now: datetime, tz: tzinfo, to_wall: Callable[[datetime], datetime],
           *, detox_active: bool, after: Iterable[str], private: bool = True) -> list[dict[str, Any]]:
    """``schedule`` in ``status --json``: one row per entry written or held. Not ``private``
    (any user's status): an entry's own domains are counted, not named (detoxd.yaml may be root's)."""
    forced = {id(rule) for rule in rules}
    after_names = set(after)
    rows: list[dict[str, Any]] = []
    pending = {held.rule.name: held for held in state.held}
    seen: set[str] = set()
    for rule in [*written, *(held.rule for held in state.held)]:
        if rule.name in seen:
            continue
        seen.add(rule.name)
        versions = [item for item in rules if item.name == rule.name]
        active = any(is_active(item, now, tz) for item in versions)
        changes = [moment for item in versions if (moment := next_change_of(item, now, tz))]
        held = pending.get(rule.name)
        rows.append({
            "name": rule.name,
            "days": [DAY_NAMES[day] for day in sorted(rule.days)],
            "window": f"{_hhmm(rule.start)}-{_hhmm(rule.end % MINUTES_PER_DAY)}",
            "blocks": "blocklist" if rule.whole_blocklist else _blocks(rule, private),
            "lock": rule.lock,
            "active": active,
            "next_change": _iso(to_wall(min(changes))) if changes else None,
            "after_detox": rule.name in after_names,
            "waiting_for_detox_end": id(rule) not in forced and rule.name in after_names,
            "pending": None if held is None else {
                "edit": held.edit, "takes_effect": _iso(to_wall(held.takes_effect(now, tz)))},
        })
    del detox_active
    return rows


def _blocks(rule: BlockWindow, private: bool) -> list[str]:
    domains = list(rule.domains) if private else (
        [f"{len(rule.domains)} domain{'s' if len(rule.domains) != 1 else ''}"] if rule.domains else [])
    return sorted([*(rule.presets or ()), *domains, *(f"app:{app}" for app in rule.apps)])


# ---- persistence ----

def to_json(state: ScheduleState) -> dict[str, Any]:
    return {
        "version": 1,
        "known": [_rule_json(rule) for rule in state.known],
        "held": [{"rule": _rule_json(held.rule), "since": held.since.isoformat(), "edit": held.edit}
                 for held in state.held],
        "after_since": state.after_since.isoformat() if state.after_since else None,
    }


def from_json(data: Any) -> ScheduleState:
    """Raises ValueError (or KeyError/TypeError) on anything malformed."""
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError("not a version 1 schedule state")
    known = tuple(_rule_from(item) for item in data["known"])
    held = tuple(Held(_rule_from(item["rule"]), _moment(item["since"]), str(item["edit"])[:200])
                 for item in data["held"])
    after = data.get("after_since")
    return ScheduleState(known, held, _moment(after) if after else None)


def _rule_json(rule: BlockWindow) -> dict[str, Any]:
    return {"name": rule.name, "days": sorted(rule.days), "start": rule.start, "end": rule.end,
            "presets": None if rule.presets is None else list(rule.presets),
            "domains": list(rule.domains), "lock": rule.lock, "line": rule.line, "index": rule.index,
            "apps": list(rule.apps)}


def _rule_from(data: Any) -> BlockWindow:
    from detoxd.core.presets import PRESET_NAMES

    days = frozenset(int(day) for day in data["days"])
    start, end = int(data["start"]), int(data["end"])
    if not days <= set(range(7)) or not 0 <= start < end <= start + MINUTES_PER_DAY:
        raise ValueError("a window out of range")
    presets = None if data["presets"] is None else tuple(str(name) for name in data["presets"])
    if presets is not None and not set(presets) <= set(PRESET_NAMES):
        raise ValueError("an unknown preset")
    names = tuple(str(name) for name in data["domains"])
    for name in names:  # nothing unvalidated reaches a block
        if domain_names.normalize_domain(name).name != name:
            raise ValueError(f"invalid domain {name!r}")
    return BlockWindow(str(data["name"])[:64], days, start, end, presets, names, bool(data["lock"]),
                       int(data.get("line", 0)), int(data.get("index", 0)),
                       apps=tuple(str(app)[:64] for app in data.get("apps", ())))


def _moment(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")

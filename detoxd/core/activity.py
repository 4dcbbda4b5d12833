"""Time on blocked sites and apps from ActivityWatch: which days to ask for, the query, its answer. Pure.

The tray agent (:mod:`detoxd.agent.activitywatch`) sends the query to the user's own aw-server
(its query API, ``POST /api/0/query/``) and these functions decide what is asked and read:

- **days**: the 14 whole local days before the detox's first day, then each day of the detox
  from its start to its end (or now), cut at local midnights;
- **sites**: events of every ``aw-watcher-web`` bucket (``data.url``), only while the browser
  window had the focus (``aw-watcher-window``) and the user was not away (``aw-watcher-afk``)
  when those watchers run, whose host (without ``www.``) is a blocked name — filtered *in the
  server*, so no other browsing ever reaches detoxd;
- **apps**: window events whose ``app`` (X11 WM_CLASS or Wayland app id) is a blocked app's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from detoxd.core.apps import AppRule

BEFORE_DAYS = 14
MAX_NAMES_IN_QUERY = 5000  # the daemon sends at most this many, in the config's order
WEB_BUCKET_TYPE = "web.tab.current"
WINDOW_BUCKET_TYPE = "currentwindow"
AFK_BUCKET_TYPE = "afkstatus"
# Window classes of browsers (ActivityWatch's own web UI uses a list like it): web time counts
# only while one of them has the focus.
BROWSER_APPS = r"(?i)(firefox|librewolf|waterfox|nightly|iceweasel|chrom|brave|vivaldi|opera|msedge|" \
               r"microsoft-edge|epiphany|falkon|qutebrowser|org\.mozilla|org\.gnome\.epiphany)"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass(frozen=True)
class Period:
    day: date
    phase: str  # "before" | "during"
    start: datetime
    end: datetime

    @property
    def timeperiod(self) -> str:
        """ISO 8601 interval, as aw-server's query API takes it."""
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True)
class DayTotals:
    day: date
    phase: str
    sites: dict[str, float]  # blocked name -> seconds
    apps: dict[str, float]  # app rule name -> seconds

    def to_json(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "phase": self.phase,
                "sites": {name: round(seconds, 1) for name, seconds in self.sites.items()},
                "apps": {name: round(seconds, 1) for name, seconds in self.apps.items()}}


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def periods(started_at: datetime, end: datetime, tz: tzinfo) -> list[Period]:
    """The days to ask for: 14 whole days before the first, then the detox until ``end``."""
    first = started_at.astimezone(tz).date()
    found = [Period(first - timedelta(days=n), "before", _midnight(first - timedelta(days=n), tz),
                    _midnight(first - timedelta(days=n - 1), tz)) for n in range(BEFORE_DAYS, 0, -1)]
    day, start = first, started_at
    while start < end:
        next_midnight = _midnight(day + timedelta(days=1), tz)
        found.append(Period(day, "during", start, min(end, next_midnight)))
        day, start = day + timedelta(days=1), next_midnight
    return found


def window_app_names(rules: Iterable[AppRule]) -> dict[str, list[str]]:
    """Each rule's names a window can carry: its name, its program names, the last part of its
    directories and its Flatpak ids (Wayland app ids), compared without case."""
    found: dict[str, list[str]] = {}
    for rule in rules:
        names = [rule.name]
        for matcher in rule.matchers:
            if matcher.kind in ("flatpak", "name"):
                names.append(matcher.value)
            else:
                names.append(matcher.value.rstrip("/").rsplit("/", 1)[-1])
        found[rule.name] = sorted({name for name in names if _SAFE_NAME.match(name)}, key=str.casefold)
    return found


def _string(text: str) -> str:
    """A string literal of ActivityWatch's query language (it only unescapes the quote)."""
    if '"' in text or "\n" in text or ";" in text:
        raise ValueError(f"cannot quote {text!r} for a query")
    return f'"{text}"'


def _buckets_union(ids: Sequence[str]) -> str:
    expression = f"flood(query_bucket({_string(ids[0])}))"
    for bucket in ids[1:]:
        expression = f"concat({expression}, flood(query_bucket({_string(bucket)})))"
    return expression


def site_names(blocked: Iterable[str]) -> list[str]:
    """What split_url_events calls the blocked names: ``www.`` is taken off the host."""
    return sorted({name[4:] if name.startswith("www.") else name for name in blocked})


def query(buckets: Mapping[str, Mapping[str, Any]], blocked: Sequence[str],
          apps: Mapping[str, Sequence[str]], hostname: str) -> list[str]:
    """The query program, one statement per string. ``buckets`` is ``GET /api/0/buckets/``."""
    web = sorted(bucket for bucket, meta in buckets.items() if meta.get("type") == WEB_BUCKET_TYPE)
    window = _local(buckets, WINDOW_BUCKET_TYPE, hostname)
    afk = _local(buckets, AFK_BUCKET_TYPE, hostname)
    program: list[str] = []
    if afk:
        program += [f"afk = {_buckets_union(afk)};",
                    'not_afk = filter_keyvals(afk, "status", ["not-afk"]);']
    if window:
        program.append(f"window = {_buckets_union(window)};")
        if afk:
            program.append("window = filter_period_intersect(window, not_afk);")
    names = site_names(blocked)[:MAX_NAMES_IN_QUERY]
    if web and names:
        program.append(f"web = {_buckets_union(web)};")
        if window:
            program += [f"browser = filter_keyvals_regex(window, \"app\", {_string(BROWSER_APPS)});",
                        "web = filter_period_intersect(web, browser);"]
        elif afk:
            program.append("web = filter_period_intersect(web, not_afk);")
        listed = ", ".join(_string(name) for name in names)
        program += ["web = split_url_events(web);",
                    f'web = filter_keyvals(web, "$domain", [{listed}]);',
                    'sites = merge_events_by_keys(web, ["$domain"]);']
    else:
        program.append("sites = [];")
    candidates = sorted({name for names_of_app in apps.values() for name in names_of_app})
    if window and candidates:
        pattern = "(?i)^(" + "|".join(re.escape(name) for name in candidates) + ")$"
        program += [f'apps = filter_keyvals_regex(window, "app", {_string(pattern)});',
                    'apps = merge_events_by_keys(apps, ["app"]);']
    else:
        program.append("apps = [];")
    program.append('RETURN = {"sites": sites, "apps": apps};')
    return program


def _local(buckets: Mapping[str, Mapping[str, Any]], kind: str, hostname: str) -> list[str]:
    """This machine's buckets of a type; every one of that type when none names this host."""
    of_type = sorted(bucket for bucket, meta in buckets.items() if meta.get("type") == kind)
    here = [bucket for bucket in of_type if buckets[bucket].get("hostname") == hostname]
    return here or of_type


def first_event_query(buckets: Mapping[str, Mapping[str, Any]], hostname: str) -> list[str]:
    """The earliest window or web event in a period: days before it were not watched at all
    (ActivityWatch was not installed yet), which is not the same as an hour of 0 minutes."""
    watched = sorted(bucket for bucket, meta in buckets.items() if meta.get("type") == WEB_BUCKET_TYPE)
    watched += _local(buckets, WINDOW_BUCKET_TYPE, hostname)
    if not watched:
        return ["RETURN = [];"]
    union = f"query_bucket({_string(watched[0])})"
    for bucket in watched[1:]:
        union = f"concat({union}, query_bucket({_string(bucket)}))"
    return [f"events = sort_by_timestamp({union});", "RETURN = limit_events(events, 1);"]


def watched_periods(asked: Sequence[Period], first_event: Any) -> list[Period]:
    """The periods from the day of the first event on (``first_event``: that query's answer)."""
    if not isinstance(first_event, list) or not first_event or not isinstance(first_event[0], Mapping):
        return []
    try:
        first = datetime.fromisoformat(str(first_event[0].get("timestamp")))
    except ValueError:
        return []
    if first.tzinfo is None:
        return []
    return [period for period in asked if period.end > first]


def has_watchers(buckets: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(meta.get("type") in (WEB_BUCKET_TYPE, WINDOW_BUCKET_TYPE) for meta in buckets.values())


def read_answer(answer: Sequence[Any], asked: Sequence[Period], blocked: Iterable[str],
                apps: Mapping[str, Sequence[str]]) -> list[DayTotals]:
    """The query API's answer (one result per period) → totals per day, blocked names only."""
    if len(answer) != len(asked):
        raise ValueError(f"expected {len(asked)} results, got {len(answer)}")
    blocked_set = set(blocked)
    rule_of = {name.casefold(): rule for rule, names in apps.items() for name in names}
    totals = []
    for period, result in zip(asked, answer, strict=True):
        if not isinstance(result, Mapping):
            raise ValueError("a result is not an object")
        sites: dict[str, float] = {}
        for domain, seconds in _durations(result.get("sites"), "$domain"):
            name = domain if domain in blocked_set else f"www.{domain}"
            if name in blocked_set:  # the server filtered already; never trust, check
                sites[name] = sites.get(name, 0.0) + seconds
        used: dict[str, float] = {}
        for app, seconds in _durations(result.get("apps"), "app"):
            rule = rule_of.get(app.casefold())
            if rule is not None:
                used[rule] = used.get(rule, 0.0) + seconds
        # aw-server's periods end a millisecond late (it rounds up): tenths of seconds are enough.
        totals.append(DayTotals(period.day, period.phase, _tenths(sites), _tenths(used)))
    return totals


def _tenths(seconds: Mapping[str, float]) -> dict[str, float]:
    return {name: round(value, 1) for name, value in sorted(seconds.items())}


def _durations(events: Any, key: str) -> list[tuple[str, float]]:
    if not isinstance(events, list):
        return []
    found = []
    for event in events:
        if not isinstance(event, Mapping) or not isinstance(event.get("data"), Mapping):
            continue
        value, duration = event["data"].get(key), event.get("duration")
        if isinstance(value, str) and isinstance(duration, int | float) and duration > 0:
            found.append((value, float(duration)))
    return found

"""The detox report: journal events → day-by-day figures, totals and a closing summary. Pure.

Input is the journal's events (dicts, oldest first, see :mod:`detoxd.service.journal`), the
detox window and the viewer; output is the JSON document of ``detoxd report --json`` (a
contract: fields are documented in docs/report.md, version in ``"version"``) and its text form.

Days are local calendar days (the caller passes the time zone). The "before" days are the 14
whole days before the detox's first day; the "during" days run from the start to its end, or to
now while it runs. Figures that nothing measured are ``null``, never a made-up 0: time on
blocked sites needs ActivityWatch or the detoxd browser extension, blocked lookups need a DNS
engine that can tell, browser attempts the extension.

Time on blocked sites: a user's day from ActivityWatch (``activity_day``) where it reported that
day, else from the browser extension (``browser_day``: the focused tab's time on blocked names,
paths and allowance sites); each day says which (``site_time_source``), and so does the report
(``site_time``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from detoxd.core import statustext

REPORT_VERSION = 1
BEFORE_DAYS = 14
MAX_TAMPERS_LISTED = 200  # the latest; every one is counted in the days
MAX_SITES_PER_DAY = 25  # the day's top names in sites/apps/lookups_by_site; the totals count all
ACTIVITYWATCH_HELP = (
    "Time on blocked sites comes from ActivityWatch, which runs in your own session: install it "
    "(aw-server with aw-watcher-window and aw-watcher-afk, plus the aw-watcher-web extension in "
    "your browser), keep it running, and keep `detoxd tray` running: the tray asks it for the time "
    "on the blocked sites and apps only, 14 days back and during the detox."
)
SITE_TIME_MESSAGES = {
    "activitywatch": "Time on blocked sites: from ActivityWatch.",
    "browser": ("Time on blocked sites: from the detoxd browser extension, as ActivityWatch is absent "
                "(the focused tab's time on blocked names, paths and allowance sites, during the detox)."),
    "activitywatch and browser": ("Time on blocked sites: from ActivityWatch on the days it reported, "
                                  "else from the detoxd browser extension."),
}
# Events whose "uid" is a person's: only they and root see them.
PERSONAL_KINDS = frozenset({"app_closed", "activity_day", "activity_unavailable", "agent_connected",
                            "agent_disconnected", "browser_day"})
# The household's events that name who did it: everyone sees them, only root sees who.
WHO_FIELDS = {"allowance_opened": "uid", "allowance_closed": "uid", "detox_started": "by_uid",
              "peer_end_attempt": "by_uid", "browser_attempts": "uid"}


@dataclass(frozen=True)
class DetoxWindow:
    started_at: datetime
    ends_at: datetime
    ended_at: datetime | None = None  # None while the detox runs

    @property
    def over(self) -> bool:
        return self.ended_at is not None


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def find_window(events: Sequence[Mapping[str, Any]]) -> DetoxWindow | None:
    """The latest detox in the journal: its ``detox_started`` and the ``detox_ended`` after it."""
    window: DetoxWindow | None = None
    for event in events:
        at = parse_time(event.get("at"))
        if at is None:
            continue
        if event.get("kind") == "detox_started":
            ends_at = parse_time(event.get("ends_at")) or at + timedelta(days=_number(event.get("days"), 14))
            window = DetoxWindow(at, ends_at)
        elif event.get("kind") == "segment_started":
            # The head of a segment: the detox that was running, in case its start rotated away.
            started, ends = parse_time(event.get("detox_started_at")), parse_time(event.get("detox_ends_at"))
            known = window is not None and window.started_at.replace(microsecond=0) == started
            if started is not None and ends is not None and not known:
                window = DetoxWindow(started.replace(microsecond=0), ends)
        elif event.get("kind") == "detox_ended" and window is not None and window.ended_at is None:
            window = DetoxWindow(window.started_at, window.ends_at, at)
    return window


def visible_events(events: Iterable[Mapping[str, Any]], viewer_uid: int | None) -> list[dict[str, Any]]:
    """What one local user may see: their own personal events and the system's, with no device
    names and no config text. ``None`` is root: everything."""
    if viewer_uid is None:
        return [dict(event) for event in events]
    visible: list[dict[str, Any]] = []
    for event in events:
        kind = event.get("kind")
        if kind in PERSONAL_KINDS and event.get("uid") != viewer_uid:
            continue
        shown = dict(event)
        if kind in WHO_FIELDS:
            shown.pop(WHO_FIELDS[kind], None)
        if kind == "blocked_lookups":
            shown["device"] = "(hidden)"  # which household device: root only
        elif kind == "config_error":
            shown.pop("first", None)
        visible.append(shown)
    return visible


def build(events: Sequence[Mapping[str, Any]], *, now: datetime, tz: tzinfo,
          window: DetoxWindow | None = None, scope: str = "all",
          journal_stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report document. ``window`` defaults to the latest detox in ``events``."""
    window = window or find_window(events)
    document: dict[str, Any] = {
        "version": REPORT_VERSION,
        "generated_at": now.isoformat(timespec="seconds"),
        "scope": scope,
        "detox": None,
        "days": [],
        "totals": None,
        "sessions": [],
        "tampers": [],
        "activitywatch": _activitywatch_status(events, window),
        "site_time": {"source": None, "message": None},
        "summary": None,
        # Weekly block windows (schedule: in detoxd.yaml), detox or not: hours per day in force
        # and the blocked attempts inside them; what continues after the detox (detox.after).
        "schedule": schedule_days(events, now=now, tz=tz),
        "continues": [],
        "journal": {**(journal_stats or {}), "lost_events": sum(
            int(_number(event.get("dropped"), 0)) for event in events if event.get("kind") == "journal_gap")},
    }
    if window is None:
        document["summary"] = "No detox in the journal yet: start one with `sudo detoxd start`."
        return document
    in_window = [event for event in events if _in_window(event, window, now)]
    days = _days(window, now, tz)
    rows = {day: _empty_row(day, phase, number) for day, phase, number in days}
    watched = _add_activity(rows, events)
    _add_browser_time(rows, events, watched)
    _add_lookups(rows, in_window, tz)
    _add_browser_attempts(rows, events)
    _add_counts(rows, in_window, tz)
    document["detox"] = _detox_fields(window, now, days)
    document["continues"] = _continues(events, window)
    document["days"] = list(rows.values())
    document["totals"] = _totals(document["days"])
    document["site_time"] = _site_time(document["days"])
    document["sessions"] = _sessions(in_window)
    document["tampers"] = [
        {"at": event.get("at"), "target": event.get("target"), "restored": event.get("restored")}
        for event in in_window if event.get("kind") == "tamper"][-MAX_TAMPERS_LISTED:]
    document["summary"] = summary(document)
    return document


# ---- days ----

def _days(window: DetoxWindow, now: datetime, tz: tzinfo) -> list[tuple[date, str, int]]:
    first = window.started_at.astimezone(tz).date()
    last_moment = min(window.ended_at or now, window.ends_at, max(now, window.started_at))
    last = last_moment.astimezone(tz).date()
    if last_moment.astimezone(tz).time() == datetime.min.time() and last > first:
        last -= timedelta(days=1)  # an end at midnight does not open another day
    before = [(first - timedelta(days=n), "before", -n) for n in range(BEFORE_DAYS, 0, -1)]
    during = [(first + timedelta(days=n), "during", n + 1) for n in range((last - first).days + 1)]
    return before + during


def _empty_row(day: date, phase: str, number: int) -> dict[str, Any]:
    return {
        "date": day.isoformat(), "phase": phase, "day": number,
        "blocked_site_seconds": None, "sites": {},
        "blocked_app_seconds": None, "apps": {},
        "blocked_lookups": None, "lookups_by_site": {},
        "site_time_source": None,  # "activitywatch", "browser", "activitywatch and browser"
        "browser_attempts": None, "attempts_by_site": {},  # the browser extension's block page
        "tamper_attempts": 0, "tamper_targets": {},
        "apps_closed": {},
        "allowance_minutes": 0.0, "allowances_opened": 0,
        "clock_jumps": 0, "config_errors": 0,
        "hot_seats": 0, "agent_disconnects": 0,
        "end_attempts": 0, "daemon_starts": 0,
    }


def _in_window(event: Mapping[str, Any], window: DetoxWindow, now: datetime) -> bool:
    at = parse_time(event.get("at"))
    end = window.ended_at or now
    # Journal times are whole seconds: an event in the start's own second is in the window.
    return at is not None and window.started_at.replace(microsecond=0) <= at <= end


def _local_day(event: Mapping[str, Any], tz: tzinfo) -> str | None:
    at = parse_time(event.get("at"))
    return at.astimezone(tz).date().isoformat() if at else None


# ---- figures ----

def _add_activity(rows: dict[date, dict[str, Any]],
                  events: Sequence[Mapping[str, Any]]) -> set[tuple[Any, str]]:
    """ActivityWatch totals: the agent re-sends whole days, so the latest per (uid, day) counts.
    Returns the (uid, day) pairs it reported."""
    latest = _latest_days(events, "activity_day")
    by_date = {day.isoformat(): row for day, row in rows.items()}
    for (_, day), event in latest.items():
        row = by_date.get(day)
        if row is None:
            continue
        for key, total in (("sites", "blocked_site_seconds"), ("apps", "blocked_app_seconds")):
            _add_per_site(row, key, total, _seconds_map(event.get(key)))
        row["site_time_source"] = "activitywatch"
    return set(latest)


def _add_browser_time(rows: dict[date, dict[str, Any]], events: Sequence[Mapping[str, Any]],
                      watched: set[tuple[Any, str]]) -> None:
    """The browser extension's totals (the latest per uid and day) where ActivityWatch did not
    report that user's day."""
    by_date = {day.isoformat(): row for day, row in rows.items()}
    for key, event in _latest_days(events, "browser_day").items():
        row = by_date.get(key[1])
        if row is None or key in watched:
            continue
        _add_per_site(row, "sites", "blocked_site_seconds", _seconds_map(event.get("seconds")))
        row["site_time_source"] = ("browser" if row["site_time_source"] in (None, "browser")
                                   else "activitywatch and browser")


def _latest_days(events: Sequence[Mapping[str, Any]], kind: str) -> dict[tuple[Any, str], Mapping[str, Any]]:
    latest: dict[tuple[Any, str], Mapping[str, Any]] = {}
    for event in events:
        if event.get("kind") == kind and isinstance(event.get("date"), str):
            latest[(event.get("uid"), event["date"])] = event
    return latest


def _add_per_site(row: dict[str, Any], key: str, total: str, values: Mapping[str, float]) -> None:
    """Seconds or counts per site into a day's row: its total, and its busiest sites."""
    row[total] = (row[total] or 0) + round(sum(values.values()))
    merged = Counter(row[key])
    merged.update({name: round(seconds) for name, seconds in values.items()})
    row[key] = dict(merged.most_common(MAX_SITES_PER_DAY))


def _add_browser_attempts(rows: dict[date, dict[str, Any]], events: Sequence[Mapping[str, Any]]) -> None:
    """Blocked navigations the extension counted: each event holds a day's new attempts per rule.
    Once the extension has reported anything, a day of the detox without attempts is 0."""
    reported = [event for event in events if event.get("kind") in ("browser_attempts", "browser_day")]
    if not reported:
        return
    by_date = {day.isoformat(): row for day, row in rows.items()}
    for row in rows.values():
        if row["phase"] == "during":
            row["browser_attempts"] = 0
    for event in reported:
        found = by_date.get(str(event.get("date")))
        if event.get("kind") != "browser_attempts" or found is None:
            continue
        counts = {name: int(count) for name, count in _seconds_map(event.get("counts")).items()}
        _add_per_site(found, "attempts_by_site", "browser_attempts", counts)


def _site_time(days: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    sources = {str(row["site_time_source"]) for row in days if row["site_time_source"]}
    if not sources:
        return {"source": None, "message": None}
    source = sources.pop() if len(sources) == 1 else "activitywatch and browser"
    return {"source": source, "message": SITE_TIME_MESSAGES[source]}


def _add_lookups(rows: dict[date, dict[str, Any]], events: Sequence[Mapping[str, Any]], tz: tzinfo) -> None:
    """Engines report a device's totals of the day so far: the latest per (day, device) counts."""
    latest: dict[tuple[str, Any], Mapping[str, Any]] = {}
    for event in events:
        if event.get("kind") == "blocked_lookups":
            day = event.get("date") if isinstance(event.get("date"), str) else _local_day(event, tz)
            latest[(str(day), event.get("device"))] = event
    if not latest:
        return  # no engine that can tell: the figure stays null
    by_date = {day.isoformat(): row for day, row in rows.items()}
    for row in rows.values():
        if row["phase"] == "during":
            row["blocked_lookups"] = 0
    for (day, _), event in latest.items():
        found = by_date.get(day)
        if found is None:
            continue
        counts = {name: int(count) for name, count in _seconds_map(event.get("counts")).items()}
        _add_per_site(found, "lookups_by_site", "blocked_lookups", counts)


def _add_counts(rows: dict[date, dict[str, Any]], events: Sequence[Mapping[str, Any]], tz: tzinfo) -> None:
    by_date = {day.isoformat(): row for day, row in rows.items()}
    for event in events:
        row = by_date.get(_local_day(event, tz) or "")
        if row is None:
            continue
        kind = event.get("kind")
        if kind == "tamper":
            row["tamper_attempts"] += 1
            target = str(event.get("target") or "unknown")
            row["tamper_targets"][target] = row["tamper_targets"].get(target, 0) + 1
        elif kind == "app_closed":
            app = str(event.get("app") or "unknown")
            row["apps_closed"][app] = row["apps_closed"].get(app, 0) + 1
        elif kind == "allowance_opened":
            row["allowances_opened"] += 1
        elif kind == "allowance_closed":
            used = _number(event.get("minutes_used"), 0)
            row["allowance_minutes"] = round(row["allowance_minutes"] + used, 1)
        elif kind == "clock_jump":
            row["clock_jumps"] += 1
        elif kind == "config_error":
            row["config_errors"] += 1
        elif kind == "hot_seat":
            row["hot_seats"] += 1
        elif kind == "agent_disconnected" and event.get("during_detox", True):
            row["agent_disconnects"] += 1
        elif kind == "peer_end_attempt" and not event.get("ended"):
            row["end_attempts"] += 1
        elif kind == "daemon_started":
            row["daemon_starts"] += 1  # a restart during the detox: stopped, killed or rebooted


def _totals(days: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for phase in ("before", "during"):
        rows = [row for row in days if row["phase"] == phase]
        measured = [row for row in rows if row["blocked_site_seconds"] is not None]
        attempts = [row["browser_attempts"] for row in rows if row["browser_attempts"] is not None]
        apps_measured = [row for row in rows if row["blocked_app_seconds"] is not None]
        lookups = [row["blocked_lookups"] for row in rows if row["blocked_lookups"] is not None]
        closed: Counter[str] = Counter()
        for row in rows:
            closed.update(row["apps_closed"])
        totals[phase] = {
            "days": len(rows),
            "days_with_activitywatch": _days_from(rows, "activitywatch"),
            "days_with_browser_time": _days_from(rows, "browser"),
            "days_measured": len(measured),  # with time on blocked sites from either
            "blocked_site_seconds": _sum_or_none(row["blocked_site_seconds"] for row in measured),
            "blocked_app_seconds": _sum_or_none(row["blocked_app_seconds"] for row in apps_measured),
            "blocked_lookups": sum(lookups) if lookups else None,
            "browser_attempts": sum(attempts) if attempts else None,
            "tamper_attempts": sum(row["tamper_attempts"] for row in rows),
            "apps_closed": dict(closed.most_common()),
            "allowance_minutes": round(sum(row["allowance_minutes"] for row in rows), 1),
            "clock_jumps": sum(row["clock_jumps"] for row in rows),
            "config_errors": sum(row["config_errors"] for row in rows),
            "end_attempts": sum(row["end_attempts"] for row in rows),
            "daemon_starts": sum(row["daemon_starts"] for row in rows),
        }
    return totals


def _days_from(rows: Sequence[Mapping[str, Any]], source: str) -> int:
    return sum(1 for row in rows if source in (row["site_time_source"] or ""))


def _sessions(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    sessions: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event.get("kind")
        if kind not in ("session_started", "hot_seat"):
            continue
        number = int(_number(event.get("session"), 0))
        session = sessions.setdefault(number, {"session": number, "started_at": None, "hot_seats": []})
        if kind == "session_started":
            session["started_at"] = event.get("starts_at") or event.get("at")
        elif isinstance(event.get("person"), str):
            session["started_at"] = session["started_at"] or event.get("at")
            session["hot_seats"].append({"person": event["person"], "at": event.get("at")})
    return [sessions[number] for number in sorted(sessions)]


def _activitywatch_status(events: Sequence[Mapping[str, Any]], window: DetoxWindow | None) -> dict[str, Any]:
    reported = [event for event in events if event.get("kind") == "activity_day"]
    reasons = [str(event.get("reason")) for event in events if event.get("kind") == "activity_unavailable"]
    last = max((str(event.get("at")) for event in reported), default=None)
    if reported:
        return {"available": True, "last_report_at": last, "message": None}
    why = f"No ActivityWatch data ({reasons[-1]}). " if reasons else "No ActivityWatch data. "
    return {"available": False, "last_report_at": None, "message": why + ACTIVITYWATCH_HELP}


def _detox_fields(window: DetoxWindow, now: datetime,
                  days: Sequence[tuple[date, str, int]]) -> dict[str, Any]:
    elapsed = max(timedelta(0), min(window.ended_at or now, window.ends_at) - window.started_at)
    return {
        "state": "over" if window.over or now >= window.ends_at else "active",
        "started_at": window.started_at.isoformat(timespec="seconds"),
        "ends_at": window.ends_at.isoformat(timespec="seconds"),
        "ended_at": window.ended_at.isoformat(timespec="seconds") if window.ended_at else None,
        "days_total": round((window.ends_at - window.started_at).total_seconds() / 86400, 2),
        "days_so_far": sum(1 for _, phase, _ in days if phase == "during"),
        "days_elapsed": round(elapsed.total_seconds() / 86400, 2),
    }


# ---- weekly block windows ----

SCHEDULE_DAYS = 28  # the report's schedule table: this many days back from now
ATTEMPT_KINDS = frozenset({"tamper", "app_closed"})


def _continues(events: Sequence[Mapping[str, Any]], window: DetoxWindow) -> list[str]:
    """The schedule entries that took over when this detox ended (journal: schedule_after_detox)."""
    if window.ended_at is None:
        return []
    found: list[str] = []
    for event in events:
        at = parse_time(event.get("at"))
        if event.get("kind") == "schedule_after_detox" and at is not None \
                and at >= window.ended_at.replace(microsecond=0):
            found += [str(name) for name in event.get("entries") or [] if str(name) not in found]
    return found


def window_intervals(events: Sequence[Mapping[str, Any]], now: datetime) -> list[tuple[datetime, datetime]]:
    """When any window was in force, from window_opened/window_closed (joined, oldest first).
    A daemon restart journals an open window again: an open that is open already continues."""
    opened: dict[str, datetime] = {}
    spans: list[tuple[datetime, datetime]] = []
    for event in events:
        kind, at, entry = event.get("kind"), parse_time(event.get("at")), str(event.get("entry"))
        if at is None:
            continue
        if kind == "window_opened":
            opened.setdefault(entry, at)
        elif kind == "window_closed" and entry in opened:
            spans.append((opened.pop(entry), at))
    spans += [(start, now) for start in opened.values() if start < now]
    joined: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def schedule_days(events: Sequence[Mapping[str, Any]], *, now: datetime, tz: tzinfo) -> list[dict[str, Any]]:
    """Per local day of the last :data:`SCHEDULE_DAYS` with a window in force: ``scheduled_hours``
    and ``attempts_in_windows`` (tampering and blocked apps closed while a window was in force)."""
    spans = window_intervals(events, now)
    if not spans:
        return []
    first = (now - timedelta(days=SCHEDULE_DAYS)).astimezone(tz).date()
    hours: dict[date, float] = {}
    for start, end in spans:
        day = start.astimezone(tz).date()
        while day <= end.astimezone(tz).date():
            # Local midnights as UTC moments: a day of a DST change has 23 or 25 hours.
            low = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
            following = day + timedelta(days=1)
            high = datetime(following.year, following.month, following.day, tzinfo=tz).astimezone(UTC)
            seconds = (min(end, high) - max(start, low)).total_seconds()
            if seconds > 0 and day >= first:
                hours[day] = hours.get(day, 0.0) + seconds / 3600
            day += timedelta(days=1)
    attempts: Counter[date] = Counter()
    for event in events:
        at = parse_time(event.get("at"))
        if event.get("kind") in ATTEMPT_KINDS and at is not None \
                and any(start <= at < end for start, end in spans):
            attempts[at.astimezone(tz).date()] += 1
    return [{"date": day.isoformat(), "scheduled_hours": round(hours[day], 2),
             "attempts_in_windows": attempts.get(day, 0)} for day in sorted(hours)]


# ---- words ----

def duration_text(seconds: float | None) -> str:
    """``0 h 12 min``: the challenge's own way of putting it."""
    if seconds is None:
        return "unknown"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min"


def _app_label(name: str) -> str:
    return name[:1].upper() + name[1:]


def summary(document: Mapping[str, Any]) -> str:
    """One sentence: "14 days: 3 tamper attempts, Slack closed 11 times, 0 h 12 min on blocked
    sites vs 9 h 40 min in the 14 days before"; "so far" while the detox runs."""
    detox, totals = document["detox"], document["totals"]
    before, during = totals["before"], totals["during"]
    over = detox["state"] == "over"
    days = detox["days_so_far"]
    if over:
        elapsed = detox["days_elapsed"]
        count = round(elapsed) if abs(elapsed - round(elapsed)) < 0.05 else round(elapsed, 1)
        head = statustext.count(count, "day")
    else:
        # Calendar days: a detox shorter than half a day is not "Day 1 of 0", and one started in
        # the evening is not "Day 15 of 14" on its last morning.
        total = max(days, round(detox["days_total"]))
        head = f"Day {days} of {total} so far"
    attempts = during["tamper_attempts"]
    parts = [statustext.count(attempts, "tamper attempt")]
    parts += [f"{_app_label(app)} closed {statustext.times(count)}"
              for app, count in during["apps_closed"].items()]
    if during["blocked_lookups"] is not None:
        parts.append(statustext.count(during["blocked_lookups"], "blocked lookup"))
    if during.get("browser_attempts"):
        parts.append(f"{statustext.count(during['browser_attempts'], 'block page')} shown in the browser")
    if during["end_attempts"]:
        parts.append(f"{statustext.count(during['end_attempts'], 'attempt')} to end it early")
    if during["allowance_minutes"]:
        parts.append(f"{round(during['allowance_minutes'])} min of allowances")
    # The words for where the time came from: ActivityWatch's as before, the extension's said.
    source = (document.get("site_time") or {}).get("source")
    by_browser = "from the browser extension" if source == "browser" else (
        "from ActivityWatch and the browser extension" if source == "activitywatch and browser" else "")
    if during["blocked_site_seconds"] is None and before["blocked_site_seconds"] is None:
        parts.append("time on blocked sites not measured (no ActivityWatch)")
    elif before["blocked_site_seconds"] is None:
        parts.append(f"{duration_text(during['blocked_site_seconds'])} on blocked sites "
                     + (f"({by_browser}; nothing from before the detox to compare)" if by_browser
                        else "(ActivityWatch has nothing from before the detox to compare)"))
    elif over or days <= 1:
        watched = days_measured(before)
        parts.append(f"{duration_text(during['blocked_site_seconds'] or 0)} on blocked sites vs "
                     f"{duration_text(before['blocked_site_seconds'] or 0)} in the "
                     + (f"{before['days']} days before" if watched == before["days"]
                        else f"{watched} day{'s' if watched != 1 else ''} ActivityWatch saw before"))
    else:
        # Per day ActivityWatch watched: a day it was not installed yet is not a day of 0 minutes.
        per_day_during = (during["blocked_site_seconds"] or 0) / max(1, days_measured(during))
        per_day_before = (before["blocked_site_seconds"] or 0) / max(1, days_measured(before))
        parts.append(f"{duration_text(per_day_during)} a day on blocked sites vs "
                     f"{duration_text(per_day_before)} a day before"
                     + (f" ({by_browser})" if by_browser else ""))
    sessions = [session for session in document["sessions"] if session["hot_seats"]]
    if sessions:
        parts.append(f"{len(sessions)} peer session{'s' if len(sessions) != 1 else ''} held")
    continues = document.get("continues") or []
    tail = f"; continuing: {', '.join(continues)}" if over and continues else ""
    return f"{head}: " + ", ".join(parts) + tail


def days_measured(totals: Mapping[str, Any]) -> int:
    """A phase's days with time on blocked sites (a report of before the browser extension: the
    days ActivityWatch watched)."""
    return int(totals.get("days_measured", totals["days_with_activitywatch"]))


def format_text(document: Mapping[str, Any]) -> str:
    """The report for a terminal: the summary, then one line per day."""
    lines = [str(document["summary"])]
    if document["detox"] is None:
        return lines[0]
    activitywatch, site_time = document["activitywatch"], document.get("site_time") or {}
    if site_time.get("source") not in (None, "activitywatch"):
        lines += ["", str(site_time["message"])]
    elif not activitywatch["available"]:
        lines += ["", str(activitywatch["message"])]
    # The block pages the browser extension showed: a column of its own once it reported.
    pages = any(row.get("browser_attempts") is not None for row in document["days"])
    lines += ["", f"{'date':<10}  {'':<6}  {'blocked sites':>13}  {'blocked apps':>12}  "
                  f"{'lookups':>7}  " + (f"{'pages':>5}  " if pages else "") + f"{'tamper':>6}  apps closed"]
    for row in document["days"]:
        closed = ", ".join(f"{app} {count}" for app, count in row["apps_closed"].items())
        lookups = "-" if row["blocked_lookups"] is None else str(row["blocked_lookups"])
        shown = "-" if row.get("browser_attempts") is None else str(row["browser_attempts"])
        lines.append(
            f"{row['date']:<10}  {row['phase']:<6}  {_short(row['blocked_site_seconds']):>13}  "
            f"{_short(row['blocked_app_seconds']):>12}  {lookups:>7}  " + (f"{shown:>5}  " if pages else "")
            + f"{row['tamper_attempts']:>6}  {closed}")
    for session in document["sessions"]:
        people = ", ".join(seat["person"] for seat in session["hot_seats"]) or "no hot seats yet"
        lines.append(f"Session {session['session']} ({session['started_at']}): {people}")
    if document.get("schedule"):
        lines += ["", f"{'date':<10}  {'scheduled':>10}  blocked attempts inside the windows"]
        lines += [f"{row['date']:<10}  {_short(row['scheduled_hours'] * 3600):>10}  "
                  f"{row['attempts_in_windows']}" for row in document["schedule"]]
    return "\n".join(lines)


def _short(seconds: float | None) -> str:
    return "-" if seconds is None else duration_text(seconds)


def _sum_or_none(values: Iterable[int]) -> int | None:
    listed = list(values)
    return sum(listed) if listed else None


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _seconds_map(value: Any) -> dict[str, float]:
    """A {name: non-negative number} map from an event; anything else is ignored."""
    if not isinstance(value, Mapping):
        return {}
    return {str(name): float(amount) for name, amount in value.items()
            if isinstance(amount, int | float) and not isinstance(amount, bool) and amount >= 0}

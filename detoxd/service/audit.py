"""The daemon's side of the audit: tray agents' ActivityWatch totals in, reports out.

``activity_report`` (any local user, for their own uid only — SO_PEERCRED): daily seconds on
*blocked* names and *blocked* apps, as the user's tray agent read them from ActivityWatch. The
daemon keeps only names it blocks and apps it closes, so nothing else a person browsed can reach
the journal even by mistake; a day is journalled only when its figures changed.

``report`` (anyone): the report built from the journal, as the asking user may see it
(:func:`detoxd.core.report.visible_events`): root sees everything; a user sees the system's
events (detox, tampering, sessions, blocked-lookup counts without devices) and their own
(apps closed, allowances, ActivityWatch time). The journal itself stays root-only (0600).

``browser_attempt`` and ``browser_time`` (a person at the seat, through the browser extension's
native-messaging host): a navigation to a blocked name or path, counted per rule per local day for
the caller's uid (journalled as ``browser_attempts``: the day's new attempts per rule, like the
household's blocked lookups, source "browser"); and the time the focused tab spent on blocked
names, paths and allowance sites that day (``browser_day``: the day's running totals, replaced).
The time shares the uid's journal budget with the ActivityWatch reports; the attempts have a
budget of their own (a block page reloaded in a loop holds back no figures but its own).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Collection
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from detoxd.core import report
from detoxd.protocol import BUSY, ErrorReply, Peer, bad_request
from detoxd.service import journal

log = logging.getLogger(__name__)

MAX_DAYS_PER_REPORT = 31
MAX_NAMES_PER_DAY = 64
MAX_SECONDS_PER_DAY = 25 * 3600  # a day with a DST change back has 25 hours
MAX_REASON_CHARS = 200
MAX_REMEMBERED_DAYS = 256 * 400  # (uid, day) pairs: agents × a year of days
# A user could send ever-changing figures to flood the journal and rotate the tamper events out of
# it: each uid may have this many activity events journalled per window (an agent sends a full
# 29 days once, then a day or two every 15 minutes).
JOURNAL_BUDGET_EVENTS = 64
JOURNAL_BUDGET_SECONDS = 600.0
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_LOOKUP_ENTRIES = 256  # devices × days in one report
MAX_DEVICE_CHARS = 64
MAX_RULES_PER_DAY = 1024  # distinct rules counted per uid and day (browser_attempt)


class Audit:
    """Thread-compatible: the engine calls it with its lock held (except :meth:`report`)."""

    def __init__(self, journal_dir: Path, monotonic: Callable[[], float]) -> None:
        self.journal_dir = journal_dir
        self._monotonic = monotonic
        self._budget: dict[int, tuple[float, int]] = {}  # uid -> (window start, events journalled)
        # The block pages' own: a user reloading a block page must not hold back the time reports.
        self._attempts_budget: dict[int, tuple[float, int]] = {}
        self._last_days: dict[tuple[int, str], tuple[dict[str, float], dict[str, float]]] = {}
        self._last_unavailable: dict[int, str] = {}
        self._last_lookups: dict[tuple[str, str], dict[str, int]] = {}
        self._attempts: dict[tuple[int, str], Counter[str]] = {}  # (uid, day) -> rule -> attempts
        self._attempts_unjournalled: dict[tuple[int, str], Counter[str]] = {}  # over the budget
        self._browser_days: dict[tuple[int, str], dict[str, int]] = {}

    def activity_report(self, request: dict[str, Any], peer: Peer, *, window: report.DetoxWindow | None,
                        blocked_names: Collection[str], blocked_apps: Collection[str],
                        tz: tzinfo) -> dict[str, Any]:
        available = request.get("available")
        if not isinstance(available, bool):
            raise bad_request("available must be true or false")
        if not available:
            return self._unavailable(request.get("reason"), peer)
        if window is None:
            raise ErrorReply("no_detox", "no detox to report activity for")
        days = request.get("days")
        if not isinstance(days, list) or len(days) > MAX_DAYS_PER_REPORT:
            raise bad_request(f"days must be a list of at most {MAX_DAYS_PER_REPORT} days")
        first, last = _reportable_dates(window, tz)
        parsed: list[tuple[str, dict[str, float], dict[str, float]]] = []
        ignored = 0
        for day in days:
            problem, entry, dropped = _parse_day(day, first, last, blocked_names, blocked_apps)
            if problem:
                raise bad_request(problem)
            assert entry is not None
            parsed.append(entry)
            ignored += dropped
        if not self._within_budget(peer.uid, sum(self._changed(peer.uid, *entry) for entry in parsed)):
            raise ErrorReply(BUSY, f"more than {JOURNAL_BUDGET_EVENTS} activity changes in "
                             f"{JOURNAL_BUDGET_SECONDS:g} s: try again later")
        journalled = sum(self._journal_day(peer.uid, window, tz, *entry) for entry in parsed)
        self._last_unavailable.pop(peer.uid, None)
        return {"ok": True, "journalled": journalled, "ignored_names": ignored}

    def _unavailable(self, reason: Any, peer: Peer) -> dict[str, Any]:
        if not isinstance(reason, str):
            raise bad_request("reason must be a string")
        reason = " ".join(reason.split())[:MAX_REASON_CHARS]
        if self._last_unavailable.get(peer.uid) != reason:
            if not self._within_budget(peer.uid, 1):
                raise ErrorReply(BUSY, "too many activity reports: try again later")
            self._last_unavailable[peer.uid] = reason
            journal.record("activity_unavailable", uid=peer.uid, reason=reason)
        return {"ok": True, "journalled": 0, "ignored_names": 0}

    def _changed(self, uid: int, day: str, sites: dict[str, float], apps: dict[str, float]) -> int:
        return int(self._last_days.get((uid, day)) != (sites, apps))

    def _within_budget(self, uid: int, events: int,
                       budgets: dict[int, tuple[float, int]] | None = None) -> bool:
        """Take ``events`` from the uid's budget of journal lines; False (nothing taken) if short."""
        budgets = self._budget if budgets is None else budgets
        now = self._monotonic()
        started, used = budgets.get(uid, (now, 0))
        if now - started >= JOURNAL_BUDGET_SECONDS:
            started, used = now, 0
        if used + events > JOURNAL_BUDGET_EVENTS:
            return False
        budgets[uid] = (started, used + events)
        return True

    def _journal_day(self, uid: int, window: report.DetoxWindow, tz: tzinfo, day: str,
                     sites: dict[str, float], apps: dict[str, float]) -> int:
        key = (uid, day)
        if self._last_days.get(key) == (sites, apps):
            return 0
        if key not in self._last_days and len(self._last_days) >= MAX_REMEMBERED_DAYS:
            self._last_days.clear()  # at worst some unchanged days are journalled again
        self._last_days[key] = (sites, apps)
        first_day = window.started_at.astimezone(tz).date()
        phase = "before" if date.fromisoformat(day) < first_day else "during"
        journal.record("activity_day", uid=uid, date=day, phase=phase, sites=sites, apps=apps)
        return 1

    def blocked_lookups(self, entries: Any, *, blocked_names: Collection[str]) -> int:
        """What a DNS engine's query log says: ``[{date, device, counts: {name: lookups}}]``, the
        device's totals of that day so far. For the network agent to pass on (it is trusted, but
        its engines' logs are not): only blocked names are kept, a (day, device) is journalled
        only when its counts changed. Returns how many were journalled; bad entries are skipped."""
        if not isinstance(entries, list):
            return 0
        journalled = 0
        for entry in entries[:MAX_LOOKUP_ENTRIES]:
            parsed = _parse_lookups(entry, blocked_names)
            if parsed is None:
                continue
            day, device, counts = parsed
            key = (day, device)
            if self._last_lookups.get(key, {}) == counts:
                continue  # unchanged, or nothing blocked from that device yet
            if key not in self._last_lookups and len(self._last_lookups) >= MAX_REMEMBERED_DAYS:
                self._last_lookups.clear()
            self._last_lookups[key] = counts
            journal.record("blocked_lookups", date=day, device=device, counts=counts)
            journalled += 1
        return journalled

    def browser_attempt(self, uid: int, day: str, rule: str) -> int:
        """One blocked navigation: the uid's attempts on ``rule`` that day, this one included.
        Journalled at once, or with the next attempt once the uid's journal budget allows."""
        key = (uid, day)
        counts = self._attempts.get(key)
        if counts is None:
            if len(self._attempts) >= MAX_REMEMBERED_DAYS:
                self._attempts.clear()
            counts = self._attempts[key] = Counter()
        if rule not in counts and len(counts) >= MAX_RULES_PER_DAY:
            return 0  # (a million blocked names: the figures stay bounded)
        counts[rule] += 1
        self._attempts_unjournalled.setdefault(key, Counter())[rule] += 1
        for waiting in [waiting for waiting in self._attempts_unjournalled if waiting[0] == uid]:
            if not self._within_budget(uid, 1, self._attempts_budget):
                break
            new = self._attempts_unjournalled.pop(waiting)
            journal.record("browser_attempts", uid=uid, date=waiting[1], counts=dict(sorted(new.items())),
                           source="browser")
        return counts[rule]

    def browser_time(self, uid: int, day: str, seconds: dict[str, int]) -> int:
        """The uid's running totals of ``day`` (replacing the last); 1 when journalled, 0 when
        unchanged. Raises ErrorReply(BUSY) past the uid's journal budget."""
        key = (uid, day)
        if self._browser_days.get(key) == seconds:
            return 0
        if not self._within_budget(uid, 1):
            raise ErrorReply(BUSY, f"more than {JOURNAL_BUDGET_EVENTS} reports in "
                             f"{JOURNAL_BUDGET_SECONDS:g} s: try again later")
        if key not in self._browser_days and len(self._browser_days) >= MAX_REMEMBERED_DAYS:
            self._browser_days.clear()
        self._browser_days[key] = seconds
        journal.record("browser_day", uid=uid, date=day, seconds=seconds)
        return 1

    def report(self, viewer: int | None, *, now: datetime, tz: tzinfo,
               window: report.DetoxWindow | None) -> dict[str, Any]:
        """Read the journal and build the report as ``viewer`` may see it (None: root, see
        :func:`detoxd.service.commands.viewer`). Called without the engine's lock: the journal
        is append-only and its reader skips a line being written."""
        events, stats = journal.read_events(self.journal_dir)
        visible = report.visible_events(events, viewer)
        window = window or report.find_window(visible)
        document = report.build(visible, now=now, tz=tz, window=window,
                                scope="all" if viewer is None else f"uid {viewer}",
                                journal_stats=_stats_fields(stats))
        return {"ok": True, "report": document}


def _stats_fields(stats: journal.JournalStats) -> dict[str, Any]:
    return {"events": stats.events, "segments": stats.segments, "corrupt_lines": stats.corrupt_lines,
            "newer_version_lines": stats.newer_version_lines}


def _reportable_dates(window: report.DetoxWindow, tz: tzinfo) -> tuple[date, date]:
    first = window.started_at.astimezone(tz).date() - timedelta(days=report.BEFORE_DAYS)
    last = (window.ended_at or window.ends_at).astimezone(tz).date()
    return first, last


def _parse_day(day: Any, first: date, last: date, blocked_names: Collection[str],
               blocked_apps: Collection[str]
               ) -> tuple[str | None, tuple[str, dict[str, float], dict[str, float]] | None, int]:
    """(problem, (date, sites, apps), names dropped as not blocked)."""
    if not isinstance(day, dict):
        return "each day must be an object", None, 0
    when = day.get("date")
    if not isinstance(when, str) or not _DATE.match(when):
        return "date must be YYYY-MM-DD", None, 0
    try:
        moment = date.fromisoformat(when)
    except ValueError:
        return f"date {when!r} does not exist", None, 0
    if not first <= moment <= last:
        return f"date {when} is outside the detox and the {report.BEFORE_DAYS} days before it", None, 0
    dropped = 0
    maps: list[dict[str, float]] = []
    for key, allowed in (("sites", blocked_names), ("apps", blocked_apps)):
        problem, values, not_blocked = _parse_seconds(day.get(key, {}), key, allowed)
        if problem:
            return problem, None, 0
        maps.append(values)
        dropped += not_blocked
    return None, (when, maps[0], maps[1]), dropped


def _parse_seconds(value: Any, key: str,
                   allowed: Collection[str]) -> tuple[str | None, dict[str, float], int]:
    if not isinstance(value, dict) or len(value) > MAX_NAMES_PER_DAY:
        return f"{key} must be an object of at most {MAX_NAMES_PER_DAY} names", {}, 0
    kept: dict[str, float] = {}
    dropped = 0
    for name, seconds in value.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not 0 <= seconds <= MAX_SECONDS_PER_DAY:
            return f"{key}: seconds must be a number from 0 to {MAX_SECONDS_PER_DAY}", {}, 0
        if name not in allowed:
            dropped += 1  # only what detoxd blocks is ever journalled
            continue
        if seconds:
            kept[name] = round(float(seconds), 1)
    return None, dict(sorted(kept.items())), dropped


def _parse_lookups(entry: Any, blocked_names: Collection[str]) -> tuple[str, str, dict[str, int]] | None:
    if not isinstance(entry, dict):
        return None
    day, device, counts = entry.get("date"), entry.get("device"), entry.get("counts")
    if not isinstance(day, str) or not _DATE.match(day) or not isinstance(device, str) \
            or not isinstance(counts, dict):
        return None
    try:
        date.fromisoformat(day)
    except ValueError:
        return None
    kept = {name: count for name, count in counts.items()
            if name in blocked_names and isinstance(count, int) and not isinstance(count, bool) and count > 0}
    top = sorted(kept.items(), key=lambda item: -item[1])[:MAX_NAMES_PER_DAY]
    return day, " ".join(device.split())[:MAX_DEVICE_CHARS] or "unknown", dict(sorted(top))

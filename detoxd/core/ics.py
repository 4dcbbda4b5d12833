"""Exports of the plan: an RFC 5545 calendar (invitations) and a Markdown worksheet (pure).

Calendar identity: each session's UID is derived from the organizer and the session number
only, so exporting again after moving the time, the place or the people produces the *same*
events, and calendars update them instead of showing duplicates. SEQUENCE grows with the export
time (minutes since :data:`SEQUENCE_EPOCH`): clients accept a re-sent invitation as an update
only when its SEQUENCE is not lower than the one they have.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar

from detoxd.core.plan import (
    DEFAULT_MY_NAME,
    Plan,
    PlannedSession,
    format_duration,
    session_heading,
    timetable_lines,
)
from detoxd.core.sessions import Person

PRODID = "-//detoxd//peer sessions//EN"
UID_NAMESPACE = uuid.UUID("4f0d7a64-3b35-4f59-9f0e-2f7b1c7c5d10")  # fixed forever: UIDs depend on it
UID_DOMAIN = "detoxd"
SEQUENCE_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
# Debian 12 ships icalendar 4.0.3: no add_missing_timezones(), and a zoneinfo datetime gets its
# abbreviation (BST) as TZID. With it, detoxd writes the VTIMEZONE and the TZID itself.
LEGACY_ICALENDAR = not hasattr(icalendar.Calendar, "add_missing_timezones")
QUESTIONS = (
    ("Promote", "How can the group promote {name}'s business?"),
    ("Help", "How can the group help {name}?"),
    ("Connect", "Who can the group connect {name} with?"),
)


def event_uid(plan: Plan, session: PlannedSession) -> str:
    """Stable across exports and edits of time, place and people (see the module docstring)."""
    organizer = (plan.me.email or plan.me.name).casefold()
    return f"{uuid.uuid5(UID_NAMESPACE, f'{organizer}/session-{session.number}')}@{UID_DOMAIN}"


def sequence(stamp: datetime) -> int:
    return max(0, int((stamp - SEQUENCE_EPOCH).total_seconds() // 60))


def calendar(plan: Plan, stamp: datetime, attachment: tuple[str, str] | None = None,
             sequence_number: int | None = None) -> bytes:
    """The two sessions as an iCalendar file; ``stamp`` (aware) is the export time (DTSTAMP).

    ``attachment`` (file name, text) is added inline to every event: one peer's card for that
    peer's own copy of the invitation (`detoxd sessions --ics FILE --cards DIR`).
    ``sequence_number`` replaces the SEQUENCE ``stamp`` gives (a mailed update sent within the
    same minute as the last one must still be higher)."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if plan.me.email and any(peer.email for peer in plan.peers):
        cal.add("method", "REQUEST")  # an invitation: attendees are asked to reply
    for session in plan.sessions:
        event = _event(plan, session, stamp, sequence_number)
        if attachment is not None:
            event.add("attach", _inline(*attachment))
        cal.add_component(event)
    first_day = plan.sessions[0].start.date()
    last_day = plan.sessions[-1].end.date()
    # VTIMEZONE rules from the tz database, covering the sessions with a year to spare.
    first_date, last_date = date(first_day.year - 1, 1, 1), date(last_day.year + 2, 1, 1)
    if not LEGACY_ICALENDAR:
        cal.add_missing_timezones(first_date=first_date, last_date=last_date)
    else:
        zone = plan.sessions[0].start.tzinfo
        if isinstance(zone, ZoneInfo) and zone.key != "UTC":
            cal.add_component(vtimezone(zone, first_date, last_date))
    data: bytes = cal.to_ical()
    return data


def vtimezone(zone: ZoneInfo, first: date, last: date) -> icalendar.Timezone:
    """A VTIMEZONE for ``zone`` with one STANDARD/DAYLIGHT part per offset change between
    ``first`` and ``last`` (RFC 5545 3.6.5: DTSTART is the local time of the onset in the
    offset before it), or a single STANDARD part for a zone without changes."""
    component = icalendar.Timezone()
    component.add("tzid", zone.key)
    moment = datetime.combine(first, time(), UTC)
    end = datetime.combine(last, time(), UTC)
    changes = []
    while moment < end:
        following = moment + timedelta(days=1)
        if moment.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            changes.append(_transition(zone, moment, following))
        moment = following
    if not changes:
        changes.append(datetime.combine(first, time(), UTC))
    for onset in changes:
        before = (onset - timedelta(minutes=1)).astimezone(zone)
        after = onset.astimezone(zone)
        kind = icalendar.TimezoneDaylight() if after.dst() else icalendar.TimezoneStandard()
        kind.add("tzname", after.tzname())
        kind.add("dtstart", (onset + (before.utcoffset() or timedelta())).replace(tzinfo=None))
        kind.add("tzoffsetfrom", before.utcoffset() or timedelta())
        kind.add("tzoffsetto", after.utcoffset() or timedelta())
        component.add_component(kind)
    return component


def _transition(zone: ZoneInfo, earlier: datetime, later: datetime) -> datetime:
    """The first UTC minute in (earlier, later] with ``later``'s offset (offsets change on
    whole minutes in the tz database)."""
    offset = later.astimezone(zone).utcoffset()
    while later - earlier > timedelta(minutes=1):
        middle = earlier + (later - earlier) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle <= earlier:
            middle = earlier + timedelta(minutes=1)
        if middle.astimezone(zone).utcoffset() == offset:
            later = middle
        else:
            earlier = middle
    return later


def _event(plan: Plan, session: PlannedSession, stamp: datetime,
           sequence_number: int | None = None) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", event_uid(plan, session))
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("sequence", sequence(stamp) if sequence_number is None else sequence_number)
    event.add("dtstart", session.start, parameters=_tzid(session.start))
    event.add("dtend", session.end, parameters=_tzid(session.end))
    then = f", then {plan.repeat}" if recurrence(plan, session) is not None else ""
    event.add("summary", f"Peer session {session.number} of {len(plan.sessions)}{then}: "
              "promote, help, connect")
    event.add("description", description(plan, session))
    if plan.location:
        event.add("location", plan.location)
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
    rule = recurrence(plan, session)
    if rule is not None:
        event.add("rrule", rule)
    if plan.me.email:
        event.add("organizer", _address(plan.me, organizer=True))
    for peer in plan.peers:
        if peer.email:
            event.add("attendee", _address(peer, organizer=False))
    for before in plan.reminders:
        event.add_component(_alarm(session, before))
    return event


def recurrence(plan: Plan, session: PlannedSession) -> dict[str, str] | None:
    """`sessions.repeat`: the last of the two sessions recurs weekly or monthly (RFC 5545 RRULE,
    FREQ=WEEKLY or FREQ=MONTHLY, no end) with the same peers: its occurrences are
    :func:`detoxd.core.plan.later_session`'s."""
    if plan.repeat is None or session is not plan.sessions[-1]:
        return None
    return {"FREQ": "WEEKLY" if plan.repeat == "weekly" else "MONTHLY"}


def _inline(name: str, text: str) -> icalendar.vBinary:
    """RFC 5545 3.2.7/3.2.8: an inline attachment, base64 with its media type."""
    data = icalendar.vBinary(text)
    data.params["FMTTYPE"] = "text/plain"
    data.params["X-FILENAME"] = name
    return data


def _tzid(moment: datetime) -> dict[str, str]:
    if LEGACY_ICALENDAR and isinstance(moment.tzinfo, ZoneInfo) and moment.tzinfo.key != "UTC":
        return {"TZID": moment.tzinfo.key}
    return {}


def _address(person: Person, *, organizer: bool) -> icalendar.vCalAddress:
    address = icalendar.vCalAddress(f"mailto:{person.email}")
    address.params["CN"] = person.name
    if not organizer:
        address.params["CUTYPE"] = "INDIVIDUAL"
        address.params["ROLE"] = "REQ-PARTICIPANT"
        address.params["PARTSTAT"] = "NEEDS-ACTION"
        address.params["RSVP"] = "TRUE"
    return address


def _alarm(session: PlannedSession, before: timedelta) -> icalendar.Alarm:
    alarm = icalendar.Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("trigger", -before)  # relative to DTSTART
    alarm.add("description", f"Peer session {session.number} starts in {format_duration(before)}")
    return alarm


def description(plan: Plan, session: PlannedSession) -> str:
    """The hot-seat timetable, as plain text for the event's DESCRIPTION."""
    minutes = int((session.hot_seats[0].end - session.hot_seats[0].start).total_seconds() // 60)
    lines = [
        f"{len(session.hot_seats)} hot seats of {minutes} minutes: how can the group promote, "
        "help and connect the person in the hot seat?",
        "",
        f"Hot seats ({plan.timezone}):",
        *timetable_lines(session),
    ]
    others = [other for other in plan.sessions if other is not session]
    lines += ["", *(f"Also: {session_heading(other)}" for other in others)]
    if recurrence(plan, session) is not None:
        lines.append(f"This session repeats {plan.repeat}, with the same peers in the same order.")
    return "\n".join(lines)


# ---- the worksheet ----

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _md(text: str) -> str:
    """Plain text shown literally in Markdown (names may contain *, _, # ...)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def worksheet(plan: Plan, number: int | None = None, peers_needed: int | None = None) -> str:
    """A Markdown worksheet: per session, a section per person with the three questions.

    ``number`` picks one session; None gives both, one after the other. ``peers_needed``
    (with `lock: peers`) adds the ritual of the early-end key."""
    chosen = [s for s in plan.sessions if number is None or s.number == number]
    if not chosen:
        raise ValueError(f"no session {number}")
    parts = ["# Peer sessions: promote, help, connect", ""]
    names = ", ".join(_md(person.name) for person in (plan.me, *plan.peers))
    parts += [f"With {names}.", ""]
    if peers_needed is not None:
        me = _md(plan.me.name) if plan.me.name != DEFAULT_MY_NAME else None
        parts += [ritual(me, len(plan.peers), peers_needed), ""]
    for session in chosen:
        parts += _session_worksheet(plan, session)
    return "\n".join(parts).rstrip("\n") + "\n"


def ritual(name: str | None, peers: int, needed: int) -> str:
    """The early-end key in two sentences (also in docs/peer-lock.md); ``name``: whose detox."""
    whose, who = (f"{name}'s detox", name) if name else ("the detox", "the one on the detox")
    return (f"**The early-end key.** Each of the {peers} peers holds a card with 20 words, one share "
            f"of the key that ends {whose} early: any {needed} cards together open it, fewer "
            f"reveal nothing. To stop early, {who} has to call {needed} of you and explain why, and "
            "each of you decides whether to read out your card's words for "
            "`sudo detoxd end --with-peers`.")


def _session_worksheet(plan: Plan, session: PlannedSession) -> list[str]:
    lines = [f"## {_md(session_heading(session))}", ""]
    if plan.location:
        lines += [f"Where: {_md(plan.location)}", ""]
    for seat in session.hot_seats:
        name = _md(seat.person.name)
        lines += [f"### {seat.number}. {name} ({seat.start:%H:%M}–{seat.end:%H:%M})", ""]
        for title, question in QUESTIONS:
            lines += [f"**{title}.** {question.format(name=name)}", "", "-", ""]
        lines += ["Agreed actions (who, what, by when):", "", "-", ""]
    return lines

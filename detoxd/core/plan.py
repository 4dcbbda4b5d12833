"""The two peer sessions, their hot seats and reminders (pure: config and ``now`` in, values out).

Session 2 starts ``repeat_after_days`` after session 1 at the same *local wall-clock* time, so a
daylight-saving change in between moves it in UTC, not on the wall. Within a session, slots are
laid out in real elapsed time (computed in UTC): a session that spans a clock change still
gives every business its full 30 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from detoxd.core.config import MainConfig
from detoxd.core.sessions import Person, SessionSettings

SESSION_COUNT = 2
DEFAULT_MY_NAME = "You"


@dataclass(frozen=True)
class HotSeat:
    number: int  # 1-based position in its session
    person: Person
    start: datetime  # aware, in the plan's zone
    end: datetime


@dataclass(frozen=True)
class PlannedSession:
    number: int  # 1 or 2
    start: datetime
    end: datetime
    hot_seats: tuple[HotSeat, ...]
    reminders: tuple[tuple[timedelta, datetime], ...]  # (how long before, when), earliest first


@dataclass(frozen=True)
class Plan:
    sessions: tuple[PlannedSession, ...]
    timezone: str  # IANA name the times are in
    me: Person
    peers: tuple[Person, ...]
    location: str | None
    reminders: tuple[timedelta, ...]
    adjustments: tuple[str, ...] = ()  # local times that had to move (daylight-saving gaps)
    repeat: str | None = None  # `sessions.repeat`: weekly | monthly after the two (see later_session)


def build(
    me: Person | None, peers: tuple[Person, ...], settings: SessionSettings, system_zone: str
) -> Plan:
    """The plan; ``system_zone`` (an IANA name) is used when the settings name no zone."""
    zone_name = settings.timezone or system_zone
    zone = ZoneInfo(zone_name)
    me = me or Person(DEFAULT_MY_NAME)
    people = (me, *peers)
    orders = [list(range(len(people))), second_order(len(people))]
    sessions: list[PlannedSession] = []
    adjustments: list[str] = []
    for index in range(SESSION_COUNT):
        wall = settings.first + timedelta(days=index * settings.repeat_after_days)
        start, note = localize(wall, zone)
        if note:
            adjustments.append(f"session {index + 1}: {note}")
        seated = [people[position] for position in orders[index]]
        sessions.append(_session(index + 1, start, seated, settings))
    return Plan(tuple(sessions), zone_name, me, peers, settings.location, settings.reminders,
                tuple(adjustments), settings.repeat)


def from_config(main: MainConfig, system_zone: str, detox_start: datetime | None = None) -> Plan | None:
    """The plan of a parsed config, or None when it has no `sessions:` section. With `first:
    "day N HH:MM"` the sessions follow the detox's start (``detox_start``: the running or planned
    detox's, aware); None without one."""
    settings = main.sessions
    if settings is None:
        return None
    if settings.first_day is not None:
        if detox_start is None:
            return None
        zone = ZoneInfo(settings.timezone or system_zone)
        settings = settings.anchored(detox_start.astimezone(zone).date())
    return build(main.me, main.peers, settings, system_zone)


def follows_the_detox(main: MainConfig) -> bool:
    """`sessions.first: "day N HH:MM"`: the plan is made from the detox's start."""
    return main.sessions is not None and main.sessions.first_day is not None


def second_order(count: int) -> list[int]:
    """The seating of session 2: reversed, so the first goes last; nobody keeps their slot.

    With an odd number of people the middle one would stay put, so they swap with the next.
    """
    order = list(reversed(range(count)))
    middle = count // 2
    if count % 2 == 1 and count > 1:
        order[middle], order[middle + 1] = order[middle + 1], order[middle]
    return order


def localize(wall: datetime, zone: ZoneInfo) -> tuple[datetime, str | None]:
    """A naive wall-clock time as an aware time in ``zone``, and a note if it had to move.

    A time in a spring-forward gap does not exist: it is read with the offset in force before
    the change (01:30 becomes 02:30). A time in the autumn overlap happens twice: the first counts.
    """
    aware = wall.replace(tzinfo=zone, fold=0)
    actual = aware.astimezone(UTC).astimezone(zone)
    when = f"{wall:%Y-%m-%d %H:%M} ({zone.key})"
    if actual.replace(tzinfo=None) != wall:
        return actual, f"{when} does not exist (clocks go forward); it starts at {actual:%H:%M}"
    if wall.replace(tzinfo=zone, fold=1).utcoffset() != aware.utcoffset():
        return actual, f"{when} happens twice (clocks go back); the first one, {actual:%H:%M %Z}, is used"
    return actual, None


def _session(number: int, start: datetime, seated: list[Person], settings: SessionSettings) -> PlannedSession:
    zone = start.tzinfo
    step = settings.slot_length + settings.break_length
    start_utc = start.astimezone(UTC)
    seats = tuple(
        HotSeat(position + 1, person,
                (start_utc + position * step).astimezone(zone),
                (start_utc + position * step + settings.slot_length).astimezone(zone))
        for position, person in enumerate(seated)
    )
    end = seats[-1].end
    reminders = tuple(sorted(((before, (start_utc - before).astimezone(zone))
                              for before in settings.reminders), key=lambda item: item[1]))
    return PlannedSession(number, start, end, seats, reminders)


# ---- `sessions.repeat`: further sessions after the two ----

def later_session(plan: Plan, index: int) -> PlannedSession | None:
    """The ``index``-th session after the two (1: the third), with the second's peers in the
    second's order, at its local time ``index`` weeks or months later: the occurrences of the
    calendar's RRULE (RFC 5545: a month without that day is skipped; a local time a clock change
    skips is read with the offset before it, as :func:`localize` does). None without a repeat."""
    if plan.repeat is None or index < 1:
        return None
    base = plan.sessions[-1]
    zone = ZoneInfo(plan.timezone)
    wall = base.start.astimezone(zone).replace(tzinfo=None)
    if plan.repeat == "weekly":
        wall += timedelta(weeks=index)
    else:
        wall = _months_later(wall, index)
    start, _note = localize(wall, zone)
    shift = start.astimezone(UTC) - base.start.astimezone(UTC)

    def moved(moment: datetime) -> datetime:
        return (moment.astimezone(UTC) + shift).astimezone(zone)

    return PlannedSession(
        len(plan.sessions) + index, start, moved(base.end),
        tuple(HotSeat(seat.number, seat.person, moved(seat.start), moved(seat.end))
              for seat in base.hot_seats),
        tuple((before, moved(at)) for before, at in base.reminders))


def _months_later(wall: datetime, index: int) -> datetime:
    """The ``index``-th month after ``wall`` that has its day of the month (RRULE FREQ=MONTHLY)."""
    found, month = 0, wall.year * 12 + wall.month - 1
    while True:
        month += 1
        year, number = divmod(month, 12)
        if wall.day <= _days_in_month(year, number + 1):
            found += 1
            if found == index:
                return wall.replace(year=year, month=number + 1)


def _days_in_month(year: int, month: int) -> int:
    following = datetime(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


def next_repeated(plan: Plan, now: datetime) -> PlannedSession | None:
    """The repeated session in progress at ``now``, else the next one (None: no repeat)."""
    if plan.repeat is None:
        return None
    base = plan.sessions[-1]
    # Weekly: start a week short of the answer; monthly (a few dozen a year at most): from the first.
    weeks = int((now - base.start).total_seconds() // (7 * 86400)) - 1
    index = max(1, weeks) if plan.repeat == "weekly" else 1
    while True:
        session = later_session(plan, index)
        if session is None or now < session.end:
            return session
        index += 1


# ---- questions about a moment ----

def next_session(plan: Plan, now: datetime) -> PlannedSession | None:
    """The session in progress, else the next to start; None once both are over (and no
    ``repeat`` plans more)."""
    found = next((session for session in plan.sessions if now < session.end), None)
    return found if found is not None else next_repeated(plan, now)


def current_hot_seat(plan: Plan, now: datetime) -> tuple[PlannedSession, HotSeat] | None:
    """Who is in the hot seat at ``now``; None outside sessions and during breaks."""
    later = next_repeated(plan, now) if now >= plan.sessions[-1].end else None
    for session in (*plan.sessions, *((later,) if later is not None else ())):
        for seat in session.hot_seats:
            if seat.start <= now < seat.end:
                return session, seat
    return None


def status_fields(plan: Plan | None, now: datetime) -> dict[str, Any]:
    """``next_session`` and ``current_hot_seat`` for ``status --json``."""
    if plan is None:
        return {"next_session": None, "current_hot_seat": None}
    upcoming = next_session(plan, now)
    current = current_hot_seat(plan, now)
    return {
        "next_session": None if upcoming is None else {
            "number": upcoming.number,
            "start": iso(upcoming.start),
            "end": iso(upcoming.end),
            "in_progress": upcoming.start <= now,
            "location": plan.location,
            # Who is in the hot seat: now, in a session in progress; else who takes it first.
            "hot_seat": _seated(upcoming, current, now),
            "hot_seats": [{"seat": seat.number, "name": seat.person.name, "start": iso(seat.start),
                           "end": iso(seat.end)} for seat in upcoming.hot_seats],
        },
        "current_hot_seat": None if current is None else _hot_seat_status(*current, now),
    }


def _seated(session: PlannedSession, current: tuple[PlannedSession, HotSeat] | None,
            now: datetime) -> str | None:
    if current is not None and current[0].number == session.number:
        return current[1].person.name
    if session.start <= now:
        return None  # a break between seats, or the session's last minutes
    return session.hot_seats[0].person.name if session.hot_seats else None


def _hot_seat_status(session: PlannedSession, seat: HotSeat, now: datetime) -> dict[str, Any]:
    following = session.hot_seats[seat.number] if seat.number < len(session.hot_seats) else None
    return {
        "name": seat.person.name,
        "ends_at": iso(seat.end),
        "seconds_left": max(0, round((seat.end - now).total_seconds())),
        "session": session.number,
        "seat": seat.number,
        "of": len(session.hot_seats),
        "next_name": following.person.name if following else None,
    }


def warnings(plan: Plan, detox_start: datetime | None, detox_end: datetime | None) -> list[str]:
    """What the user should know: moved times, sessions outside the detox window, no rotation.

    The window is open-ended on a side given as None.
    """
    found = list(plan.adjustments)
    if not plan.peers:
        found.append("sessions: no peers, so every hot seat is yours")
    for session in plan.sessions:
        label = f"sessions: session {session.number} ({_when(session.start)})"
        if detox_start is not None and session.start < detox_start:
            found.append(f"{label} starts before the detox does ({_when(detox_start, plan)})")
        if detox_end is not None and session.end > detox_end:
            found.append(f"{label} ends after the detox does ({_when(detox_end, plan)})")
    return found


def _when(moment: datetime, plan: Plan | None = None) -> str:
    if plan is not None:
        moment = moment.astimezone(ZoneInfo(plan.timezone))
    return f"{moment:%a %d %b %Y %H:%M %Z}"


# ---- presentation helpers shared by the CLI, the calendar and the worksheet ----

def iso(moment: datetime) -> str:
    """ISO 8601 with the local offset, to the second (sub-second plans exist only in tests)."""
    return moment.isoformat(timespec="seconds")


def format_duration(length: timedelta) -> str:
    """The config's own notation: ``1d``, ``1h30m``, ``45m``."""
    minutes = int(length.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text or "0m"


def to_json(plan: Plan) -> dict[str, Any]:
    return {
        "timezone": plan.timezone,
        "location": plan.location,
        "me": _person_json(plan.me),
        "peers": [_person_json(peer) for peer in plan.peers],
        "reminders": [format_duration(before) for before in plan.reminders],
        "repeat": plan.repeat,
        "sessions": [{
            "number": session.number,
            "start": iso(session.start),
            "end": iso(session.end),
            "hot_seats": [{
                "number": seat.number, **_person_json(seat.person),
                "start": iso(seat.start), "end": iso(seat.end),
            } for seat in session.hot_seats],
            "reminders": [{"before": format_duration(before), "at": iso(at)}
                          for before, at in session.reminders],
        } for session in plan.sessions],
        "adjustments": list(plan.adjustments),
    }


def _person_json(person: Person) -> dict[str, Any]:
    return {"name": person.name, "email": person.email}


def session_heading(session: PlannedSession) -> str:
    start = session.start
    return (f"Session {session.number}: {start:%A} {start.day} {start:%B %Y}, "
            f"{start:%H:%M}–{session.end:%H:%M %Z}")


def timetable_lines(session: PlannedSession) -> list[str]:
    return [f"{seat.start:%H:%M}–{seat.end:%H:%M}  {seat.person.name}" for seat in session.hot_seats]


def format_text(plan: Plan) -> str:
    """What `detoxd sessions` prints."""
    lines: list[str] = []
    for session in plan.sessions:
        lines.append(session_heading(session))
        if plan.location:
            lines.append(f"  at {plan.location}")
        lines += ["  " + line for line in timetable_lines(session)]
        if session.reminders:
            lines.append("  reminders: " + ", ".join(
                f"{at:%a %d %b %H:%M} ({format_duration(before)} before)"
                for before, at in session.reminders))
        lines.append("")
    if plan.repeat is not None:
        lines += [repeat_text(plan), ""]
    lines.append(f"Times are in {plan.timezone}.")
    return "\n".join(lines)


def repeat_text(plan: Plan) -> str:
    """"Then weekly, with the same peers in session 2's order: Thursday 24 December 2026, …"."""
    following = [session for session in (later_session(plan, index) for index in (1, 2, 3))
                 if session is not None]
    when = ", ".join(f"{session.start:%a} {session.start.day} {session.start:%b %Y %H:%M}"
                     for session in following)
    return (f"Then {plan.repeat}, with the same peers in session {len(plan.sessions)}'s order: "
            f"{when}, …")

"""`sessions.repeat: weekly|monthly`: further sessions with the same peers after the two, and the
calendar's RRULE that carries them (its occurrences, expanded by python-dateutil as a calendar
client would, are the plan's own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
from dateutil.rrule import rrulestr

from detoxd.core import ics, plan
from detoxd.core.config import parse_main
from detoxd.core.sessions import Person, SessionSettings
from detoxd.service.scheduler import EVENT_HOT_SEAT, jobs_to_schedule

LONDON = ZoneInfo("Europe/London")
ME = Person("Robert Craven", "robert@example.com")
PEERS = (Person("Ada Lovelace", "ada@example.com"), Person("Grace Hopper"))
FIRST = ("me: {name: Robert Craven}\npeers: [Ada, Grace, Alan, Kate, Tim]\n"
         "sessions:\n  first: 2026-12-03 09:00\n")


def build(first: datetime, repeat: str | None, **changes: object) -> plan.Plan:
    settings = SessionSettings(first=first, timezone="Europe/London", repeat=repeat,
                               **changes)  # type: ignore[arg-type]
    return plan.build(ME, PEERS, settings, system_zone="UTC")


@pytest.mark.parametrize("value", ["weekly", "monthly", "Weekly", " monthly "])
def test_the_key_takes_weekly_or_monthly(value: str) -> None:
    main, source = parse_main(f"{FIRST}  repeat: '{value}'\n")
    assert source.errors == [] and main is not None and main.sessions is not None
    assert main.sessions.repeat == value.strip().lower()
    main, _ = parse_main(FIRST)
    assert main is not None and main.sessions is not None and main.sessions.repeat is None


@pytest.mark.parametrize(("value", "message"), [
    ("daily", "'daily' is not a repeat: weekly or monthly"),
    ("7", "expected text, got int"),
    ("[weekly]", "expected text, got a list"),
])
def test_a_wrong_repeat_is_an_error_at_its_line(value: str, message: str) -> None:
    _, source = parse_main(f"{FIRST}  location: Zoom\n  repeat: {value}\n")
    [error] = [str(issue) for issue in source.errors]
    assert error.startswith("detoxd.yaml:6: sessions.repeat: ") and message in error, error


def test_weekly_sessions_keep_the_local_time_across_daylight_saving() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), "weekly")
    second = result.sessions[1]
    third = plan.later_session(result, 1)
    assert third is not None and third.number == 3
    assert third.start == datetime(2026, 12, 17, 9, 0, tzinfo=LONDON)
    assert [seat.person for seat in third.hot_seats] == [seat.person for seat in second.hot_seats]
    summer = plan.later_session(result, 16)  # 1 April 2027, British Summer Time
    assert summer is not None and summer.start == datetime(2027, 4, 1, 9, 0, tzinfo=LONDON)
    assert summer.start.utcoffset() == timedelta(hours=1)
    assert summer.end - summer.start == second.end - second.start
    assert plan.later_session(build(datetime(2026, 12, 3, 9, 0), None), 1) is None


def test_monthly_sessions_skip_a_month_without_the_day_as_the_rrule_does() -> None:
    result = build(datetime(2026, 12, 24, 9, 0), "monthly")  # session 2: Thursday 31 December
    starts = [session.start for session in (plan.later_session(result, index) for index in range(1, 5))
              if session is not None]
    assert [(start.year, start.month, start.day) for start in starts] == [
        (2027, 1, 31), (2027, 3, 31), (2027, 5, 31), (2027, 7, 31)]


@pytest.mark.parametrize(("first", "repeat"), [
    (datetime(2026, 12, 3, 9, 0), "weekly"), (datetime(2026, 12, 24, 9, 0), "monthly"),
    (datetime(2026, 3, 22, 1, 30), "weekly"),  # session 2 on 29 March 2026: 01:30 is skipped
])
def test_the_calendars_recurrence_expands_to_the_plans_sessions(first: datetime, repeat: str) -> None:
    result = build(first, repeat)
    calendar = icalendar.Calendar.from_ical(ics.calendar(result, datetime(2026, 1, 1, tzinfo=UTC)))
    events = {int(event["summary"].split()[2].rstrip(":,")): event for event in calendar.walk("VEVENT")}
    assert "RRULE" not in events[1] and "repeats" not in str(events[1]["description"])
    second = events[2]
    assert second["rrule"]["FREQ"] == [repeat.upper()]
    assert f", then {repeat}:" in str(second["summary"])
    assert f"repeats {repeat}, with the same peers" in str(second["description"])
    start = second.decoded("dtstart")
    rule = rrulestr(second["rrule"].to_ical().decode(), dtstart=start.replace(tzinfo=None))
    expanded = [moment.replace(tzinfo=LONDON) for moment in rule[1:13]]
    planned = [plan.later_session(result, index) for index in range(1, 13)]
    # Wall times as the calendar has them (a skipped 01:30 is shifted by the client as by localize).
    assert [plan.localize(moment.replace(tzinfo=None), LONDON)[0] for moment in expanded] == [
        session.start for session in planned if session is not None]


def test_after_the_two_the_next_session_and_the_hot_seat_are_the_repeated_ones() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), "weekly")
    after = result.sessions[1].end + timedelta(days=1)
    fields = plan.status_fields(result, after)
    assert fields["next_session"]["number"] == 3
    assert fields["next_session"]["start"] == "2026-12-17T09:00:00+00:00"
    far = plan.next_session(result, datetime(2028, 6, 1, tzinfo=UTC))
    assert far is not None and far.start == datetime(2028, 6, 1, 9, 0, tzinfo=LONDON)  # a Thursday
    seat = plan.current_hot_seat(result, datetime(2026, 12, 17, 9, 40, tzinfo=UTC))
    assert seat is not None and seat[0].number == 3
    assert seat[1].person == result.sessions[1].hot_seats[1].person
    assert plan.next_session(build(datetime(2026, 12, 3, 9, 0), None), after) is None


def test_the_text_and_json_say_it_repeats() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), "weekly")
    assert plan.to_json(result)["repeat"] == "weekly"
    assert ("Then weekly, with the same peers in session 2's order: Thu 17 Dec 2026 09:00, "
            "Thu 24 Dec 2026 09:00, Thu 31 Dec 2026 09:00, …") in plan.format_text(result).split("\n")


def test_the_daemon_schedules_the_next_repeated_sessions_handovers() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), "weekly")
    after = result.sessions[1].end + timedelta(minutes=10)
    jobs = jobs_to_schedule(result, after)
    seats = [job for job in jobs if job.event == EVENT_HOT_SEAT]
    assert seats and {job.details["session"] for job in seats} == {3}
    assert seats[0].at == datetime(2026, 12, 17, 9, 0, tzinfo=LONDON) and seats[0].id == "session3-seat1"
    ended = [job for job in jobs_to_schedule(result, result.sessions[1].start) if job.id == "session2-end"]
    assert ended[0].details["next_session"] == "2026-12-17T09:00:00+00:00"
    assert not [job for job in jobs_to_schedule(build(datetime(2026, 12, 3, 9, 0), None), after)]


# ---- `first: "day N HH:MM"`: the sessions follow the detox's start ----

def test_a_first_session_on_a_day_of_the_detox_is_parsed() -> None:
    main, source = parse_main(FIRST.replace("2026-12-03 09:00", "'Day 2 18:30'"))
    assert source.errors == [] and main is not None and main.sessions is not None
    assert main.sessions.first_day == 2 and main.sessions.first.time().isoformat() == "18:30:00"
    assert plan.follows_the_detox(main)
    for value, words in (("day 0 18:00", "'day 0 18:00': day 1 to 365"), ("day 2 24:00", "day 1 to 365"),
                         ("day two 18:00", "is not a date and time")):
        _, source = parse_main(FIRST.replace("2026-12-03 09:00", f"'{value}'"))
        [error] = [str(issue) for issue in source.errors]
        assert error.startswith("detoxd.yaml:4: sessions.first: ") and words in error, error


def test_the_sessions_are_planned_from_the_detoxs_start_in_the_plans_zone() -> None:
    main, _ = parse_main(FIRST.replace("2026-12-03 09:00", "day 2 18:00") + "  timezone: Europe/London\n")
    assert main is not None
    assert plan.from_config(main, "UTC") is None  # no detox to follow
    # A detox planned to begin 14 Dec 2026 at 00:30 in Berlin: 13 Dec 23:30 in London, its day 1.
    begins = datetime(2026, 12, 14, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    planned = plan.from_config(main, "UTC", begins)
    assert planned is not None
    first, second = planned.sessions
    assert first.start == datetime(2026, 12, 14, 18, 0, tzinfo=LONDON)
    assert second.start == datetime(2026, 12, 21, 18, 0, tzinfo=LONDON)
    fixed, _ = parse_main(FIRST)
    assert fixed is not None and not plan.follows_the_detox(fixed)
    assert plan.from_config(fixed, "UTC", begins) == plan.from_config(fixed, "UTC")

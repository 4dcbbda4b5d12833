"""Planning the two peer sessions: times, daylight saving, slots, rotation, warnings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detoxd.clock import FakeClock
from detoxd.core import plan
from detoxd.core.config import parse_main
from detoxd.core.sessions import Person, SessionSettings

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
ME = Person("Robert Craven", "robert@example.com")
PEERS = (Person("Ada Lovelace", "ada@example.com"), Person("Grace Hopper", "grace@example.com"),
         Person("Alan Turing"), Person("Katherine Johnson", "kj@example.com"),
         Person("Tim Berners-Lee", "tim@example.com"))


def settings(first: datetime, zone: str = "Europe/London", **changes: object) -> SessionSettings:
    return SessionSettings(first=first, timezone=zone, **changes)  # type: ignore[arg-type]


def build(first: datetime, zone: str = "Europe/London", **changes: object) -> plan.Plan:
    return plan.build(ME, PEERS, settings(first, zone, **changes), system_zone="UTC")


def test_issue_example_two_sessions_of_six_hot_seats() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), location="Ada's office")
    first, second = result.sessions
    assert (first.number, second.number) == (1, 2)
    assert first.start == datetime(2026, 12, 3, 9, 0, tzinfo=LONDON)
    assert first.end == datetime(2026, 12, 3, 12, 0, tzinfo=LONDON)  # 6 x 30 minutes
    assert second.start == datetime(2026, 12, 10, 9, 0, tzinfo=LONDON)
    assert [seat.person.name for seat in first.hot_seats] == [
        "Robert Craven", "Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson",
        "Tim Berners-Lee"]
    assert [seat.start.strftime("%H:%M") for seat in first.hot_seats] == [
        "09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]
    assert all(seat.end - seat.start == timedelta(minutes=30) for seat in first.hot_seats)
    assert [seat.number for seat in first.hot_seats] == [1, 2, 3, 4, 5, 6]
    assert result.adjustments == ()


def test_second_session_reverses_the_order_so_nobody_keeps_a_slot() -> None:
    first, second = build(datetime(2026, 12, 3, 9, 0)).sessions
    assert [seat.person for seat in second.hot_seats] == [seat.person for seat in reversed(first.hot_seats)]
    for one, two in zip(first.hot_seats, second.hot_seats, strict=True):
        assert one.person != two.person


@given(st.integers(min_value=2, max_value=40))
def test_second_order_is_a_permutation_that_moves_everyone(count: int) -> None:
    order = plan.second_order(count)
    assert sorted(order) == list(range(count))
    assert all(order[slot] != slot for slot in range(count))


def test_second_order_of_odd_groups() -> None:
    assert plan.second_order(5) == [4, 3, 1, 2, 0]
    assert plan.second_order(3) == [2, 0, 1]
    assert plan.second_order(1) == [0]  # alone: nothing to rotate (warned about)


@pytest.mark.parametrize(("zone", "first", "offsets"), [
    # London: BST ends on 25 Oct 2026, starts on 29 Mar 2026.
    ("Europe/London", datetime(2026, 10, 22, 9, 0), (timedelta(hours=1), timedelta(0))),
    ("Europe/London", datetime(2026, 3, 26, 9, 0), (timedelta(0), timedelta(hours=1))),
    # New York: EDT ends on 1 Nov 2026, starts on 8 Mar 2026.
    ("America/New_York", datetime(2026, 10, 29, 18, 30), (timedelta(hours=-4), timedelta(hours=-5))),
    ("America/New_York", datetime(2026, 3, 5, 18, 30), (timedelta(hours=-5), timedelta(hours=-4))),
])
def test_second_session_keeps_the_wall_clock_time_across_daylight_saving(
    zone: str, first: datetime, offsets: tuple[timedelta, timedelta]
) -> None:
    one, two = build(first, zone).sessions
    assert (one.start.utcoffset(), two.start.utcoffset()) == offsets
    assert one.start.strftime("%H:%M") == two.start.strftime("%H:%M") == first.strftime("%H:%M")
    assert two.start.date() - one.start.date() == timedelta(days=7)
    # In absolute time, the week is an hour longer or shorter.
    real_gap = two.start.astimezone(UTC) - one.start.astimezone(UTC)
    assert real_gap == timedelta(days=7) + (offsets[0] - offsets[1])


def test_slots_last_their_real_length_in_a_session_spanning_the_clock_change() -> None:
    # 00:30 EDT on 1 Nov 2026; at 02:00 EDT the clocks go back to 01:00 EST.
    session = build(datetime(2026, 11, 1, 0, 30), "America/New_York").sessions[0]
    starts = [seat.start for seat in session.hot_seats]
    assert [moment.strftime("%H:%M %Z") for moment in starts] == [
        "00:30 EDT", "01:00 EDT", "01:30 EDT", "01:00 EST", "01:30 EST", "02:00 EST"]
    for seat in session.hot_seats:
        assert seat.end.astimezone(UTC) - seat.start.astimezone(UTC) == timedelta(minutes=30)
    assert session.end.astimezone(UTC) - session.start.astimezone(UTC) == timedelta(hours=3)
    assert session.end.strftime("%H:%M %Z") == "02:30 EST"


def test_a_start_in_the_spring_gap_moves_forward_with_a_note() -> None:
    result = build(datetime(2026, 3, 29, 1, 30))  # 01:00-02:00 does not exist in London that day
    assert result.sessions[0].start.strftime("%H:%M %Z") == "02:30 BST"
    assert result.sessions[1].start.strftime("%H:%M %Z") == "01:30 BST"
    assert result.adjustments == (
        "session 1: 2026-03-29 01:30 (Europe/London) does not exist (clocks go forward); "
        "it starts at 02:30",)


def test_a_start_in_the_autumn_overlap_takes_the_first_one_with_a_note() -> None:
    result = build(datetime(2026, 10, 25, 1, 30))
    assert result.sessions[0].start.utcoffset() == timedelta(hours=1)  # still BST
    assert "happens twice" in result.adjustments[0]


def test_breaks_between_hot_seats_and_longer_slots() -> None:
    session = build(datetime(2026, 12, 3, 9, 0), slot_length=timedelta(minutes=20),
                    break_length=timedelta(minutes=10)).sessions[0]
    assert [(s.start.strftime("%H:%M"), s.end.strftime("%H:%M")) for s in session.hot_seats] == [
        ("09:00", "09:20"), ("09:30", "09:50"), ("10:00", "10:20"),
        ("10:30", "10:50"), ("11:00", "11:20"), ("11:30", "11:50")]
    assert session.end.strftime("%H:%M") == "11:50"  # no break after the last hot seat


def test_repeat_after_days_and_reminders() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), repeat_after_days=14,
                   reminders=(timedelta(days=1), timedelta(hours=1)))
    second = result.sessions[1]
    assert second.start == datetime(2026, 12, 17, 9, 0, tzinfo=LONDON)
    assert second.reminders == (
        (timedelta(days=1), datetime(2026, 12, 16, 9, 0, tzinfo=LONDON)),
        (timedelta(hours=1), datetime(2026, 12, 17, 8, 0, tzinfo=LONDON)))


def test_reminders_count_real_time_across_daylight_saving() -> None:
    # Session 2 is on Mon 26 Oct 2026 09:00 GMT; the clocks went back on Sunday 25th, so
    # a reminder 7d before falls on the other side of the change, at 10:00 BST.
    result = build(datetime(2026, 10, 19, 9, 0), repeat_after_days=7, reminders=(timedelta(days=7),))
    [(_, reminder)] = result.sessions[1].reminders
    assert reminder.astimezone(UTC) == datetime(2026, 10, 19, 9, 0, tzinfo=UTC)
    assert reminder.strftime("%H:%M %Z") == "10:00 BST"


def test_zone_defaults_to_the_system_zone_given_by_the_shell() -> None:
    result = plan.build(ME, PEERS, SessionSettings(first=datetime(2026, 7, 1, 9, 0)),
                        system_zone="America/New_York")
    assert result.timezone == "America/New_York"
    assert result.sessions[0].start.utcoffset() == timedelta(hours=-4)


def test_without_me_the_first_hot_seat_is_you() -> None:
    result = plan.build(None, PEERS, settings(datetime(2026, 12, 3, 9, 0)), "UTC")
    assert result.sessions[0].hot_seats[0].person.name == "You"


def test_from_config() -> None:
    main, _ = parse_main("me: {name: Robert}\npeers: [A, B, C, D, E]\n"
                         "sessions: {first: 2026-12-03 09:00, timezone: Europe/London}\n")
    assert main is not None
    result = plan.from_config(main, "UTC")
    assert result is not None and len(result.sessions[0].hot_seats) == 6
    empty, _ = parse_main("")
    assert empty is not None and plan.from_config(empty, "UTC") is None


# ---- questions about a moment, with an injected clock ----

def at(clock_time: datetime) -> datetime:
    return FakeClock(clock_time.astimezone(UTC)).now()


def test_next_session_and_current_hot_seat_through_the_day() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), break_length=timedelta(minutes=5))
    before = at(datetime(2026, 12, 3, 8, 0, tzinfo=LONDON))
    session = plan.next_session(result, before)
    assert session is not None and session.number == 1
    assert plan.current_hot_seat(result, before) is None

    during = at(datetime(2026, 12, 3, 9, 50, tzinfo=LONDON))  # seat 2: 09:35-10:05
    current = plan.current_hot_seat(result, during)
    assert current is not None
    assert (current[0].number, current[1].number, current[1].person.name) == (1, 2, "Ada Lovelace")
    in_break = at(datetime(2026, 12, 3, 9, 32, tzinfo=LONDON))
    assert plan.current_hot_seat(result, in_break) is None

    between = at(datetime(2026, 12, 5, 12, 0, tzinfo=LONDON))
    upcoming = plan.next_session(result, between)
    assert upcoming is not None and upcoming.number == 2
    after = at(datetime(2026, 12, 11, 0, 0, tzinfo=LONDON))
    assert plan.next_session(result, after) is None


def test_status_fields() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), location="Ada's office")
    fields = plan.status_fields(result, at(datetime(2026, 12, 3, 11, 50, tzinfo=LONDON)))
    seats = fields["next_session"].pop("hot_seats")
    assert [(seat["seat"], seat["name"], seat["start"][11:16], seat["end"][11:16]) for seat in seats] == [
        (1, "Robert Craven", "09:00", "09:30"), (2, "Ada Lovelace", "09:30", "10:00"),
        (3, "Grace Hopper", "10:00", "10:30"), (4, "Alan Turing", "10:30", "11:00"),
        (5, "Katherine Johnson", "11:00", "11:30"), (6, "Tim Berners-Lee", "11:30", "12:00")]
    assert fields == {
        "next_session": {"number": 1, "start": "2026-12-03T09:00:00+00:00",
                         "end": "2026-12-03T12:00:00+00:00", "in_progress": True,
                         "location": "Ada's office", "hot_seat": "Tim Berners-Lee"},
        "current_hot_seat": {"name": "Tim Berners-Lee", "ends_at": "2026-12-03T12:00:00+00:00",
                             "seconds_left": 600, "session": 1, "seat": 6, "of": 6, "next_name": None},
    }
    json.dumps(fields)  # goes over the socket as is
    summer = build(datetime(2026, 7, 2, 9, 0))
    fields = plan.status_fields(summer, at(datetime(2026, 7, 1, tzinfo=UTC)))
    assert fields["next_session"]["start"] == "2026-07-02T09:00:00+01:00"
    assert fields["next_session"]["in_progress"] is False
    assert fields["next_session"]["hot_seat"] == "Robert Craven"  # who takes it first
    assert fields["current_hot_seat"] is None
    assert plan.status_fields(None, at(datetime(2026, 7, 1, tzinfo=UTC))) == {
        "next_session": None, "current_hot_seat": None}


# ---- warnings ----

def test_warnings_for_sessions_outside_the_detox_window() -> None:
    result = build(datetime(2026, 12, 3, 9, 0))  # sessions on 3 and 10 December
    inside = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 15, tzinfo=UTC))
    assert plan.warnings(result, *inside) == []
    late_start = (datetime(2026, 12, 4, tzinfo=UTC), datetime(2026, 12, 18, tzinfo=UTC))
    assert plan.warnings(result, *late_start) == [
        "sessions: session 1 (Thu 03 Dec 2026 09:00 GMT) starts before the detox does "
        "(Fri 04 Dec 2026 00:00 GMT)"]
    early_end = (datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 12, 10, 11, 0, tzinfo=UTC))
    assert plan.warnings(result, *early_end) == [
        "sessions: session 2 (Thu 10 Dec 2026 09:00 GMT) ends after the detox does "
        "(Thu 10 Dec 2026 11:00 GMT)"]
    assert plan.warnings(result, None, None) == []


def test_warnings_include_moved_times_and_a_lonely_plan() -> None:
    lonely = plan.build(ME, (), settings(datetime(2026, 3, 29, 1, 30)), "UTC")
    found = plan.warnings(lonely, None, None)
    assert len(found) == 2
    assert "does not exist" in found[0]
    assert found[1] == "sessions: no peers, so every hot seat is yours"


# ---- output ----

def test_json_and_text_output() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), reminders=(timedelta(hours=1),), location="Zoom")
    data = plan.to_json(result)
    json.dumps(data)
    assert data["timezone"] == "Europe/London"
    assert data["reminders"] == ["1h"]
    assert [s["number"] for s in data["sessions"]] == [1, 2]
    assert data["sessions"][1]["hot_seats"][0] == {
        "number": 1, "name": "Tim Berners-Lee", "email": "tim@example.com",
        "start": "2026-12-10T09:00:00+00:00", "end": "2026-12-10T09:30:00+00:00"}
    assert data["sessions"][0]["reminders"] == [{"before": "1h", "at": "2026-12-03T08:00:00+00:00"}]
    text = plan.format_text(result)
    assert "Session 1: Thursday 3 December 2026, 09:00–12:00 GMT" in text
    assert "  11:30–12:00  Tim Berners-Lee" in text
    assert "  09:00–09:30  Tim Berners-Lee" in text  # first in session 2
    assert text.endswith("Times are in Europe/London.")


@pytest.mark.parametrize(("length", "text"), [
    (timedelta(days=1), "1d"), (timedelta(minutes=90), "1h30m"), (timedelta(minutes=5), "5m"),
    (timedelta(days=1, hours=2), "1d2h"),
])
def test_format_duration(length: timedelta, text: str) -> None:
    assert plan.format_duration(length) == text


def test_a_hot_seat_begins_at_its_start_and_ends_before_its_end() -> None:
    result = build(datetime(2026, 12, 3, 9, 0))
    first, second = result.sessions[0].hot_seats[:2]
    at_start = plan.current_hot_seat(result, first.start)
    assert at_start is not None and at_start[1] is first
    at_handover = plan.current_hot_seat(result, first.end)
    assert at_handover is not None and at_handover[1] is second
    last = result.sessions[0].hot_seats[-1]
    assert plan.current_hot_seat(result, last.end) is None  # the session is over
    # The session counts as the next one up to its last moment, and is in progress from its first.
    session = result.sessions[0]
    assert plan.next_session(result, session.end - timedelta(seconds=1)) is session
    assert plan.next_session(result, session.end) is result.sessions[1]
    fields = plan.status_fields(result, session.start)
    assert fields["next_session"]["in_progress"] is True
    assert fields["current_hot_seat"] == {
        "name": "Robert Craven", "ends_at": "2026-12-03T09:30:00+00:00", "seconds_left": 1800,
        "session": 1, "seat": 1, "of": 6, "next_name": "Ada Lovelace"}
    before = plan.status_fields(result, session.start - timedelta(seconds=1))
    assert before["next_session"]["in_progress"] is False
    # Under half a second left rounds to none left, not to a second.
    ending = plan.status_fields(result, first.end - timedelta(milliseconds=400))["current_hot_seat"]
    assert ending["seconds_left"] == 0 and ending["name"] == "Robert Craven"


def test_a_session_exactly_at_the_detox_edges_is_inside_it() -> None:
    result = build(datetime(2026, 12, 3, 9, 0))
    first, second = result.sessions
    assert plan.warnings(result, first.start, second.end) == []
    assert len(plan.warnings(result, first.start + timedelta(seconds=1), second.end)) == 1
    assert len(plan.warnings(result, first.start, second.end - timedelta(seconds=1))) == 1


def test_the_whole_json_and_text_of_a_plan() -> None:
    result = build(datetime(2026, 12, 3, 9, 0), reminders=(timedelta(hours=1),), location="Zoom")
    data = plan.to_json(result)
    assert {key: value for key, value in data.items() if key != "sessions"} == {
        "timezone": "Europe/London", "location": "Zoom",
        "me": {"name": "Robert Craven", "email": "robert@example.com"},
        "peers": [{"name": "Ada Lovelace", "email": "ada@example.com"},
                  {"name": "Grace Hopper", "email": "grace@example.com"},
                  {"name": "Alan Turing", "email": None},
                  {"name": "Katherine Johnson", "email": "kj@example.com"},
                  {"name": "Tim Berners-Lee", "email": "tim@example.com"}],
        "reminders": ["1h"], "repeat": None, "adjustments": []}
    assert {key: data["sessions"][0][key] for key in ("number", "start", "end")} == {
        "number": 1, "start": "2026-12-03T09:00:00+00:00", "end": "2026-12-03T12:00:00+00:00"}
    names = ["Robert Craven", "Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson",
             "Tim Berners-Lee"]
    hours = ["09:00–09:30", "09:30–10:00", "10:00–10:30", "10:30–11:00", "11:00–11:30", "11:30–12:00"]
    assert plan.format_text(result).split("\n") == [
        "Session 1: Thursday 3 December 2026, 09:00–12:00 GMT", "  at Zoom",
        *[f"  {when}  {name}" for when, name in zip(hours, names, strict=True)],
        "  reminders: Thu 03 Dec 08:00 (1h before)", "",
        "Session 2: Thursday 10 December 2026, 09:00–12:00 GMT", "  at Zoom",
        *[f"  {when}  {name}" for when, name in zip(hours, reversed(names), strict=True)],
        "  reminders: Thu 10 Dec 08:00 (1h before)", "",
        "Times are in Europe/London."]
    bare = build(datetime(2026, 12, 3, 9, 0))
    assert plan.format_text(bare).split("\n")[1] == "  09:00–09:30  Robert Craven"  # no place, no reminders


def test_from_config_keeps_who_i_am() -> None:
    main, _ = parse_main("me: {name: Robert}\npeers: [A, B]\nsessions: {first: 2026-12-03 09:00}\n")
    assert main is not None
    result = plan.from_config(main, "UTC")
    assert result is not None and result.me.name == "Robert"
    assert result.sessions[0].hot_seats[0].person.name == "Robert"

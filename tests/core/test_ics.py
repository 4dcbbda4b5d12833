"""The calendar export, read back with an independent parser (vobject), and the worksheet."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import vobject

from detoxd.core import ics, plan
from detoxd.core.sessions import Person, SessionSettings

ME = Person("Robert Craven", "robert@example.com")
PEERS = (Person("Ada Lovelace", "ada@example.com"), Person("Grace Hopper", "grace@example.com"),
         Person("Alan Turing"), Person("Katherine Johnson", "kj@example.com"),
         Person("Tim Berners-Lee", "tim@example.com"))
STAMP = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_plan(
    first: datetime = datetime(2026, 12, 3, 9, 0), zone: str = "Europe/London",
    me: Person = ME, peers: tuple[Person, ...] = PEERS, **changes: Any,
) -> plan.Plan:
    settings = SessionSettings(first=first, timezone=zone, location="Ada's office",
                               reminders=(timedelta(days=1), timedelta(hours=1)), **changes)
    return plan.build(me, peers, settings, system_zone="UTC")


def parse(data: bytes) -> Any:
    assert data.startswith(b"BEGIN:VCALENDAR\r\n")  # RFC 5545: CRLF line ends
    return vobject.readOne(data.decode("utf-8"))


def events(calendar: Any) -> list[Any]:
    return sorted(calendar.vevent_list, key=lambda event: event.dtstart.value)


def test_one_event_per_session_with_the_right_times_and_zone() -> None:
    calendar = parse(ics.calendar(make_plan(), STAMP))
    assert calendar.version.value == "2.0"
    assert calendar.method.value == "REQUEST"
    first, second = events(calendar)
    assert first.dtstart.params["X-VOBJ-ORIGINAL-TZID"] == ["Europe/London"]  # vobject's name for TZID
    assert first.dtstart.value.replace(tzinfo=None) == datetime(2026, 12, 3, 9, 0)
    assert first.dtend.value.replace(tzinfo=None) == datetime(2026, 12, 3, 12, 0)
    assert second.dtstart.value.replace(tzinfo=None) == datetime(2026, 12, 10, 9, 0)
    assert first.summary.value == "Peer session 1 of 2: promote, help, connect"
    assert first.location.value == "Ada's office"
    assert first.dtstamp.value == STAMP


def test_vtimezone_carries_the_daylight_saving_rules() -> None:
    # Session 1 in BST, session 2 in GMT: only the VTIMEZONE in the file can tell them apart.
    data = ics.calendar(make_plan(first=datetime(2026, 10, 22, 9, 0)), STAMP)
    calendar = parse(data)
    [timezone] = calendar.vtimezone_list
    assert timezone.tzid.value == "Europe/London"
    zone_from_file = timezone.gettzinfo()  # built from the VTIMEZONE text alone
    first, second = events(calendar)
    for event, offset in ((first, timedelta(hours=1)), (second, timedelta(0))):
        local = event.dtstart.value.replace(tzinfo=None)
        assert local.hour == 9
        assert local.replace(tzinfo=zone_from_file).utcoffset() == offset


def test_utc_plans_need_no_vtimezone() -> None:
    calendar = parse(ics.calendar(make_plan(zone="UTC"), STAMP))
    first = events(calendar)[0]
    assert first.dtstart.value == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_organizer_and_an_attendee_per_peer_with_an_email() -> None:
    first = events(parse(ics.calendar(make_plan(), STAMP)))[0]
    assert first.organizer.value == "mailto:robert@example.com"
    assert first.organizer.params["CN"] == ["Robert Craven"]
    attendees = {a.value: a.params for a in first.attendee_list}
    assert set(attendees) == {"mailto:ada@example.com", "mailto:grace@example.com",
                              "mailto:kj@example.com", "mailto:tim@example.com"}  # not Alan: no email
    ada = attendees["mailto:ada@example.com"]
    assert ada["CN"] == ["Ada Lovelace"]
    assert ada["RSVP"] == ["TRUE"]
    assert ada["PARTSTAT"] == ["NEEDS-ACTION"]
    assert ada["ROLE"] == ["REQ-PARTICIPANT"]


def test_no_organizer_without_my_email_and_then_no_invitation_method() -> None:
    calendar = parse(ics.calendar(make_plan(me=Person("Robert Craven")), STAMP))
    first = events(calendar)[0]
    assert not hasattr(first, "organizer")
    assert not hasattr(calendar, "method")
    assert len(first.attendee_list) == 4


def test_hot_seat_timetable_in_the_description() -> None:
    first, second = events(parse(ics.calendar(make_plan(), STAMP)))
    lines = first.description.value.splitlines()
    assert "09:00–09:30  Robert Craven" in lines
    assert "11:30–12:00  Tim Berners-Lee" in lines
    assert "09:00–09:30  Tim Berners-Lee" in second.description.value.splitlines()
    assert "Also: Session 2: Thursday 10 December 2026, 09:00–12:00 GMT" in lines


def test_an_alarm_per_reminder() -> None:
    for event in events(parse(ics.calendar(make_plan(), STAMP))):
        alarms = event.valarm_list
        assert sorted(alarm.trigger.value for alarm in alarms) == [timedelta(days=-1), timedelta(hours=-1)]
        assert {alarm.action.value for alarm in alarms} == {"DISPLAY"}
        assert all(alarm.description.value for alarm in alarms)


def test_uids_are_stable_and_survive_edits_of_time_place_and_people() -> None:
    def uids(data: bytes) -> list[str]:
        return [event.uid.value for event in events(parse(data))]

    original = uids(ics.calendar(make_plan(), STAMP))
    assert len(set(original)) == 2
    assert uids(ics.calendar(make_plan(), STAMP + timedelta(days=1))) == original
    moved = make_plan(first=datetime(2026, 12, 4, 14, 0), peers=PEERS[:4])
    assert uids(ics.calendar(moved, STAMP)) == original  # re-sent invitations update
    someone_else = make_plan(me=Person("Ada Lovelace", "ada@example.com"), peers=PEERS[1:])
    assert set(uids(ics.calendar(someone_else, STAMP))).isdisjoint(original)


def test_sequence_grows_with_the_export_time() -> None:
    def sequence(stamp: datetime) -> int:
        return int(events(parse(ics.calendar(make_plan(), stamp)))[0].sequence.value)

    assert sequence(STAMP + timedelta(hours=1)) > sequence(STAMP) > 0


def test_same_plan_and_stamp_give_identical_bytes() -> None:
    assert ics.calendar(make_plan(), STAMP) == ics.calendar(make_plan(), STAMP)


def test_awkward_names_survive_the_round_trip() -> None:
    peers = (Person('Jo "JJ" O\'Neil, Jr; CEO', "jo@example.com"), *PEERS[1:])
    first = events(parse(ics.calendar(make_plan(peers=peers), STAMP)))[0]
    [jo] = [a for a in first.attendee_list if a.value == "mailto:jo@example.com"]
    # A parameter value cannot hold a double quote; RFC 6868 writes it ^' (vobject does not decode it).
    # Debian 12's icalendar 4.0.3 predates RFC 6868 and writes the double quote as a single one.
    [name] = jo.params["CN"]
    quote = "'" if ics.LEGACY_ICALENDAR else '"'
    assert name.replace("^'", '"') == f"Jo {quote}JJ{quote} O'Neil, Jr; CEO"
    assert "Jo \"JJ\" O'Neil, Jr; CEO" in first.description.value


# ---- the worksheet ----

def test_worksheet_has_a_section_per_person_with_the_three_questions() -> None:
    text = ics.worksheet(make_plan(), 1)
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings == [
        "### 1. Robert Craven (09:00–09:30)", "### 2. Ada Lovelace (09:30–10:00)",
        "### 3. Grace Hopper (10:00–10:30)", "### 4. Alan Turing (10:30–11:00)",
        "### 5. Katherine Johnson (11:00–11:30)", "### 6. Tim Berners-Lee (11:30–12:00)"]
    assert text.count("How can the group promote") == 6
    assert text.count("How can the group help") == 6
    assert text.count("Who can the group connect") == 6
    assert "How can the group promote Alan Turing's business?" in text
    assert "## Session 1: Thursday 3 December 2026, 09:00–12:00 GMT" in text
    assert "Session 2" not in text
    assert "Where: Ada's office" in text


def test_worksheet_for_both_sessions_and_escaped_names() -> None:
    peers = (Person("*Star* #1"), *PEERS[1:])
    text = ics.worksheet(make_plan(peers=peers))
    assert text.count("## Session") == 2
    assert "### 2. \\*Star\\* \\#1 (09:30–10:00)" in text
    assert text.endswith("\n") and not text.endswith("\n\n")
    with pytest.raises(ValueError, match="no session 3"):
        ics.worksheet(make_plan(), 3)


# ---- the peer lock: a card attached to one peer's copy; the ritual in the worksheet ----

def test_a_card_is_attached_inline_to_every_event() -> None:
    card = "detoxd early-end card 1 of 5\nFor: Ada Lovelace\n 1 taxi   2 describe\n"
    data = ics.calendar(make_plan(), STAMP, attachment=("1-ada-lovelace.txt", card))
    for event in events(parse(data)):
        attach = event.attach
        assert attach.params["FMTTYPE"] == ["text/plain"]
        assert attach.params["X-FILENAME"] == ["1-ada-lovelace.txt"]
        assert attach.params["ENCODING"] == ["BASE64"] and attach.params["VALUE"] == ["BINARY"]
        assert base64.b64decode(attach.value).decode() == card
    assert b"ATTACH" not in ics.calendar(make_plan(), STAMP)


def test_the_worksheet_explains_the_ritual_only_with_a_peer_lock() -> None:
    sheet = ics.worksheet(make_plan(), peers_needed=3)
    assert "**The early-end key.**" in sheet
    assert "any 3 cards together open it" in sheet and "Robert Craven's detox" in sheet
    assert "sudo detoxd end --with-peers" in sheet
    assert "early-end key" not in ics.worksheet(make_plan())


def test_the_worksheet_word_for_word() -> None:
    sheet = ics.worksheet(make_plan(), 1, peers_needed=3).split("\n")
    assert sheet[:8] == [
        "# Peer sessions: promote, help, connect", "",
        "With Robert Craven, Ada Lovelace, Grace Hopper, Alan Turing, Katherine Johnson, "
        "Tim Berners-Lee.", "",
        "**The early-end key.** Each of the 5 peers holds a card with 20 words, one share of the key that "
        "ends Robert Craven's detox early: any 3 cards together open it, fewer reveal nothing. To stop "
        "early, Robert Craven has to call 3 of you and explain why, and each of you decides whether to "
        "read out your card's words for `sudo detoxd end --with-peers`.", "",
        "## Session 1: Thursday 3 December 2026, 09:00–12:00 GMT", ""]
    assert sheet[8:24] == [
        "Where: Ada's office", "",
        "### 1. Robert Craven (09:00–09:30)", "",
        "**Promote.** How can the group promote Robert Craven's business?", "", "-", "",
        "**Help.** How can the group help Robert Craven?", "", "-", "",
        "**Connect.** Who can the group connect Robert Craven with?", "", "-", ""]
    assert sheet[24:28] == ["Agreed actions (who, what, by when):", "", "-", ""]
    assert sheet[-4:] == ["Agreed actions (who, what, by when):", "", "-", ""]  # one newline at the end


def test_the_ritual_without_a_name_and_without_a_place() -> None:
    assert ics.ritual(None, 4, 2) == (
        "**The early-end key.** Each of the 4 peers holds a card with 20 words, one share of the key "
        "that ends the detox early: any 2 cards together open it, fewer reveal nothing. To stop early, "
        "the one on the detox has to call 2 of you and explain why, and each of you decides whether to "
        "read out your card's words for `sudo detoxd end --with-peers`.")
    unnamed = plan.build(Person(plan.DEFAULT_MY_NAME), PEERS, SessionSettings(
        first=datetime(2026, 12, 3, 9, 0), timezone="Europe/London"), system_zone="UTC")
    sheet = ics.worksheet(unnamed, 2, peers_needed=2)
    assert "that ends the detox early" in sheet and "Where:" not in sheet
    assert "## Session 2: Thursday 10 December 2026, 09:00–12:00 GMT" in sheet and "Session 1" not in sheet


def test_a_vtimezone_has_one_part_per_change_at_its_exact_minute() -> None:
    from zoneinfo import ZoneInfo

    Part = tuple[str, str, datetime, timedelta, timedelta]

    def parts(zone: str, first: datetime, last: datetime) -> list[Part]:
        component = ics.vtimezone(ZoneInfo(zone), first.date(), last.date())
        assert component["TZID"] == zone
        return [(part.name, str(part["TZNAME"]), part.decoded("DTSTART"), part.decoded("TZOFFSETFROM"),
                 part.decoded("TZOFFSETTO")) for part in component.subcomponents]

    hour = timedelta(hours=1)
    assert parts("Europe/London", datetime(2026, 1, 1), datetime(2027, 1, 1)) == [
        ("DAYLIGHT", "BST", datetime(2026, 3, 29, 1, 0), timedelta(0), hour),  # 01:00 GMT becomes 02:00
        ("STANDARD", "GMT", datetime(2026, 10, 25, 2, 0), hour, timedelta(0))]  # 02:00 BST becomes 01:00
    # Lord Howe Island moves by half an hour, at 02:00 local: found to the minute.
    assert parts("Australia/Lord_Howe", datetime(2026, 9, 1), datetime(2026, 12, 1)) == [
        ("DAYLIGHT", "+11", datetime(2026, 10, 4, 2, 0), timedelta(hours=10, minutes=30),
         timedelta(hours=11))]
    # A zone without a change in the period: one STANDARD part from the first day.
    assert parts("Asia/Tokyo", datetime(2026, 1, 1), datetime(2027, 1, 1)) == [
        ("STANDARD", "JST", datetime(2026, 1, 1, 9, 0), timedelta(hours=9), timedelta(hours=9))]
    # A change on the last day of the period is outside it.
    assert parts("Europe/London", datetime(2026, 3, 1), datetime(2026, 3, 29)) == [
        ("STANDARD", "GMT", datetime(2026, 3, 1, 0, 0), timedelta(0), timedelta(0))]

"""iMIP invitations (RFC 6047), cancellations and plain messages, parsed back with Python's
`email` package and the .ics with icalendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import icalendar

from detoxd.core import ics, imip
from detoxd.core.sessions import Person
from tests.core.test_ics import ME, PEERS, STAMP, make_plan

SENDER = "robert@mail.example.com"


def parse(data: bytes) -> EmailMessage:
    data.decode("ascii")  # 7-bit: any server takes it
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def calendar_of(message: EmailMessage) -> tuple[Any, icalendar.Calendar]:
    parts = [part for part in message.walk() if part.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    return parts[0], icalendar.Calendar.from_ical(parts[0].get_content())


def test_an_invitation_is_imip_request_for_one_peer() -> None:
    ada = PEERS[0]
    envelope = imip.invitation(make_plan(), ada, SENDER, STAMP, "<one@detoxd.test>")
    assert (envelope.recipient, envelope.kind) == ("ada@example.com", "invitation")
    message = parse(envelope.data)
    assert message["Message-ID"] == "<one@detoxd.test>"
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["From"] == f"Robert Craven <{SENDER}>"
    assert message["Reply-To"] == "Robert Craven <robert@example.com>"
    assert message.get_content_type() == "multipart/mixed"
    part, calendar = calendar_of(message)
    assert part.get_param("method") == "REQUEST"
    assert str(calendar["METHOD"]) == "REQUEST"
    events = calendar.walk("VEVENT")
    assert len(events) == 2
    plan = make_plan()
    assert [str(event["UID"]) for event in events] == [ics.event_uid(plan, s) for s in plan.sessions]
    for event in events:
        assert str(event["ORGANIZER"]) == "mailto:robert@example.com"
        attendees = event["ATTENDEE"]
        assert str(attendees) == "mailto:ada@example.com"  # only this peer, not the others
    plain = [p for p in message.walk() if p.get_content_type() == "text/plain"]
    assert "Ada Lovelace" in plain[0].get_content()
    assert not [p for p in message.walk() if p.get_filename()]  # no card without lock: peers


def test_the_card_is_attached_for_its_holder() -> None:
    card = ("peer-1-ada-lovelace.txt", "Card 1 of 5 for Ada Lovelace\nwords words words\n")
    message = parse(imip.invitation(make_plan(), PEERS[0], SENDER, STAMP, "<c@x>", card=card).data)
    attached = [p for p in message.walk() if p.get_filename() == "peer-1-ada-lovelace.txt"]
    assert len(attached) == 1 and attached[0].get_content().replace("\r\n", "\n") == card[1]


def test_an_update_has_the_same_uids_and_a_higher_sequence() -> None:
    first = calendar_of(parse(imip.invitation(make_plan(), PEERS[0], SENDER, STAMP, "<a@x>").data))[1]
    moved = make_plan(first=datetime(2026, 12, 4, 10, 0))
    later = STAMP + timedelta(hours=2)
    second = calendar_of(parse(imip.invitation(moved, PEERS[0], SENDER, later, "<b@x>").data))[1]
    pairs = zip(first.walk("VEVENT"), second.walk("VEVENT"), strict=True)
    for before, after in pairs:
        assert str(before["UID"]) == str(after["UID"])
        assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])
        assert after.decoded("DTSTART") != before.decoded("DTSTART")


def test_without_an_email_of_mine_the_organizer_is_the_sender() -> None:
    plan = make_plan(me=Person("Robert"))
    _, calendar = calendar_of(parse(imip.invitation(plan, PEERS[0], SENDER, STAMP, "<a@x>").data))
    assert {str(event["ORGANIZER"]) for event in calendar.walk("VEVENT")} == {f"mailto:{SENDER}"}


def test_a_cancel_names_the_sent_events() -> None:
    plan = make_plan()
    sent = imip.sent_events(plan)
    assert [imip.SentEvent.from_json(item.to_json()) for item in sent] == list(sent)
    later = STAMP + timedelta(days=1)
    envelope = imip.cancellation(ME, SENDER, PEERS[1], sent, later, "<cancel@x>")
    assert envelope.kind == "cancel"
    part, calendar = calendar_of(parse(envelope.data))
    assert part.get_param("method") == "CANCEL" and str(calendar["METHOD"]) == "CANCEL"
    events = calendar.walk("VEVENT")
    assert [str(event["UID"]) for event in events] == [item.uid for item in sent]
    for event, item in zip(events, sent, strict=True):
        assert str(event["STATUS"]) == "CANCELLED"
        assert int(event["SEQUENCE"]) > ics.sequence(STAMP)
        assert str(event["ATTENDEE"]) == "mailto:grace@example.com"
        assert event.decoded("DTSTART") == datetime.fromisoformat(item.start).astimezone(UTC)


def test_a_plain_message() -> None:
    envelope = imip.plain(ME, SENDER, PEERS[0], "Robert's detox: 2 events", "Twice tampered.\n",
                          STAMP, "<p@x>", "informed")
    message = parse(envelope.data)
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Twice tampered.\r\n"  # SMTP line ends
    assert message["Auto-Submitted"] == "auto-generated"

"""Invitations by email (iMIP, RFC 6047) and the plain messages to the peers (pure).

An invitation is one message per peer: ``multipart/mixed`` holding ``multipart/alternative``
(a plain-text summary, then the calendar as ``text/calendar; method=REQUEST``) and, when the
detox has ``lock: peers``, that peer's card as a text attachment. The calendar is the one
``detoxd sessions --ics`` writes (:func:`detoxd.core.ics.calendar`): one VEVENT per session, the
same UIDs, a SEQUENCE that grows with the time it is made, so a changed plan sent again is an
update of the same events; only this peer is ATTENDEE (a card must reach its holder only), the
user is ORGANIZER. A plan that is gone is cancelled with ``method=CANCEL`` for the events that
were sent (:class:`SentEvent`, kept by the sender's side). Replies (Accept/Decline) go to the
user's mailbox; detoxd does not read them.

Message-IDs are made by the caller when it queues a message (the outbox keeps them): a message
sent again after a broken connection carries the same one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

import icalendar

from detoxd.core import ics
from detoxd.core.plan import Plan, format_text, session_heading
from detoxd.core.sessions import Person

# 7-bit on the wire whatever the names hold: any server takes it (no 8BITMIME needed).
_CTE = "quoted-printable"


@dataclass(frozen=True)
class Envelope:
    """A message ready for the outbox: who it goes to and its text (RFC 5322, ASCII)."""

    recipient: str
    message_id: str
    kind: str  # invitation | cancel | informed | closing
    data: bytes


@dataclass(frozen=True)
class SentEvent:
    """What an invitation told a peer about one session: enough to cancel it later."""

    uid: str
    start: str  # ISO 8601, aware
    end: str
    summary: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, str]) -> SentEvent:
        return cls(str(data["uid"]), str(data["start"]), str(data["end"]), str(data["summary"]))


def organizer(plan: Plan, sender: str) -> Person:
    """The user as ORGANIZER: `me:` with its email, or with `mail.from` when `me:` has none."""
    return plan.me if plan.me.email else dataclasses.replace(plan.me, email=sender)


def invitation(plan: Plan, peer: Person, sender: str, stamp: datetime, message_id: str,
               card: tuple[str, str] | None = None, sequence: int | None = None) -> Envelope:
    """``peer``'s invitation to every session of ``plan``; ``card`` (file name, text): their card;
    ``sequence``: the events' SEQUENCE (default: from ``stamp``, see :func:`ics.sequence`)."""
    if not peer.email:
        raise ValueError(f"{peer.name} has no email")
    own = dataclasses.replace(plan, me=organizer(plan, sender), peers=(peer,))
    calendar = ics.calendar(own, stamp, attachment=card, sequence_number=sequence)
    headings = "\n".join(f"- {session_heading(session)}" for session in plan.sessions)
    text = (f"Hello {peer.name},\n\n{own.me.name} invites you to the peer sessions of their digital "
            f"detox:\n{headings}\n\nYour calendar program offers to accept or decline; the answer "
            f"goes to {own.me.email}.\n\n{format_text(plan)}\n")
    if card is not None:
        text += ("\nAttached is your card: one share of the key that ends the detox early. "
                 "Keep it to yourself.\n")
    subject = f"Invitation: peer sessions with {own.me.name}"
    message = _message(own.me, sender, peer, subject, stamp, message_id)
    _calendar_parts(message, text, calendar, "REQUEST")
    if card is not None:
        message.add_attachment(card[1], subtype="plain", filename=card[0], cte=_CTE)
    return Envelope(peer.email, message_id, "invitation", bytes(message))


def sent_events(plan: Plan) -> tuple[SentEvent, ...]:
    return tuple(SentEvent(ics.event_uid(plan, session), session.start.isoformat(), session.end.isoformat(),
                           session_heading(session)) for session in plan.sessions)


def cancellation(me: Person, sender: str, peer: Person, events: tuple[SentEvent, ...], stamp: datetime,
                 message_id: str, sequence: int | None = None) -> Envelope:
    """RFC 5546 CANCEL of ``events`` (sent to ``peer`` before): same UIDs, a higher SEQUENCE."""
    if not peer.email:
        raise ValueError(f"{peer.name} has no email")
    me = me if me.email else dataclasses.replace(me, email=sender)
    cal = icalendar.Calendar()
    cal.add("prodid", ics.PRODID)
    cal.add("version", "2.0")
    cal.add("method", "CANCEL")
    for sent in events:
        event = icalendar.Event()
        event.add("uid", sent.uid)
        event.add("dtstamp", stamp.astimezone(UTC))
        event.add("sequence", ics.sequence(stamp) if sequence is None else sequence)
        event.add("dtstart", datetime.fromisoformat(sent.start).astimezone(UTC))
        event.add("dtend", datetime.fromisoformat(sent.end).astimezone(UTC))
        event.add("summary", sent.summary)
        event.add("status", "CANCELLED")
        event.add("organizer", _address(me))
        event.add("attendee", _address(peer))
        cal.add_component(event)
    lines = "\n".join(f"- {sent.summary}" for sent in events)
    text = f"Hello {peer.name},\n\n{me.name} has cancelled the peer sessions:\n{lines}\n"
    message = _message(me, sender, peer, f"Cancelled: peer sessions with {me.name}", stamp, message_id)
    _calendar_parts(message, text, cal.to_ical(), "CANCEL")
    return Envelope(peer.email, message_id, "cancel", bytes(message))


def plain(me: Person, sender: str, peer: Person, subject: str, text: str, stamp: datetime,
          message_id: str, kind: str) -> Envelope:
    """A short plain-text message to a peer (what happened during the detox, the closing note)."""
    if not peer.email:
        raise ValueError(f"{peer.name} has no email")
    message = _message(me, sender, peer, subject, stamp, message_id)
    message.set_content(text, cte=_CTE)
    return Envelope(peer.email, message_id, kind, bytes(message))


def _message(me: Person, sender: str, peer: Person, subject: str, stamp: datetime,
             message_id: str) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((me.name, sender))
    if me.email and me.email.casefold() != sender.casefold():
        message["Reply-To"] = formataddr((me.name, me.email))
    message["To"] = formataddr((peer.name, peer.email or ""))
    message["Subject"] = subject
    message["Date"] = format_datetime(stamp.astimezone(UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies back
    return message


def _calendar_parts(message: EmailMessage, text: str, calendar: bytes, method: str) -> None:
    """RFC 6047 2.4: text/calendar with the method, beside a plain-text alternative."""
    message.make_mixed()
    body = EmailMessage(policy=SMTP)
    body.set_content(text, cte=_CTE)
    body.add_alternative(calendar.decode("utf-8"), subtype="calendar", params={"method": method}, cte=_CTE)
    message.attach(body)


def _address(person: Person) -> icalendar.vCalAddress:
    address = icalendar.vCalAddress(f"mailto:{person.email}")
    address.params["CN"] = person.name
    return address

"""`detoxd sessions --send`: one iMIP invitation per peer with an email into the outbox; a changed
plan an update (same UIDs, higher SEQUENCE), a peer or plan gone a CANCEL."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import icalendar
import pytest

from detoxd.commands import main
from detoxd.outbox import Outbox

MAIL = "mail:\n  server: smtp.example.com\n  from: robert@example.com\n"
ME = "me: {name: Robert, email: robert@example.com}\n"
PEERS = ("peers:\n  - {name: Ada, email: ada@example.com}\n  - {name: Grace, email: grace@example.com}\n"
         "  - Alan\n")
SESSIONS = "sessions:\n  first: 2030-03-04 18:00\n  timezone: Europe/London\n"


def run(tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "detoxd.yaml").write_text(config)
    code = main(["--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "state"),
                 "--socket", str(tmp_path / "none.sock"), "sessions", "--send"])
    return code, capsys.readouterr().err


def calendars(outbox: Outbox, start: int = 0) -> list[tuple[str, str, icalendar.Calendar]]:
    found = []
    for item in outbox.pending()[start:]:
        message = message_from_bytes(item.data, policy=policy.default)
        part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
        found.append((item.recipient, str(part.get_param("method")),
                      icalendar.Calendar.from_ical(part.get_content())))
    return found


def test_invite_update_and_cancel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outbox = Outbox(tmp_path / "state" / "outbox")
    code, err = run(tmp_path, MAIL + ME + PEERS + SESSIONS, capsys)
    assert code == 0, err
    assert "Alan has no email" in err
    first = calendars(outbox)
    assert [(to, method) for to, method, _ in first] == [("ada@example.com", "REQUEST"),
                                                         ("grace@example.com", "REQUEST")]
    uids = [str(event["UID"]) for event in first[0][2].walk("VEVENT")]
    sequence = int(first[0][2].walk("VEVENT")[0]["SEQUENCE"])
    assert {str(event["ATTENDEE"]) for event in first[1][2].walk("VEVENT")} == {"mailto:grace@example.com"}

    moved = SESSIONS.replace("18:00", "19:00")
    assert run(tmp_path, MAIL + ME + PEERS + moved, capsys)[0] == 0
    update = calendars(outbox, 2)
    assert [method for _, method, _ in update] == ["REQUEST", "REQUEST"]
    events = update[0][2].walk("VEVENT")
    assert [str(event["UID"]) for event in events] == uids
    assert all(int(event["SEQUENCE"]) > sequence for event in events)

    without_grace = PEERS.replace("  - {name: Grace, email: grace@example.com}\n", "")
    assert run(tmp_path, MAIL + ME + without_grace + moved, capsys)[0] == 0
    third = calendars(outbox, 4)
    assert [(to, method) for to, method, _ in third] == [("ada@example.com", "REQUEST"),
                                                         ("grace@example.com", "CANCEL")]
    cancelled = third[1][2].walk("VEVENT")
    assert [str(event["UID"]) for event in cancelled] == uids
    assert {str(event["STATUS"]) for event in cancelled} == {"CANCELLED"}

    assert run(tmp_path, MAIL + ME + without_grace, capsys)[0] == 0  # the plan is gone
    assert [(to, method) for to, method, _ in calendars(outbox, 6)] == [("ada@example.com", "CANCEL")]
    code, err = run(tmp_path, MAIL + ME + without_grace, capsys)
    assert code == 1 and "nobody to send to" in err
    assert len(outbox.pending()) == 7


def test_send_needs_mail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, ME + PEERS + SESSIONS, capsys)
    assert code == 1 and "--send needs `mail:`" in err
    assert not (tmp_path / "state" / "outbox").exists()

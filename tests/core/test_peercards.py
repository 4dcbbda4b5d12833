"""The peer's file (invitation + printable card) and reading it back for the calendar copy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from detoxd.core import peercards

SHARE = ("taxi describe academic acne admit vexed mixture timely quiet process climate soul "
         "provide violence graduate curly paid username review dramatic")
INFO = peercards.CardInfo("Ada Lovelace", 1, 5, 3, "Robert Craven", 14,
                          datetime(2026, 12, 15, 9, 30, tzinfo=timezone(timedelta(hours=1), "CET")),
                          "taxi describe")


def test_the_invitation_names_the_detox_its_end_and_the_person() -> None:
    text = peercards.invitation(INFO)
    assert text.startswith("Dear Ada,")
    assert "14-day digital detox" in text and "Tuesday 15 December 2026 (09:30 CET)" in text
    assert "call 3 of you" in text and "Robert Craven" in text


def test_the_card_has_every_word_numbered_and_fits_a_page() -> None:
    card = peercards.card(INFO, SHARE)
    lines = card.splitlines()
    assert all(len(line) == len(lines[0]) for line in lines), "a box of equal lines"
    assert len(lines[0]) <= 80
    for number, word in enumerate(SHARE.split(), start=1):
        assert f"{number:2d} {word}" in card
    assert "For: Ada Lovelace" in card and "begins: taxi describe" in card


def test_the_file_is_read_back_by_its_holder() -> None:
    text = peercards.peer_file(INFO, SHARE)
    parsed = peercards.parse_card_file(text)
    assert parsed is not None and parsed.holder == "Ada Lovelace" and parsed.text == text
    assert peercards.parse_card_file("Dear Ada,\nFor: someone\n") is None


def test_file_names_are_numbered_ascii_slugs() -> None:
    assert peercards.file_name(1, "Ada Lovelace") == "1-ada-lovelace.txt"
    assert peercards.file_name(2, "Zoë O'Brien") == "2-zoe-o-brien.txt"
    assert peercards.file_name(3, "李小龍") == "3-peer.txt"


def test_no_owner_configured() -> None:
    info = peercards.CardInfo("Alan", 3, 3, 2, None, 0.5, datetime(2026, 12, 1, 21, 0, tzinfo=UTC), "a b")
    assert "short digital detox" in peercards.invitation(info)
    assert "The detox ends" in peercards.card(info, SHARE)

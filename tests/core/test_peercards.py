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


PEER_FILE = """\
Dear Ada,

I am starting a 14-day digital detox: no social or networking sites, no
message alerts, until Tuesday 15 December 2026 (09:30 CET). I picked 5
people I trust and respect to hold the key that could end it early, and you
are one of them.

The card below is your part of that key. If I want to stop before Tuesday 15
December 2026, I will have to call 3 of you and explain myself; each of you
then reads me the 20 words of your card. Fewer than 3 cards reveal nothing.

Please keep the card private (do not post or photograph it) and keep it
until the detox ends on Tuesday 15 December 2026; then you may throw it
away.

Thank you,
Robert Craven

+----------------------------------------------------------------------+
| detoxd early-end card 1 of 5 (3 needed to end it early)              |
| For: Ada Lovelace                                                    |
| Robert Craven's detox ends Tuesday 15 December 2026, 09:30 CET       |
| Every card of this detox begins: taxi describe                       |
|                                                                      |
|  1 taxi         6 vexed       11 climate     16 curly                |
|  2 describe     7 mixture     12 soul        17 paid                 |
|  3 academic     8 timely      13 provide     18 username             |
|  4 acne         9 quiet       14 violence    19 review               |
|  5 admit       10 process     15 graduate    20 dramatic             |
|                                                                      |
| Read the words aloud, in order, only to the person doing the detox.  |
| (A SLIP-39 share: any SLIP-39 tool can check its words.)             |
+----------------------------------------------------------------------+
"""


def test_the_whole_peer_file_word_for_word() -> None:
    assert peercards.peer_file(INFO, SHARE) == PEER_FILE
    # Lines are filled up to 76 characters, never beyond.
    assert max(len(line) for line in peercards.invitation(INFO).splitlines()) == 76


def test_a_one_day_detox_has_its_days_and_a_shorter_one_is_short() -> None:
    from dataclasses import replace

    assert "a 1-day digital detox" in peercards.invitation(replace(INFO, days=1))
    assert "a 1.5-day digital detox" in peercards.invitation(replace(INFO, days=1.5))
    assert "a short digital detox" in peercards.invitation(replace(INFO, days=0.99))
    no_owner = peercards.invitation(replace(INFO, owner=None))
    assert no_owner.endswith("\n\nThank you,") and "Thank you,\n" not in no_owner
    naive_zone = replace(INFO, ends_at=datetime(2026, 12, 15, 9, 30))
    assert "(09:30)." in peercards.invitation(naive_zone)


def test_a_33_word_share_fills_nine_rows_in_four_columns() -> None:
    words = [f"w{n:02d}" for n in range(1, 34)]
    grid = [line.strip("| ").rstrip() for line in peercards.card(INFO, " ".join(words)).splitlines()[6:15]]
    assert grid[0] == "1 w01         10 w10         19 w19         28 w28"
    assert grid[5] == "6 w06         15 w15         24 w24         33 w33"
    assert grid[8] == "9 w09         18 w18         27 w27"


def test_only_a_card_line_followed_by_its_holder_is_read() -> None:
    assert peercards.parse_card_file("x\ndetoxd early-end card 1 of 5") is None  # nothing after it
    parsed = peercards.parse_card_file("| detoxd early-end card 2 of 5 |\n|   For:  Grace Hopper   |\n")
    assert parsed is not None and parsed.holder == "Grace Hopper"
    assert peercards.parse_card_file("detoxd early-end card\nFor: \n") is None


def test_a_slug_is_cut_at_40_characters_and_has_no_dashes_around_it() -> None:
    assert peercards.file_name(4, "--Ada--") == "4-ada.txt"
    assert peercards.file_name(6, "b" * 45) == f"6-{'b' * 40}.txt"

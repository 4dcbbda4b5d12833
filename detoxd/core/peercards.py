"""The file each peer gets with `detoxd start --shares-out DIR`: an invitation and a card (pure).

One plain-text file per peer: a letter naming the detox, its end date and the person, then a
printable card with the 20 words of their share, numbered in four columns. `detoxd sessions
--ics FILE --cards DIR` reads the files back (:func:`parse_card_file`) to attach each card to
that peer's copy of the calendar invitation.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

CARD_MARKER = "detoxd early-end card"
_FOR_LINE = re.compile(r"For: (.+)")
_WIDTH = 68
COLUMNS = 4


@dataclass(frozen=True)
class CardInfo:
    """What the card is about; the share itself is passed separately and kept nowhere else."""

    holder: str
    number: int  # 1-based, the share's place among the holders
    holders: int
    needed: int
    owner: str | None  # whose detox (`me.name`); None: not configured
    days: float
    ends_at: datetime  # local, timezone-aware
    share_set: str  # the two words every card of this detox begins with


def file_name(number: int, holder: str) -> str:
    """``1-ada-lovelace.txt``: the number keeps names that slug alike apart."""
    # Not mutated (scripts/mutation): "ascii" → "ASCII" would name the same codec.
    plain = unicodedata.normalize("NFKD", holder)
    slug = plain.encode("ascii", "ignore").decode().lower()  # pragma: no mutate
    slug = re.sub(r"[^a-z0-9]+", "-", slug).strip("-")[:40] or "peer"
    return f"{number}-{slug}.txt"


def peer_file(info: CardInfo, share: str) -> str:
    """The whole file for one peer: the invitation, then the card to print and keep."""
    return invitation(info) + "\n\n" + card(info, share) + "\n"


def invitation(info: CardInfo) -> str:
    first_name = info.holder.split()[0]
    ends = _date(info.ends_at)
    days = f"{info.days:g}-day" if info.days >= 1 else "short"
    paragraphs = [
        f"Dear {first_name},",
        f"I am starting a {days} digital detox: no social or networking sites, no message "
        f"alerts, until {ends} ({_time(info.ends_at)}). I picked {info.holders} people I trust "
        "and respect to hold the key that could end it early, and you are one of them.",
        f"The card below is your part of that key. If I want to stop before {ends}, I will "
        f"have to call {info.needed} of you and explain myself; each of you then reads me the "
        f"20 words of your card. Fewer than {info.needed} cards reveal nothing.",
        "Please keep the card private (do not post or photograph it) and keep it until the "
        f"detox ends on {ends}; then you may throw it away.",
        f"Thank you,\n{info.owner or ''}".rstrip(),
    ]
    return "\n\n".join(_wrap(paragraph) for paragraph in paragraphs)


def card(info: CardInfo, share: str) -> str:
    words = share.split()
    rows = (len(words) + COLUMNS - 1) // COLUMNS
    grid = []
    for row in range(rows):
        cells = [f"{index + 1:2d} {words[index]:<9}" for index in range(row, len(words), rows)]
        grid.append("   ".join(cells))
    whose = f"{info.owner}'s detox" if info.owner else "The detox"
    lines = [
        f"{CARD_MARKER} {info.number} of {info.holders} ({info.needed} needed to end it early)",
        f"For: {info.holder}",
        f"{whose} ends {_date(info.ends_at)}, {_time(info.ends_at)}",
        f"Every card of this detox begins: {info.share_set}",
        "",
        *grid,
        "",
        "Read the words aloud, in order, only to the person doing the detox.",
        "(A SLIP-39 share: any SLIP-39 tool can check its words.)",
    ]
    border = "+" + "-" * (_WIDTH + 2) + "+"
    return "\n".join([border, *(f"| {line:<{_WIDTH}} |" for line in lines), border])


@dataclass(frozen=True)
class ParsedCardFile:
    holder: str
    text: str


def parse_card_file(text: str) -> ParsedCardFile | None:
    """The holder of a peer file written by :func:`peer_file`; None for any other text."""
    lines = [line.strip("| ").rstrip() for line in text.splitlines()]
    for index, line in enumerate(lines[:-1]):
        if line.startswith(CARD_MARKER):
            match = _FOR_LINE.fullmatch(lines[index + 1].strip())
            if match:
                return ParsedCardFile(match.group(1).strip(), text)
    return None


def _date(moment: datetime) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def _time(moment: datetime) -> str:
    return f"{moment:%H:%M} {moment.tzname() or ''}".rstrip()


def _wrap(paragraph: str, width: int = 76) -> str:
    out: list[str] = []
    for source_line in paragraph.split("\n"):
        line = ""
        for word in source_line.split():
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        out.append(line)
    return "\n".join(out)

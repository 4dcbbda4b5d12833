"""`peers_informed:`: what the peers are told while the detox runs, and when (pure).

Journal events of the kinds the user chose are counted while a detox runs: ``tamper`` (the block
was changed and put back, or the state removed), ``stop`` (the detox service started again during
the detox: it was stopped or the computer restarted), ``end_attempt`` (an early end refused, or
tried with the peers' cards), ``allowance`` (an allowance opened). The first message goes at the
next tick after the first event (well within 5 minutes); later ones gather what happened since
and go at most once an hour. At the end, a closing note with the report's summary line.

The messages carry counts and kinds only: never which sites, never ActivityWatch time or blocked
lookups, unless ``share_activity: true``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from detoxd.core import statustext

FIRST_WITHIN = timedelta(minutes=5)  # the bound for the first message (it goes at the next tick)
BATCH_EVERY = timedelta(hours=1)  # later messages: at most one an hour

# journal event -> the `peers_informed:` kind it counts as
EVENT_KINDS = {
    "tamper": "tamper",
    "state_lost": "tamper",
    "daemon_started": "stop",
    "peer_end_attempt": "end_attempt",
    "end_refused": "end_attempt",
    "allowance_opened": "allowance",
}
WORDS = {
    "tamper": ("change to the block, put back", "changes to the block, put back"),
    "stop": ("stop of the detox service (or a restart of the computer)",
             "stops of the detox service (or restarts of the computer)"),
    "end_attempt": ("attempt to end the detox early", "attempts to end the detox early"),
    "allowance": ("allowance opened", "allowances opened"),
}


@dataclass(frozen=True)
class InformedState:
    pending: dict[str, int] = field(default_factory=dict)  # counted, not told yet
    first_pending_at: str | None = None
    last_sent_at: str | None = None
    told: dict[str, int] = field(default_factory=dict)  # told so far in this detox
    closing_due: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InformedState:
        def counts(value: Any) -> dict[str, int]:
            if not isinstance(value, dict):
                return {}
            return {str(k): int(v) for k, v in value.items() if str(k) in WORDS}

        def text(value: Any) -> str | None:
            return value if isinstance(value, str) else None

        return cls(counts(data.get("pending")), text(data.get("first_pending_at")),
                   text(data.get("last_sent_at")), counts(data.get("told")), bool(data.get("closing_due")))


def count(state: InformedState, event: str, chosen: tuple[str, ...], at: datetime) -> InformedState:
    """``state`` after a journal ``event`` during the detox (unchanged when not chosen)."""
    kind = EVENT_KINDS.get(event)
    if kind is None or kind not in chosen:
        return state
    pending = {**state.pending, kind: state.pending.get(kind, 0) + 1}
    return dataclasses.replace(state, pending=pending,
                               first_pending_at=state.first_pending_at or at.isoformat(timespec="seconds"))


def due(state: InformedState, now: datetime) -> bool:
    """Whether the pending counts go now: the first at once, later ones an hour after the last."""
    if not state.pending:
        return False
    if state.last_sent_at is None:
        return True
    return now - datetime.fromisoformat(state.last_sent_at) >= BATCH_EVERY


def sent(state: InformedState, now: datetime) -> InformedState:
    told = dict(state.told)
    for kind, number in state.pending.items():
        told[kind] = told.get(kind, 0) + number
    return dataclasses.replace(state, pending={}, first_pending_at=None,
                               last_sent_at=now.isoformat(timespec="seconds"), told=told)


def _lines(counts: Mapping[str, int]) -> list[str]:
    lines = []
    for kind in WORDS:
        number = counts.get(kind, 0)
        if number:
            one, many = WORDS[kind]
            lines.append(f"- {number} {one if number == 1 else many}")
    return lines


def message(name: str, state: InformedState, *, activity: str | None = None) -> tuple[str, str]:
    """(subject, text) of a message with the pending counts; ``activity``: only with share_activity."""
    total = sum(state.pending.values())
    first = state.last_sent_at is None
    since = "" if first else " since the last message"
    text = ["Hello,", "",
            f"you are one of the peers of {name}'s digital detox, and {name} asked detoxd to tell "
            "you when these happen. Since "
            + ("the detox began:" if first else f"the last message ({state.last_sent_at}):"),
            *_lines(state.pending), ""]
    if activity:
        text += [activity, ""]
    text += [f"You may ask {name} about it; {name} chose that you would know.",
             "This message was written by detoxd on their computer; replies go to them.", ""]
    subject = f"{name}'s detox: {statustext.count(total, 'event')}{since}"
    return subject, "\n".join(text)


def closing(name: str, state: InformedState, summary_line: str) -> tuple[str, str]:
    lines = ["Hello,", "", f"{name}'s digital detox is over.", "", summary_line, ""]
    told = _lines(state.told)
    if told:
        lines += ["You were told about:", *told, ""]
    lines += [f"Thank you for being one of {name}'s peers.", ""]
    return f"{name}'s detox is over", "\n".join(lines)


def private_summary(document: Mapping[str, Any]) -> str:
    """The report's summary line without what only `share_activity: true` may share (sites'
    time, blocked lookups, apps closed): days, tamper attempts, early-end attempts, allowances,
    sessions."""
    detox, during = document["detox"], document["totals"]["during"]
    elapsed = detox.get("days_elapsed") or detox.get("days_so_far") or 0
    days = round(elapsed) if abs(elapsed - round(elapsed)) < 0.05 else round(elapsed, 1)
    parts = [statustext.count(during["tamper_attempts"], "tamper attempt")]
    if during["end_attempts"]:
        parts.append(f"{statustext.count(during['end_attempts'], 'attempt')} to end it early")
    if during["allowance_minutes"]:
        parts.append(f"{round(during['allowance_minutes'])} min of allowances")
    held = [session for session in document["sessions"] if session["hot_seats"]]
    if held:
        parts.append(f"{len(held)} peer session{'s' if len(held) != 1 else ''} held")
    return f"{statustext.count(days, 'day')}: " + ", ".join(parts)

"""What the traces a detox leaves say, when every copy of its state is gone. Pure.

The daemon keeps a detox's state in four places (the state directory, a backup beside it, the
runtime directory, the evidence directory). When none is usable at start, the traces decide
(see ``StateRecovery.load``): detoxd's block in the hosts file, the ledger in the evidence
directory, the event journal in the state directory, systemd's journal of the unit. Each is read
into a list of events; :func:`last_word` says what its latest word on a detox is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

LIFECYCLE_KINDS = frozenset({"daemon_started", "detox_started", "detox_ended", "state_lost"})


class Word(StrEnum):
    RUNNING = "running"  # the latest detox event is a start: a detox was running
    ENDED = "ended"  # the latest detox event is an end
    SILENT = "silent"  # detoxd left traces, but none about a detox
    NONE = "none"  # no trace at all


@dataclass(frozen=True)
class Verdict:
    word: Word
    source: str  # where it was read, for the user
    detail: str = ""  # the event that decided, in words

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}" if self.detail else self.source


def last_word(source: str, events: Sequence[Mapping[str, Any]]) -> Verdict:
    """The latest start or end of a detox among ``events`` (oldest first), as a verdict."""
    for event in reversed(events):
        kind = event.get("kind")
        if kind == "detox_started":
            return Verdict(Word.RUNNING, source, f"a detox started at {event.get('at', '?')}, "
                           f"to end at {event.get('ends_at', '?')}, and no end is recorded")
        if kind == "detox_ended":
            return Verdict(Word.ENDED, source, f"the last detox ended at {event.get('at', '?')}")
    return Verdict(Word.SILENT if events else Word.NONE, source)


def decide(verdicts: Sequence[Verdict]) -> Verdict:
    """Any trace of a running detox wins (fail closed); then an end; then mere traces; else none."""
    for word in (Word.RUNNING, Word.ENDED, Word.SILENT):
        found = [verdict for verdict in verdicts if verdict.word is word]
        if found:
            return Verdict(word, "; ".join(verdict.source for verdict in found),
                           "; ".join(verdict.detail for verdict in found if verdict.detail))
    return Verdict(Word.NONE, "")

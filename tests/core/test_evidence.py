"""What the traces of a detox say when every copy of its state is gone (detoxd.core.evidence)."""

from __future__ import annotations

from detoxd.core.evidence import Verdict, Word, decide, last_word

STARTED = {"kind": "detox_started", "at": "2026-03-02T09:00:00+00:00", "ends_at": "2026-03-16T09:00:00+00:00"}
ENDED = {"kind": "detox_ended", "at": "2026-03-16T09:00:00+00:00"}
DAEMON = {"kind": "daemon_started", "at": "2026-03-17T09:00:00+00:00"}


def test_the_latest_detox_event_has_the_last_word() -> None:
    assert last_word("ledger", [STARTED, DAEMON]).word is Word.RUNNING
    assert "to end at 2026-03-16T09:00:00+00:00" in str(last_word("ledger", [STARTED]))
    assert last_word("ledger", [STARTED, ENDED, DAEMON]).word is Word.ENDED
    assert last_word("ledger", [DAEMON]).word is Word.SILENT
    assert last_word("ledger", []).word is Word.NONE


def test_a_running_detox_anywhere_wins() -> None:
    verdicts = [Verdict(Word.ENDED, "ledger", "ended"), Verdict(Word.RUNNING, "hosts file", "block"),
                Verdict(Word.NONE, "journal")]
    assert decide(verdicts) == Verdict(Word.RUNNING, "hosts file", "block")
    assert decide([Verdict(Word.SILENT, "a"), Verdict(Word.ENDED, "b", "ended")]).word is Word.ENDED
    assert decide([Verdict(Word.SILENT, "a"), Verdict(Word.NONE, "b")]).word is Word.SILENT
    assert decide([Verdict(Word.NONE, "a")]).word is Word.NONE


def test_the_verdicts_say_exactly_which_trace_decided() -> None:
    assert last_word("ledger", [ENDED, STARTED]) == Verdict(
        Word.RUNNING, "ledger",
        "a detox started at 2026-03-02T09:00:00+00:00, to end at 2026-03-16T09:00:00+00:00, "
        "and no end is recorded")
    assert str(last_word("journal", [STARTED, ENDED])) == (
        "journal: the last detox ended at 2026-03-16T09:00:00+00:00")
    # A damaged event still decides, with "?" where a time is missing.
    assert last_word("unit", [{"kind": "detox_started"}]).detail == (
        "a detox started at ?, to end at ?, and no end is recorded")
    assert last_word("unit", [{"kind": "detox_ended"}]).detail == "the last detox ended at ?"
    assert last_word("hosts file", [DAEMON]) == Verdict(Word.SILENT, "hosts file")
    assert str(Verdict(Word.NONE, "journal")) == "journal"


def test_the_deciding_verdicts_are_joined_and_the_others_left_out() -> None:
    verdicts = [Verdict(Word.RUNNING, "ledger", "started"), Verdict(Word.ENDED, "journal", "ended"),
                Verdict(Word.RUNNING, "hosts file"), Verdict(Word.RUNNING, "unit", "started too")]
    assert decide(verdicts) == Verdict(Word.RUNNING, "ledger; hosts file; unit", "started; started too")
    assert decide([Verdict(Word.SILENT, "a"), Verdict(Word.SILENT, "b")]) == Verdict(Word.SILENT, "a; b", "")
    assert decide([]) == Verdict(Word.NONE, "")

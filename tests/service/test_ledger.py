"""The ledger outside the state directory (detoxd.service.ledger)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from detoxd.service import ledger

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_events_are_appended_and_read_back_and_bad_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, "detox_started", AT, ends_at="2026-03-16T09:00:00+00:00")
    with path.open("ab") as handle:
        handle.write(b"not json\n")
    ledger.append(path, "detox_ended", AT)
    assert [event["kind"] for event in ledger.read(path)] == ["detox_started", "detox_ended"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert ledger.read(tmp_path / "missing") == []


def test_a_restart_loop_never_pushes_the_running_detox_out(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, "detox_started", AT, ends_at="2026-03-16T09:00:00+00:00")
    for _ in range(ledger.MAX_BYTES // 40):
        ledger.append(path, "daemon_started", AT, version="0.1.0")
    assert path.stat().st_size <= ledger.MAX_BYTES
    events = ledger.read(path)
    assert events[0]["kind"] == "detox_started" and events[-1]["kind"] == "daemon_started"

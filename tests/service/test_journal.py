from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detoxd.clock import FakeClock
from detoxd.service import journal
from detoxd.service.journal import MAX_EVENT_BYTES, Journal, read_events, segment_numbers

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal"


def segment(directory: Path, number: int) -> Path:
    return directory / f"journal-{number:08d}.jsonl"


def test_events_are_json_lines_with_version_sequence_and_time(directory: Path, clock: FakeClock) -> None:
    with Journal(directory, clock) as writer:
        assert writer.record("tamper", target="hosts_file", restored="block of 3 names")
        clock.advance(90)
        assert writer.record("app_closed", app="slack", uid=1000, pid=4242)
    lines = segment(directory, 1).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"v": 1, "seq": 1, "at": "2026-12-01T09:00:00+00:00", "kind": "tamper",
         "target": "hosts_file", "restored": "block of 3 names"},
        {"v": 1, "seq": 2, "at": "2026-12-01T09:01:30+00:00", "kind": "app_closed",
         "app": "slack", "uid": 1000, "pid": 4242},
    ]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(segment(directory, 1).stat().st_mode) == 0o600


def test_sequence_numbers_go_on_after_a_restart(directory: Path, clock: FakeClock) -> None:
    with Journal(directory, clock) as first:
        first.record("daemon_started", version="0.1.0")
        first.record("clock_jump", seconds=3600)
    with Journal(directory, clock) as second:
        second.record("daemon_started", version="0.1.0")
    events, stats = read_events(directory)
    assert [event["seq"] for event in events] == [1, 2, 3]
    assert stats.corrupt_lines == 0 and stats.segments == 1


def test_rotation_keeps_only_the_newest_segments_and_bounds_the_size(directory: Path,
                                                                      clock: FakeClock) -> None:
    with Journal(directory, clock, segment_bytes=MAX_EVENT_BYTES, segments=3) as writer:
        for number in range(2000):
            assert writer.record("blocked_lookups", date="2026-12-01", device="10.0.0.7",
                                 counts={"facebook.com": number})
    numbers = segment_numbers(directory)
    assert len(numbers) == 3 and numbers[-1] > 3  # rotated many times, oldest removed
    assert sum(segment(directory, n).stat().st_size for n in numbers) <= 3 * MAX_EVENT_BYTES
    events, stats = read_events(directory)
    sequence = [event["seq"] for event in events]
    assert sequence == list(range(sequence[0], 2001))  # contiguous, ending with the last one
    assert events[-1]["counts"] == {"facebook.com": 1999}
    assert stats.corrupt_lines == 0


def test_a_corrupt_line_is_skipped_and_counted(directory: Path, clock: FakeClock) -> None:
    with Journal(directory, clock) as writer:
        writer.record("tamper", target="hosts_file", restored="block")
    with segment(directory, 1).open("ab") as handle:
        handle.write(b'{"v": 1, "seq": "two", broken\n')
        handle.write(b"\x00\xff garbage\n")
        handle.write(b"[1, 2]\n")
    with Journal(directory, clock) as writer:
        writer.record("detox_ended", early=False, reason="finished")
    events, stats = read_events(directory)
    assert [event["kind"] for event in events] == ["tamper", "detox_ended"]
    assert [event["seq"] for event in events] == [1, 2]
    assert stats.corrupt_lines == 3


def test_a_torn_last_line_is_cut_off_before_appending(directory: Path, clock: FakeClock) -> None:
    with Journal(directory, clock) as writer:
        writer.record("tamper", target="hosts_file", restored="block")
    with segment(directory, 1).open("ab") as handle:
        handle.write(b'{"v":1,"seq":2,"at":"2026-12-01T09:00:00+00:00","kind":"tam')  # power cut
    _, stats = read_events(directory)
    assert stats.torn_tail and stats.events == 1
    with Journal(directory, clock) as writer:
        writer.record("clock_jump", seconds=-60)
    events, stats = read_events(directory)
    assert [(event["seq"], event["kind"]) for event in events] == [(1, "tamper"), (2, "clock_jump")]
    assert not stats.torn_tail and stats.corrupt_lines == 0


def test_lines_of_a_newer_version_are_skipped_not_guessed(directory: Path, clock: FakeClock) -> None:
    directory.mkdir(parents=True)
    segment(directory, 1).write_text(
        '{"v":2,"seq":1,"at":"2026-12-01T09:00:00+00:00","kind":"tamper","meaning":"new"}\n')
    with Journal(directory, clock) as writer:
        writer.record("tamper", target="hosts_file", restored="block")
    events, stats = read_events(directory)
    assert [event["seq"] for event in events] == [2]
    assert stats.newer_version_lines == 1


def test_an_oversized_event_is_journalled_without_its_fields(directory: Path, clock: FakeClock) -> None:
    with Journal(directory, clock) as writer:
        assert writer.record("blocked_lookups", counts={f"site{i}.example": i for i in range(5000)})
    events, _ = read_events(directory)
    assert events[0]["kind"] == "blocked_lookups" and events[0]["truncated"] is True
    assert events[0]["bytes"] > MAX_EVENT_BYTES
    assert segment(directory, 1).stat().st_size < 200


def test_bad_kinds_reserved_fields_and_odd_values_never_raise(directory: Path, clock: FakeClock) -> None:
    with Journal(directory, clock) as writer:
        assert not writer.record("Not A Kind")
        assert writer.record("tamper", seq=99, target=Path("/etc/hosts"), restored="block")
    events, _ = read_events(directory)
    assert events == [{"v": 1, "seq": 1, "at": "2026-12-01T09:00:00+00:00", "kind": "tamper",
                       "target": "/etc/hosts", "restored": "block"}]


def test_a_vanished_directory_drops_events_then_records_the_gap(tmp_path: Path, clock: FakeClock) -> None:
    directory = tmp_path / "journal"
    writer = Journal(directory, clock)
    assert writer.record("tamper", target="hosts_file", restored="block")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    directory.symlink_to(blocker)  # a file where the directory was: mkdir and open fail
    writer._close_segment()  # as after a failed write: the next event reopens
    assert not writer.record("tamper", target="hosts_file", restored="block")
    assert not writer.record("tamper", target="hosts_file", restored="block")
    assert writer.dropped == 2
    directory.unlink()
    assert writer.record("detox_ended", early=False, reason="finished")
    writer.close()
    events, _ = read_events(directory)
    assert [(event["kind"], event.get("dropped")) for event in events] == [
        ("journal_gap", 2), ("detox_ended", None)]


def test_the_module_level_record_writes_to_the_installed_journal(directory: Path, clock: FakeClock) -> None:
    assert journal.record("tamper", target="hosts_file") is False  # none installed: a no-op
    writer = Journal(directory, clock)
    journal.install(writer)
    try:
        assert journal.record("hot_seat", session=1, person="Ada Lovelace")
    finally:
        journal.install(None)
        writer.close()
    events, _ = read_events(directory)
    assert [(event["kind"], event["person"]) for event in events] == [("hot_seat", "Ada Lovelace")]


def test_each_event_is_one_write_call(directory: Path, clock: FakeClock,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes kill -9 safe: the kernel finishes a write() it started."""
    calls: list[bytes] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    with Journal(directory, clock) as writer:
        writer.record("tamper", target="hosts_file", restored="x" * 5000)
    assert len(calls) == 1 and calls[0].endswith(b"\n")


def test_every_new_segment_starts_with_the_header(directory: Path, clock: FakeClock) -> None:
    header = {"detox_started_at": "2026-12-01T09:00:00+00:00", "detox_ends_at": "2026-12-15T09:00:00+00:00"}
    with Journal(directory, clock, segment_bytes=MAX_EVENT_BYTES, segments=2,
                 header=lambda: header) as writer:
        for number in range(1000):
            writer.record("tamper", target="hosts file", restored=f"block {number}")
    numbers = segment_numbers(directory)
    assert len(numbers) == 2 and numbers[0] > 1
    for number in numbers:
        first = json.loads(segment(directory, number).read_text().splitlines()[0])
        assert first["kind"] == "segment_started" and first["detox_started_at"] == header["detox_started_at"]
    events, _ = read_events(directory)
    sequence = [event["seq"] for event in events]
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))  # headers numbered in line


def test_a_removed_directory_is_made_again_and_says_so(directory: Path, clock: FakeClock) -> None:
    """`rm -rf /var/lib/detoxd` while running: before, events went on into the removed file."""
    with Journal(directory, clock) as log:
        assert log.record("tamper", target="hosts_file")
        shutil.rmtree(directory)
        assert log.record("state_lost", reason="state directory removed while running")
        events, _ = read_events(directory)
    assert [event["kind"] for event in events] == ["journal_lost", "state_lost"]
    assert events[0]["directory"] == str(directory)

"""The journal under real failures: a writer process killed with SIGKILL mid-stream, and a full
disk (a 64 KiB tmpfs mounted inside a private mount namespace, ``unshare -m``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import wait_for

from detoxd.clock import SystemClock
from detoxd.service.journal import Journal, read_events, segment_numbers

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from detoxd.clock import SystemClock
    from detoxd.service.journal import Journal

    journal = Journal(Path(sys.argv[1]), SystemClock(), segment_bytes=64 * 1024, segments=4)
    number = 0
    while True:
        number += 1
        journal.record("tamper", target="hosts_file", restored="block " + "x" * (number % 700))
""")


def last_seq(directory: Path) -> int:
    """The number of the last whole event in the journal (0 if none yet)."""
    events, _ = read_events(directory)
    return int(events[-1]["seq"]) if events else 0


def test_kill_9_while_writing_never_leaves_a_broken_journal(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for round_number in range(5):
        before = last_seq(directory)
        writer = subprocess.Popen([sys.executable, str(script), str(directory)])
        try:
            # Killed after more events each round (60 to 660: later rounds rotate segments), at a
            # point set by what it wrote, not by a sleep.
            wanted = before + 60 + 150 * round_number
            wait_for(lambda: last_seq(directory) >= wanted, timeout=120, what=f"event {wanted}")
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
    # SIGKILL can tear the last line (a write crossing a page boundary stops at it); the next
    # writer cuts it off, as the daemon does on start.
    with Journal(directory, SystemClock(), segment_bytes=64 * 1024, segments=4) as restarted:
        assert restarted.record("daemon_started", version="test")
    events, stats = read_events(directory)
    assert stats.corrupt_lines == 0 and stats.newer_version_lines == 0 and not stats.torn_tail
    sequence = [event["seq"] for event in events]
    assert len(sequence) > 100
    # One run of numbers: every restart went on from the last event, nothing was lost or doubled.
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))
    assert len(segment_numbers(directory)) <= 4


FULL_DISK = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from detoxd.clock import SystemClock
    from detoxd.service.journal import Journal, read_events

    mount = Path(sys.argv[1])
    filler = mount / "filler"
    filler.write_bytes(b"f" * 16384)
    journal = Journal(mount / "journal", SystemClock(), segment_bytes=16384, segments=100)
    results = [journal.record("tamper", target="hosts_file", restored="block " + "x" * 300)
               for _ in range(400)]
    on_full_disk = dict(written=journal.written, dropped=journal.dropped)
    filler.unlink()  # space again
    after = journal.record("detox_ended", early=False, reason="finished")
    journal.close()
    events, stats = read_events(mount / "journal")
    print(json.dumps(dict(results=results, after=after, on_full_disk=on_full_disk,
                          kinds=[e["kind"] for e in events], last=events[-2:],
                          corrupt=stats.corrupt_lines, torn=stats.torn_tail)))
""")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_a_full_disk_drops_events_counts_them_and_recovers(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    command = 'mount -t tmpfs -o size=64k tmpfs "$1" && exec "$2" "$3" "$1"'
    finished = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", command, "sh",
         str(mount), sys.executable, str(script)],
        capture_output=True, text=True, timeout=60, check=False)
    assert finished.returncode == 0, finished.stderr
    result = json.loads(finished.stdout)
    results = result["results"]
    written = results.count(True)
    assert 0 < written < len(results)  # the disk really filled up
    assert result["on_full_disk"] == {"written": written, "dropped": len(results) - written}
    # Once full, everything after was dropped without an exception, and no half line was left.
    assert results == [True] * written + [False] * (len(results) - written)
    assert result["corrupt"] == 0 and not result["torn"]
    assert result["after"] is True
    gap, ended = result["last"]
    assert gap["kind"] == "journal_gap" and gap["dropped"] == len(results) - written
    assert ended["kind"] == "detox_ended" and ended["seq"] == gap["seq"] + 1
    assert result["kinds"].count("tamper") == written
    assert "cannot write" in finished.stderr and finished.stderr.count("cannot write") == 1

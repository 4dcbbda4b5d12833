#!/usr/bin/env python3
"""The journal's costs: `.venv/bin/python benchmarks/journal_bench.py` (about 20 seconds).

- what one `journal.record()` costs the daemon's loop (it is called with the engine's lock held);
- reading a full journal (8 segments of 1 MiB) and building the report from it, as `detoxd
  report` makes the daemon do; and rendering that report as the HTML page with its charts.
Everything happens in a temporary directory.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detoxd import report_html
from detoxd.clock import FakeClock
from detoxd.core import report
from detoxd.service.journal import Journal, read_events

START = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)


def record_latency(directory: Path, count: int = 20_000) -> list[float]:
    clock = FakeClock(START)
    timings = []
    with Journal(directory, clock) as writer:
        for number in range(count):
            clock.advance(60)
            began = time.perf_counter()
            writer.record("tamper", target="hosts file", restored=f"the block of {number % 200} names")
            timings.append(time.perf_counter() - began)
    return timings


def fill_journal(directory: Path) -> int:
    """A detox's worth of events, and then enough lookups to fill every segment."""
    clock = FakeClock(START)
    ends = (START + timedelta(days=14)).isoformat()
    header = {"detox_started_at": START.isoformat(), "detox_ends_at": ends}
    with Journal(directory, clock, header=lambda: header) as writer:  # as the engine's
        writer.record("detox_started", days=14, locked=True, names=145,
                      ends_at=ends, by_uid=0)
        events = 1
        while events < 60_000:
            clock.advance(20)
            day = clock.now().date().isoformat()
            writer.record("blocked_lookups", date=day, device=f"10.0.0.{events % 12}",
                          counts={"facebook.com": events % 40, "x.com": events % 17, "reddit.com": 3})
            if events % 50 == 0:
                writer.record("app_closed", app="slack", uid=1000, pid=events)
            if events % 500 == 0:
                writer.record("activity_day", uid=1000, date=day, phase="during",
                              sites={"x.com": events % 900}, apps={"slack": 60.0})
            events += 1
    return events


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="detoxd-journal-bench-") as scratch:
        timings = record_latency(Path(scratch) / "latency")
        quantiles = statistics.quantiles(timings, n=100)
        print(f"journal.record(): median {statistics.median(timings) * 1e6:.0f} µs, "
              f"p99 {quantiles[98] * 1e6:.0f} µs, max {max(timings) * 1e3:.1f} ms "
              f"({len(timings)} events, fdatasync at most once a second)")

        full = Path(scratch) / "full"
        written = fill_journal(full)
        size = sum(path.stat().st_size for path in full.iterdir())
        tracemalloc.start()
        began = time.perf_counter()
        events, stats = read_events(full)
        document = report.build(events, now=START + timedelta(days=15), tz=UTC,
                                journal_stats={"events": stats.events})
        built = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"full journal: {written} events written, {stats.events} kept in {stats.segments} segments "
              f"({size / 2**20:.1f} MiB); read + report: {built * 1e3:.0f} ms, {peak / 2**20:.0f} MiB peak")
        began = time.perf_counter()
        page = report_html.render(document)
        elapsed = time.perf_counter() - began
        print(f"HTML page with charts: {elapsed * 1e3:.0f} ms, {len(page) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

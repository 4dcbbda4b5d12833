"""Weekly block windows: what the planning costs per daemon tick with 20 windows (issue 24: ≤ 1 ms).

``.venv/bin/python benchmarks/schedule_bench.py`` (a few seconds, no root). Two figures:

- a tick as the daemon makes it (:meth:`ScheduleKeeper.tick`): a week of ticks 15 s apart (the
  quiet loop), with the windows' openings and closings among them; most ticks reuse the plan;
- a full plan every tick (the cache defeated): what a tick at a change costs.

20 entries, each on five days with its own times, ten with the whole blocklist (1000 names), ten
with a preset and domains; the zone is Europe/Berlin.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from detoxd.core import schedule as sc
from detoxd.core.config import parse_main
from detoxd.service.schedule_keeper import ScheduleKeeper

BERLIN = ZoneInfo("Europe/Berlin")
TICK = 15.0
WEEK_TICKS = int(7 * 86400 / TICK)


def config(entries: int = 20) -> tuple[sc.BlockWindow, ...]:
    text = "schedule:\n"
    for index in range(entries):
        start = 6 * 60 + index * 37
        end = start + 90 + index * 11
        block = "" if index % 2 else "    block:\n      presets: [social]\n      domains: [a.example]\n"
        text += (f"  - name: w{index}\n    days: [mon, tue, wed, sat, sun]\n"
                 f"    from: \"{start // 60:02d}:{start % 60:02d}\"\n"
                 f"    to: \"{end // 60 % 24:02d}:{end % 60:02d}\"\n{block}")
    parsed, source = parse_main(text)
    assert parsed is not None and not source.errors, source.errors
    return parsed.schedule


def measure(*, cached: bool, ticks: int = WEEK_TICKS) -> tuple[float, float, int]:
    """(median µs, max µs, changes) per tick over ``ticks`` ticks."""
    moment = [datetime(2026, 6, 1, tzinfo=UTC)]
    with tempfile.TemporaryDirectory() as scratch:
        keeper = ScheduleKeeper(Path(scratch) / "schedule.json", lambda: moment[0], lambda m: m,
                                timezone=lambda: BERLIN)
        whole = frozenset(f"site{index}.example" for index in range(1000))
        keeper.configure(config(), (), whole=whole, allow=frozenset())
        costs: list[float] = []
        changes = 0
        for _ in range(ticks):
            moment[0] += timedelta(seconds=TICK)
            if not cached:
                keeper._planned = None  # the benchmark defeats the cache on purpose
            began = time.perf_counter()
            changes += keeper.tick(detox_active=False)
            costs.append((time.perf_counter() - began) * 1e6)
    return statistics.median(costs), max(costs), changes


def main() -> None:
    load = os.getloadavg()[0]
    median, worst, changes = measure(cached=True)
    print(f"a week of daemon ticks (every {TICK:g} s), 20 windows: median {median:.1f} µs, "
          f"max {worst:.0f} µs, {changes} changes of the block")
    median, worst, _ = measure(cached=False, ticks=5000)
    print(f"a full plan every tick, 20 windows: median {median:.0f} µs, max {worst:.0f} µs")
    print(f"load average {load:.2f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

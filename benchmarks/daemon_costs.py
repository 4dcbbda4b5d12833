"""Benchmark 4 (`detoxd status --json` against `python -c pass`) and the daemon's idle CPU."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import psutil
from harness import PYTHON, BenchmarkError, DaemonEnv, median, ms


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(f"{command} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def status_latency(env: DaemonEnv, runs: int) -> dict[str, Any]:
    """Median wall time of `python -m detoxd status --json` and of `python -c pass`, interleaved."""
    status_command = [PYTHON, "-m", "detoxd", "status", "--json"]
    pass_command = [PYTHON, "-c", "pass"]
    for _ in range(3):  # warm the page cache and .pyc files
        _wall(status_command, env.env)
        _wall(pass_command, env.env)
    status_times, pass_times = [], []
    for _ in range(runs):
        status_times.append(_wall(status_command, env.env))
        pass_times.append(_wall(pass_command, env.env))
    status_median, pass_median = median(status_times), median(pass_times)
    return {"runs": runs, "status_median_ms": ms(status_median), "pass_median_ms": ms(pass_median),
            "ratio": round(status_median / pass_median, 2)}


def import_profile(env: DaemonEnv) -> list[str]:
    """The slowest imports of `detoxd status` (-X importtime), to say where its time goes."""
    done = subprocess.run([PYTHON, "-X", "importtime", "-m", "detoxd", "status", "--json"],
                          env=env.env, capture_output=True, text=True, timeout=60, check=False)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    return [f"{micros / 1000:6.1f} ms cumulative  {name}" for micros, name in rows[:12]]


def idle_cpu(env: DaemonEnv, seconds: float) -> dict[str, Any]:
    """CPU seconds (user + system, all threads) the daemon spends over ``seconds`` of idling."""
    if env.process is None:
        raise BenchmarkError("the daemon is not running")
    process = psutil.Process(env.process.pid)
    before = process.cpu_times()
    time.sleep(seconds)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return {"window_s": seconds, "cpu_s": round(used, 3),
            "percent_of_one_core": round(100 * used / seconds, 2),
            "threads": process.num_threads(),
            "rss_mib": round(process.memory_info().rss / 2**20, 1)}

"""Benchmark 4 (`detoxd status --json` against `python -c pass`) and the daemon's idle CPU."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from harness import PYTHON, BenchmarkError, DaemonEnv, median, ms

REPO = Path(__file__).resolve().parents[1]


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(f"{command} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def plain_install(directory: Path) -> str:
    """A venv with detoxd installed the way users get it (not editable, no extras) — the
    editable finder of the development venv alone costs ~10 ms at every start. `status` needs
    only the standard library, so no dependency is installed. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=120)
    python = str(directory / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(REPO)], check=True, timeout=300,
                   capture_output=True, cwd=directory)
    return python


def status_latency(env: DaemonEnv, runs: int, python: str = PYTHON) -> dict[str, Any]:
    """Median wall time of `python -m detoxd status --json` and of `python -c pass`, interleaved."""
    # What users type: the console script pip writes (the development venv has none: -m there).
    script = Path(python).parent / "detoxd"
    status_command = [str(script)] if python != PYTHON and script.exists() else [python, "-m", "detoxd"]
    status_command += ["status", "--json"]
    pass_command = [python, "-c", "pass"]
    environment = dict(env.env)
    if python != PYTHON:  # the plain install's own code, not the checkout's on PYTHONPATH
        environment.pop("PYTHONPATH", None)
    for _ in range(3):  # warm the page cache and .pyc files
        _wall(status_command, environment)
        _wall(pass_command, environment)
    status_times, pass_times = [], []
    for _ in range(runs):
        status_times.append(_wall(status_command, environment))
        pass_times.append(_wall(pass_command, environment))
    status_median, pass_median = median(status_times), median(pass_times)
    return {"runs": runs, "status_median_ms": ms(status_median), "pass_median_ms": ms(pass_median),
            "ratio": round(status_median / pass_median, 2), "python": python}


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

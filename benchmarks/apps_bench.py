"""Closing blocked apps: detection latency and the daemon's idle CPU with 500 extra processes.

    .venv/bin/python benchmarks/apps_bench.py [--quick] [--json FILE]

Runs as root (the app processes run as uid 4242: detoxd closes only user accounts' processes), in a
PID namespace of its own (it re-runs itself there), so that its daemon closes none of the machine's
processes; "processes on machine" then counts the namespace's.

1. In process: the CPU cost of one AppWatcher scan with nothing new, of listing /proc (what a
   scan costs once any PID was handed out), of the first scan (every process described), of
   describing one process, and of one name recheck of every process.
2. A real `detoxd run` with a detox active, all built-in app presets but zoom and one explicit
   rule, and 500 extra `sleep` processes: the daemon's CPU seconds (user + system, all threads)
   over 60 s idle (15 s with --quick), against the same daemon with `apps: []`.
3. Detection latency: a copy of `sleep` named `slack` is started; the time until it has exited
   on detoxd's SIGTERM (a tick is 1 s, so the expected median is about 0.5 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from harness import (
    BenchmarkError,
    daemon_env,
    machine_description,
    machine_line,
    median,
    ms,
    percentile,
    run_in_own_pid_namespace,
)

from detoxd.core import apps
from detoxd.service import appwatch

USER_UID = 4242
EXTRA_PROCESSES = 500
BLOCKLIST_APPS = (
    "domains: [twitter.com]\n"
    "apps:\n"
    + "".join(f"  - {name}\n" for name in sorted(apps.builtin_presets()) if name != "zoom")
    + "  - name: my-chat-client\n    match: [my-chat, /opt/mychat/mychat]\n"
)
BLOCKLIST_NO_APPS = "domains: [twitter.com]\napps: []\n"


@contextlib.contextmanager
def sleepers(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` idle `sleep` processes of an ordinary user."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            processes.append(subprocess.Popen(["sleep", "3600"], user=USER_UID))
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def in_process_costs(rounds: int) -> dict[str, Any]:
    """CPU time of the watcher's steps in this process, with the extra processes running."""
    rules = list(apps.builtin_presets().values())
    pids = sorted(appwatch.list_pids())
    watcher = appwatch.AppWatcher()
    watcher.set_rules(rules)
    started = time.process_time()
    watcher.scan(time.monotonic())  # the first scan describes every process
    first_scan = time.process_time() - started
    started = time.process_time()
    for _ in range(rounds):
        watcher.scan(time.monotonic())  # nothing new
    idle_scan = (time.process_time() - started) / rounds
    started = time.process_time()
    for _ in range(rounds):
        appwatch.list_pids()
    listing = (time.process_time() - started) / rounds
    started = time.process_time()
    for _ in range(rounds):
        for pid in pids:
            appwatch.read_comm(pid)
    recheck = (time.process_time() - started) / rounds
    started = time.process_time()
    for pid in pids:
        appwatch.describe(pid)
    describe = (time.process_time() - started) / len(pids)
    return {
        "processes": len(pids),
        "idle_scan_us": round(idle_scan * 1e6, 1),  # mostly the last-PID shortcut
        "list_proc_us": round(listing * 1e6, 1),  # a scan when some PID was handed out
        "first_scan_ms": ms(first_scan),
        "describe_one_us": round(describe * 1e6, 1),
        "name_recheck_all_ms": ms(recheck),
        "recheck_every_s": appwatch.RECHECK_SECONDS,
        # A tick on a busy desktop, where some thread or process starts every second:
        "estimated_busy_percent_of_one_core": round(
            100 * (listing + recheck / appwatch.RECHECK_SECONDS), 3),
    }


def cpu_ns(pid: int) -> int:
    """CPU time of all of ``pid``'s threads in ns (schedstat: finer than cpu_times' 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def daemon_idle_cpu(blocklist: str, seconds: float) -> dict[str, Any]:
    with daemon_env("detoxd-apps-bench-") as env:
        env.prepare(blocklist)
        env.start()
        env.start_detox()
        assert env.process is not None
        daemon = psutil.Process(env.process.pid)
        time.sleep(3.0)  # past the first scan, which describes every process once
        before, before_ns = daemon.cpu_times(), cpu_ns(daemon.pid)
        first_pid = appwatch.read_last_pid()
        time.sleep(seconds)
        after, after_ns = daemon.cpu_times(), cpu_ns(daemon.pid)
        last_pid = appwatch.read_last_pid()
        used = (after_ns - before_ns) / 1e9
        ticks = (after.user - before.user) + (after.system - before.system)
        return {"window_s": seconds, "cpu_s": round(used, 4), "cpu_s_psutil": round(ticks, 3),
                "percent_of_one_core": round(100 * used / seconds, 3),
                "processes_on_machine": len(psutil.pids()),
                # Other activity on the machine: each new PID (process or thread) costs a scan.
                "pids_handed_out": (last_pid or 0) - (first_pid or 0)}


def detection_latency(trials: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="detoxd-apps-bench-bin-"))
    directory.chmod(0o755)
    slack = directory / "slack"
    shutil.copy("/bin/sleep", slack)
    slack.chmod(0o755)
    latencies: list[float] = []
    missed = 0
    try:
        with daemon_env("detoxd-apps-bench-") as env:
            env.prepare(BLOCKLIST_APPS)
            env.start()
            env.start_detox()
            time.sleep(2.0)
            for trial in range(trials):
                # Spread the start over the tick, as real app starts are.
                time.sleep(0.37 * (trial % 3))
                started = time.perf_counter()
                process = subprocess.Popen([str(slack), "3600"], user=USER_UID)
                try:
                    process.wait(timeout=10)
                    latencies.append(time.perf_counter() - started)
                except subprocess.TimeoutExpired:
                    missed += 1
                    process.kill()
                    process.wait()
            closed = (env.request("status") or {}).get("status", {}).get("apps_closed", {})
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"trials": trials, "median_ms": ms(median(latencies)),
            "p95_ms": ms(percentile(latencies, 0.95)), "max_ms": ms(max(latencies, default=float("nan"))),
            "missed_within_10s": missed, "daemon_counted": closed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="15 s CPU windows and 5 latency trials")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: the app processes are started as another user", file=sys.stderr)
        return 2
    run_in_own_pid_namespace()  # the daemon closes what it sees: only what this run starts
    window = 15.0 if args.quick else 60.0
    trials = 5 if args.quick else 30
    results: dict[str, Any] = {"machine": machine_description(Path(tempfile.gettempdir()))}
    print(f"Machine: {machine_line(results['machine'])}", flush=True)
    try:
        with sleepers(EXTRA_PROCESSES):
            results["in_process"] = in_process_costs(rounds=20 if args.quick else 100)
            print(f"in process: {results['in_process']}", flush=True)
            results["idle_with_apps"] = daemon_idle_cpu(BLOCKLIST_APPS, window)
            print(f"daemon idle, {BLOCKLIST_APPS.count('  - ')} app rules: {results['idle_with_apps']}",
                  flush=True)
            results["idle_without_apps"] = daemon_idle_cpu(BLOCKLIST_NO_APPS, window)
            print(f"daemon idle, apps: []: {results['idle_without_apps']}", flush=True)
            results["detection"] = detection_latency(trials)
            print(f"detection latency: {results['detection']}", flush=True)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A blocked app started → closed: through the kernel's exec events, and by polling.

    .venv/bin/python benchmarks/exec_latency.py [--trials N] [--json FILE]

Runs as root. The daemon and every app run in a PID namespace made here (`unshare --pid
--mount-proc`, entered with `nsenter`), and `detoxd execwatch` runs outside it (the kernel sends
process events only to the initial namespace) scoped to the daemon's namespace: nothing else on
the machine can be closed, and the real Slack of whoever runs this keeps running.

Each trial starts a copy of `sleep` named `slack` as uid 4242 in the namespace and measures from
just before the spawn until it has exited on detoxd's SIGTERM (the spawn and the exit's delivery
are included, so the figure is an upper bound of exec → closed). Starts are spread over the
daemon's 1 s tick, as real app starts are. First with the exec watcher (each closure must be
logged "found by exec event"), then with the watcher stopped (polling: "found by scan").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    PYTHON,
    BenchmarkError,
    daemon_env,
    enter,
    machine_description,
    machine_line,
    median,
    ms,
    percentile,
    pid_namespace,
)

USER_UID = 4242
BLOCKLIST = "domains: [twitter.com]\napps: [slack]\n"
OLD = {"median_ms": 620.0, "p95_ms": 1020.0}  # polling before issue 26 (docs/benchmarks.md)
TARGET = {"median_ms": 100.0, "p95_ms": 250.0}


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise BenchmarkError(f"timed out waiting for {what}")


def trials_of(init_pid: int, slack: Path, trials: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    missed = 0
    for trial in range(trials):
        time.sleep(0.37 * (trial % 3))  # spread over the tick
        started = time.perf_counter()
        process = subprocess.Popen([*enter(init_pid, f"--setuid={USER_UID}", f"--setgid={USER_UID}"),
                                    str(slack), "3600"])
        try:
            if process.wait(timeout=10) == -signal.SIGTERM:
                latencies.append(time.perf_counter() - started)
            else:
                missed += 1
        except subprocess.TimeoutExpired:
            missed += 1
            process.kill()
            process.wait()
    return latencies, missed


def summary(latencies: list[float], missed: int, found_by: dict[str, int]) -> dict[str, Any]:
    return {"trials": len(latencies) + missed, "median_ms": ms(median(latencies)),
            "p95_ms": ms(percentile(latencies, 0.95)), "max_ms": ms(max(latencies, default=float("nan"))),
            "missed_within_10s": missed, "found_by": found_by}


def found_by(log: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in log.splitlines():
        if "closed slack: pid" in line and "(found by " in line:
            how = line.rsplit("(found by ", 1)[1].rstrip(")")
            counts[how] = counts.get(how, 0) + 1
    return counts


def measure(trials: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="detoxd-exec-bench-bin-"))
    directory.chmod(0o755)
    slack = directory / "slack"
    shutil.copy("/bin/sleep", slack)
    slack.chmod(0o755)
    results: dict[str, Any] = {}
    try:
        with pid_namespace() as init_pid, daemon_env("detoxd-exec-bench-") as env:
            env.prepare(BLOCKLIST)
            with env.log_path.open("ab") as log:
                env.process = subprocess.Popen([*enter(init_pid), PYTHON, "-m", "detoxd", "run", "-v"],
                                               env=env.env, stdout=log, stderr=log, cwd=env.root)
            wait_until(lambda: env.request("status", timeout=2.0) is not None, 120, "the daemon")
            env.start_detox()
            with (env.root / "execwatch.log").open("ab") as log:
                watcher = subprocess.Popen([PYTHON, "-m", "detoxd", "execwatch"], env=env.env,
                                           stdout=log, stderr=log)
            try:
                wait_until(lambda: (env.request("status") or {}).get("status", {}).get("apps_watch")
                           == "exec_events", 30, "the exec watcher")
                latencies, missed = trials_of(init_pid, slack, trials)
                results["exec_events"] = summary(latencies, missed, found_by(env.log_path.read_text()))
                print(f"exec events: {results['exec_events']}", flush=True)
            finally:
                watcher.send_signal(signal.SIGTERM)
                watcher.wait(timeout=30)
            wait_until(lambda: (env.request("status") or {}).get("status", {}).get("apps_watch")
                       == "polling", 30, "polling")
            before = found_by(env.log_path.read_text())
            latencies, missed = trials_of(init_pid, slack, trials)
            after = found_by(env.log_path.read_text())
            results["polling"] = summary(latencies, missed,
                                         {how: after[how] - before.get(how, 0) for how in after
                                          if after[how] != before.get(how, 0)})
            print(f"polling: {results['polling']}", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trials of each path (default 30)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: namespaces, and the apps run as another user", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"machine": machine_description(Path(tempfile.gettempdir())),
                               "load_average_before": os.getloadavg()}
    print(f"Machine: {machine_line(results['machine'])}; load average "
          f"{' '.join(f'{x:.2f}' for x in results['load_average_before'])}", flush=True)
    try:
        results.update(measure(args.trials))
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    results["load_average_after"] = os.getloadavg()
    events = results["exec_events"]
    met = (events["median_ms"] <= TARGET["median_ms"] and events["p95_ms"] <= TARGET["p95_ms"]
           and events["missed_within_10s"] == 0 and set(events["found_by"]) == {"exec event"})
    print(f"exec → closed with exec events: median {events['median_ms']} ms, p95 {events['p95_ms']} ms "
          f"(target ≤ {TARGET['median_ms']:g} / ≤ {TARGET['p95_ms']:g} ms: {'met' if met else 'NOT met'}); "
          f"polling: median {results['polling']['median_ms']} ms, p95 {results['polling']['p95_ms']} ms "
          f"(before issue 26: {OLD['median_ms']:g} / {OLD['p95_ms']:g} ms; SelfControl checks every 1 s); "
          f"load average after {' '.join(f'{x:.2f}' for x in results['load_average_after'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

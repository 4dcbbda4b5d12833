#!/usr/bin/env python3
"""kill -9 crash loop: `.venv/bin/python benchmarks/crash_loop.py [--trials 200]`.

One real `detoxd run` in temporary directories with a running, locked detox. Each trial makes
the daemon write (a config edit that adds a name, a tamper it must restore, or a checkpoint
only), kills it with SIGKILL at a random moment 0–40 ms later, checks the files as the crash
left them, restarts it and measures the time until it has converged: the socket answers, the
detox is still active with the same end time, and the hosts file holds exactly one intact block
with every name configured so far (a locked detox keeps them all) and the user's lines.

Reported: trials, torn files found right after the kill and after recovery, detoxes lost,
stale temporary files after recovery, and restart-to-converged times (median, p95, max).
Nothing outside the temporary directory is touched; the daemon is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    EXAMPLE_BLOCKLIST,
    USER_HOSTS,
    BenchmarkError,
    DaemonEnv,
    daemon_env,
    machine_description,
    machine_line,
    median,
    ms,
    percentile,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BEGIN = b"# BEGIN detoxd block"
END = b"# END detoxd block"


def blocked_names(content: bytes) -> set[str]:
    return {line.split()[1].decode() for line in content.splitlines() if line.startswith(b"0.0.0.0 ")}


def intact(content: bytes) -> bool:
    """The user's lines, then exactly one whole block: nothing torn, nothing duplicated."""
    return (content.startswith(USER_HOSTS) and content.count(BEGIN) == 1 and content.count(END) == 1
            and content.endswith(END + b"\n"))


def stale_temporaries(env: DaemonEnv) -> list[str]:
    found = [path.name for path in env.hosts.parent.iterdir() if path.name.endswith(".detoxd-new")]
    found += [path.name for path in env.state_dir.iterdir()
              if path.name.endswith((".detoxd-new", ".tmp"))]
    return found


def provoke(env: DaemonEnv, kind: str, trial: int, configured: list[str]) -> None:
    if kind == "edit":
        configured.append(f"crash{trial}.example")
        env.write_blocklist(EXAMPLE_BLOCKLIST + "".join(f"  - {name}\n" for name in configured))
    elif kind == "tamper":
        content = env.hosts.read_bytes()
        with env.hosts.open("r+b") as handle:  # an in-place edit that drops the block
            handle.truncate(0)
            handle.write(content.split(BEGIN)[0])


def converged(env: DaemonEnv, ends_at: str, expected: set[str]) -> bool:
    status = env.request("status", timeout=2.0)
    if status is None or not status.get("ok"):
        return False
    detox = status["status"]
    if detox["state"] != "active" or detox["ends_at"] != ends_at:
        return False
    content = env.hosts.read_bytes()
    return intact(content) and expected <= blocked_names(content)


def run(trials: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    results: dict[str, Any] = {"trials": trials, "seed": seed, "kinds": {}, "converge_seconds": [],
                               "torn_after_kill": 0, "torn_after_recovery": 0, "detox_lost": 0,
                               "stale_after_recovery": 0, "stale_after_kill": 0, "failures": []}
    with daemon_env("detoxd-crash-") as env:
        env.prepare(EXAMPLE_BLOCKLIST)
        env.start()
        ends_at = env.start_detox()["ends_at"]
        configured: list[str] = []
        expected = blocked_names(env.hosts.read_bytes())
        for trial in range(trials):
            kind = rng.choice(("edit", "tamper", "idle"))
            results["kinds"][kind] = results["kinds"].get(kind, 0) + 1
            provoke(env, kind, trial, configured)
            time.sleep(rng.uniform(0, 0.040))
            assert env.process is not None
            env.process.send_signal(signal.SIGKILL)
            env.process.wait(timeout=10)
            env.process = None
            after_kill = env.hosts.read_bytes()
            if after_kill.count(BEGIN) != after_kill.count(END):
                results["torn_after_kill"] += 1
            results["stale_after_kill"] += bool(stale_temporaries(env))
            spawned = time.perf_counter()
            env.start()
            expected |= {name for name in configured} | {f"www.{name}" for name in configured}
            deadline = spawned + 60
            while not converged(env, ends_at, expected):
                if time.perf_counter() > deadline:
                    results["failures"].append({"trial": trial, "kind": kind, "log": env.log()[-800:]})
                    break
                time.sleep(0.005)
            else:
                results["converge_seconds"].append(time.perf_counter() - spawned)
            content = env.hosts.read_bytes()
            status = env.request("status") or {}
            if not intact(content):
                results["torn_after_recovery"] += 1
            if status.get("status", {}).get("state") != "active":
                results["detox_lost"] += 1
            results["stale_after_recovery"] += bool(stale_temporaries(env))
            if (trial + 1) % 25 == 0:
                print(f"  {trial + 1}/{trials} trials", file=sys.stderr)
        machine = machine_description(env.root)
    seconds = results["converge_seconds"]
    results["converge_ms"] = {"median": ms(median(seconds)), "p95": ms(percentile(seconds, 0.95)),
                              "max": ms(max(seconds, default=float("nan")))}
    results["machine"] = machine
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    try:
        results = run(args.trials, args.seed)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"crash_loop-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    converge = results["converge_ms"]
    print(machine_line(results["machine"]))
    print(f"| kill -9 crash loop, {results['trials']} trials ({results['kinds']}) → restart "
          f"converged | median {converge['median'] / 1000:.2f} s, p95 {converge['p95'] / 1000:.2f} s, "
          f"max {converge['max'] / 1000:.2f} s; torn after recovery {results['torn_after_recovery']}, "
          f"detox lost {results['detox_lost']}, stale temporaries after recovery "
          f"{results['stale_after_recovery']}, not converged {len(results['failures'])} "
          f"(torn right after the kill {results['torn_after_kill']}, stale temporaries left by the "
          f"kill {results['stale_after_kill']}) | 0 torn, 0 lost | |")
    return 0 if not results["failures"] and not results["torn_after_recovery"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark 3: apply 1k / 100k / 1M names from a `lists:` file, detoxd against a Python floor,
each in a fresh process; and a full daemon start with the largest list."""

from __future__ import annotations

import json
import os
import pstats
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    MAIN_YAML,
    PYTHON,
    REPO,
    USER_HOSTS,
    BenchmarkError,
    daemon_env,
    median,
)
from names import write_list

CHILD = Path(__file__).resolve().parent / "apply_child.py"
CHILD_TIMEOUT = 600
# Runs the command as its only child: RUSAGE_CHILDREN's ru_maxrss is then that process's peak.
_MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout={timeout}, check=False)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": done.returncode, "wall_s": wall, "maxrss_kib": usage.ru_maxrss,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "stdout": done.stdout,
                  "stderr": done.stderr[-2000:]}))
""".replace("{timeout}", str(CHILD_TIMEOUT))


@dataclass
class Run:
    wall_s: float
    maxrss_kib: int
    phases: dict[str, float]


def measure(command: list[str]) -> Run:
    done = subprocess.run([PYTHON, "-c", _MEASURE, *command], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT + 30, check=False, cwd=REPO)
    if done.returncode != 0:
        raise BenchmarkError(f"measuring wrapper failed: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if report["returncode"] != 0:
        raise BenchmarkError(f"{command[2]} apply failed: {report['stderr']}")
    return Run(report["wall_s"], report["maxrss_kib"], json.loads(report["stdout"]))


def _prepare_config(root: Path, count: int) -> tuple[Path, int]:
    config = root / "config"
    config.mkdir(parents=True)
    (config / "detoxd.yaml").write_text(MAIN_YAML)
    (config / "blocklist.yaml").write_text("lists:\n  - names.txt\n")
    distinct = write_list(config / "names.txt", count)
    return config, distinct


def _check_hosts(hosts: Path, distinct: int, what: str) -> None:
    content = hosts.read_bytes()
    if not content.startswith(USER_HOSTS):
        raise BenchmarkError(f"{what} lost the user's hosts text")
    lines = content.count(b"\n") - USER_HOSTS.count(b"\n")
    markers = 2 if what == "detoxd" else 0
    if lines != 2 * distinct + markers:
        raise BenchmarkError(f"{what} wrote {lines} lines for {distinct} names")


def bench_size(count: int, repeats: int, profile_dir: Path | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="detoxd-bench-apply-"))
    try:
        config, distinct = _prepare_config(root, count)
        hosts, state = root / "hosts", root / "state"
        detoxd_runs: list[Run] = []
        floor_runs: list[Run] = []
        for _ in range(repeats):  # interleaved, so drift in the machine hits both alike
            hosts.write_bytes(USER_HOSTS)
            shutil.rmtree(state, ignore_errors=True)
            detoxd_runs.append(measure([PYTHON, str(CHILD), "detoxd", str(config), str(hosts),
                                        str(state)]))
            _check_hosts(hosts, distinct, "detoxd")
            hosts.write_bytes(USER_HOSTS)
            floor_runs.append(measure([PYTHON, str(CHILD), "floor", str(config / "names.txt"),
                                       str(hosts)]))
            _check_hosts(hosts, distinct, "floor")
        result = _summarise(count, distinct, detoxd_runs, floor_runs)
        if profile_dir is not None:
            result["profile_top"] = _profile(config, root, profile_dir / f"apply-{count}.prof")
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _summarise(count: int, distinct: int, detoxd_runs: list[Run], floor_runs: list[Run]) -> dict[str, Any]:
    detoxd_wall = median([run.wall_s for run in detoxd_runs])
    floor_wall = median([run.wall_s for run in floor_runs])
    detoxd_rss = max(run.maxrss_kib for run in detoxd_runs)
    floor_rss = max(run.maxrss_kib for run in floor_runs)
    phases = {key: round(median([run.phases[key] for run in detoxd_runs]), 4)
              for key in ("import_s", "load_config_s", "set_names_s")}
    return {
        "entries": count, "distinct_names": distinct, "repeats": len(detoxd_runs),
        "detoxd_wall_s": round(detoxd_wall, 3), "floor_wall_s": round(floor_wall, 3),
        "time_ratio": round(detoxd_wall / floor_wall, 2),
        "detoxd_peak_rss_mib": round(detoxd_rss / 1024, 1),
        "floor_peak_rss_mib": round(floor_rss / 1024, 1),
        "rss_ratio": round(detoxd_rss / floor_rss, 2),
        "detoxd_phases_s": phases,
    }


def _profile(config: Path, root: Path, out: Path) -> list[str]:
    """cProfile of one detoxd apply: the functions with the most cumulative time."""
    hosts, state = root / "hosts", root / "state"
    hosts.write_bytes(USER_HOSTS)
    shutil.rmtree(state, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([PYTHON, str(CHILD), "detoxd", str(config), str(hosts), str(state), str(out)],
                   check=True, capture_output=True, timeout=CHILD_TIMEOUT, cwd=REPO)
    stats = pstats.Stats(str(out))
    rows = []
    for (filename, line, function), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "detoxd" in filename or filename == "~":
            name = f"{Path(filename).name}:{line}({function})"
            rows.append((cumtime, tottime, name))
    rows.sort(reverse=True)
    return [f"{cum:7.3f}s cum {tot:7.3f}s self  {name}" for cum, tot, name in rows[:15]]


def bench_daemon_start(count: int) -> dict[str, Any]:
    """A restarted daemon with an active detox and a ``count``-entry list: time until `status`
    answers (the daemon applies the config before it opens the socket) and the block is in."""
    with daemon_env("detoxd-bench-start-") as env:
        env.prepare("domains:\n  - example.com\n")
        env.start()
        env.start_detox()
        env.stop()
        (env.config_dir / "blocklist.yaml").write_text("lists:\n  - names.txt\n")
        distinct = write_list(env.config_dir / "names.txt", count)
        answered = env.start(timeout=300)
        answered_cpu = env.cpu_seconds()
        status = env.request("status", timeout=30) or {}
        state = status.get("status", {})
        blocked = state.get("domains_blocked", 0)
        content = env.hosts.read_bytes()
        in_file = content.startswith(USER_HOSTS) and content.endswith(b"# END detoxd block\n")
        # + example.com and www.example.com (the ratchet keeps them) + use-application-dns.net
        # (Firefox's canary, blocked during every detox)
        block_ok = blocked == distinct + 3 and state.get("hosts_in_sync") is True and in_file
        time.sleep(1.0)  # let the first checkpoint and tick pass before reading the peak
        peak = env.peak_rss_kib() or 0
        # And restarted with that block applied: the ratchet (a side file), applied.json and
        # the hosts block each hold every name; #12's fail-safe keeps every name of the block
        # (known unchanged from its digest, else parsed).
        env.stop()
        restarted = env.start(timeout=300)
        restarted_cpu = env.cpu_seconds()
        again = (env.request("status", timeout=30) or {}).get("status", {})
        kept = again.get("domains_blocked") == blocked and again.get("hosts_in_sync") is True
        time.sleep(1.0)
        return {
            "entries": count, "distinct_names": distinct,
            "until_status_answers_s": round(answered, 3),
            # The daemon's own CPU time when status first answered (moves less with the load).
            "cpu_until_status_answers_s": answered_cpu,
            "domains_blocked": blocked, "block_in_file": block_ok,
            "daemon_peak_rss_mib": round(peak / 1024, 1),
            "restart_until_status_answers_s": round(restarted, 3), "restart_kept_every_name": kept,
            "restart_cpu_until_status_answers_s": restarted_cpu,
            "load_average": os.getloadavg(),
            "restart_peak_rss_mib": round((env.peak_rss_kib() or 0) / 1024, 1),
        }

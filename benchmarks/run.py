#!/usr/bin/env python3
"""detoxd benchmarks: `.venv/bin/python benchmarks/run.py [--quick]`.

Prints the machine and a Markdown table for docs/benchmarks.md; writes everything measured (with the
per-benchmark details and profiles) as JSON to benchmarks/results/. Every daemon runs in its
own temporary directories and is stopped at the end; nothing outside /tmp is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apply
import daemon_costs
import tamper
from harness import EXAMPLE_BLOCKLIST, code_version, daemon_env, machine_description, machine_line
from names import write_list

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The targets.
TAMPER_MEDIAN_MS, TAMPER_P95_MS = 20.0, 50.0
CONFIG_MEDIAN_MS = 100.0
APPLY_TIME_RATIO, APPLY_RSS_MIB = 1.5, 150.0
STATUS_RATIO = 3.0  # under a plain (not editable) install


@dataclass(frozen=True)
class Plan:
    tamper_trials: int
    config_trials: int
    status_runs: int
    idle_seconds: float
    idle_names: int
    apply_sizes: tuple[int, ...]
    apply_repeats: int

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            return cls(10, 10, 8, 3.0, 10_000, (1_000, 100_000), 1)
        return cls(50, 50, 30, 20.0, 100_000, (1_000, 100_000, 1_000_000), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (fewer trials, ≤100k names)")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest apply even on target")
    parser.add_argument("--seed", type=int, default=2024, help="seed for delays, patterns and names")
    args = parser.parse_args(argv)
    plan = Plan.for_mode(args.quick)
    machine = machine_description(Path(tempfile.gettempdir()))
    version = code_version()
    print(f"Machine: {machine_line(machine)}", flush=True)
    print(f"Code: detoxd at {version}", flush=True)
    results: dict[str, Any] = {"machine": machine, "code": version, "quick": args.quick,
                               "plan": plan.__dict__,
                               "started": datetime.now(UTC).isoformat(timespec="seconds")}
    errors: dict[str, str] = {}
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("live_daemon", lambda: run_live_daemon(plan, args.seed)),
        ("idle_cpu", lambda: run_idle(plan)),
        ("apply", lambda: run_apply(plan, args.profile)),
        ("daemon_start", lambda: apply.bench_daemon_start(plan.apply_sizes[-1])),
    ]
    for name, section in sections:
        print(f"... {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            results[name] = section()
        except Exception:
            errors[name] = traceback.format_exc()
            print(errors[name], file=sys.stderr)
        print(f"    {name} took {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    results["errors"] = errors
    table = markdown_table(results)
    results["table"] = table
    print()
    print(table)
    print_findings(results)
    print(f"\nJSON: {save(results)}")
    return 1 if errors else 0


# ---- sections ----


def run_live_daemon(plan: Plan, seed: int) -> dict[str, Any]:
    with daemon_env() as env:
        env.prepare(EXAMPLE_BLOCKLIST)
        env.start()
        status = env.start_detox()
        result: dict[str, Any] = {"names_blocked": status["domains_blocked"]}
        result["tamper_in_place"] = tamper.tamper_trials(
            env, plan.tamper_trials, [tamper.write_plain, tamper.write_after_pause], seed)
        result["tamper_rename"] = tamper.tamper_trials(
            env, plan.tamper_trials, [tamper.write_by_rename], seed + 1)
        counted = (env.request("status") or {}).get("status", {}).get("tamper_events")
        result["daemon_counted_tampers"] = counted
        result["config_edit"] = tamper.config_trials(env, plan.config_trials, EXAMPLE_BLOCKLIST, seed + 2)
        with tempfile.TemporaryDirectory(prefix="detoxd-bench-venv-") as venv:
            python = daemon_costs.plain_install(Path(venv))
            result["status_cli"] = daemon_costs.status_latency(env, plan.status_runs, python)
        result["status_cli"]["slowest_imports"] = daemon_costs.import_profile(env)
        result["daemon_log_tail"] = env.log()[-1500:]
        return result


def run_idle(plan: Plan) -> dict[str, Any]:
    with daemon_env() as env:
        env.prepare("lists:\n  - names.txt\n")
        distinct = write_list(env.config_dir / "names.txt", plan.idle_names, seed=7)
        env.start(timeout=300)
        status = env.start_detox()
        time.sleep(2.0)  # past the start's writes and first ticks
        result = daemon_costs.idle_cpu(env, plan.idle_seconds)
        result.update(names=distinct, names_blocked=status["domains_blocked"])
        return result


def run_apply(plan: Plan, force_profile: bool) -> list[dict[str, Any]]:
    results = []
    for size in plan.apply_sizes:
        print(f"    apply {size} names", file=sys.stderr, flush=True)
        result = apply.bench_size(size, plan.apply_repeats, profile_dir=None)
        largest = size == plan.apply_sizes[-1]
        if largest and (force_profile or not _apply_on_target(result)):
            result["profile_top"] = apply.bench_size(size, 1, profile_dir=RESULTS_DIR)["profile_top"]
        results.append(result)
    return results


def _apply_on_target(result: dict[str, Any]) -> bool:
    return result["time_ratio"] <= APPLY_TIME_RATIO and result["detoxd_peak_rss_mib"] <= APPLY_RSS_MIB


# ---- reporting ----


def _verdict(ok: bool) -> str:
    return "✅" if ok else "❌"


def _count(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def markdown_table(results: dict[str, Any]) -> str:
    rows = ["| Benchmark | Result | Target | Met |", "|---|---|---|---|"]
    live = results.get("live_daemon")
    if live:
        rows += _tamper_rows(live)
    rows += _apply_rows(results.get("apply") or [])
    start = results.get("daemon_start")
    if start:
        rows.append(
            f"| Daemon start, active detox, {_count(start['entries'])}-entry list "
            f"({start['distinct_names']} names) | {start['until_status_answers_s']:.2f} s until "
            f"`status` answers; block in file: {'yes' if start['block_in_file'] else 'NO'}; "
            f"peak RSS {start['daemon_peak_rss_mib']} MiB | — | — |")
        restart_s, restart_mib = start["restart_until_status_answers_s"], start["restart_peak_rss_mib"]
        kept = "yes" if start["restart_kept_every_name"] else "NO"
        rows.append(
            f"| Daemon restart with that block applied | {restart_s:.2f} s until `status` answers; "
            f"every name kept: {kept}; peak RSS {restart_mib} MiB | ≤ 2.5 s, ≤ 450 MiB | "
            f"{_verdict(restart_s <= 2.5 and restart_mib <= 450)} |")
    if live:
        cli = live["status_cli"]
        rows.append(
            f"| `detoxd status --json` ({cli['runs']} runs, median) | {cli['status_median_ms']} ms "
            f"vs `python -c pass` {cli['pass_median_ms']} ms = **{cli['ratio']}×** (plain pip install) "
            f"| ≤ 3× | "
            f"{_verdict(cli['ratio'] <= STATUS_RATIO)} |")
    idle = results.get("idle_cpu")
    if idle:
        rows.append(
            f"| Daemon idle CPU, active detox of {_count(idle['names'])} names | {idle['cpu_s']} CPU s "
            f"over {idle['window_s']:g} s ({idle['percent_of_one_core']} % of a core), "
            f"RSS {idle['rss_mib']} MiB | — | — |")
    return "\n".join(rows)


def _tamper_rows(live: dict[str, Any]) -> list[str]:
    rows = []
    for key, label in (("tamper_in_place", "Tamper in place (truncate + write) → restored"),
                       ("tamper_rename", "Tamper by rename-replace → restored")):
        result = live[key]
        ok = (result["median_ms"] <= TAMPER_MEDIAN_MS and result["p95_ms"] <= TAMPER_P95_MS
              and result["torn_or_wrong"] == 0)
        rows.append(
            f"| {label} ({result['trials']} trials) | median {result['median_ms']} ms, p95 "
            f"{result['p95_ms']} ms, torn/wrong {result['torn_or_wrong']} | ≤ 20 ms, ≤ 50 ms, 0 | "
            f"{_verdict(ok)} |")
    edit = live["config_edit"]
    ok = edit["median_ms"] <= CONFIG_MEDIAN_MS and edit["not_applied"] == 0
    rows.append(
        f"| Config edit (rename) → new name in hosts ({edit['trials']} trials) | median "
        f"{edit['median_ms']} ms, p95 {edit['p95_ms']} ms, not applied {edit['not_applied']} | "
        f"median ≤ 100 ms | {_verdict(ok)} |")
    return rows


def _apply_rows(applies: list[dict[str, Any]]) -> list[str]:
    rows = []
    for result in applies:
        largest = result["entries"] >= 1_000_000
        target = f"≤ {APPLY_TIME_RATIO}× floor, ≤ {APPLY_RSS_MIB:g} MiB" if largest else "—"
        verdict = _verdict(_apply_on_target(result)) if largest else "—"
        rows.append(
            f"| Apply {_count(result['entries'])}-entry list ({result['distinct_names']} names), "
            f"fresh process | detoxd {result['detoxd_wall_s']:.3f} s / {result['detoxd_peak_rss_mib']} MiB; "
            f"floor {result['floor_wall_s']:.3f} s / {result['floor_peak_rss_mib']} MiB; "
            f"**{result['time_ratio']}× time, {result['rss_ratio']}× RSS** | {target} | {verdict} |")
    return rows


def print_findings(results: dict[str, Any]) -> None:
    for result in results.get("apply") or []:
        phases = ", ".join(f"{key} {value:.3f}" for key, value in result["detoxd_phases_s"].items())
        print(f"\nApply {_count(result['entries'])}: detoxd phases (s): {phases}")
        for line in result.get("profile_top", []):
            print(f"    {line}")
    live = results.get("live_daemon")
    if live:
        print(f"\nTampers counted by the daemon: {live['daemon_counted_tampers']}")
        for key in ("tamper_in_place", "tamper_rename", "config_edit"):
            details = live[key]
            print(f"{key}: max {details['max_ms']} ms, patterns {details['patterns']}, longest "
                  f"truncation {details['longest_truncation_ms']} ms")
            for line in details["wrong_details"]:
                print(f"    {line}")
        print("Slowest imports of `detoxd status`:")
        for line in live["status_cli"]["slowest_imports"][:6]:
            print(f"    {line}")
    for name, error in (results.get("errors") or {}).items():
        print(f"\nERROR in {name}: {error.strip().splitlines()[-1]}")


def save(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{stamp}{'-quick' if results['quick'] else ''}.json"
    text = json.dumps(results, indent=2)
    path.write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    return path


if __name__ == "__main__":
    sys.exit(main())

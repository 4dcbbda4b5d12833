"""Benchmarks 1 and 2 against a running daemon: tamper → restored, config edit → hosts updated."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from harness import USER_HOSTS, DaemonEnv, HostsWatch, block_of, median, ms, percentile

RESTORE_TIMEOUT = 5.0  # a trial not restored by then counts as wrong
STABLE_QUIET = 0.15  # the file is "final" once nothing changed for this long


@dataclass
class TrialLog:
    latencies: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    patterns: dict[str, int] = field(default_factory=dict)
    truncated_for: float = 0.0  # the longest a tamperer left the file truncated

    def summary(self, trials: int) -> dict[str, Any]:
        return {
            "trials": trials, "median_ms": ms(median(self.latencies)),
            "p95_ms": ms(percentile(self.latencies, 0.95)),
            "max_ms": ms(max(self.latencies, default=float("nan"))),
            "torn_or_wrong": len(self.wrong), "wrong_details": self.wrong[:10],
            "patterns": self.patterns, "longest_truncation_ms": ms(self.truncated_for),
        }


# ---- the tamperers: each writes ``content`` without the block; returns its pattern and how long
# the file stood truncated (open with O_TRUNC to the end of the write), which a guard must outwait ----


def write_plain(path: os.PathLike[str], content: bytes, _rng: random.Random) -> tuple[str, float]:
    truncated_at = time.perf_counter()
    with open(path, "wb") as handle:  # what `echo ... > /etc/hosts` and most editors do
        handle.write(content)
    return "plain", time.perf_counter() - truncated_at


def write_after_pause(path: os.PathLike[str], content: bytes, rng: random.Random) -> tuple[str, float]:
    truncated_at = time.perf_counter()
    with open(path, "wb") as handle:  # the truncate lands first; the write 1-20 ms later
        time.sleep(rng.uniform(0.001, 0.020))
        handle.write(content)
    return "truncate+pause", time.perf_counter() - truncated_at


def write_by_rename(path: os.PathLike[str], content: bytes, _rng: random.Random) -> tuple[str, float]:
    temporary = f"{os.fspath(path)}.tamper-tmp"
    with open(temporary, "wb") as handle:
        handle.write(content)
    os.replace(temporary, path)
    return "rename", 0.0


Tamperer = Callable[[os.PathLike[str], bytes, random.Random], tuple[str, float]]


def tamper_trials(env: DaemonEnv, trials: int, tamperers: list[Tamperer], seed: int) -> dict[str, Any]:
    """Tamper ``trials`` times at random moments; each trial the user also changes one line of
    their own, which must survive: the final file must be exactly their text plus the block."""
    rng = random.Random(seed)
    watch = HostsWatch(env.hosts)
    log = TrialLog()
    try:
        block = block_of(watch.wait_stable(STABLE_QUIET, 5.0))
        for trial in range(trials):
            time.sleep(rng.uniform(0.02, 0.6))  # random moment, also against the 1 s tick
            user_text = USER_HOSTS + f"10.9.{trial // 200}.{trial % 200 + 1} pc{trial}.lan\n".encode()
            expected = user_text + block
            tamperer = rng.choice(tamperers)
            pattern, truncated_for = tamperer(env.hosts, user_text, rng)
            written_at = time.perf_counter()
            log.truncated_for = max(log.truncated_for, truncated_for)
            log.patterns[pattern] = log.patterns.get(pattern, 0) + 1
            restored_at = watch.wait_for(expected.__eq__, RESTORE_TIMEOUT)
            final = watch.wait_stable(STABLE_QUIET, 5.0)
            if restored_at is not None:
                log.latencies.append(restored_at - written_at)
            problem = _judge(final, user_text, expected, restored_at is not None)
            if problem:
                where = f"trial {trial} ({pattern}, truncated for {ms(truncated_for)} ms)"
                log.wrong.append(f"{where}: {problem}")
                env.hosts.write_bytes(USER_HOSTS + block)  # start the next trial from a good file
                watch.wait_stable(STABLE_QUIET, 5.0)
    finally:
        watch.close()
    return log.summary(trials)


def _judge(final: bytes, user_text: bytes, expected: bytes, restored: bool) -> str | None:
    if final == expected:
        return None if restored else "correct only after the timeout"
    lost = [line for line in user_text.splitlines() if line not in final.splitlines()]
    if lost:
        return f"lost user line(s) {lost[:2]!r}"
    if b"# END detoxd block" not in final:
        return "block missing or torn in the final file"
    return f"final file differs from user text + block ({len(final)} vs {len(expected)} bytes)"


def config_trials(env: DaemonEnv, trials: int, base_blocklist: str, seed: int) -> dict[str, Any]:
    """Add one new domain per trial to blocklist.yaml (replaced by rename, like editors)."""
    rng = random.Random(seed)
    watch = HostsWatch(env.hosts)
    log = TrialLog()
    added: list[str] = []
    try:
        for trial in range(trials):
            time.sleep(rng.uniform(0.05, 0.4))
            name = f"bench{trial}-{rng.randrange(10**6)}.example.org"
            added.append(name)
            text = base_blocklist + "".join(f"  - {extra}\n" for extra in added)
            entries = (f"\n0.0.0.0 {name}\n".encode(), f"\n:: {name}\n".encode())
            env.write_blocklist(text)
            written_at = time.perf_counter()
            seen_at = watch.wait_for(partial(_holds_all, entries), RESTORE_TIMEOUT)
            if seen_at is None:
                log.wrong.append(f"trial {trial}: {name} not in the hosts file after {RESTORE_TIMEOUT}s")
            else:
                log.latencies.append(seen_at - written_at)
        log.patterns["rename"] = trials
    finally:
        watch.close()
    summary = log.summary(trials)
    summary["not_applied"] = summary.pop("torn_or_wrong")
    return summary


def _holds_all(entries: tuple[bytes, ...], content: bytes) -> bool:
    return all(entry in content for entry in entries)

#!/usr/bin/env python3
"""The peer lock's costs: `.venv/bin/python benchmarks/peerkey_bench.py [--trials N]` (about 30 s).

In process: the scrypt proof at the stored parameters, the SLIP-39 split into five shares,
reading a share, naming a mistyped word. End to end, against a real daemon in temporary
directories: `detoxd start --shares-out DIR` and `detoxd end --with-peers` (shares piped in),
each a fresh CLI process, as a user runs them. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    EXAMPLE_BLOCKLIST,
    PYTHON,
    BenchmarkError,
    DaemonEnv,
    daemon_env,
    machine_description,
    machine_line,
    median,
)

from detoxd.core import peerkey

HOLDERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Tim Berners-Lee"]
PEERS_YAML = ("detox:\n  days: 14\n  lock: peers\n  peers_needed: 3\npeers:\n"
              + "".join(f"  - {name}\n" for name in HOLDERS))
GRID_ROW = re.compile(r"(\s*\d{1,2} [a-z]+)+")


def timed(action: Callable[[], object], trials: int) -> list[float]:
    times = []
    for _ in range(trials):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return times


def card_words(path: Path) -> str:
    rows = [line.strip("| ") for line in path.read_text().splitlines() if line.startswith("|")]
    grid = [row for row in rows if GRID_ROW.fullmatch(row)]
    words = {int(n): w for row in grid for n, w in re.findall(r"(\d+) ([a-z]+)", row)}
    return " ".join(words[n] for n in sorted(words))


def in_process(trials: int) -> list[tuple[str, list[float]]]:
    secret, salt = os.urandom(16), os.urandom(16)
    share_set = peerkey.split(secret, HOLDERS, 3, identifier=1, salt=salt)
    verifier = share_set.verifier

    def read(text: str) -> object:
        try:
            return peerkey.read_share(text, number=1, verifier_set=1, needed=3, holders=HOLDERS)
        except peerkey.ShareProblem as problem:
            return problem

    words = share_set.shares[0].split()
    words[13] = "acid" if words[13] != "acid" else "acne"
    typo = " ".join(words)
    return [
        ("scrypt proof (N=2^17, r=8, p=1)", timed(lambda: peerkey.proof(secret, salt, verifier.kdf), trials)),
        ("split into 5 shares + verifier", timed(
            lambda: peerkey.split(secret, HOLDERS, 3, identifier=1, salt=salt), trials)),
        ("read and check one share", timed(lambda: read(share_set.shares[0]), trials * 10)),
        ("name the one mistyped word (word 14)", timed(lambda: read(typo), trials * 10)),
    ]


def end_to_end(trials: int) -> list[tuple[str, list[float]]]:
    starts: list[float] = []
    ends: list[float] = []
    with daemon_env("detoxd-peerkey-bench-") as env:
        env.prepare(EXAMPLE_BLOCKLIST)
        (env.config_dir / "detoxd.yaml").write_text(PEERS_YAML)
        env.start()
        for trial in range(trials):
            cards = Path(tempfile.mkdtemp(prefix="cards-", dir=env.root)) / f"t{trial}"
            began = time.perf_counter()
            result = env.cli("start", "--shares-out", str(cards))
            starts.append(time.perf_counter() - began)
            if result.returncode != 0:
                raise BenchmarkError(f"start --shares-out failed: {result.stderr}")
            shares = [card_words(path) for path in sorted(cards.glob("*.txt"))[:3]]
            began = time.perf_counter()
            ended = subprocess_run(env, shares)
            ends.append(time.perf_counter() - began)
            if ended.returncode != 0:
                raise BenchmarkError(f"end --with-peers failed: {ended.stderr}")
    return [("`detoxd start --shares-out DIR` (CLI process)", starts),
            ("`detoxd end --with-peers`, 3 shares piped (CLI process)", ends)]


def subprocess_run(env: DaemonEnv, shares: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "detoxd", "end", "--with-peers"], env=env.env,
                          input="".join(f"{share}\n" for share in shares), capture_output=True, text=True,
                          timeout=120, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    print(machine_line(machine_description(Path(tempfile.gettempdir()))))
    print("| peer lock | median | max |\n| --- | --- | --- |")
    for name, times in [*in_process(args.trials), *end_to_end(args.trials)]:
        print(f"| {name} | {median(times) * 1000:.1f} ms | {max(times) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()

"""A skip that is not on the allow-list (tests/skips-allowed.toml) fails the run.

A skipped test proves nothing, and a skip is easy to miss among a thousand dots: a missing
package, kernel option or privilege would otherwise turn into a silent gap. The hooks in
tests/conftest.py feed every skip (of a test or of a whole module) to ``SkipGate``; at the end
of the session the gate lists the skips it does not allow and the run's exit status becomes 1.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ALLOW_LIST = Path(__file__).resolve().parent / "skips-allowed.toml"


@dataclass(frozen=True)
class Allowed:
    reason: re.Pattern[str]  # searched in the skip's reason
    why: str
    covered_by: str | None  # a test that must pass in the same run for the skip to be allowed


@dataclass(frozen=True)
class Skip:
    nodeid: str
    reason: str


def load(path: Path = ALLOW_LIST) -> list[Allowed]:
    """The allow-list; a malformed entry is an error naming its number and the file."""
    entries = tomllib.loads(path.read_text()).get("allowed", [])
    allowed = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry.get("reason"), str) or not isinstance(entry.get("why"), str):
            raise ValueError(f"{path}: entry {number} needs a 'reason' pattern and a 'why'")
        covered_by = entry.get("covered_by")
        allowed.append(Allowed(re.compile(entry["reason"]), entry["why"],
                               covered_by if isinstance(covered_by, str) else None))
    return allowed


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@dataclass
class SkipGate:
    allowed: list[Allowed]
    skips: list[Skip] = field(default_factory=list)
    passed: set[str] = field(default_factory=set)

    def record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.append(Skip(report.nodeid, skip_reason(report)))
        elif isinstance(report, pytest.TestReport) and report.when == "call" and report.passed:
            self.passed.add(report.nodeid)

    def refused(self) -> list[tuple[Skip, str]]:
        """The skips not allowed, each with what is missing."""
        refused = []
        for skip in self.skips:
            entry = next((a for a in self.allowed if a.reason.search(skip.reason)), None)
            if entry is None:
                refused.append((skip, f"not on {ALLOW_LIST.name}"))
            elif entry.covered_by is not None and entry.covered_by not in self.passed:
                refused.append((skip, f"allowed only when {entry.covered_by} passes in the same run"))
        return refused

    def summary(self) -> list[str]:
        """What failed the run, one block per reason; empty when every skip is allowed."""
        refused = self.refused()
        if not refused:
            return []
        lines = [f"{len(refused)} skip(s) fail this run: a skipped test proves nothing. Fix the cause "
                 "(usually a package scripts/setup must install, or not being root), or allow the skip "
                 f"with its reason in tests/{ALLOW_LIST.name}:"]
        by_reason: dict[tuple[str, str], list[str]] = {}
        for skip, why in refused:
            by_reason.setdefault((skip.reason, why), []).append(skip.nodeid)
        for (reason, why), nodeids in by_reason.items():
            lines.append(f"- {reason!r} ({why}): {len(nodeids)} test(s)")
            lines += [f"    {nodeid}" for nodeid in nodeids[:5]]
            if len(nodeids) > 5:
                lines.append(f"    ... and {len(nodeids) - 5} more")
        return lines

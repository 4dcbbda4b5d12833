"""Reads the traces a detox leaves outside its state copies, for :mod:`detoxd.core.evidence`.

When no copy of the state is usable at start, the daemon asks here whether a detox was running:
the ledger in the evidence directory, the event journal in the state directory, systemd's
journal of the unit (only for the system's own detoxd: a daemon on scratch paths must not read
the machine's journal; best effort, ``journalctl`` may be missing), and detoxd's block in the
hosts file (read by the engine, which owns the file).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from detoxd.core import evidence
from detoxd.paths import DEFAULTS, Paths
from detoxd.service import journal, ledger

# What the daemon logs at these moments (engine.py), as systemd's journal keeps it.
UNIT_MESSAGES = (("detox started by uid", "detox_started"), ("detox finished", "detox_ended"),
                 ("detox ended early", "detox_ended"), (" running: hosts file ", "daemon_started"))
UNIT_GREP = "detox (started by uid|finished|ended early)|running: hosts file"


def verdict(paths: Paths, *, in_hosts_file: bool, damaged: bool) -> evidence.Verdict:
    """Any trace of a running detox wins; see :func:`detoxd.core.evidence.decide`."""
    verdicts = [
        evidence.last_word(f"the ledger {paths.ledger_file}", ledger.read(paths.ledger_file)),
        evidence.last_word(f"the event journal in {paths.state_dir}", lifecycle_events(paths.state_dir)),
        evidence.last_word("systemd's journal of detoxd.service", unit_journal(paths)),
    ]
    if in_hosts_file:
        verdicts.append(evidence.Verdict(evidence.Word.RUNNING, f"the hosts file {paths.hosts_file}",
                                         "it still holds detoxd's block"))
    if damaged:  # an unusable copy is a trace too
        verdicts.append(evidence.Verdict(evidence.Word.SILENT, "a damaged state file"))
    return evidence.decide(verdicts)


def lifecycle_events(state_dir: Path) -> list[dict[str, Any]]:
    events, _ = journal.read_events(journal.directory_for(state_dir))
    return [event for event in events if event["kind"] in evidence.LIFECYCLE_KINDS]


def unit_journal(paths: Paths) -> list[dict[str, Any]]:
    journalctl = shutil.which("journalctl")
    if paths.state_dir != Path(DEFAULTS["state_dir"]) or journalctl is None:
        return []
    try:
        # Fixed arguments, as a list: no shell.
        result = subprocess.run(
            [journalctl, "--unit=detoxd.service", "--output=short-iso", "--no-pager", "--quiet",
             f"--grep={UNIT_GREP}"],
            capture_output=True, text=True, timeout=20, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [{"kind": kind, "at": line.split(" ", 1)[0]}
            for line in result.stdout.splitlines() for text, kind in UNIT_MESSAGES if text in line]

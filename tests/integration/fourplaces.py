"""The four places a failure must show (issue 21): the journal, `detoxd status`, `detoxd doctor`
and the tray (its lines, from the status, through :mod:`detoxd.core.menu`).

`doctor` runs inside ``unshare -m`` with the test's hosts file and nsswitch.conf bind-mounted over
/etc, so the lookups it makes go through the real resolver to files the test made, never to the
machine's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conftest import DetoxdEnv

from detoxd.core import menu
from detoxd.protocol import Status
from detoxd.service import journal

# Fixed shell text; the files travel as positional arguments.
BIND_AND_RUN = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf && shift 2 && exec "$@"'


def can_run_doctor() -> bool:
    return shutil.which("unshare") is not None


def events(env: DetoxdEnv, kind: str) -> list[dict[str, Any]]:
    """The daemon's journal events of ``kind``, oldest first."""
    found, _ = journal.read_events(journal.directory_for(env.state_dir))
    return [event for event in found if event["kind"] == kind]


def machine_root(env: DetoxdEnv) -> Path:
    """A root for doctor's --root with a sane nsswitch.conf (made once per test)."""
    root = env.root / "machine"
    if not root.exists():
        (root / "etc").mkdir(parents=True)
        (root / "etc/nsswitch.conf").write_text("passwd: files\nhosts: files dns\n")
    return root


def doctor(env: DetoxdEnv, *options: str) -> dict[str, Any]:
    """`detoxd doctor --json`, resolving through the test's own hosts file."""
    return run_doctor(env, machine_root(env), *options)[1]


def run_doctor(env: DetoxdEnv, root: Path, *options: str,
               offline: bool = False) -> tuple[int, dict[str, Any]]:
    """`detoxd doctor --json --root ROOT` with ROOT's nsswitch.conf and the test's hosts file
    mounted over /etc: its exit code and report. ``offline``: in a network namespace of its own
    too, so that a lookup that reaches DNS goes nowhere (the control socket is a file: reachable)."""
    namespaces = ["--mount", "--net"] if offline else ["--mount"]
    result = subprocess.run(
        ["unshare", *namespaces, "--", "sh", "-c", BIND_AND_RUN, "sh", str(env.hosts),
         str(root / "etc/nsswitch.conf"), sys.executable, "-m", "detoxd", "doctor", "--json",
         "--root", str(root), *options],
        env=env.env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def doctor_check(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [check for check in report["checks"] if check["name"] == name]
    assert found, f"no {name!r} check in {[check['name'] for check in report['checks']]}"
    return found[0]  # type: ignore[no-any-return]


def tray_text(status: dict[str, Any]) -> str:
    """The tray's title and menu lines for ``status``, as the tray agent draws them."""
    view = menu.TrayView(Status.from_json(status), datetime.now(UTC))
    return "\n".join([menu.title(view), *menu.status_lines(view)])

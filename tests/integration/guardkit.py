"""What the guard's integration tests share: the block as applications see it, and the four places
a failure must show (status, the journal, doctor; the tray reads the same status).

Resolution is real: ``getent ahosts`` (getaddrinfo through NSS, as applications resolve) inside
``unshare -m`` with the test's scratch hosts file and an nsswitch.conf saying ``hosts: files``
bind-mounted over /etc. Only root in the test's own mount namespace sees them; no user
namespace is needed, so this also works inside a chroot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DetoxdEnv

NEEDS_ROOT_AND_UNSHARE = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "getent", "mount")),
    reason="needs root, unshare, mount and getent")

NULL_ADDRESSES = frozenset({"0.0.0.0", "::"})
# Fixed shell text; the files travel as positional arguments.
_BIND_AND_RESOLVE = ('mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf '
                     '&& exec getent ahosts "$3"')


def addresses(hosts: Path, name: str) -> frozenset[str]:
    """The addresses getaddrinfo gives ``name`` with ``hosts`` as /etc/hosts (only files)."""
    nsswitch = hosts.parent / f".{hosts.name}.nsswitch.conf"
    if not nsswitch.exists():
        nsswitch.write_text("hosts: files\n")
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _BIND_AND_RESOLVE, "sh",
         str(hosts), str(nsswitch), name], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode in (0, 2), result.stderr  # 2: not found
    return frozenset(line.split()[0] for line in result.stdout.splitlines() if line.strip())


def blocked(hosts: Path, name: str) -> bool:
    """``name`` resolves, and only to the null addresses (0.0.0.0, ::)."""
    found = addresses(hosts, name)
    return bool(found) and found <= NULL_ADDRESSES


def journal_events(env: DetoxdEnv, kind: str | None = None) -> list[dict[str, Any]]:
    """The daemon's event journal, oldest first (``kind``: only those)."""
    events = []
    for segment in sorted((env.state_dir / "journal").glob("journal-*.jsonl")):
        for line in segment.read_bytes().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if kind is None or event.get("kind") == kind:
                events.append(event)
    return events


def doctor_check(env: DetoxdEnv, name: str) -> dict[str, Any]:
    """One check of `detoxd doctor --json` against the test's daemon."""
    result = subprocess.run([sys.executable, "-m", "detoxd", "doctor", "--json"], env=env.env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode in (0, 1), result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    return checks[name]  # type: ignore[no-any-return]


def vm_peak_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")

"""The README's first command, `scripts/try`, as root: it sets detoxd up and runs the daemon
against the real paths (/etc/detoxd, /etc/hosts, /var/lib/detoxd, /run/detoxd), and a detox
started from a second terminal blocks a name as NSS resolves it.

Run where it cannot touch this machine: its own mount namespace with /etc, /var and /run
overlaid by scratch directories (everything it writes lands there and goes with the
namespace), its own PID namespace (the app closer sees only its own processes) and its own
network namespace (closing connections to blocked sites closes none of this machine's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from guardkit import NEEDS_ROOT_AND_UNSHARE, NULL_ADDRESSES

REPO = Path(__file__).resolve().parents[2]

# One script in the namespaces: the overlays, `scripts/try` in the background as the README
# says, then what the script tells the user to try in a second terminal.
SCRIPT = r"""
set -euo pipefail
scratch="$1" detoxd="$2"
for dir in /etc /var /run; do
    mkdir -p "$scratch/upper$dir" "$scratch/work$dir"
    layers="lowerdir=$dir,upperdir=$scratch/upper$dir,workdir=$scratch/work$dir"
    mount -t overlay detoxd-try -o "$layers" "$dir"
done
scripts/try > "$scratch/try.log" 2>&1 &
for _ in $(seq 2400); do  # until the daemon listens (or has exited)
    [ -S /run/detoxd/control.sock ] && break
    kill -0 $! 2>/dev/null || break
    sleep 0.05
done
rc=0
"$detoxd" start --days 0.002 > "$scratch/start.out" 2>&1 || rc=$?
echo "$rc" > "$scratch/start.rc"
getent ahosts twitter.com > "$scratch/getent.out" || true
"$detoxd" status --json > "$scratch/status.json" || true
"""


@NEEDS_ROOT_AND_UNSHARE
def test_scripts_try_as_root_runs_the_daemon_and_a_detox_blocks_through_nss(tmp_path: Path) -> None:
    assert os.access(REPO / "scripts/try", os.X_OK), "scripts/try is missing or not executable"
    hosts_before = Path("/etc/hosts").read_bytes()
    config_before = Path("/etc/detoxd").exists()
    detoxd = Path(sys.executable).parent / "detoxd"
    result = subprocess.run(
        ["unshare", "--mount", "--pid", "--net", "--fork", "--mount-proc", "--propagation", "private",
         "bash", "-c", SCRIPT, "try", str(tmp_path), str(detoxd)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    log = (tmp_path / "try.log").read_text() if (tmp_path / "try.log").exists() else ""
    assert result.returncode == 0, f"{result.stderr}\n--- scripts/try said:\n{log}"
    assert "running as root against the real /etc/hosts" in log, log
    assert (tmp_path / "start.rc").read_text().strip() == "0", (tmp_path / "start.out").read_text() + log
    resolved = {line.split()[0] for line in (tmp_path / "getent.out").read_text().splitlines()}
    assert resolved and resolved <= NULL_ADDRESSES, f"twitter.com resolved to {resolved}\n{log}"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "active" and status["hosts_in_sync"] is True, status
    # What it wrote went with the namespace: the config it installed, the block.
    assert (tmp_path / "upper/etc/detoxd/blocklist.yaml").exists()
    assert b"detoxd" in (tmp_path / "upper/etc/hosts").read_bytes()
    assert Path("/etc/hosts").read_bytes() == hosts_before
    assert Path("/etc/detoxd").exists() == config_before

"""Runs test_appwatch.py in its own PID namespace with its own /proc (`unshare --pid --fork
--mount-proc`): the watcher there sees only the processes those tests start, so no rule of
theirs (the slack preset, a rule for every python3.11) can signal anything else on the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root (processes of another user) and unshare (util-linux)")
def test_appwatch_in_its_own_pid_namespace() -> None:
    result = subprocess.run(
        # PID 2 is a placeholder: detoxd rightly spares PIDs 1 and 2 (init, kthreadd), so no
        # test process may get them. The pytest is PID 1 (exec), the namespace ends with it.
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
         'sleep 3600 & exec "$0" -m pytest -q -p no:cacheprovider tests/service/test_appwatch.py',
         sys.executable],
        cwd=REPO, env={**os.environ, "DETOXD_TEST_PID_NAMESPACE": "1"},
        capture_output=True, text=True, timeout=300, check=False)
    summary = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
    print(f"test_appwatch.py in its own PID namespace: {summary[0]}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary[0] and "skipped" not in summary[0], summary

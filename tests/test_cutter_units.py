"""The connection cutter's units (detoxd-cutter.path/.service), checked offline with systemd's own
tools like the daemon's in tests/test_units.py: they verify, the sandbox stays at its measured
exposure, and the service has CAP_NET_ADMIN and nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from detoxd.install import TEMPLATE_EXECUTABLE, render

from .test_units import exposure, real_executable, unit_settings

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
SERVICE = SYSTEMD_DIR / "detoxd-cutter.service"
PATH_UNIT = SYSTEMD_DIR / "detoxd-cutter.path"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def test_exposure() -> None:
    assert exposure(SERVICE) <= 2.0  # measured 2.0 with systemd 252: the host network is the point


def test_units_verify(tmp_path: Path) -> None:
    (tmp_path / SERVICE.name).write_text(render(SERVICE.read_text(), real_executable()))
    (tmp_path / PATH_UNIT.name).write_text(PATH_UNIT.read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / PATH_UNIT.name),
                             str(tmp_path / SERVICE.name)], capture_output=True, text=True,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "SYSTEMD_PAGER": ""},
                            check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_cutter_runs_once_per_request_with_only_cap_net_admin() -> None:
    service = unit_settings(SERVICE.read_text())["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{TEMPLATE_EXECUTABLE} cut"]
    assert service["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert service["ReadWritePaths"] == ["/run/detoxd/cutter"]
    assert "PrivateNetwork" not in service
    path = unit_settings(PATH_UNIT.read_text())["Path"]
    assert path["DirectoryNotEmpty"] == ["/run/detoxd/cutter/requests"]


def test_the_daemon_queues_where_the_path_unit_watches() -> None:
    from detoxd.paths import Paths
    from detoxd.service.cutter import requests_dir

    paths = Paths.resolve({}, environ={})
    watched = unit_settings(PATH_UNIT.read_text())["Path"]["DirectoryNotEmpty"][0]
    assert str(requests_dir(paths.cutter_dir)) == watched

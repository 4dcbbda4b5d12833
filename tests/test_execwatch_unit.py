"""The exec watcher's unit (detoxd-execwatch.service), checked offline with systemd's own tools
like the daemon's in tests/test_units.py: it verifies, the sandbox stays at its measured exposure,
and it holds CAP_NET_ADMIN and nothing else, with no network but netlink."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from detoxd.install import TEMPLATE_EXECUTABLE, render

from .test_units import exposure, real_executable, unit_settings

SERVICE = Path(__file__).resolve().parent.parent / "systemd" / "detoxd-execwatch.service"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def test_exposure() -> None:
    assert exposure(SERVICE) <= 1.7  # measured 1.7 with systemd 252: the host's namespaces are the point


def test_unit_verifies(tmp_path: Path) -> None:
    (tmp_path / SERVICE.name).write_text(render(SERVICE.read_text(), real_executable()))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / SERVICE.name)],
                            capture_output=True, text=True,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "SYSTEMD_PAGER": ""},
                            check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_only_cap_net_admin_and_no_network_but_netlink() -> None:
    service = unit_settings(SERVICE.read_text())["Service"]
    assert service["ExecStart"] == [f"{TEMPLATE_EXECUTABLE} execwatch"]
    assert service["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK"]
    assert service["IPAddressDeny"] == ["any"]
    for namespacing in ("PrivateNetwork", "PrivateUsers", "ProtectProc"):  # would silence the events
        assert namespacing not in service

"""The network agents' units, checked offline with systemd's own tools (as tests/test_units.py
does for the daemon's): they verify, and their sandbox exposure stays at the measured level."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from detoxd.install import render

from .test_units import exposure, real_executable, unit_settings

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
REMOTE_UNIT = SYSTEMD_DIR / "detoxd-network.service"
DNSMASQ_UNIT = SYSTEMD_DIR / "detoxd-network-dnsmasq.service"
UNBOUND_UNIT = SYSTEMD_DIR / "detoxd-network-unbound.service"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


@pytest.mark.parametrize(("unit", "at_most"), [(REMOTE_UNIT, 1.1), (DNSMASQ_UNIT, 0.7), (UNBOUND_UNIT, 0.7)])
def test_exposure(unit: Path, at_most: float) -> None:
    assert exposure(unit) <= at_most


@pytest.mark.parametrize("unit", [REMOTE_UNIT, DNSMASQ_UNIT, UNBOUND_UNIT])
def test_units_verify(unit: Path, tmp_path: Path) -> None:
    rendered = tmp_path / unit.name
    rendered.write_text(render(unit.read_text(), real_executable()))
    result = subprocess.run(["systemd-analyze", "verify", str(rendered)], capture_output=True, text=True,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "SYSTEMD_PAGER": ""},
                            check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_remote_agent_has_network_but_no_privilege_and_gets_secrets_as_credentials() -> None:
    service = unit_settings(REMOTE_UNIT.read_text())["Service"]
    assert service["ExecStart"] == ["/usr/bin/detoxd netagent --engines remote"]
    assert service["User"] == ["detoxd-network"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["LoadCredential"] == ["detoxd:/etc/detoxd"]
    assert "PrivateNetwork" not in service


@pytest.mark.parametrize(("unit", "engine", "conf_dir"), [
    (DNSMASQ_UNIT, "dnsmasq", "/etc/dnsmasq.d"), (UNBOUND_UNIT, "unbound", "/etc/unbound/unbound.conf.d")])
def test_local_agents_have_no_network_and_write_only_their_engines_conf_dir(
        unit: Path, engine: str, conf_dir: str) -> None:
    service = unit_settings(unit.read_text())["Service"]
    assert service["ExecStart"] == [f"/usr/bin/detoxd netagent --engines {engine}"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["PrivateNetwork"] == ["yes"]
    assert service["ReadWritePaths"] == [conf_dir]
    assert "SupplementaryGroups" not in service  # the unbound group may not exist

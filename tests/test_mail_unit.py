"""detoxd-mail.service, checked offline with systemd's own tools (as tests/test_network_units.py
does for the network agents): it verifies, and its sandbox exposure stays at most 2.0."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from detoxd.install import MAIL_UNIT, OPTIONAL_UNITS, Bundle, render

from .test_units import exposure, real_executable, unit_settings

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "detoxd-mail.service"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


@needs_analyze
def test_exposure() -> None:
    assert exposure(UNIT) <= 2.0


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    rendered = tmp_path / UNIT.name
    rendered.write_text(render(UNIT.read_text(), real_executable()))
    result = subprocess.run(["systemd-analyze", "verify", str(rendered)], capture_output=True, text=True,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "SYSTEMD_PAGER": ""},
                            check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_mail_agent_has_network_but_no_privilege_and_gets_the_password_as_a_credential() -> None:
    service = unit_settings(UNIT.read_text())["Service"]
    assert service["ExecStart"] == ["/usr/bin/detoxd mail-send"]
    assert service["User"] == ["detoxd-mail"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["LoadCredential"] == ["detoxd:/etc/detoxd"]
    assert "PrivateNetwork" not in service and "ReadWritePaths" not in service


def test_the_unit_and_its_user_are_shipped_and_installed() -> None:
    assert MAIL_UNIT in OPTIONAL_UNITS
    assert Bundle.load().network_units[MAIL_UNIT] == UNIT.read_text()
    assert (ROOT / "debian" / "detoxd.detoxd-mail.service").resolve() == UNIT
    assert "dh_installsystemd --name=detoxd-mail --no-enable" in (ROOT / "debian" / "rules").read_text()
    users = (ROOT / "debian" / "detoxd.sysusers").read_text()
    assert 'u detoxd-mail - "detoxd mail agent" /nonexistent /usr/sbin/nologin' in users

"""Unit states from the unit files, without D-Bus: the same answers `systemctl --root` gives."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from detoxd import doctor
from detoxd.core import doctorchecks as checks
from detoxd.unitfiles import unit_state

SERVICE = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
STATIC = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n"


def systemctl_says(root: Path, unit: str) -> str:
    systemctl = shutil.which("systemctl")
    assert systemctl is not None, "the tests need systemctl (Debian's systemd package)"
    done = subprocess.run([systemctl, f"--root={root}", "is-enabled", unit], capture_output=True, text=True,
                          timeout=30, check=False, stdin=subprocess.DEVNULL)
    return done.stdout.strip()


def enable(root: Path, unit: str, *, runtime: bool = False) -> None:
    wants = root / ("run" if runtime else "etc") / "systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("case", ["packaged and enabled", "packaged, not enabled", "static", "masked",
                                  "in /etc and enabled", "enabled for this boot only", "missing"])
def test_the_state_is_what_systemctl_reads_from_the_same_files(root: Path, case: str) -> None:
    unit = "detoxd.service"
    packaged = root / "lib/systemd/system" / unit
    if case in ("packaged and enabled", "packaged, not enabled", "masked", "enabled for this boot only"):
        packaged.write_text(SERVICE)
    if case == "packaged and enabled":
        enable(root, unit)
    if case == "static":
        packaged.write_text(STATIC)
    if case == "masked":
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    if case == "in /etc and enabled":
        (root / "etc/systemd/system" / unit).write_text(SERVICE)
        enable(root, unit)
    if case == "enabled for this boot only":
        enable(root, unit, runtime=True)
    expected = {"packaged and enabled": "enabled", "packaged, not enabled": "disabled", "static": "static",
                "masked": "masked", "in /etc and enabled": "enabled",
                "enabled for this boot only": "enabled-runtime", "missing": ""}[case]
    assert unit_state(root, unit) == expected
    assert systemctl_says(root, unit) == expected


def test_no_unit_directory_means_cannot_tell(tmp_path: Path) -> None:
    assert unit_state(tmp_path, "detoxd.service") is None


def test_doctor_asks_no_program_and_no_bus(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a normal user without a system D-Bus, `systemctl is-enabled` says nothing: doctor must not
    depend on it. With no program on PATH and no bus address at all it still knows."""
    (root / "lib/systemd/system/detoxd.service").write_text(SERVICE)
    enable(root, "detoxd.service")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    assert doctor._service_enabled(root) == "enabled"
    assert checks.check_service(doctor._service_enabled(root)).level is checks.Level.OK
    assert doctor._service_enabled(root, "detoxd-cutter.path") == ""

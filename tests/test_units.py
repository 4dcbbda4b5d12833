"""The shipped unit files and autostart entry, checked with systemd's own tools (offline)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detoxd.core import browserext, firefoxext
from detoxd.install import render, render_system_unit

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
SYSTEM_UNIT = SYSTEMD_DIR / "detoxd.service"
TRAY_UNIT = SYSTEMD_DIR / "detoxd-tray.service"
TRAY_DESKTOP = SYSTEMD_DIR / "detoxd-tray.desktop"
MAX_EXPOSURE = 1.5
# detoxd.core.policiesSPECS: where browsers read managed policies (relative to /etc).
BROWSER_POLICY_DIRS = ("firefox/policies", "opt/chrome/policies/managed", "chromium/policies/managed",
                       "brave/policies/managed", "opt/edge/policies/managed", "opt/vivaldi/policies/managed",
                       "vivaldi/policies/managed", "chromium-browser/policies/managed")
NATIVE_HOST_DIRS = ("chromium/native-messaging-hosts", "opt/chrome/native-messaging-hosts")  # core.browserext
XDG_GENERATOR = Path("/usr/lib/systemd/user-generators/systemd-xdg-autostart-generator")

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"
)


def real_executable() -> Path:
    """The detoxd entry point of the environment running the tests."""
    executable = Path(sys.executable).parent / "detoxd"
    assert executable.is_file(), "install the package (pip install -e .) to get the entry point"
    return executable


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values; units repeat keys, so keep every value in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def verify(unit: Path, *, user: bool, runtime_dir: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` runs a test-mode manager; the user one needs a runtime dir.
    Its unit path is the unit's own directory plus systemd's targets and slices only, so the
    result is about this unit, not about services installed on the machine (two installed
    notification daemons that claim the same bus name make a full verify fail)."""
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    scope_dir = "user" if user else "system"
    targets = runtime_dir / "targets"
    targets.mkdir(exist_ok=True)
    for vendor in (Path("/usr/lib/systemd") / scope_dir, Path("/lib/systemd") / scope_dir):
        for path in sorted(vendor.glob("*")):
            if path.suffix in (".target", ".slice") and not (targets / path.name).exists():
                (targets / path.name).symlink_to(path)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "SYSTEMD_PAGER": "",
           "SYSTEMD_UNIT_PATH": f"{unit.parent}:{targets}"}
    scope = ["--user"] if user else []
    return subprocess.run(
        ["systemd-analyze", *scope, "verify", str(unit)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_system_unit_verifies_with_the_real_executable(tmp_path: Path) -> None:
    unit = write(
        tmp_path / "units",
        "detoxd.service",
        render_system_unit(SYSTEM_UNIT.read_text(), real_executable()),
    )
    result = verify(unit, user=False, runtime_dir=tmp_path / "runtime")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # verify only warns (exit 0) about unknown keys


def test_tray_unit_verifies_as_a_user_unit(tmp_path: Path) -> None:
    unit = write(
        tmp_path / "units", "detoxd-tray.service", render(TRAY_UNIT.read_text(), real_executable())
    )
    result = verify(unit, user=True, runtime_dir=tmp_path / "runtime")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_verify_catches_what_the_checks_above_rely_on(tmp_path: Path) -> None:
    """Control: a typo and a missing executable do show up, so the empty stderr means something."""
    broken = render(SYSTEM_UNIT.read_text(), Path("/nonexistent/detoxd"))
    unit = write(
        tmp_path / "units", "detoxd.service", broken.replace("ProtectClock=", "ProtectClok=")
    )
    result = verify(unit, user=False, runtime_dir=tmp_path / "runtime")
    assert "Unknown key 'ProtectClok'" in result.stderr
    assert "Command /nonexistent/detoxd is not executable" in result.stderr


def test_system_unit_exposure_is_at_most_target() -> None:
    assert exposure(SYSTEM_UNIT) <= MAX_EXPOSURE


def test_exposure_stays_low_when_installed_in_a_home_directory(tmp_path: Path) -> None:
    home_venv = Path("/root/.local/share/pipx/venvs/detoxd")
    text = render_system_unit(SYSTEM_UNIT.read_text(), home_venv / "bin/detoxd", [home_venv])
    assert "ProtectHome=tmpfs\n" in text
    assert f"BindReadOnlyPaths={home_venv}\n" in text
    unit = write(tmp_path, "detoxd.service", text)
    assert exposure(unit) <= MAX_EXPOSURE


def test_system_unit_contract() -> None:
    service = unit_settings(SYSTEM_UNIT.read_text())["Service"]
    assert service["Type"] == ["notify"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["Restart"] == ["always"]
    assert service["ExecStart"] == ["/usr/bin/detoxd run"]
    assert service["ExecReload"] == ["/usr/bin/detoxd reload"]
    for directory in ("StateDirectory", "RuntimeDirectory"):
        assert service[directory] == ["detoxd"]
    assert service["ConfigurationDirectory"] == ["detoxd", " ".join(BROWSER_POLICY_DIRS),
                                                 " ".join(NATIVE_HOST_DIRS)]
    assert service["ProtectSystem"] == ["strict"]
    assert tuple(d.removeprefix("etc/") for _, d in browserext.CHROMIUM_HOST_DIRS) == NATIVE_HOST_DIRS
    assert service["ReadWritePaths"] == ["/etc/hosts", " ".join(f"/etc/{d}" for d in BROWSER_POLICY_DIRS),
                                         " ".join(f"/etc/{d}" for d in NATIVE_HOST_DIRS),
                                         f"-/{firefoxext.HOST_DIR}"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert service["MemoryDenyWriteExecute"] == ["yes"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert "@system-service" in service["SystemCallFilter"]


def test_capabilities_are_minimal_and_each_is_explained() -> None:
    text = SYSTEM_UNIT.read_text()
    (bounding,) = unit_settings(text)["Service"]["CapabilityBoundingSet"]
    assert set(bounding.split()) == {"CAP_KILL", "CAP_SYS_PTRACE", "CAP_LINUX_IMMUTABLE"}
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for capability in bounding.split():
        assert re.search(rf"#\s+{capability}:\s+(app blocker|hosts file)", comments), capability


def test_app_blocker_can_see_other_users_processes() -> None:
    """hidepid= (ProtectProc) and ProcSubset=pid would hide processes or boot_id from the daemon."""
    service = unit_settings(SYSTEM_UNIT.read_text())["Service"]
    assert service.get("ProtectProc", ["default"]) in (["default"], ["ptraceable"])
    assert service.get("ProcSubset", ["all"]) == ["all"]


def test_tray_unit_contract() -> None:
    settings = unit_settings(TRAY_UNIT.read_text())
    assert settings["Unit"]["PartOf"] == ["graphical-session.target"]
    assert settings["Install"]["WantedBy"] == ["graphical-session.target"]
    assert settings["Service"]["ExecStart"] == ["/usr/bin/detoxd tray"]
    # always: an agent killed during a detox comes back and silences notifications again.
    assert settings["Service"]["Restart"] == ["always"]


def test_rendering_replaces_the_executable_everywhere() -> None:
    executable = Path("/opt/detoxd/venv/bin/detoxd")
    for template in (SYSTEM_UNIT, TRAY_UNIT, TRAY_DESKTOP):
        rendered = render(template.read_text(), executable)
        exec_lines = [line for line in rendered.splitlines() if line.startswith("Exec")]
        assert exec_lines
        assert all(f"={executable} " in line for line in exec_lines), exec_lines
        assert "/usr/bin/detoxd" not in "\n".join(exec_lines)


def test_autostart_entry_is_skipped_where_systemd_runs_the_user_unit(tmp_path: Path) -> None:
    """Run systemd's XDG autostart generator on our entry and on a control copy without the
    skip key: only the control may become a unit, so the tray never starts twice."""
    if not XDG_GENERATOR.exists():
        pytest.skip("systemd-xdg-autostart-generator is not installed")
    autostart = tmp_path / "xdg" / "autostart"
    entry = render(TRAY_DESKTOP.read_text(), real_executable())
    write(autostart, "detoxd-tray.desktop", entry)
    control = "".join(line for line in entry.splitlines(True) if not line.startswith("X-systemd"))
    write(autostart, "control.desktop", control)
    output = tmp_path / "generated"
    output.mkdir()
    env = {
        **os.environ,
        "XDG_CONFIG_DIRS": str(tmp_path / "xdg"),
        "XDG_CONFIG_HOME": str(tmp_path / "home-config"),
    }
    subprocess.run([str(XDG_GENERATOR), output, output, output], env=env, check=True)
    generated = sorted(path.name for path in output.glob("*.service"))
    assert generated == ["app-control@autostart.service"]


def test_autostart_entry_keys() -> None:
    entry = unit_settings(TRAY_DESKTOP.read_text())["Desktop Entry"]
    assert entry["Exec"] == ["/usr/bin/detoxd tray"]
    assert entry["X-GNOME-HiddenUnderSystemd"] == ["true"]  # gnome-session's equivalent
    assert entry.get("Hidden", ["false"]) == ["false"]  # Hidden=true would disable it everywhere

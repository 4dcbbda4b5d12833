"""`detoxd install` / `uninstall` from the command line, into a scratch root (systemd is never booted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import USER_HOSTS, DetoxdEnv, have

pytestmark = pytest.mark.skipif(not have("systemctl"), reason="systemctl (Debian package systemd) missing")


def is_enabled(root: Path, unit: str) -> str:
    return subprocess.run(["systemctl", f"--root={root}", "is-enabled", unit],
                          capture_output=True, text=True).stdout.strip()


def test_install_into_a_scratch_root_is_idempotent(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = detoxd_env.cli("install", "--root", str(root))
    assert first.returncode == 0, first.stderr
    assert is_enabled(root, "detoxd.service") == "enabled"
    unit = (root / "etc/systemd/system/detoxd.service").read_text()
    executable = Path(sys.executable).parent / "detoxd"
    assert f"ExecStart={executable.resolve()} run" in unit
    assert (root / "etc/detoxd/blocklist.yaml").exists()
    second = detoxd_env.cli("install", "--root", str(root))
    assert second.returncode == 0
    assert "nothing changed" in second.stdout


def test_install_never_overwrites_the_users_config(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/detoxd").mkdir(parents=True)
    (root / "etc/detoxd/blocklist.yaml").write_text("domains: [mine.example]\n")
    assert detoxd_env.cli("install", "--root", str(root)).returncode == 0
    assert (root / "etc/detoxd/blocklist.yaml").read_text() == "domains: [mine.example]\n"


def test_uninstall_is_refused_during_a_locked_detox(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert detoxd_env.cli("install", "--root", str(root)).returncode == 0
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    result = detoxd_env.cli("uninstall", "--root", str(root))
    assert result.returncode == 3
    assert "locked" in result.stderr
    assert (root / "etc/systemd/system/detoxd.service").exists()
    # Also with the daemon stopped: the state file still says locked.
    detoxd_env.stop_daemon()
    offline = detoxd_env.cli("uninstall", "--root", str(root))
    assert offline.returncode == 3
    assert "uninstall refused: a locked detox is running (14 days left)" in offline.stderr


def test_uninstall_ends_an_unlocked_detox_and_restores_hosts(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert detoxd_env.cli("install", "--root", str(root)).returncode == 0
    detoxd_env.write_main("detox:\n  lock: false\n")
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    assert detoxd_env.hosts.read_bytes() != USER_HOSTS
    detoxd_env.stop_daemon()  # as `systemctl stop` would; the block stays
    result = detoxd_env.cli("uninstall", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert detoxd_env.hosts.read_bytes() == USER_HOSTS
    assert not (root / "etc/systemd/system/detoxd.service").exists()
    assert (root / "etc/detoxd/detoxd.yaml").exists()  # config kept without --purge
    assert is_enabled(root, "detoxd.service") != "enabled"
    detoxd_env.start_daemon()  # a later reinstall does not resume the ended detox
    assert detoxd_env.status()["state"] == "idle"
    assert detoxd_env.hosts.read_bytes() == USER_HOSTS


def test_a_stop_during_a_locked_detox_is_a_warning_and_status_says_the_block_is_unguarded(
        detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    assert detoxd_env.stop_daemon() == 0  # as `systemctl stop` does: SIGTERM
    log = detoxd_env.log()
    assert "WARNING" in log and "stopping during a locked detox" in log, log[-2000:]
    assert detoxd_env.hosts.read_bytes() != USER_HOSTS  # the block stays
    status = detoxd_env.cli("status")
    assert status.returncode == 4
    assert "nothing restores it" in status.stderr


def test_status_of_a_demo_daemon_suggests_start_without_sudo(detoxd_env: DetoxdEnv) -> None:
    """scripts/try runs the daemon on its own socket, without root: no sudo in the hint there."""
    detoxd_env.start_daemon()
    result = detoxd_env.cli("status")
    assert result.returncode == 0, result.stderr
    assert "Start one with `detoxd start`." in result.stdout

"""`detoxd doctor` against a real daemon, on purpose-broken setups.

The machine's files the doctor reads live under a temporary root (``--root``); the hosts file
and nsswitch.conf are also bind-mounted over /etc inside ``unshare -m``, so that getaddrinfo,
the real system resolver, answers from them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DetoxdEnv
from fourplaces import BIND_AND_RUN, run_doctor

from detoxd.service.targets.browser import BrowserTarget

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "systemctl")),
    reason="needs root, unshare and systemctl")

UNIT = "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    """A root where detoxd's service is installed and enabled, with a sane nsswitch.conf."""
    root = tmp_path / "machine"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/detoxd.service").write_text(UNIT)
    subprocess.run(["systemctl", f"--root={root}", "enable", "detoxd.service"], check=True,
                   capture_output=True)
    (root / "etc/nsswitch.conf").write_text("passwd: files\nhosts: files dns\n")
    return root


def doctor(env: DetoxdEnv, root: Path, *options: str) -> tuple[int, dict[str, Any]]:
    return run_doctor(env, root, *options)


def levels(report: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["level"] for check in report["checks"]}


def failures(report: dict[str, Any]) -> set[str]:
    failed = {check["name"] for check in report["checks"] if check["level"] == "FAIL"}
    assert all(check["fix"] for check in report["checks"] if check["level"] == "FAIL")
    return failed


@pytest.fixture
def detox(detoxd_env: DetoxdEnv) -> DetoxdEnv:
    detoxd_env.start_daemon()
    result = detoxd_env.cli("start", "--days", "1")
    assert result.returncode == 0, result.stderr
    return detoxd_env


def test_a_working_detox_is_effective(detox: DetoxdEnv, machine: Path) -> None:
    code, report = doctor(detox, machine)
    assert code == 0 and report["effective"] is True, report
    assert levels(report)["resolution"] == "ok"
    human = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", BIND_AND_RUN, "sh", str(detox.hosts),
         str(machine / "etc/nsswitch.conf"), sys.executable, "-m", "detoxd", "doctor",
         "--root", str(machine)],
        env=detox.env, capture_output=True, text=True, timeout=120, check=False)
    assert human.returncode == 0 and human.stdout.rstrip().endswith("The detox is effective.")


def test_nsswitch_asking_dns_only_never_reads_the_block(detox: DetoxdEnv, machine: Path) -> None:
    (machine / "etc/nsswitch.conf").write_text("hosts: dns\n")
    # Offline (a network namespace of its own): DNS answers nothing, so nothing escapes, and
    # no lookup leaves the machine; a name that does not resolve is a warning, not an escape.
    code, report = run_doctor(detox, machine, offline=True)
    assert code == 1 and failures(report) == {"nsswitch"}
    assert levels(report)["resolution"] == "warn"


def test_nsswitch_asking_dns_before_files(detox: DetoxdEnv, machine: Path) -> None:
    (machine / "etc/nsswitch.conf").write_text("hosts: dns files\n")
    code, report = doctor(detox, machine)
    # Whether real DNS answers these names depends on this machine's network: only the order is certain.
    assert code == 1 and "nsswitch" in failures(report)


def test_resolved_not_reading_the_hosts_file(detox: DetoxdEnv, machine: Path) -> None:
    (machine / "run/systemd/resolve").mkdir(parents=True)
    (machine / "etc/systemd/resolved.conf").write_text("[Resolve]\nReadEtcHosts=no\n")
    code, report = doctor(detox, machine)
    assert code == 1 and failures(report) == {"systemd-resolved"}


def test_missing_browser_policy_then_installed(detox: DetoxdEnv, machine: Path) -> None:
    (machine / "usr/lib/firefox-esr").mkdir(parents=True)
    code, report = doctor(detox, machine)
    assert code == 1 and failures(report) == {"browser policies: firefox", "browser extension: firefox"}
    # What the daemon does when the block is applied: the policies and Firefox's extension.
    BrowserTarget(detox.hosts, detox.state_dir, policy_root=machine).apply(frozenset({"twitter.com"}))
    code, report = doctor(detox, machine)
    assert code == 0 and levels(report)["browser policies: firefox"] == "ok"
    assert levels(report)["browser extension: firefox"] == "ok"


def test_service_not_enabled(detox: DetoxdEnv, machine: Path) -> None:
    subprocess.run(["systemctl", f"--root={machine}", "disable", "detoxd.service"], check=True,
                   capture_output=True)
    code, report = doctor(detox, machine)
    assert code == 1 and failures(report) == {"service"}


def test_no_detox_running(detoxd_env: DetoxdEnv, machine: Path) -> None:
    detoxd_env.start_daemon()
    code, report = doctor(detoxd_env, machine)
    assert code == 1 and failures(report) == {"detox"}


def test_daemon_not_running(detox: DetoxdEnv, machine: Path) -> None:
    detox.stop_daemon()
    code, report = doctor(detox, machine)
    assert code == 1 and failures(report) == {"daemon"}
    assert levels(report)["detox"] == "skip"

"""Issue 21, bullet 5: time you cannot set forward, against a real daemon (docs/time.md).

The attack: stop detoxd, set the clock 15 days forward, boot. Before, the detox ended as
"finished". The daemon's wall clock is moved by libfaketime (the real thing); the reboot is the
state file's checkpoint rewritten to another boot id, as a real reboot leaves it (a test cannot
reboot the machine); the kernel's word on the clock comes from a file standing in for adjtimex
(``DETOXD_TIME_SYNC_FILE``: this machine's own NTP state must not decide the test).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from conftest import USER_HOSTS, DetoxdEnv, wait_for
from fourplaces import can_run_doctor, doctor, doctor_check, events, tray_text
from test_daemon import FAKETIME_LIBRARY, blocked, fake_wall_clock

pytestmark = pytest.mark.skipif(not FAKETIME_LIBRARY.exists(),
                                reason="libfaketime (Debian package faketime) is missing")
UNSYNCHRONISED = {"maxerror_us": 16_000_000, "status": 0x40}  # what `date -s` leaves
SYNCHRONISED = {"maxerror_us": 12_000, "status": 0}


def kernel_says(path: Path, answer: dict[str, int]) -> None:
    path.write_text(json.dumps(answer))


def detox_days() -> int:
    """Longer than this machine's uptime, which a reboot credits whatever the clock says."""
    uptime_days = float(Path("/proc/uptime").read_text().split()[0]) / 86400
    if uptime_days > 300:
        pytest.skip("this machine has been up for over 300 days: a detox cannot outlast its uptime")
    return 14 + math.ceil(uptime_days)


def reboot_while_stopped(env: DetoxdEnv) -> None:
    """What a reboot leaves in the state: a checkpoint of another boot (and no /run copy)."""
    for path in (env.state_dir / "state.json", env.state_dir / "state.backup.json",
                 env.state_dir.with_name("state-evidence") / "detox-state.json"):
        state = json.loads(path.read_text())
        state["checkpoint"]["boot_id"] = "an-earlier-boot"
        path.write_text(json.dumps(state))
    (env.socket.parent / "detox-state.json").unlink()


def test_a_clock_set_forward_while_stopped_holds_the_detox_until_ntp_confirms(detoxd_env: DetoxdEnv) -> None:
    days = detox_days()
    stamp = fake_wall_clock(detoxd_env)
    sync = detoxd_env.root / "adjtimex.json"
    kernel_says(sync, UNSYNCHRONISED)
    detoxd_env.extra_env["DETOXD_TIME_SYNC_FILE"] = str(sync)
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start", "--days", str(days)).returncode == 0
    detoxd_env.stop_daemon()

    stamp.write_text(f"+{days + 1}d\n")  # the attack: set forward, then boot
    reboot_while_stopped(detoxd_env)
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["state"] == "active" and status["days_left"] == days
    assert blocked(detoxd_env.hosts, "twitter.com")
    held = status["time_held"]
    assert held["seconds"] > days * 86400 and "no trustworthy source confirms the clock" in held["reason"]
    assert "maximum error 16 s, STA_UNSYNC" in held["reason"]
    assert any("held, not credited yet" in warning for warning in status["warnings"])
    assert "held, not credited yet" in detoxd_env.cli("status").stdout
    assert "days held: the clock is not confirmed" in tray_text(status)
    assert events(detoxd_env, "time_held")[0]["seconds"] == held["seconds"]
    if can_run_doctor() and os.geteuid() == 0:
        check = doctor_check(doctor(detoxd_env), "detox clock")
        assert check["level"] == "warn" and "held, not credited" in check["message"]

    # NTP corrects the clock and confirms it: only the minutes that really passed count.
    stamp.write_text("+0d\n")
    kernel_says(sync, SYNCHRONISED)
    status = wait_for(lambda: (s := detoxd_env.status())["time_held"] is None and s, what="the release")
    assert status["state"] == "active" and status["days_left"] == days
    assert events(detoxd_env, "time_released")


def test_a_real_power_off_ends_the_detox_once_the_clock_is_confirmed(detoxd_env: DetoxdEnv) -> None:
    days = detox_days()
    stamp = fake_wall_clock(detoxd_env)
    sync = detoxd_env.root / "adjtimex.json"
    kernel_says(sync, UNSYNCHRONISED)  # booted before the network came up
    detoxd_env.extra_env["DETOXD_TIME_SYNC_FILE"] = str(sync)
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start", "--days", str(days)).returncode == 0
    detoxd_env.stop_daemon()
    stamp.write_text(f"+{days + 1}d\n")  # off that long, really
    reboot_while_stopped(detoxd_env)
    detoxd_env.start_daemon()
    assert detoxd_env.status()["state"] == "active"
    kernel_says(sync, SYNCHRONISED)  # NTP: the clock was right
    wait_for(lambda: detoxd_env.status()["state"] == "idle", what="the end")
    assert detoxd_env.hosts.read_bytes() == USER_HOSTS
    assert events(detoxd_env, "detox_ended")[-1]["reason"] == "finished"

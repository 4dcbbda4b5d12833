"""Issue 21, bullet 2 (the stale status): a real daemon whose main loop is stuck while its control
socket still answers says so, in status, in `detoxd status`, in doctor, in the journal and in the
tray, and never says the hosts file is in sync.

The stuck loop: the daemon's main thread alone is held in a ptrace-stop (see ``threadstop``), a
stand-in for a loop hanging on a FIFO or a dead file system (found in the issue: "in sync, no
problems" from a 42 s old snapshot). The control threads keep running, as they did there.
"""

from __future__ import annotations

import os

import pytest
from conftest import DetoxdEnv, wait_for
from fourplaces import can_run_doctor, doctor_check, events, machine_root, run_doctor, tray_text
from threadstop import daemon_answers, main_thread_stopped

from detoxd.client import ControlClient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ptrace and the doctor's mounts need root")


def test_a_stuck_main_loop_makes_every_status_stale_until_it_runs_again(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    assert detoxd_env.process is not None
    with ControlClient(detoxd_env.socket).subscribe(timeout=30) as tray_events:
        first = next(tray_events)["status"]
        assert first["stale"] is False and first["hosts_in_sync"] is True
        with main_thread_stopped(detoxd_env.process.pid, daemon_answers(detoxd_env.socket)):
            status = wait_for(lambda: (s := detoxd_env.status())["stale"] and s, timeout=30,
                              what="a stale status")
            assert status["hosts_in_sync"] is False
            assert "main loop has not gone round" in status["problems"][0]
            text = detoxd_env.cli("status").stdout
            assert "NOT CONFIRMED: this status is" in text and "in sync)" not in text
            # The tray's subscription gets the status again every few seconds: stale now.
            heard = next(event["status"] for event in tray_events if event["status"]["stale"])
            assert "the daemon is not responding" in tray_text(heard)
            if can_run_doctor():
                check = doctor_check(run_doctor(detoxd_env, machine_root(detoxd_env))[1], "daemon")
                assert check["level"] == "FAIL" and "main loop is stuck" in check["message"]
            assert wait_for(lambda: events(detoxd_env, "status_stale"), what="the journal event")
        status = wait_for(lambda: (s := detoxd_env.status())["stale"] is False and s, what="fresh")
        assert status["hosts_in_sync"] is True and status["problems"] == []

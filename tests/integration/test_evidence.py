"""Issue 21, bullet 6: the evidence of a detox survives, against a real daemon.

Before, `rm -rf` of the state directory while detoxd ran left the event journal writing into the
removed file (events lost, nothing said), and with the state, its /run copy and the block removed
while detoxd was stopped, it started idle without a word. Now the journal directory comes back
with a `state_lost` event; a copy of the state and a ledger of detoxes in the evidence directory
(/var/log/detoxd; here beside the scratch state directory) resume the detox or fail closed; and
where no trace tells, the start says loudly that a detox's traces vanished. Each is checked in
the journal, `detoxd status`, `detoxd doctor` and the tray's lines.
"""

from __future__ import annotations

import os
import shutil

from conftest import USER_HOSTS, DetoxdEnv, wait_for
from fourplaces import can_run_doctor, doctor, doctor_check, events, tray_text
from test_daemon import blocked

from detoxd.paths import Paths


def paths_of(env: DetoxdEnv) -> Paths:
    return Paths(env.config_dir, env.state_dir, env.hosts, env.socket)


def doctor_says(env: DetoxdEnv, level: str, text: str) -> None:
    if can_run_doctor() and os.geteuid() == 0:
        check = doctor_check(doctor(env), "detox")
        assert check["level"] == level and text in check["message"], check


def wipe_while_stopped(env: DetoxdEnv, *, evidence_copy: bool) -> None:
    """What `rm -rf /var/lib/detoxd` and a reboot (the /run copy) leave; the block removed too."""
    paths = paths_of(env)
    shutil.rmtree(env.state_dir)
    paths.runtime_state_file.unlink()
    if evidence_copy:
        paths.evidence_state_file.unlink()
    env.hosts.write_bytes(USER_HOSTS)


def test_the_state_directory_removed_while_running_comes_back_and_says_so(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    ends_at = detoxd_env.status()["ends_at"]
    shutil.rmtree(detoxd_env.state_dir)
    # Seen at the loop's next tick: at most QUIET_SECONDS (15 s) when nothing else is due.
    lost = wait_for(lambda: events(detoxd_env, "state_lost"), timeout=45, what="state_lost in a new journal")
    assert lost[0]["reason"] == "state directory removed while running"
    assert [event["kind"] for event in events(detoxd_env, "journal_lost")] == ["journal_lost"]
    assert (detoxd_env.state_dir / "state.json").exists()
    status = detoxd_env.status()
    assert status["ends_at"] == ends_at and "was removed while detoxd ran" in status["state_error"]
    assert "was removed while detoxd ran" in detoxd_env.cli("status").stdout
    assert "Detox state: the state directory" in tray_text(status)
    doctor_says(detoxd_env, "warn", "was removed while detoxd ran")
    assert blocked(detoxd_env.hosts, "twitter.com")


def test_with_every_copy_gone_the_evidence_resumes_or_fails_closed_or_speaks(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    ends_at = detoxd_env.status()["ends_at"]

    # 1. The copy in the evidence directory: the same detox, the same end.
    detoxd_env.stop_daemon()
    wipe_while_stopped(detoxd_env, evidence_copy=False)
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert (status["state"], status["ends_at"]) == ("active", ends_at)
    assert "state.json was gone; resumed from a copy" in status["state_error"]
    assert blocked(detoxd_env.hosts, "twitter.com")
    assert events(detoxd_env, "state_lost")
    assert "Detox state:" in tray_text(status)
    doctor_says(detoxd_env, "warn", "resumed from a copy")

    # 2. That copy gone too: the ledger says a detox was running, so it fails closed.
    detoxd_env.stop_daemon()
    wipe_while_stopped(detoxd_env, evidence_copy=True)
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["state"] == "active" and status["locked"] is True and status["days_left"] == 14
    assert "the detox state was lost" in status["state_error"] and "ledger" in status["state_error"]
    assert blocked(detoxd_env.hosts, "twitter.com")
    assert [event.get("reason") for event in events(detoxd_env, "detox_started")] == ["failed closed"]
    doctor_says(detoxd_env, "warn", "the detox state was lost")

    # 3. And the ledger's word on it erased: nothing tells, so the start says so, loudly.
    detoxd_env.stop_daemon()
    wipe_while_stopped(detoxd_env, evidence_copy=True)
    ledger = paths_of(detoxd_env).ledger_file
    ledger.write_text("".join(line + "\n" for line in ledger.read_text().splitlines()
                              if '"detox_' not in line))
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["state"] == "idle"
    assert any("its traces vanished" in problem for problem in status["problems"])
    assert "its traces vanished" in detoxd_env.cli("status").stdout
    assert "Problem: every copy of the detox state is gone" in tray_text(status)
    assert "its traces vanished" in events(detoxd_env, "state_lost")[-1]["reason"]
    doctor_says(detoxd_env, "FAIL", "its traces vanished")

"""`detoxd start --at`, against a real `detoxd run`: the planned detox begins by itself after a
daemon restart, and applications (getaddrinfo through NSS, in a mount namespace of the test's own
with its scratch hosts file bind-mounted) see the block appear; a clock set forward does not bring
it nearer. The wall clock is the daemon's own, moved by libfaketime (boot time stays real); the
kernel's word on the clock comes from a stand-in file (see test_time_trust.py).
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import DetoxdEnv, wait_for
from guardkit import NEEDS_ROOT_AND_UNSHARE, blocked, journal_events
from test_daemon import FAKETIME_LIBRARY, fake_wall_clock
from test_status_schema import schema_errors

from detoxd.service.scheduler import local_zone

pytestmark = pytest.mark.skipif(not FAKETIME_LIBRARY.exists(),
                                reason="libfaketime (Debian package faketime) is missing")
SYNCHRONISED = '{"maxerror_us": 12000, "status": 0}'


def local_text(moment: datetime) -> str:
    return moment.astimezone(local_zone()).strftime("%Y-%m-%d %H:%M")


@NEEDS_ROOT_AND_UNSHARE
def test_a_planned_start_begins_by_itself_after_a_daemon_restart(detoxd_env: DetoxdEnv) -> None:
    stamp = fake_wall_clock(detoxd_env)
    # The daemon's clock 20 s before a whole minute, so that a start at that minute is near.
    real = time.time()
    target = math.ceil((real + 90) / 60) * 60
    stamp.write_text(f"+{target - 20 - real:.3f}\n")
    detoxd_env.start_daemon()
    at = local_text(datetime.fromtimestamp(target).astimezone())
    planned = detoxd_env.cli("start", "--at", at, "--days", "3")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.startswith("Detox planned of 3 days: begins ")
    status = detoxd_env.status()
    assert status["state"] == "scheduled" and status["cancellable"] is False  # less than a day ahead
    assert datetime.fromisoformat(status["starts_at"]).timestamp() == target
    assert not blocked(detoxd_env.hosts, "twitter.com")
    cancel = detoxd_env.cli("cancel")
    assert cancel.returncode == 3 and "cannot be cancelled" in cancel.stderr
    assert journal_events(detoxd_env, "detox_planned")[0]["days"] == 3

    detoxd_env.stop_daemon()  # the wait goes on while detoxd is stopped (boot time)
    detoxd_env.start_daemon()
    started = wait_for(lambda: journal_events(detoxd_env, "detox_started"), timeout=60,
                       what="the planned detox to begin")
    assert started[0]["reason"] == "planned"
    assert wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="NSS to see the block")
    status = detoxd_env.status()
    assert status["state"] == "active" and status["starts_at"] is None
    assert datetime.fromisoformat(status["started_at"]).timestamp() == pytest.approx(target, abs=2)


def test_a_clock_set_forward_does_not_bring_the_start_nearer(detoxd_env: DetoxdEnv) -> None:
    stamp = fake_wall_clock(detoxd_env)
    detoxd_env.start_daemon()
    at = datetime.now().astimezone() + timedelta(days=2, minutes=2)
    assert detoxd_env.cli("start", "--at", local_text(at)).returncode == 0
    detoxd_env.stop_daemon()
    stamp.write_text("+3d\n")  # set forward while stopped, in the same boot
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["state"] == "scheduled" and status["cancellable"] is True
    assert schema_errors(status) == [[]]  # the contract: detoxd/data/status.schema.json
    jumps = wait_for(lambda: journal_events(detoxd_env, "clock_jump"), what="the jump journalled")
    assert jumps[0]["waiting"] is True and jumps[0]["seconds"] >= 3 * 86400 - 60
    # Still two real days away: shown against the daemon's (wrong) clock, three days later.
    begins = datetime.fromisoformat(status["starts_at"])
    assert begins - at > timedelta(days=2, hours=23)
    assert detoxd_env.cli("cancel").returncode == 0
    assert detoxd_env.status()["state"] == "idle"


def test_after_a_reboot_the_confirmed_downtime_starts_it(detoxd_env: DetoxdEnv) -> None:
    stamp = fake_wall_clock(detoxd_env)
    sync = detoxd_env.root / "adjtimex.json"
    sync.write_text(SYNCHRONISED)
    detoxd_env.extra_env["DETOXD_TIME_SYNC_FILE"] = str(sync)
    detoxd_env.start_daemon()
    at = datetime.now().astimezone() + timedelta(days=2)
    assert detoxd_env.cli("start", "--at", local_text(at)).returncode == 0
    detoxd_env.stop_daemon()
    stamp.write_text("+3d\n")  # off for three days, and NTP confirms the clock after the boot
    for path in (detoxd_env.state_dir / "state.json", detoxd_env.state_dir / "state.backup.json"):
        if path.exists():
            state = json.loads(path.read_text())
            state["planned"]["checkpoint"]["boot_id"] = "an-earlier-boot"
            path.write_text(json.dumps(state))
    (detoxd_env.socket.parent / "detox-state.json").unlink(missing_ok=True)
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["state"] == "active"
    started = journal_events(detoxd_env, "detox_started")[-1]
    assert started["reason"] == "planned" and started["late_seconds"] >= 86400 - 120


def test_a_peer_locked_detox_is_planned_with_its_cards_and_a_refused_plan_keeps_none(
        detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    from test_peerlock import PEERS_CONFIG

    detoxd_env.write_main(PEERS_CONFIG)
    detoxd_env.start_daemon()
    past = detoxd_env.cli("start", "--at", "2020-01-01 09:00", "--shares-out", str(tmp_path / "old"))
    assert past.returncode == 2 and "in the past" in past.stderr
    assert not list((tmp_path / "old").glob("*.txt"))  # cards of a plan that was refused: removed
    at = local_text(datetime.now().astimezone() + timedelta(days=3))
    planned = detoxd_env.cli("start", "--at", at, "--shares-out", str(tmp_path / "cards"))
    assert planned.returncode == 0, planned.stderr
    assert "3 of them end the detox early" in planned.stdout
    assert len(list((tmp_path / "cards").glob("*.txt"))) == 5
    assert detoxd_env.status()["state"] == "scheduled"
    assert journal_events(detoxd_env, "detox_planned")[0]["peer_lock"] is True


def test_detoxd_sessions_and_its_ics_follow_a_planned_start(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.write_main("detox: {days: 14, lock: false}\nme: {name: Robert Craven}\n"
                          "peers: [Ada, Grace, Alan, Kate, Tim]\nsessions:\n  first: day 2 18:00\n"
                          "  timezone: UTC\n  repeat: weekly\n")
    detoxd_env.start_daemon()
    begins = datetime.now().astimezone() + timedelta(days=3)
    assert detoxd_env.cli("start", "--at", local_text(begins)).returncode == 0
    day_two = (datetime.fromisoformat(detoxd_env.status()["starts_at"]).astimezone(UTC)
               + timedelta(days=1)).date()
    shown = detoxd_env.cli("sessions", "--json")
    assert shown.returncode == 0, shown.stderr
    sessions = json.loads(shown.stdout)["sessions"]
    assert sessions[0]["start"] == f"{day_two.isoformat()}T18:00:00+00:00"
    calendar = detoxd_env.cli("sessions", "--ics", "-").stdout
    assert f"DTSTART:{day_two:%Y%m%d}T180000Z" in calendar or f"{day_two:%Y%m%d}T180000" in calendar
    assert "RRULE:FREQ=WEEKLY" in calendar
    assert detoxd_env.status()["next_session"]["start"] == sessions[0]["start"]
    assert detoxd_env.cli("cancel").returncode == 0
    now_shown = detoxd_env.cli("sessions")
    assert "shown for a detox started now" in now_shown.stderr

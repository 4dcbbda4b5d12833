"""A weekly block window with the real daemon: getent, through NSS and the hosts file, sees the
block come when the window opens and go when it closes, with no detox running; the journal has
both events. No clock is faked: the window is written for the next minute of the machine's own
zone (the windows read the trusted clock, which a faked wall clock would not move), so the test
takes one to two minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import DetoxdEnv, have, wait_for

from detoxd.core.allowance_rules import DAY_NAMES
from detoxd.service import journal
from detoxd.service.scheduler import local_zone

NAME = "window-test.example"


def resolve(hosts: Path, name: str) -> str:
    """What getent ahosts answers through NSS, with the scratch hosts file as /etc/hosts in a
    mount namespace of its own."""
    script = 'mount --bind "$1" /etc/hosts && exec getent ahosts "$2"'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(hosts), name],
                            capture_output=True, text=True, timeout=30)
    return result.stdout


def journalled(env: DetoxdEnv, kind: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for segment in sorted(journal.directory_for(env.state_dir).glob("*.jsonl")):
        events += [json.loads(line) for line in segment.read_text().splitlines() if line.strip()]
    return [event for event in events if event["kind"] == kind]


@pytest.mark.skipif(os.geteuid() != 0 or not have("unshare") or not have("getent"),
                    reason="needs root, unshare and getent")
def test_a_window_opens_and_closes_and_getent_sees_it(detoxd_env: DetoxdEnv) -> None:
    zone = local_zone()  # the daemon's: the same /etc/localtime
    now = datetime.now(zone)
    start = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (start - now).total_seconds() < 5:  # too close to write the config and start in time
        start += timedelta(minutes=1)
    end = start + timedelta(minutes=1)
    detoxd_env.write_main(f"""schedule:
  - name: soon
    days: [{DAY_NAMES[start.weekday()]}]
    from: "{start:%H:%M}"
    to: "{end:%H:%M}"
    block:
      domains: [{NAME}]
""")
    detoxd_env.start_daemon()
    [row] = detoxd_env.status()["schedule"]
    assert row["active"] is False and datetime.fromisoformat(row["next_change"]) == start
    assert "0.0.0.0" not in resolve(detoxd_env.hosts, NAME)
    wait_for(lambda: "0.0.0.0" in resolve(detoxd_env.hosts, NAME), timeout=150, what="the window to open")
    assert detoxd_env.status()["state"] == "idle"  # no detox: the window alone blocks
    [row] = detoxd_env.status()["schedule"]
    assert row["active"] is True and datetime.fromisoformat(row["next_change"]) == end
    wait_for(lambda: "0.0.0.0" not in resolve(detoxd_env.hosts, NAME), timeout=90,
             what="the window to close")
    assert [event["entry"] for event in journalled(detoxd_env, "window_opened")] == ["soon"]
    wait_for(lambda: journalled(detoxd_env, "window_closed"), what="window_closed in the journal")
    assert detoxd_env.status()["hosts_in_sync"] is True


LOCKED = """schedule:
  - name: evenings
    days: [mon, tue, wed, thu, fri, sat, sun]
    from: "{start}"
    to: "{end}"
    lock: true
    block:
      domains: [{name}, second-{name}]
"""


def test_the_ratchet_holds_a_locked_window_across_an_edit_and_a_restart(detoxd_env: DetoxdEnv) -> None:
    """Removing a name from a locked window in force: held (a file:line warning, status pending),
    the name still blocked, after a restart too; adding a name: blocked at once."""
    now = datetime.now(local_zone())
    # In force now and for 23 hours: from an hour ago to two hours ago (through midnight).
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now - timedelta(hours=2)).strftime("%H:%M")
    detoxd_env.write_main(LOCKED.format(start=start, end=end, name=NAME))
    detoxd_env.start_daemon()
    assert detoxd_env.status()["schedule"][0]["active"] is True
    assert "0.0.0.0" in resolve(detoxd_env.hosts, f"second-{NAME}")
    detoxd_env.write_main(LOCKED.format(start=start, end=end, name=NAME).replace(
        f", second-{NAME}", ", added.example"))
    status = wait_for(lambda: (s := detoxd_env.status())["schedule"][0]["pending"] and s,
                      what="the edit to be held")
    assert status["schedule"][0]["pending"]["edit"] == "fewer names"
    assert any(warning.startswith("detoxd.yaml:2: schedule[0]: warning: schedule entry 'evenings' "
                                  "fewer names: held until") for warning in status["warnings"])
    assert "0.0.0.0" in resolve(detoxd_env.hosts, f"second-{NAME}")  # held: still blocked
    assert "0.0.0.0" in resolve(detoxd_env.hosts, "added.example")  # widening: at once
    detoxd_env.stop_daemon()
    detoxd_env.start_daemon()
    assert detoxd_env.status()["schedule"][0]["pending"] == status["schedule"][0]["pending"]
    assert "0.0.0.0" in resolve(detoxd_env.hosts, f"second-{NAME}")
    [held] = journalled(detoxd_env, "schedule_edit_held")
    assert held["entry"] == "evenings" and held["edit"] == "fewer names" and held["locked"] is True

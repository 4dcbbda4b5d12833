"""The peer sessions in a real `detoxd run`: status fields, handover events, reload, restart, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from conftest import DetoxdEnv, wait_for

from detoxd.client import ControlClient


def sessions_config(first: datetime, location: str = "Ada's office") -> str:
    return (
        "detox: {days: 14, lock: true}\n"
        "me: {name: Robert Craven, email: robert@example.com}\n"
        "peers:\n  - {name: Ada Lovelace, email: ada@example.com}\n  - {name: Alan Turing}\n"
        "sessions:\n"
        f"  first: '{first:%Y-%m-%d %H:%M:%S}'\n"
        "  timezone: UTC\n  minutes_per_business: 1\n  reminders: [1h]\n"
        f"  location: \"{location}\"\n"
    )


def test_hot_seats_in_status_and_on_the_socket_across_reload_and_restart(detoxd_env: DetoxdEnv) -> None:
    # Robert's hot seat (1 minute) started 55 s ago: Ada takes over in about 5 s.
    first = (datetime.now(UTC) - timedelta(seconds=55)).replace(microsecond=0)
    detoxd_env.write_main(sessions_config(first))
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["current_hot_seat"]["name"] == "Robert Craven"
    assert status["next_session"]["number"] == 1
    assert status["next_session"]["start"] == first.isoformat()
    assert status["next_session"]["end"] == (first + timedelta(minutes=3)).isoformat()
    assert status["warnings"] == [  # the detox is idle: no warning about its window
        "detoxd.yaml:4: peers: warning: the challenge is you and 5 peers; 2 listed (sessions will have "
        "3 hot seats)"]

    with ControlClient(detoxd_env.socket).subscribe(timeout=20) as events:
        handover = next(e for e in events if e["event"] == "hot_seat")
    assert handover["name"] == "Ada Lovelace" and handover["seat"] == 2
    assert handover["status"]["current_hot_seat"]["name"] == "Ada Lovelace"
    arrived = datetime.now(UTC)
    assert first + timedelta(minutes=1) <= arrived < first + timedelta(minutes=1, seconds=3)

    detoxd_env.write_main(sessions_config(first, location="Zoom"))  # a reload keeps the session
    wait_for(lambda: detoxd_env.status()["next_session"]["location"] == "Zoom", what="reload")
    assert detoxd_env.status()["current_hot_seat"]["name"] == "Ada Lovelace"

    detoxd_env.stop_daemon()
    detoxd_env.start_daemon()  # a restart mid-session picks up Ada's hot seat...
    assert detoxd_env.status()["current_hot_seat"]["name"] == "Ada Lovelace"
    # ...without announcing it again (the state directory remembers what was announced);
    # subscribers get the current hot seat from the status snapshot they receive on subscribing.
    with ControlClient(detoxd_env.socket).subscribe(timeout=10) as events:
        snapshot = next(iter(events))
    assert snapshot["status"]["current_hot_seat"]["name"] == "Ada Lovelace"
    assert detoxd_env.log().count("hot_seat: {'session': 1, 'seat': 2,") == 1
    assert detoxd_env.log().count("hot_seat: {'session': 1, 'seat': 1,") == 1


def test_sessions_command(detoxd_env: DetoxdEnv) -> None:
    first = datetime(2030, 12, 3, 9, 0)
    detoxd_env.write_main(sessions_config(first))
    result = detoxd_env.cli("sessions")
    assert result.returncode == 0, result.stderr
    assert "Session 1: Tuesday 3 December 2030, 09:00–09:03 UTC" in result.stdout
    assert "ends after the detox" in result.stderr  # no detox running: one started now ends long before
    data = json.loads(detoxd_env.cli("sessions", "--json").stdout)
    assert [s["number"] for s in data["sessions"]] == [1, 2]
    calendar = detoxd_env.cli("sessions", "--ics", "-")
    assert calendar.stdout.startswith("BEGIN:VCALENDAR")
    assert calendar.stdout.count("BEGIN:VEVENT") == 2
    notes = detoxd_env.root / "notes.md"
    assert detoxd_env.cli("sessions", "--notes", str(notes)).returncode == 0
    assert notes.read_text().count("How can the group help") == 6
    assert detoxd_env.cli("sessions", "--json", "--ics", "-").returncode == 2
    detoxd_env.write_main("detox: {days: 14}\n")
    assert detoxd_env.cli("sessions").returncode == 1

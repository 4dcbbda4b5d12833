"""The status contract: a real daemon's `status --json` against detoxd/data/status.schema.json.

Validated with jsonschema (Draft 2020-12), pinned with hashes in requirements/activitywatch.txt and
installed by `scripts/setup --test` into .venv-activitywatch: it runs there, on the documents the
daemon printed, so detoxd's own venvs need no extra dependency.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import DetoxdEnv, wait_for
from threadstop import daemon_answers, main_thread_stopped

from detoxd.client import ControlClient
from detoxd.core import statustext
from detoxd.protocol import Status

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "detoxd" / "data" / "status.schema.json"
VALIDATOR = REPO / ".venv-activitywatch" / "bin" / "python"
VALIDATE = """
import json, sys
import jsonschema
schema, documents = json.load(open(sys.argv[1])), json.load(sys.stdin)
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
print(json.dumps([[f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(d)]
                  for d in documents]))
"""


def schema_errors(*documents: dict[str, Any]) -> list[list[str]]:
    assert VALIDATOR.exists(), f"{VALIDATOR} is missing: run scripts/setup --test"
    done = subprocess.run([str(VALIDATOR), "-c", VALIDATE, str(SCHEMA)], input=json.dumps(documents),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def rich_config(first: datetime, conf_dir: Path) -> str:
    """Every part of the status filled: a locked detox, sessions, an engine, allowances."""
    return ("detox: {days: 14, lock: true}\n"
            "me: {name: Robert Craven, email: robert@example.com}\n"
            "peers:\n  - {name: Ada Lovelace, email: ada@example.com}\n  - {name: Alan Turing}\n"
            f"sessions:\n  first: '{first:%Y-%m-%d %H:%M:%S}'\n  timezone: UTC\n"
            "  minutes_per_business: 5\n  location: Ada's office\n"
            f"network:\n  - engine: dnsmasq\n    conf_dir: {conf_dir}\n")


def test_real_status_matches_the_schema_and_the_typed_status(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    conf_dir = tmp_path / "dnsmasq.d"
    conf_dir.mkdir()
    first = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)
    detoxd_env.write_main(rich_config(first, conf_dir))
    detoxd_env.write_blocklist("domains: [twitter.com, social.example]\n"
                               "allowances:\n  - name: social\n    sites: [social.example]\n"
                               "    minutes_per_day: 20\n    max_opens_per_day: 1\n")
    detoxd_env.start_daemon()
    idle = detoxd_env.status()
    ControlClient(detoxd_env.socket).request("agent_report", notifications_silenced=False, backend="dunst",
                                             reason="dunst is paused by hand", fix="dunstctl set-paused true")
    assert detoxd_env.cli("start").returncode == 0
    active = wait_for(lambda: (s := detoxd_env.status())["agents"] and s, what="the agent's report")

    assert schema_errors(idle, active) == [[], []]
    # Every record of the schema was really there to be checked.
    assert active["allowances"][0]["opens_left_today"] == 1
    assert active["network"][0]["engine"] == "dnsmasq" and active["network"][0]["state"] == "no_agent"
    assert active["agents"][0]["reason"] == "dunst is paused by hand"
    assert active["current_hot_seat"]["name"] == "Robert Craven" and active["next_session"]["in_progress"]
    assert active["next_session"]["hot_seat"] == "Robert Craven"
    assert [seat["name"] for seat in active["next_session"]["hot_seats"]] == [
        "Robert Craven", "Ada Lovelace", "Alan Turing"]
    # The typed status reads and writes exactly the same document.
    for document in (idle, active):
        typed = Status.from_json(document)
        assert typed.to_json() == document and typed.extra == {}
    typed = Status.from_json(active)
    assert typed.active and typed.allowances[0].name == "social" and typed.network[0].state == "no_agent"
    # `detoxd status` prints what the one renderer makes of the typed status.
    lines = detoxd_env.cli("status").stdout.splitlines()
    assert lines[1] == statustext.status_lines(typed, start_command="detoxd start")[1]
    assert "Allowance social: 20 min left today, 1 open left" in lines
    assert "Engine dnsmasq (" in "\n".join(lines)


def test_the_schema_refuses_what_breaks_the_contract(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    renamed = {**{k: v for k, v in status.items() if k != "tamper_events"}, "tampers": 0}
    wrong_type = {**status, "hosts_in_sync": "yes", "state": "running"}
    bad_row = {**status, "network": [{"engine": "pihole"}]}
    errors = schema_errors(status, renamed, wrong_type, bad_row)
    assert errors[0] == []
    assert any("tamper_events" in error for error in errors[1])
    assert any("tampers" in error for error in errors[1])
    assert len(errors[2]) == 2
    assert any("network/0" in error and "required" in error for error in errors[3])


def test_a_stale_status_from_a_stuck_main_loop_keeps_the_contract(detoxd_env: DetoxdEnv) -> None:
    """The status a stuck daemon serves (its extra keys: stale, snapshot_age_seconds) is in the
    schema too, and reads back through the typed status."""
    detoxd_env.start_daemon()
    assert detoxd_env.process is not None and detoxd_env.cli("start").returncode == 0
    with main_thread_stopped(detoxd_env.process.pid, daemon_answers(detoxd_env.socket)):
        stale = wait_for(lambda: (s := detoxd_env.status())["stale"] and s, timeout=30, what="a stale status")
    assert "snapshot_age_seconds" in stale and stale["hosts_in_sync"] is False
    assert schema_errors(stale) == [[]]
    typed = Status.from_json(stale)
    assert typed.to_json() == stale and typed.stale and typed.snapshot_age_seconds is not None

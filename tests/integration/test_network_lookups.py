"""Blocked lookups from a household Pi-hole to `detoxd report --json`, for real processes:
`detoxd run`, `detoxd netagent --engines remote` and the CLI, against the stand-in Pi-hole of
tests/netagent/standins.py (Pi-hole cannot be installed here; the stand-in follows FTL's
OpenAPI spec, API 6.0 / FTL v6.4.1, queries.yaml for /api/queries) on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import DetoxdEnv, wait_for

from tests.netagent.standins import pihole_standin

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: network_sync answers only root and detoxd-network")


def test_blocked_lookups_of_a_phone_reach_the_report_and_nothing_else(detoxd_env: DetoxdEnv) -> None:
    with pihole_standin(password="correct horse") as pihole:
        detoxd_env.write_blocklist("domains: [twitter.com, linkedin.com]\n")
        detoxd_env.write_main("detox:\n  days: 14\n  lock: false\n"
                              f"network:\n  - engine: pihole\n    url: {pihole.url}\n"
                              "    password_file: pihole.secret\n")
        secret = detoxd_env.config_dir / "pihole.secret"
        secret.write_text("correct horse\n")
        secret.chmod(0o600)
        detoxd_env.start_daemon()
        assert detoxd_env.cli("start").returncode == 0
        now = time.time() - 10  # a few seconds ago: the agent reads up to its own now
        for i in range(3):
            pihole.state.log_query(now + i, "192.168.1.23", "twitter.com", "DENYLIST")
        pihole.state.log_query(now + 4, "192.168.1.23", "linkedin.com", "DENYLIST")
        pihole.state.log_query(now + 5, "192.168.1.23", "my-bank.example", "DENYLIST")  # the user's own entry
        log = (detoxd_env.root / "netagent.log").open("ab")
        agent = subprocess.Popen([sys.executable, "-m", "detoxd", "netagent", "--engines", "remote"],
                                 env=detoxd_env.env, stdout=log, stderr=log)
        try:
            row = wait_for(lambda: (r := detoxd_env.status()["network"][0])["query_log"] == "available" and r,
                           timeout=20, what="the query log read")
            assert row["state"] == "in_sync"

            def report() -> dict[str, object]:
                result = detoxd_env.cli("report", "--json")
                assert result.returncode == 0, result.stderr
                return json.loads(result.stdout)  # type: ignore[no-any-return]

            document = wait_for(lambda: (d := report())["totals"]["during"]["blocked_lookups"] and d,
                                timeout=10, what="the lookups in the report")
            assert document["totals"]["during"]["blocked_lookups"] == 4
            today = [day for day in document["days"] if day["blocked_lookups"]]
            assert [day["lookups_by_site"] for day in today] == [{"linkedin.com": 1, "twitter.com": 3}]
            journal = "".join(path.read_text() for path in (detoxd_env.state_dir / "journal").glob("*"))
            events = [json.loads(line) for line in journal.splitlines() if '"blocked_lookups"' in line]
            assert [(e["device"], e["counts"]) for e in events] == [
                ("192.168.1.23", {"linkedin.com": 1, "twitter.com": 3})]
            assert "my-bank.example" not in journal and "my-bank.example" not in detoxd_env.log()
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=10)
            log.close()
        assert "my-bank.example" not in (detoxd_env.root / "netagent.log").read_text(errors="replace")

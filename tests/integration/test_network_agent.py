"""The whole chain, for real: `detoxd run` (no network of its own) hands the names over its
control socket to `detoxd netagent`, which puts them into a real Unbound running in a network
namespace; a phone in a second namespace asks that Unbound with dig. Tampering on the engine is
undone and counted in the daemon's tamper_events with the engine named; the end removes exactly
detoxd's zones, also when neither process was running at the end time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import DetoxdEnv, wait_for
from dnsnet import UNBOUND_IP, HouseholdNet, household, missing_tools

from detoxd.core.network import CANARY
from tests.otheruser import user_python

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(missing_tools()),
    reason=f"needs root (network namespaces) and {', '.join(missing_tools()) or 'nothing else'}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HouseholdNet]:
    with household(tmp_path_factory.mktemp("household")) as network:
        network.start_unbound()
        yield network


class Agent:
    def __init__(self, env: DetoxdEnv) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.env.root / "netagent.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "detoxd", "netagent", "--engines", "local", "--check-seconds", "1"],
            env=self.env.env, stdout=log, stderr=log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return (self.env.root / "netagent.log").read_text(errors="replace")


@pytest.fixture
def agent(detoxd_env: DetoxdEnv) -> Iterator[Agent]:
    running = Agent(detoxd_env)
    yield running
    running.stop(signal.SIGKILL)


def configure(env: DetoxdEnv, net: HouseholdNet, *, days: float, lock: bool) -> None:
    env.write_main(f"detox:\n  days: {days}\n  lock: {str(lock).lower()}\n"
                   f"network:\n  - engine: unbound\n    conf_dir: {net.unbound_conf_dir}\n"
                   f"    control_config: {net.unbound_conf}\n")


def engine_row(env: DetoxdEnv) -> dict[str, object]:
    rows = env.status()["network"]
    assert len(rows) == 1 and rows[0]["engine"] == "unbound"
    return rows[0]  # type: ignore[no-any-return]


def test_detox_reaches_the_phone_tamper_is_undone_and_the_end_cleans_up(
        detoxd_env: DetoxdEnv, agent: Agent, net: HouseholdNet) -> None:
    configure(detoxd_env, net, days=14, lock=False)
    detoxd_env.start_daemon()
    agent.start()
    wait_for(lambda: engine_row(detoxd_env)["state"] == "idle", timeout=60, what="the agent's first report")
    assert net.dig(UNBOUND_IP, "twitter.com") == ["203.0.113.7"]

    assert detoxd_env.cli("start").returncode == 0
    wait_for(lambda: net.dig(UNBOUND_IP, "twitter.com") == ["0.0.0.0"], timeout=60, what="the phone blocked")
    assert net.dig(UNBOUND_IP, "www.facebook.com") == ["0.0.0.0"]
    assert net.dig(UNBOUND_IP, CANARY) == ["NXDOMAIN"]
    assert CANARY in detoxd_env.hosts.read_text()  # locally too
    row = wait_for(lambda: (r := engine_row(detoxd_env))["state"] == "in_sync" and r, timeout=10,
                   what="in_sync in the status")
    assert row["names"] == 5 and row["last_ok"]

    before = detoxd_env.status()["tamper_events"]
    net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "local_zone_remove", "twitter.com"])
    wait_for(lambda: net.dig(UNBOUND_IP, "twitter.com") == ["0.0.0.0"], timeout=60, what="the tamper undone")
    wait_for(lambda: detoxd_env.status()["tamper_events"] > before, timeout=60, what="tamper counted")
    assert "unbound" in detoxd_env.log() and "tampered with" in detoxd_env.log()

    assert detoxd_env.cli("end").returncode == 0
    wait_for(lambda: net.dig(UNBOUND_IP, "twitter.com") == ["203.0.113.7"], timeout=60, what="the end")
    assert net.dig(UNBOUND_IP, CANARY) == ["203.0.113.8"]
    assert not (net.unbound_conf_dir / "detoxd.conf").exists()
    wait_for(lambda: engine_row(detoxd_env)["state"] == "idle", timeout=60, what="idle after the end")
    assert "s3cret" not in agent.log()


def test_end_while_nothing_ran_is_carried_out_at_the_next_start(
        detoxd_env: DetoxdEnv, agent: Agent, net: HouseholdNet) -> None:
    configure(detoxd_env, net, days=0.0002, lock=True)  # 17 s
    detoxd_env.start_daemon()
    agent.start()
    assert detoxd_env.cli("start").returncode == 0
    ends_at = datetime.fromisoformat(detoxd_env.status()["ends_at"])
    wait_for(lambda: net.dig(UNBOUND_IP, "twitter.com") == ["0.0.0.0"], timeout=17, what="the phone blocked")
    agent.stop(signal.SIGKILL)
    detoxd_env.stop_daemon(signal.SIGKILL)
    assert datetime.now(UTC) < ends_at, "the detox ended while the daemon still ran: nothing tested"
    # The end passes while neither runs (a wait for the clock, not a guess at how long things take).
    wait_for(lambda: datetime.now(UTC) > ends_at + timedelta(seconds=1), timeout=30, what="the end")
    assert net.dig(UNBOUND_IP, "twitter.com") == ["0.0.0.0"]  # nothing could lift it meanwhile
    detoxd_env.start_daemon()
    agent.start()
    wait_for(lambda: net.dig(UNBOUND_IP, "twitter.com") == ["203.0.113.7"], timeout=60, what="the late end")
    assert not (net.unbound_conf_dir / "detoxd.conf").exists()


def test_only_root_or_the_agent_user_gets_the_names(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    detoxd_env.start_daemon()
    result = subprocess.run(
        [user_python(), "-c", "import sys; from pathlib import Path; "
         "from detoxd.client import ControlClient; "
         "print(ControlClient(Path(sys.argv[1])).request('network_sync', agent='local'))",
         str(detoxd_env.socket)], capture_output=True, text=True, timeout=30, user=65534, cwd="/",
        env=detoxd_env.env)
    assert "not_authorized" in result.stdout, result.stderr


def test_remote_agent_with_systemd_credentials_against_the_pihole_standin(
        detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    """`detoxd netagent --engines remote` as its unit runs it: the password comes from
    $CREDENTIALS_DIRECTORY (LoadCredential=), the Pi-hole is the stand-in (tests/netagent/
    standins.py, written from FTL's OpenAPI spec, API 6.0) since Pi-hole cannot be installed here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netagent"))
    from standins import pihole_standin

    password = "correct horse battery"
    secret = detoxd_env.config_dir / "pihole.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "detoxd_pihole.secret").write_text(password + "\n")
    with pihole_standin(password=password) as pihole:
        detoxd_env.write_main(f"detox:\n  days: 14\n  lock: false\nnetwork:\n  - engine: pihole\n"
                              f"    url: {pihole.url}\n    password_file: pihole.secret\n"
                              "    clients: [192.168.1.23]\n")
        detoxd_env.start_daemon()
        log = (detoxd_env.root / "netagent.log").open("ab")
        agent = subprocess.Popen(
            [sys.executable, "-m", "detoxd", "netagent", "--engines", "remote", "--check-seconds", "1"],
            env={**detoxd_env.env, "CREDENTIALS_DIRECTORY": str(credentials)}, stdout=log, stderr=log)
        try:
            assert detoxd_env.cli("start").returncode == 0
            state = pihole.state
            wait_for(lambda: "twitter.com" in state.domains, timeout=60, what="entries on the Pi-hole")
            wait_for(lambda: engine_row_of(detoxd_env, "pihole")["state"] == "in_sync", timeout=10,
                     what="in_sync")
            gid = state.groups["detoxd"]["id"]
            assert CANARY in state.domains and state.clients["192.168.1.23"]["groups"] == [0, gid]
            with pihole.lock:
                del state.domains["twitter.com"]  # someone deletes it in the web interface
            wait_for(lambda: "twitter.com" in state.domains, timeout=60, what="the tamper undone")
            wait_for(lambda: detoxd_env.status()["tamper_events"] >= 1, timeout=60, what="counted")
            assert f"pihole {pihole.url} tampered with" in detoxd_env.log()
            assert detoxd_env.cli("end").returncode == 0
            wait_for(lambda: state.domains == {} and "detoxd" not in state.groups, timeout=10,
                     what="everything removed at the end")
            assert state.clients == {}
        finally:
            agent.terminate()
            agent.wait(timeout=10)
        logs = (detoxd_env.root / "netagent.log").read_text() + detoxd_env.log() + json.dumps(
            detoxd_env.status())
        assert password not in logs


def engine_row_of(env: DetoxdEnv, kind: str) -> dict[str, object]:
    return next(row for row in env.status()["network"] if row["engine"] == kind)  # type: ignore[no-any-return]

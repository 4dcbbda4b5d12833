"""The whole way of a message to a peer, with real processes: `detoxd sessions --send` queues the
invitations in the daemon's outbox, `detoxd mail-send` (as detoxd-mail.service runs it, through
the daemon's control socket) hands them to a real SMTP server (aiosmtpd, STARTTLS, AUTH) on
loopback, and `detoxd status` shows what was sent to whom and when; while the server is down the
messages wait and status says why, with the fix."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import DetoxdEnv, wait_for
from test_status_schema import schema_errors

from tests import smtpkit
from tests.smtpkit import PASSWORD, USER, Certificates

WAIT = 60.0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return smtpkit.make_certificates(tmp_path_factory.mktemp("tls"))


def configure(env: DetoxdEnv, certificates: Certificates, port: int) -> None:
    secret = env.config_dir / "mail.secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    pin = ":".join(f"{byte:02X}" for byte in certificates.fingerprint)
    env.write_main(
        "detox:\n  days: 14\n  lock: true\n"
        "me: {name: Robert, email: robert@example.com}\n"
        "peers:\n  - {name: Ada, email: ada@example.com}\n  - {name: Grace, email: grace@example.com}\n"
        "sessions:\n  first: 2030-03-04 18:00\n  timezone: Europe/London\n"
        f"mail:\n  server: 127.0.0.1\n  port: {port}\n  from: {USER}\n  username: {USER}\n"
        f"  password_file: mail.secret\n  tls_fingerprint: sha256:{pin}\n")


def test_invitations_go_from_the_daemons_outbox_through_the_mail_agent(
        detoxd_env: DetoxdEnv, certificates: Certificates) -> None:
    env = detoxd_env
    with smtpkit.running(certificates) as server:
        configure(env, certificates, server.port)
        env.start_daemon()
        sent = env.cli("sessions", "--send")
        assert sent.returncode == 0, sent.stderr
        assert env.status()["mail"]["pending_count"] == 2
        done = env.cli("mail-send", "--once")
        assert done.returncode == 0, done.stderr
        assert "sent 2, 0 left" in done.stdout
        assert server.handler.arrived.wait(WAIT)
    assert sorted(r.rcpt_tos[0] for r in server.handler.received) == ["ada@example.com", "grace@example.com"]
    mail = env.status()["mail"]
    assert mail["server"] == f"127.0.0.1:{server.port}" and mail["pending_count"] == 0
    assert sorted((row["to"], row["kind"]) for row in mail["sent"]) == [
        ("ada@example.com", "invitation"), ("grace@example.com", "invitation")]
    assert all(row["sent_at"] for row in mail["sent"])
    assert schema_errors(env.status()) == [[]]  # the contract, with `mail` in it
    assert PASSWORD not in env.cli("status", "--json").stdout + env.log()


def test_offline_the_agent_retries_status_says_why_and_it_goes_when_the_server_is_back(
        detoxd_env: DetoxdEnv, certificates: Certificates) -> None:
    env = detoxd_env
    port = smtpkit.free_port()
    configure(env, certificates, port)
    env.start_daemon()
    assert env.cli("sessions", "--send").returncode == 0
    agent = subprocess.Popen([sys.executable, "-m", "detoxd", "mail-send"], env=env.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        problems = wait_for(lambda: [p for p in env.status()["problems"] if p.startswith("mail: ")],
                            timeout=WAIT, what="the mail problem in status")
        assert "connection refused" in problems[0] and "fix: check mail.server" in problems[0]
        assert env.status()["mail"]["pending_count"] == 2
        with smtpkit.running(certificates, port) as server:
            assert server.handler.arrived.wait(WAIT)
            wait_for(lambda: env.status()["mail"]["pending_count"] == 0, timeout=WAIT,
                     what="the outbox empty")
        assert not [p for p in env.status()["problems"] if p.startswith("mail: ")]
    finally:
        agent.send_signal(signal.SIGTERM)  # the agent this test started
        _, err = agent.communicate(timeout=WAIT)
    assert agent.returncode == 0, err
    assert PASSWORD.encode() not in err


def test_nothing_is_queued_or_sent_without_send_or_peers_informed(
        detoxd_env: DetoxdEnv, certificates: Certificates, tmp_path: Path) -> None:
    env = detoxd_env
    with smtpkit.running(certificates) as server:
        configure(env, certificates, server.port)
        env.start_daemon()
        assert env.cli("start").returncode == 0
        done = env.cli("mail-send", "--once")
        assert done.returncode == 0, done.stderr
        assert "sent 0, 0 left" in done.stdout
    assert server.handler.received == []
    assert env.status()["mail"]["pending_count"] == 0


def test_an_informed_event_reaches_the_peers_within_the_bound(
        detoxd_env: DetoxdEnv, certificates: Certificates) -> None:
    env = detoxd_env
    with smtpkit.running(certificates) as server:
        configure(env, certificates, server.port)
        with (env.config_dir / "detoxd.yaml").open("a") as main:
            main.write("peers_informed: [end_attempt]\n")
        env.start_daemon()
        assert env.cli("start").returncode == 0
        assert env.cli("end").returncode != 0  # locked: refused, an attempt to end early
        # The first message is queued at the daemon's next tick: within the 5 minutes promised.
        wait_for(lambda: env.status()["mail"]["pending_count"] == 2, timeout=300,
                 what="the message queued")
        done = env.cli("mail-send", "--once")
        assert done.returncode == 0, done.stderr
        assert server.handler.arrived.wait(WAIT)
    received = sorted(server.handler.received, key=lambda r: r.rcpt_tos[0])
    assert [r.rcpt_tos for r in received] == [["ada@example.com"], ["grace@example.com"]]
    text = received[0].message.get_content()
    assert "1 attempt to end the detox early" in text
    assert "twitter" not in text and "facebook" not in text  # never which sites
    assert [(row["to"], row["kind"]) for row in env.status()["mail"]["sent"]] == [
        ("ada@example.com", "informed"), ("grace@example.com", "informed")]


def test_kill_9_of_the_mail_agent_mid_send_resends_the_same_message_id(
        detoxd_env: DetoxdEnv, certificates: Certificates) -> None:
    env = detoxd_env
    with smtpkit.running(certificates) as server:
        configure(env, certificates, server.port)
        env.start_daemon()
        assert env.cli("sessions", "--send").returncode == 0
        queued = [row["to"] for row in env.status()["mail"]["pending"]]
        server.handler.hold = held = threading.Event()
        agent = subprocess.Popen([sys.executable, "-m", "detoxd", "mail-send"], env=env.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert held.wait(WAIT), "the server never got the message"
        finally:
            agent.send_signal(signal.SIGKILL)  # the agent this test started, mid-DATA
            agent.wait(timeout=WAIT)
        assert [row["to"] for row in env.status()["mail"]["pending"]] == queued  # nothing lost
        cut_off = server.handler.received[0].message["Message-ID"]
        server.handler.hold = None
        server.handler.release.set()
        done = env.cli("mail-send", "--once")
        assert done.returncode == 0, done.stderr
    ids = [received.message["Message-ID"] for received in server.handler.received]
    assert ids[1] == cut_off and len(ids) == 3 and len(set(ids)) == 2
    assert env.status()["mail"]["pending_count"] == 0

"""The outbox and its sender against a real SMTP server (aiosmtpd, STARTTLS, AUTH) on loopback."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import icalendar
import pytest

from detoxd.core import imip
from detoxd.mailsend import MailError, send_round, try_server
from detoxd.outbox import Outbox, new_message_id
from tests import smtpkit
from tests.core.test_ics import PEERS, STAMP, make_plan
from tests.smtpkit import PASSWORD, USER, Certificates

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WAIT = 60.0  # the bound of every wait for an event (a stuck test fails, a quick one never waits)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return smtpkit.make_certificates(tmp_path_factory.mktemp("tls"))


def queue_invitation(outbox: Outbox, peer_index: int = 0) -> str:
    message_id = new_message_id(USER)
    envelope = imip.invitation(make_plan(), PEERS[peer_index], USER, STAMP, message_id)
    outbox.queue(envelope, USER, "Invitation", NOW)
    return message_id


def test_an_invitation_goes_through_starttls_and_auth_and_leaves_the_outbox(
        tmp_path: Path, certificates: Certificates) -> None:
    outbox = Outbox(tmp_path / "outbox")
    message_id = queue_invitation(outbox)
    with smtpkit.running(certificates) as server:
        result = send_round(outbox, server.settings(), PASSWORD)
        assert server.handler.arrived.wait(WAIT)
    assert (result.sent, result.left, result.error) == (1, 0, None)
    assert server.handler.logins == [USER]
    received = server.handler.received[0]
    assert (received.mail_from, received.rcpt_tos) == (USER, ["ada@example.com"])
    message = received.message
    assert message["Message-ID"] == message_id
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "REQUEST"
    calendar = icalendar.Calendar.from_ical(part.get_content())
    assert str(calendar["METHOD"]) == "REQUEST"
    assert len(calendar.walk("VEVENT")) == 2
    assert outbox.pending() == []
    assert [(r["to"], r["kind"], r["message_id"]) for r in outbox.sent()] == [
        ("ada@example.com", "invitation", message_id)]


def test_a_certificate_of_a_trusted_ca_needs_no_pin(tmp_path: Path, certificates: Certificates) -> None:
    outbox = Outbox(tmp_path / "outbox")
    queue_invitation(outbox)
    with smtpkit.running(certificates) as server:
        result = send_round(outbox, server.settings(pin=False), PASSWORD, cafile=str(certificates.ca_file))
    assert (result.sent, result.error) == (1, None)


def test_an_untrusted_certificate_is_reported_with_its_fingerprint_and_the_fix(
        tmp_path: Path, certificates: Certificates) -> None:
    outbox = Outbox(tmp_path / "outbox")
    queue_invitation(outbox)
    with smtpkit.running(certificates) as server:
        result = send_round(outbox, server.settings(pin=False), PASSWORD)
        with pytest.raises(MailError) as caught:
            try_server(server.settings(pin=False), PASSWORD)
    assert result.error is not None and result.error.code == "tls_error"
    shown = ":".join(f"{byte:02X}" for byte in certificates.fingerprint)
    assert "certificate not trusted" in result.error.reason and shown in result.error.reason
    assert "mail.tls_fingerprint" in result.error.fix
    assert caught.value.code == "tls_error"
    assert server.handler.logins == [] and server.handler.received == []  # nothing sent before trust
    assert len(outbox.pending()) == 1


def test_a_wrong_pin_is_refused_before_the_login(tmp_path: Path, certificates: Certificates) -> None:
    with smtpkit.running(certificates) as server:
        wrong = dataclasses.replace(server.settings(), tls_fingerprint=bytes(32))
        with pytest.raises(MailError) as caught:
            try_server(wrong, PASSWORD)
    assert caught.value.code == "pin_mismatch"
    assert "does not match mail.tls_fingerprint" in caught.value.reason
    assert server.handler.logins == []


def test_a_wrong_password_is_reported_and_never_shown(tmp_path: Path, certificates: Certificates) -> None:
    outbox = Outbox(tmp_path / "outbox")
    queue_invitation(outbox)
    with smtpkit.running(certificates) as server:
        result = send_round(outbox, server.settings(), "hunter2-wrong")
        with pytest.raises(MailError) as caught:
            try_server(server.settings(), "hunter2-wrong")
        reached = try_server(server.settings(), PASSWORD)
    assert result.error is not None and result.error.code == "auth_failed"
    assert caught.value.code == "auth_failed"
    assert f"refused the login of {USER!r} (535" in caught.value.reason
    assert "password_file" in caught.value.fix
    assert "hunter2" not in caught.value.reason + caught.value.fix
    assert reached == f"127.0.0.1:{server.port}: connected, STARTTLS, certificate pinned, logged in"
    assert server.handler.received == []  # try_server sends no message
    assert len(outbox.pending()) == 1


def test_offline_the_message_waits_and_goes_when_the_server_is_back(
        tmp_path: Path, certificates: Certificates) -> None:
    outbox = Outbox(tmp_path / "outbox")
    message_id = queue_invitation(outbox)
    port = smtpkit.free_port()
    settings = dataclasses.replace(smtpkit.Server(certificates, port).settings(), port=port)
    offline = send_round(outbox, settings, PASSWORD)
    assert offline.error is not None and offline.error.code == "unreachable"
    assert "connection refused" in offline.error.reason and offline.left == 1
    assert [item.message_id for item in outbox.pending()] == [message_id]
    with smtpkit.running(certificates, port) as server:
        back = send_round(outbox, settings, PASSWORD)
        assert server.handler.arrived.wait(WAIT)
    assert (back.sent, back.left, back.error) == (1, 0, None)
    assert server.handler.received[0].message["Message-ID"] == message_id


def test_kill_9_in_the_middle_of_a_send_loses_nothing_and_resends_the_same_message_id(
        tmp_path: Path, certificates: Certificates) -> None:
    config = tmp_path / "etc"
    config.mkdir(mode=0o700)
    secret = config / "mail.secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    outbox = Outbox(tmp_path / "outbox")
    first = queue_invitation(outbox, 0)
    second = queue_invitation(outbox, 1)
    with smtpkit.running(certificates) as server:
        pin = ":".join(f"{byte:02X}" for byte in certificates.fingerprint)
        (config / "detoxd.yaml").write_text(
            f"mail:\n  server: 127.0.0.1\n  port: {server.port}\n  from: {USER}\n  username: {USER}\n"
            f"  password_file: mail.secret\n  tls_fingerprint: sha256:{pin}\n")
        command = [sys.executable, "-m", "detoxd", "--config-dir", str(config), "mail-send", "--once",
                   "--outbox", str(outbox.directory)]
        server.handler.hold = held = threading.Event()
        sender = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert held.wait(WAIT), "the server never got the message"
        finally:
            os.kill(sender.pid, signal.SIGKILL)  # the sender this test started, mid-DATA
            sender.communicate()
        assert sender.returncode == -signal.SIGKILL
        assert [item.message_id for item in outbox.pending()] == [first, second]  # nothing lost
        server.handler.hold = None
        server.handler.release.set()
        done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert "sent 2, 0 left" in done.stdout
    ids = [received.message["Message-ID"] for received in server.handler.received]
    assert ids[0] == first  # the one cut off
    assert ids[1:] == [first, second]  # sent again with the same Message-ID, then the next
    assert outbox.pending() == []

"""`detoxd doctor` tries `mail:`'s server (connect, STARTTLS, AUTH, no message) against a real
SMTP server (aiosmtpd on loopback) and says what fails, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from detoxd.core.doctorchecks import Level, MailTry, check_mail
from detoxd.doctor import try_mail
from detoxd.paths import Paths
from tests import smtpkit
from tests.smtpkit import PASSWORD, USER, Certificates


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return smtpkit.make_certificates(tmp_path_factory.mktemp("tls"))


def paths_for(tmp_path: Path, port: int, password: str, pin: bytes | None) -> Paths:
    config = tmp_path / "etc"
    config.mkdir(mode=0o700)
    secret = config / "mail.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    pinned = "" if pin is None else "  tls_fingerprint: sha256:" + pin.hex() + "\n"
    (config / "detoxd.yaml").write_text(
        f"mail:\n  server: 127.0.0.1\n  port: {port}\n  from: {USER}\n  username: {USER}\n"
        f"  password_file: mail.secret\n{pinned}")
    return Paths(config, tmp_path / "state", tmp_path / "hosts", tmp_path / "control.sock")


def test_a_reachable_server_with_the_right_password(tmp_path: Path, certificates: Certificates) -> None:
    with smtpkit.running(certificates) as server:
        tried = try_mail(paths_for(tmp_path, server.port, PASSWORD, certificates.fingerprint), tmp_path)
    assert tried is not None and tried.reached, tried
    assert tried.message == f"127.0.0.1:{server.port}: connected, STARTTLS, certificate pinned, logged in"
    assert server.handler.logins == [USER] and server.handler.received == []  # no message


def test_a_wrong_password_fails_with_the_fix(tmp_path: Path, certificates: Certificates) -> None:
    with smtpkit.running(certificates) as server:
        tried = try_mail(paths_for(tmp_path, server.port, "hunter2", certificates.fingerprint), tmp_path)
    assert tried is not None and not tried.reached
    checks = check_mail(tried)
    assert checks[0].level is Level.FAIL and "refused the login" in checks[0].message
    assert "password_file" in checks[0].fix and "hunter2" not in checks[0].message + checks[0].fix


def test_an_untrusted_certificate_fails_with_the_fix(tmp_path: Path, certificates: Certificates) -> None:
    (tmp_path / "ca").mkdir()
    with smtpkit.running(certificates) as server:
        tried = try_mail(paths_for(tmp_path, server.port, PASSWORD, None), tmp_path)
        trusted = try_mail(paths_for(tmp_path / "ca", server.port, PASSWORD, None), tmp_path,
                           cafile=str(certificates.ca_file))
    assert tried is not None and not tried.reached and "certificate not trusted" in tried.message
    assert "mail.tls_fingerprint" in tried.fix
    assert trusted is not None and trusted.reached


def test_no_mail_no_check_and_a_disabled_agent_fails() -> None:
    assert check_mail(None) == []
    checks = check_mail(MailTry(True, "smtp.example.com:587: connected", "", "disabled"))
    assert [check.level for check in checks] == [Level.OK, Level.FAIL]
    assert checks[1].fix == "sudo systemctl enable --now detoxd-mail.service"
    assert len(check_mail(MailTry(True, "ok", "", "enabled"))) == 1


def test_a_mail_problem_fails_the_mail_check_not_the_detox() -> None:
    from detoxd.core.doctorchecks import check_detox
    from detoxd.protocol import Status

    status = Status.from_json({"state": "active", "days_left": 3, "ends_at": "2030-01-01T00:00:00+00:00",
                               "problems": ["mail: smtp.example.com:587: connection refused; fix: check"]})
    assert check_detox(status).level is Level.OK

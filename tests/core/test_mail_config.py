"""`mail:`, `peers_informed:` and `share_activity:` in detoxd.yaml (issue 25)."""

from __future__ import annotations

import pytest

from detoxd.core.config import parse_main
from detoxd.core.mail import MailSettings

PEERS = "peers:\n  - {name: Ann, email: ann@example.org}\n  - Bob\n"


def errors(text: str) -> list[str]:
    _config, source = parse_main(text)
    return [str(issue) for issue in source.errors]


def warnings(text: str) -> list[str]:
    _config, source = parse_main(text)
    return [str(issue) for issue in source.issues if issue.severity == "warning"]


def test_the_contract_example_parses() -> None:
    text = ("mail:\n"
            "  server: smtp.example.com\n"
            "  port: 587\n"
            "  security: starttls        # starttls | tls | none\n"
            "  from: robert@example.com\n"
            "  username: robert@example.com\n"
            "  password_file: mail.secret\n")
    config, source = parse_main(text)
    assert not source.errors and config is not None
    assert config.mail == MailSettings("smtp.example.com", 587, "starttls", "robert@example.com",
                                       "robert@example.com", "mail.secret", None)
    assert config.mail.password_file_line == 7
    assert config.mail.address == "smtp.example.com:587"
    assert config.peers_informed == () and config.share_activity is False


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465)])
def test_the_port_follows_the_security(security: str, port: int) -> None:
    config, _ = parse_main(f"mail: {{server: mx.example.net, from: a@example.net, security: {security}}}\n")
    assert config is not None and config.mail is not None
    assert (config.mail.port, config.mail.username, config.mail.password_file) == (port, None, None)


def test_a_pin_is_taken_like_the_household_engines() -> None:
    pin = ":".join(["AB"] * 32)
    config, source = parse_main(f"mail:\n  server: 192.168.1.5\n  from: a@b.example\n"
                                f"  tls_fingerprint: sha256:{pin}\n")
    assert not source.errors and config is not None and config.mail is not None
    assert config.mail.tls_fingerprint == bytes([0xAB] * 32)
    config, source = parse_main(f"mail:\n  server: 192.168.1.5\n  from: a@b.example\n  pin: sha256:{pin}\n")
    assert not source.errors and config is not None and config.mail is not None  # issue 25's word
    assert config.mail.tls_fingerprint == bytes([0xAB] * 32)
    assert errors(f"mail:\n  server: 192.168.1.5\n  from: a@b.example\n  pin: sha256:{pin}\n"
                  f"  tls_fingerprint: sha256:{pin}\n") == [
        "detoxd.yaml:4: mail.pin: give pin or tls_fingerprint, not both"]
    assert errors("mail:\n  server: 192.168.1.5\n  from: a@b.example\n  pin: sha256:zz\n")[0].startswith(
        "detoxd.yaml:4: mail.pin: ")


@pytest.mark.parametrize(("text", "expected"), [
    ("mail:\n  port: 25\n", ["detoxd.yaml:2: mail.server: required", "detoxd.yaml:2: mail.from: required"]),
    ("mail:\n  server: smtp.example.com\n  from: a@b.example\n  security: ssl\n",
     ["detoxd.yaml:4: mail.security: expected one of starttls, tls, none, got 'ssl'"]),
    ("mail:\n  server: smtp.example.com\n  from: a@b.example\n  security: none\n",
     ["detoxd.yaml:4: mail.security: none is allowed only to a loopback address (127.0.0.1, ::1, localhost), "
      "not 'smtp.example.com'; use starttls or tls"]),
    ("mail:\n  server: smtp.example.com\n  from: a@b.example\n  port: 70000\n",
     ["detoxd.yaml:4: mail.port: must be between 1 and 65535, got 70000"]),
    ("mail:\n  server: smtp.example.com:587\n  from: a@b.example\n",
     ["detoxd.yaml:2: mail.server: expected a host name or IP address (port: goes in mail.port), "
      "got 'smtp.example.com:587'"]),
    ("mail:\n  server: smtp.example.com\n  from: robert\n",
     ["detoxd.yaml:3: mail.from: 'robert' does not look like an email address (name@example.com)"]),
    ("mail:\n  server: smtp.example.com\n  from: a@b.example\n  username: a@b.example\n",
     ["detoxd.yaml:4: mail.password_file: required with username"]),
    ("mail:\n  server: smtp.example.com\n  from: a@b.example\n  password_file: /etc/passwd\n",
     ["detoxd.yaml:4: mail.password_file: expected a file name relative to the config directory"]),
    ("mail:\n  server: smtp.example.com\n  from: a@b.example\n  password: hunter2\n",
     ["detoxd.yaml:4: mail.password: unknown key (expected one of: from, password_file, pin, port, security, "
      "server, tls_fingerprint, username)"]),
    ("mail:\n  server: 127.0.0.1\n  from: a@b.example\n  security: none\n  tls_fingerprint: sha256:"
     + "00" * 32 + "\n",
     ["detoxd.yaml:5: mail.tls_fingerprint: a certificate pin needs security: starttls or tls"]),
])
def test_mistakes_are_reported_at_their_line(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_a_password_written_into_the_file_is_never_echoed() -> None:
    found = errors("mail:\n  server: smtp.example.com\n  from: a@b.example\n  password: hunter2\n"
                   "  username: a@b.example\n  password_file: 'x/../hunter3'\n")
    assert found and not any("hunter" in line for line in found)


@pytest.mark.parametrize("server", ["127.0.0.1", "::1", "localhost", "[::1]"])
def test_plain_smtp_only_on_loopback(server: str) -> None:
    config, source = parse_main(f"mail:\n  server: '{server}'\n  from: a@b.example\n  security: none\n")
    assert not source.errors and config is not None and config.mail is not None
    assert (config.mail.security, config.mail.port) == ("none", 25)


def test_peers_informed_needs_mail_and_known_kinds() -> None:
    assert errors(PEERS + "peers_informed: [tamper, stop]\n") == [
        "detoxd.yaml:4: peers_informed: needs `mail:`, the server the messages to the peers are sent through"]
    mail = "mail: {server: smtp.example.com, from: a@b.example}\n"
    assert errors(PEERS + mail + "peers_informed: [tamper, browsing]\n") == [
        "detoxd.yaml:5: peers_informed[1]: unknown kind 'browsing' "
        "(expected: tamper, stop, end_attempt, allowance)"]
    config, source = parse_main(PEERS + mail + "peers_informed: [tamper, stop, end_attempt, allowance, stop]"
                                "\nshare_activity: true\n")
    assert not source.errors and config is not None
    assert config.peers_informed == ("tamper", "stop", "end_attempt", "allowance")
    assert config.share_activity is True


def test_informing_nobody_and_sharing_alone_are_warned_about() -> None:
    mail = "mail: {server: smtp.example.com, from: a@b.example}\n"
    assert warnings("peers: [Bob]\n" + mail + "peers_informed: [tamper]\n")[1:] == [
        "detoxd.yaml:3: peers_informed: warning: no peer in `peers:` has an email: nobody would be told"]
    assert warnings(mail + "share_activity: true\n") == [
        "detoxd.yaml:2: share_activity: warning: only used with `peers_informed:`"]

"""A real SMTP server for the mail tests: aiosmtpd on a loopback port this test binds, with
STARTTLS (a certificate of a CA the test makes) and AUTH; every message it accepts is kept and
announced through a threading event (tests wait for it, never sleep)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from detoxd.core.mail import MailSettings

USER = "robert@example.com"
PASSWORD = "correct horse battery staple"


@dataclass
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path
    fingerprint: bytes  # SHA-256 of the server certificate (DER)


def make_certificates(directory: Path) -> Certificates:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "detoxd test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - day).not_valid_after(now + 2 * day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - day).not_valid_after(now + 2 * day)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                         hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())
    paths.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def free_port() -> int:
    """A loopback port nobody listens on now (bound by this test, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    hold: threading.Event | None = None  # set: DATA waits until it is released
    release: threading.Event = field(default_factory=threading.Event)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        self.arrived.set()
        if self.hold is not None:
            self.hold.set()
            # Blocks a worker thread of the server's loop (not the loop) until the test releases it.
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        return "250 OK"


class Server:
    def __init__(self, certificates: Certificates, port: int | None = None, *, auth: bool = True) -> None:
        self.handler = Handler()
        self.port = port or free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.cert_file, certificates.key_file)
        self.certificates = certificates
        kwargs: dict[str, Any] = {}
        if auth:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
        if isinstance(auth_data, LoginPassword):
            self.handler.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def settings(self, *, pin: bool = True, username: str | None = USER) -> MailSettings:
        return MailSettings("127.0.0.1", self.port, "starttls", USER, username,
                            "mail.secret" if username else None,
                            self.certificates.fingerprint if pin else None)

    def start(self) -> Server:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.handler.release.set()
        with contextlib.suppress(AssertionError):
            self.controller.stop()


@contextlib.contextmanager
def running(certificates: Certificates, port: int | None = None, **kwargs: Any) -> Iterator[Server]:
    server = Server(certificates, port, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()

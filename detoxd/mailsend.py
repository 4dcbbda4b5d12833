"""`detoxd mail-send`: the outbox's messages to the user's own SMTP server (detoxd-mail.service).

The root daemon has no network; it (and `detoxd sessions --send`) only writes messages into the
outbox (:mod:`detoxd.outbox`). This process sends them: one connection per round (STARTTLS or
TLS, the certificate verified against the system's CAs or the ``tls_fingerprint`` pin, checked
right after the handshake and before AUTH), each message handed over with its Message-ID as
queued, and taken out of the outbox only after the server accepted it. A failed round is retried
with a backoff of 2, 4, 8 … at most 300 s; every failure is logged with its reason and fix,
never with the password (smtplib's debug output stays off).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
import smtplib
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from detoxd import durable
from detoxd.commands.common import EXIT_INVALID_CONFIG, EXIT_OK, EXIT_UNREACHABLE
from detoxd.core.mail import MailSettings, settings_from_json
from detoxd.netagent.webapi import _describe as describe_error
from detoxd.netagent.webapi import fingerprint_text
from detoxd.outbox import Outbox, Queued
from detoxd.protocol import ControlError

if TYPE_CHECKING:
    import argparse

    from detoxd.client import ControlClient
    from detoxd.paths import Paths

log = logging.getLogger("detoxd.mail")

POLL_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0
TIMEOUT = 30.0
STATE_FILE = "sender.json"

FIXES = {
    "unreachable": "check mail.server and mail.port in detoxd.yaml, the network, and that the server runs",
    "tls_error": "for a self-signed certificate set mail.tls_fingerprint in detoxd.yaml to the "
                 "fingerprint shown (compare it with the server's first)",
    "pin_mismatch": "if the server's certificate was renewed on purpose, put its new fingerprint "
                    "into mail.tls_fingerprint; otherwise someone is in between",
    "no_starttls": "the server does not offer STARTTLS: use security: tls (usually port 465)",
    "auth_failed": "put the right password into the file mail.password_file names (mode 0600), "
                   "then: sudo systemctl restart detoxd-mail",
    "auth_unsupported": "the server offers no AUTH on this port: use its submission port (587) "
                        "or leave username and password_file out for a relay that needs none",
    "rejected": "the server refused the message: check mail.from (the account may send only "
                "from its own address) and the peer's email in detoxd.yaml",
    "secret": "create the password file: sudo install -m 600 /dev/null /etc/detoxd/<file>, "
              "put the password in it, then: sudo systemctl restart detoxd-mail",
}


class MailError(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    @property
    def fix(self) -> str:
        return FIXES.get(self.code, "")


def connect(settings: MailSettings, password: str | None, *, cafile: str | None = None,
            timeout: float = TIMEOUT) -> smtplib.SMTP:
    """A logged-in connection to ``settings``' server, or :class:`MailError` saying what failed."""
    address = settings.address
    context = _context(settings, cafile)
    smtp: smtplib.SMTP | None = None
    try:
        if settings.security == "tls":
            smtp = smtplib.SMTP_SSL(settings.server, settings.port, timeout=timeout, context=context)
            _check_pin(smtp, settings)
        else:
            smtp = smtplib.SMTP(settings.server, settings.port, timeout=timeout)
        smtp.ehlo()
        if settings.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise MailError("no_starttls", f"{address}: the server does not offer STARTTLS")
            smtp.starttls(context=context)
            _check_pin(smtp, settings)
            smtp.ehlo()
        if password is not None and settings.username is not None:
            if not smtp.has_extn("auth"):
                raise MailError("auth_unsupported", f"{address}: the server offers no AUTH")
            smtp.login(settings.username, password)
        return smtp
    except MailError:
        _close(smtp)
        raise
    except ssl.SSLCertVerificationError as error:
        _close(smtp)
        raise MailError("tls_error", f"{address}: certificate not trusted ({error.verify_message}); "
                        f"the server presents {_presented(settings, timeout)}") from error
    except smtplib.SMTPAuthenticationError as error:
        _close(smtp)
        raise MailError("auth_failed", f"{address}: the server refused the login of {settings.username!r} "
                        f"({error.smtp_code} {_text(error.smtp_error)})") from error
    except (OSError, smtplib.SMTPException) as error:
        _close(smtp)
        raise MailError("unreachable", f"{address}: {_describe(error)}") from error


def try_server(settings: MailSettings, password: str | None, *, cafile: str | None = None,
               timeout: float = TIMEOUT) -> str:
    """Connect, STARTTLS and AUTH, send no message: what was reached, or :class:`MailError`."""
    smtp = connect(settings, password, cafile=cafile, timeout=timeout)
    _close(smtp, quit=True)
    secured = {"starttls": "STARTTLS", "tls": "TLS", "none": "no TLS (loopback)"}[settings.security]
    steps = ["connected", secured]
    if settings.tls_fingerprint is not None:
        steps.append("certificate pinned")
    steps.append("logged in" if password is not None and settings.username else "no login")
    return f"{settings.address}: " + ", ".join(steps)


class Queue(Protocol):
    def pending(self) -> list[Queued]: ...

    def delivered(self, item: Queued, when: datetime) -> None: ...


@dataclass
class Round:
    sent: int = 0
    left: int = 0
    error: MailError | None = None


def send_round(queue: Queue, settings: MailSettings, password: str | None, *, cafile: str | None = None,
               now: Callable[[], datetime] = lambda: datetime.now(UTC), timeout: float = TIMEOUT) -> Round:
    """Send what is queued over one connection; a message leaves the queue once accepted."""
    items = queue.pending()
    result = Round(left=len(items))
    if not items:
        return result
    try:
        smtp = connect(settings, password, cafile=cafile, timeout=timeout)
    except MailError as error:
        result.error = error
        return result
    try:
        for item in items:
            try:
                smtp.sendmail(settings.sender, [item.recipient], item.data)
            except smtplib.SMTPRecipientsRefused as error:
                code, text = next(iter(error.recipients.values()))
                result.error = MailError("rejected", f"{settings.address}: refused {item.recipient} "
                                         f"({code} {_text(text)})")
                continue  # the others may still go; this one stays queued
            except smtplib.SMTPResponseException as error:
                result.error = MailError("rejected" if error.smtp_code >= 500 else "unreachable",
                                         f"{settings.address}: {error.smtp_code} {_text(error.smtp_error)}")
                if error.smtp_code >= 500:
                    continue
                break
            except (OSError, smtplib.SMTPException) as error:
                result.error = MailError("unreachable", f"{settings.address}: {_describe(error)}")
                break
            queue.delivered(item, now())
            log.info("sent %s to %s (%s)", item.kind, item.recipient, item.message_id)
            result.sent += 1
            result.left -= 1
    finally:
        _close(smtp, quit=True)
    return result


def run_loop(queue: Queue, settings: MailSettings, password: str | None, stop: threading.Event, *,
             poll: float = POLL_SECONDS, report: Callable[[Round], None] = lambda _round: None,
             cafile: str | None = None) -> None:
    """Rounds until ``stop``: every ``poll`` seconds, or after a failure in 2, 4, 8 … 300 s."""
    failures = 0
    while not stop.is_set():
        result = send_round(queue, settings, password, cafile=cafile)
        report(result)
        if result.error is not None:
            failures += 1
            wait = min(MAX_BACKOFF_SECONDS, 2.0 ** failures)
            log.error("%s (%d left; next try in %.0f s); fix: %s", result.error.reason, result.left, wait,
                      result.error.fix)
        else:
            failures = 0
            wait = poll
        stop.wait(wait)


class DaemonQueue:
    """The daemon's outbox, through ``mail_sync`` on its control socket (detoxd-mail.service):
    the messages and the server's settings come from there, and each accepted message is told
    at once (a kill -9 between the server's 250 and this word sends it again, same Message-ID)."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self.settings: MailSettings | None = None
        self._items: list[Queued] = []

    def _sync(self, **request: Any) -> dict[str, Any]:
        try:
            reply = self.client.request("mail_sync", timeout=30.0, **request)
        except ControlError as error:
            raise MailError("daemon", f"the daemon does not answer ({error})") from error
        if not reply.get("ok"):
            raise MailError("daemon", f"the daemon refused mail_sync: {reply.get('error')}")
        return reply

    def fetch(self) -> list[Queued]:
        reply = self._sync()
        settings = reply.get("mail")
        self.settings = settings_from_json(settings) if isinstance(settings, dict) else None
        sender = self.settings.sender if self.settings else ""
        self._items = [Queued(str(item["name"]), str(item["to"]), sender, str(item["message_id"]),
                              str(item["kind"]), str(item.get("subject", "")), str(item["queued_at"]),
                              str(item["data"]).encode("ascii"))
                       for item in reply.get("messages", []) if isinstance(item, dict)]
        return self._items

    def pending(self) -> list[Queued]:
        return list(self._items)

    def delivered(self, item: Queued, when: datetime) -> None:
        self._sync(delivered=[item.name])

    def report(self, result: Round) -> None:
        record: dict[str, Any] = {"sent": result.sent, "left": result.left}
        if result.error is not None:
            record.update(code=result.error.code, error=result.error.reason, fix=result.error.fix)
        self._sync(report=record)


def run_daemon_loop(queue: DaemonQueue, config_dir: Path, stop: threading.Event, *,
                    poll: float = POLL_SECONDS, cafile: str | None = None) -> None:
    """detoxd-mail.service: a round every ``poll`` seconds; after a failure in 2, 4 … 300 s."""
    from detoxd.netagent.agent import SecretError, read_secret_file

    failures = 0
    while not stop.is_set():
        try:
            items = queue.fetch()
            result = Round()
            if queue.settings is not None and items:
                try:
                    password = read_secret_file(queue.settings.password_file, "mail", config_dir)
                except SecretError as error:
                    result = Round(left=len(items), error=MailError("secret", str(error)))
                else:
                    result = send_round(queue, queue.settings, password, cafile=cafile)
            if result.error is not None or result.sent:
                queue.report(result)
        except MailError as error:  # the daemon does not answer
            result = Round(error=error)
        if result.error is not None:
            failures += 1
            wait = min(MAX_BACKOFF_SECONDS, 2.0 ** failures)
            log.error("%s (next try in %.0f s); fix: %s", result.error.reason, wait, result.error.fix)
        else:
            failures = 0
            wait = poll
        stop.wait(wait)


class DirectoryState:
    """The sender's last round, for status, beside the outbox (direct mode)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE

    def __call__(self, result: Round) -> None:
        record: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "left": result.left,
                                  "sent": result.sent}
        if result.error is not None:
            record.update(code=result.error.code, error=result.error.reason, fix=result.error.fix)
        with contextlib.suppress(OSError):
            durable.replace_file(self.path, json.dumps(record).encode(), mode=0o600)


def run_sender(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.core.yamlsource import ConfigError
    from detoxd.netagent.agent import SecretError, read_secret_file
    from detoxd.service.loader import load_config

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.outbox is None and not args.try_server:
        return _run_with_daemon(paths, args)
    try:
        settings = load_config(paths.config_dir).main.mail
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    if settings is None:
        print(f"detoxd: no `mail:` in {paths.config_dir}/detoxd.yaml: nothing to send through",
              file=sys.stderr)
        return EXIT_INVALID_CONFIG
    try:
        password = read_secret_file(settings.password_file, "mail", paths.config_dir)
    except SecretError as error:
        print(f"detoxd: {error}; fix: {FIXES['secret']}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    if args.try_server:
        try:
            print(f"[  ok] {try_server(settings, password)}")
        except MailError as error:
            print(f"[FAIL] {error.reason}\n       fix: {error.fix}")
            return EXIT_UNREACHABLE
        return EXIT_OK
    directory = args.outbox
    outbox = Outbox(directory)
    state = DirectoryState(directory)
    if args.once:
        result = send_round(outbox, settings, password)
        state(result)
        print(f"sent {result.sent}, {result.left} left in {directory}")
        if result.error is not None:
            print(f"detoxd: {result.error.reason}\n  fix: {result.error.fix}", file=sys.stderr)
        return EXIT_OK if result.left == 0 else EXIT_UNREACHABLE
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("sending %s's messages through %s", directory, settings.address)
    run_loop(outbox, settings, password, stop, report=state)
    return EXIT_OK


def _run_with_daemon(paths: Paths, args: argparse.Namespace) -> int:
    from detoxd.client import ControlClient

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    queue = DaemonQueue(ControlClient(paths.socket))
    if args.once:
        try:
            items = queue.fetch()
        except MailError as error:
            print(f"detoxd: {error.reason}", file=sys.stderr)
            return EXIT_UNREACHABLE
        if queue.settings is None:
            print("detoxd: the daemon has no `mail:` to send through", file=sys.stderr)
            return EXIT_INVALID_CONFIG if items else EXIT_OK
        from detoxd.netagent.agent import SecretError, read_secret_file

        try:
            password = read_secret_file(queue.settings.password_file, "mail", paths.config_dir)
        except SecretError as error:
            print(f"detoxd: {error}; fix: {FIXES['secret']}", file=sys.stderr)
            return EXIT_INVALID_CONFIG
        result = send_round(queue, queue.settings, password)
        queue.report(result)
        print(f"sent {result.sent}, {result.left} left")
        if result.error is not None:
            print(f"detoxd: {result.error.reason}\n  fix: {result.error.fix}", file=sys.stderr)
        return EXIT_OK if result.left == 0 else EXIT_UNREACHABLE
    log.info("sending the daemon's outbox (%s)", paths.socket)
    run_daemon_loop(queue, paths.config_dir, stop)
    return EXIT_OK


def _context(settings: MailSettings, cafile: str | None) -> ssl.SSLContext:
    if settings.tls_fingerprint is not None:
        # The pin replaces the CA check: _check_pin compares it before AUTH or any message.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=cafile)


def _check_pin(smtp: smtplib.SMTP, settings: MailSettings) -> None:
    if settings.tls_fingerprint is None:
        return
    sock = smtp.sock
    assert isinstance(sock, ssl.SSLSocket)
    digest = hashlib.sha256(sock.getpeercert(binary_form=True) or b"").digest()
    if digest != settings.tls_fingerprint:
        shown, pinned = fingerprint_text(digest), fingerprint_text(settings.tls_fingerprint)
        raise MailError("pin_mismatch", f"{settings.address}: certificate fingerprint {shown} does not "
                        f"match mail.tls_fingerprint {pinned}")


def _presented(settings: MailSettings, timeout: float) -> str:
    """The fingerprint the server presents, so the user can compare it and pin it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        if settings.security == "tls":
            with socket.create_connection((settings.server, settings.port), timeout=timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=settings.server) as tls:
                certificate = tls.getpeercert(binary_form=True) or b""
        else:
            with smtplib.SMTP(settings.server, settings.port, timeout=timeout) as smtp:
                smtp.starttls(context=context)
                sock = smtp.sock
                assert isinstance(sock, ssl.SSLSocket)
                certificate = sock.getpeercert(binary_form=True) or b""
        return fingerprint_text(hashlib.sha256(certificate).digest())
    except (OSError, smtplib.SMTPException):
        return "sha256:…"


def _close(smtp: smtplib.SMTP | None, *, quit: bool = False) -> None:
    if smtp is None:
        return
    with contextlib.suppress(OSError, smtplib.SMTPException):
        if quit:
            smtp.quit()
    with contextlib.suppress(OSError):
        smtp.close()


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())[:200]


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    return describe_error(error)

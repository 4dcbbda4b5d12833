"""A small JSON-over-HTTP(S) client for the engines' web APIs, with certificate pinning.

Household engines often serve HTTPS with a self-signed certificate. Without ``tls_fingerprint``
the certificate must verify against the system's CAs; with it, the SHA-256 of the server's
certificate (DER) must equal the pin, checked right after the handshake and before a single
byte of the request (which may carry a password) is sent. Error messages name the host and
what went wrong, never a header or a body we sent.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from detoxd.netagent.engines import DnsEngineError

TIMEOUT = 15.0
MAX_RESPONSE_BYTES = 64 << 20  # a Pi-hole's full deny list of a million names is ~100 MB; ours far less


def fingerprint_text(digest: bytes) -> str:
    return "sha256:" + ":".join(f"{byte:02X}" for byte in digest)


@dataclass
class Response:
    status: int
    body: Any  # parsed JSON, or None when empty / not JSON
    headers: dict[str, str]


class WebApi:
    def __init__(self, base_url: str, pin: bytes | None = None, *, timeout: float = TIMEOUT,
                 cafile: str | None = None) -> None:
        parts = urlsplit(base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.pin = pin
        self.timeout = timeout
        self._cafile = cafile  # tests only: a CA to trust instead of the system's
        self._connection: http.client.HTTPConnection | None = None

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port else "")

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Response:
        data = None if body is None else json.dumps(body).encode()
        sent_headers = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            sent_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once
            connection = self._connect()
            try:
                connection.request(method, self.prefix + path, body=data, headers=sent_headers)
                reply = connection.getresponse()
                raw = reply.read(MAX_RESPONSE_BYTES + 1)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    lost = exc.__class__.__name__
                    raise DnsEngineError("unreachable", f"{self.origin}: connection lost ({lost})") from exc
                continue
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise DnsEngineError("unreachable", f"{self.origin}: {_describe(exc)}") from exc
            if reply.will_close:
                self.close()
            if len(raw) > MAX_RESPONSE_BYTES:
                self.close()
                raise DnsEngineError("error",
                                     f"{self.origin}: response larger than {MAX_RESPONSE_BYTES} bytes")
            return Response(reply.status, _json(raw), {k.lower(): v for k, v in reply.getheaders()})
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is not None:
            return self._connection
        if self.scheme == "http":
            connection: http.client.HTTPConnection = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout)
        else:
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                     context=self._tls_context())
        try:
            connection.connect()
            if self.scheme == "https":
                self._check_pin(connection)
        except ssl.SSLCertVerificationError as exc:
            connection.close()
            raise DnsEngineError("tls_error", f"{self.origin}: certificate not trusted "
                                 f"({exc.verify_message}); for a self-signed certificate set "
                                 f"tls_fingerprint ({self._server_fingerprint_hint()})") from exc
        except DnsEngineError:
            connection.close()
            raise
        except OSError as exc:
            connection.close()
            raise DnsEngineError("unreachable", f"{self.origin}: {_describe(exc)}") from exc
        self._connection = connection
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self.pin is not None:
            # The pin replaces the CA check: a self-signed certificate is accepted exactly when
            # its fingerprint matches, which _check_pin verifies before anything is sent.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self._cafile)

    def _check_pin(self, connection: http.client.HTTPConnection) -> None:
        if self.pin is None:
            return
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        certificate = sock.getpeercert(binary_form=True) or b""
        digest = hashlib.sha256(certificate).digest()
        if digest != self.pin:
            raise DnsEngineError("tls_error", f"{self.origin}: certificate fingerprint "
                              f"{fingerprint_text(digest)} does not match tls_fingerprint "
                              f"{fingerprint_text(self.pin)}")

    def _server_fingerprint_hint(self) -> str:
        """The fingerprint the server presents, so the user can compare it and pin it."""
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with socket.create_connection((self.host, self.port or 443), timeout=self.timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=self.host) as tls:
                certificate = tls.getpeercert(binary_form=True) or b""
            return f"the server presents {fingerprint_text(hashlib.sha256(certificate).digest())}"
        except OSError:
            return "sha256:…"


def _json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc.__class__.__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return exc.__class__.__name__

"""Mail to the peers through the user's own server: the `mail:`, `peers_informed:` and
`share_activity:` settings of detoxd.yaml (pure).

detoxd never relays mail itself: it hands messages to the SMTP server the user already has
(``mail.server``), from a separate unprivileged unit (detoxd-mail.service, the root daemon has no
network). The password is never in detoxd.yaml: ``password_file`` names a file in the config
directory (root's, mode 0600, checked like the ``network:`` engines' secrets) that the mail unit
gets through systemd's LoadCredential=. A self-signed server is trusted through
``tls_fingerprint``, the SHA-256 of its certificate, exactly as the household DNS engines are.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from detoxd.core.network import _fingerprint, _relative_file
from detoxd.core.sessions import _email
from detoxd.core.yamlsource import Node, Source, as_bool, as_mapping, as_number, as_str, as_str_list, join

SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# `pin` (issue 25's word) and `tls_fingerprint` (the household engines' word) are one setting.
MAIL_KEYS = {"server", "port", "security", "from", "username", "password_file", "tls_fingerprint", "pin"}
# What the peers may be told about, as written in `peers_informed:`.
INFORMED_KINDS = ("tamper", "stop", "end_attempt", "allowance")

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


@dataclass(frozen=True)
class MailSettings:
    """`mail:`: the user's SMTP server. Holds no secret: only the password file's name."""

    server: str
    port: int
    security: str  # one of SECURITY
    sender: str  # `from:`
    username: str | None = None
    password_file: str | None = None  # relative to the config dir
    tls_fingerprint: bytes | None = None  # SHA-256 of the server certificate (DER), pinned
    line: int = field(default=0, compare=False)
    password_file_line: int = field(default=0, compare=False)

    @property
    def address(self) -> str:
        """host:port as shown in status, doctor and errors (never a secret)."""
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}"


def is_loopback(server: str) -> bool:
    if server.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(server).is_loopback
    except ValueError:
        return False


def parse_mail(source: Source, node: Node, path: str) -> MailSettings | None:
    fields = as_mapping(source, node, path, MAIL_KEYS)
    if fields is None:
        return None
    ok = True
    for key in ("server", "from"):
        if key not in fields:
            source.error(node.line, join(path, key), "required")
            ok = False

    def text(key: str) -> tuple[str, int] | None:
        if key not in fields:
            return None
        value = as_str(source, fields[key], join(path, key))
        return None if value is None else (value.strip(), fields[key].line)

    server = _server(source, text("server"), join(path, "server"))
    security = "starttls"
    if "security" in fields:
        given = text("security")
        if given is None or given[0].lower() not in SECURITY:
            if given is not None:
                source.error(given[1], join(path, "security"),
                             f"expected one of {', '.join(SECURITY)}, got {given[0][:40]!r}")
            ok = False
        else:
            security = given[0].lower()
    port = DEFAULT_PORTS[security]
    if "port" in fields:
        number = as_number(source, fields["port"], join(path, "port"), minimum=1, maximum=65535,
                           integer=True)
        if number is None:
            ok = False
        else:
            port = int(number)
    sender = _email(source, fields["from"], join(path, "from")) if "from" in fields else None
    username = text("username")
    if username is not None and (not username[0] or any(ord(c) < 32 for c in username[0])):
        source.error(username[1], join(path, "username"), "must be a non-empty line of text")
        ok = False
    password_file = _relative_file(source, text("password_file"), join(path, "password_file"))
    pin_key = "pin" if "pin" in fields else "tls_fingerprint"
    if "pin" in fields and "tls_fingerprint" in fields:
        source.error(fields["pin"].line, join(path, "pin"), "give pin or tls_fingerprint, not both")
        ok = False
    fingerprint = _fingerprint(source, text(pin_key), join(path, pin_key))
    if ("password_file" in fields and password_file is None) or (
            pin_key in fields and fingerprint is None):
        ok = False
    if (username is None) != (password_file is None) and ok:
        missing, given_key = (("password_file", "username") if password_file is None
                              else ("username", "password_file"))
        source.error(fields[given_key].line, join(path, missing), f"required with {given_key}")
        ok = False
    if security == "none" and server is not None and not is_loopback(server):
        # Only to a relay on this machine: otherwise the password and the mail cross the network in clear.
        source.error(fields["security"].line, join(path, "security"),
                     "none is allowed only to a loopback address (127.0.0.1, ::1, localhost), "
                     f"not {server!r}; use starttls or tls")
        ok = False
    if security == "none" and fingerprint is not None:
        source.error(fields[pin_key].line, join(path, pin_key),
                     "a certificate pin needs security: starttls or tls")
        ok = False
    if not ok or server is None or sender is None:
        return None
    return MailSettings(server, port, security, sender, username[0] if username else None, password_file,
                        fingerprint, node.line,
                        fields["password_file"].line if "password_file" in fields else 0)


def _server(source: Source, given: tuple[str, int] | None, path: str) -> str | None:
    if given is None:
        return None
    raw, line = given
    host = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(host):
        return host.rstrip(".").lower()
    source.error(line, path,
                 f"expected a host name or IP address (port: goes in mail.port), got {raw[:80]!r}")
    return None


def parse_peers_informed(source: Source, node: Node, path: str) -> tuple[str, ...]:
    """`peers_informed: [tamper, stop, end_attempt, allowance]`: what the peers are told about."""
    kinds: list[str] = []
    for value, line, item_path in as_str_list(source, node, path):
        kind = value.strip().lower()
        if kind not in INFORMED_KINDS:
            source.error(line, item_path,
                         f"unknown kind {value[:40]!r} (expected: {', '.join(INFORMED_KINDS)})")
        elif kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


def parse_share_activity(source: Source, node: Node, path: str) -> bool:
    value = as_bool(source, node, path)
    return bool(value)


def settings_to_json(settings: MailSettings) -> dict[str, Any]:
    """For the mail agent. Holds no secret: only the password file's name."""
    return {"server": settings.server, "port": settings.port, "security": settings.security,
            "from": settings.sender, "username": settings.username, "password_file": settings.password_file,
            "tls_fingerprint": settings.tls_fingerprint.hex() if settings.tls_fingerprint else None}


def settings_from_json(data: dict[str, Any]) -> MailSettings:
    pin = data.get("tls_fingerprint")
    return MailSettings(str(data["server"]), int(data["port"]), str(data["security"]), str(data["from"]),
                        data.get("username"), data.get("password_file"),
                        bytes.fromhex(pin) if isinstance(pin, str) else None)

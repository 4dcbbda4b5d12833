"""What the browser extension asks the daemon (pure): is this URL blocked, by what, and what opens it.

The extension sends the URL of every main-frame navigation (``browser_check``); the answer is what
detoxd enforces, no more: a *domain* rule blocks a URL whose host is one of the names in the hosts
file now (exactly: the hosts file blocks names, not their sub-domains), a *path* rule
(``paths:`` in blocklist.yaml, ``host/path-prefix``) a URL of that host or a sub-domain whose path
starts with the prefix, as the browsers' ``URLBlocklist`` and ``WebsiteFilter`` do. The allowance
named in the answer is the one whose sites cover a host that the detox blocks (whether it is open
now or not); an allowance never opens a path.

A URL is validated before anything reads it: a string of at most :data:`MAX_URL_CHARS` printable
ASCII characters (browsers send hosts in punycode and paths percent-encoded), a host of letters,
digits, ``-``, ``_`` and dots, or an IP address. Other schemes (``about:``, ``chrome:``,
``file:``) are never blocked.

Also the checks of ``browser_time``'s figures: a local day as ``YYYY-MM-DD`` and a map of rule or
allowance names to seconds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

from detoxd.core.allowance_rules import Allowance

MAX_URL_CHARS = 8192
WEB_SCHEMES = frozenset({"http", "https"})
DOMAIN = "domain"
PATH = "path"
MAX_TIME_KEYS = 64  # rules and allowances in one browser_time
MAX_SECONDS_PER_DAY = 25 * 3600  # a day with a DST change back has 25 hours
MAX_RULE_CHARS = 1200  # a path entry: host (253) + path (1000)
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class UrlError(ValueError):
    """Not a URL this protocol takes (the reply's error)."""


@dataclass(frozen=True, slots=True)
class WebUrl:
    host: str  # lower case, no trailing dot; an IPv6 address without brackets
    path: str  # as sent (percent-encoded), "/" at least


@dataclass(frozen=True, slots=True)
class Verdict:
    blocked: bool
    kind: str | None = None  # DOMAIN or PATH when blocked
    rule: str | None = None  # the blocked name or the `paths:` entry
    allowance: str | None = None  # the allowance whose sites cover the host, if any

    def to_json(self) -> dict[str, Any]:
        return {"blocked": self.blocked, "kind": self.kind, "rule": self.rule, "allowance": self.allowance}


def parse_url(value: object) -> WebUrl | None:
    """``value`` as an http(s) URL; None for a URL of another scheme. Raises UrlError."""
    if not isinstance(value, str):
        raise UrlError("url must be a string")
    if not value or len(value) > MAX_URL_CHARS or _PRINTABLE_ASCII.fullmatch(value) is None:
        raise UrlError(f"url must be 1 to {MAX_URL_CHARS} printable ASCII characters")
    scheme, colon, _ = value.partition(":")
    if not colon or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise UrlError("url has no scheme")
    if scheme.lower() not in WEB_SCHEMES:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as error:
        raise UrlError(f"url is not valid: {error}") from None
    if not host:
        raise UrlError("url has no host")
    host = host.removesuffix(".")  # the fully qualified form names the same host
    if not _valid_host(host):
        raise UrlError("url's host is not a host name or an IP address")
    return WebUrl(host, parts.path or "/")


def _valid_host(host: str) -> bool:
    if len(host) <= 253 and _HOST.fullmatch(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check(url: WebUrl | None, *, blocked: Container[str], enforced: Container[str],
          paths: Iterable[str], allowances: Sequence[Allowance]) -> Verdict:
    """Whether ``url`` is blocked now. ``blocked``: the names in the hosts file now;
    ``enforced``: those and the names open allowances let through; ``paths``: the `paths:`
    entries the browsers' policies block now."""
    if url is None:
        return Verdict(False)
    allowance = None
    if url.host in enforced:
        allowance = next((rule.name for rule in allowances if rule.opens(url.host)), None)
    if url.host in blocked:
        return Verdict(True, DOMAIN, url.host, allowance)
    for entry in sorted(paths):
        if path_matches(entry, url):
            return Verdict(True, PATH, entry, None)
    return Verdict(False, None, None, allowance)


def path_matches(entry: str, url: WebUrl) -> bool:
    """A `paths:` entry (``host/prefix``) against a URL: the host or a sub-domain of it, and a
    path that starts with the prefix (``linkedin.com/feed`` matches ``/feed/`` and ``/feedback``,
    as the browsers' filters do)."""
    host, slash, prefix = entry.partition("/")
    if url.host != host and not url.host.endswith("." + host):
        return False
    return url.path.startswith(slash + prefix)


def parse_day(value: object, *, today: date, days_back: int) -> date:
    """A local day from ``today - days_back`` to ``today + 1`` (a browser a little ahead of
    midnight). Raises ValueError with the reply's message."""
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("day must be YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"day {value!r} does not exist") from None
    if not today - timedelta(days=days_back) <= day <= today + timedelta(days=1):
        raise ValueError(f"day {value} is not within the last {days_back} days")
    return day


def parse_seconds(value: object, known: Container[str]) -> tuple[dict[str, int], int]:
    """``{rule or allowance: seconds}``: the entries ``known`` holds (others are dropped and
    counted: nothing else a person browsed is kept), zeros left out. Raises ValueError."""
    if not isinstance(value, dict) or len(value) > MAX_TIME_KEYS:
        raise ValueError(f"seconds must be an object of at most {MAX_TIME_KEYS} entries")
    kept: dict[str, int] = {}
    dropped = 0
    for name, seconds in value.items():
        if not isinstance(name, str) or len(name) > MAX_RULE_CHARS:
            raise ValueError("seconds: each key must be a rule or an allowance's name")
        if type(seconds) is not int or not 0 <= seconds <= MAX_SECONDS_PER_DAY:
            raise ValueError(f"seconds: each value must be a whole number from 0 to {MAX_SECONDS_PER_DAY}")
        if name not in known:
            dropped += 1
        elif seconds:
            kept[name] = seconds
    return dict(sorted(kept.items())), dropped

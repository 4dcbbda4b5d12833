"""AdGuard Home through its API under ``/control`` (openapi/openapi.yaml, API version 0.107).

- Authentication: the spec's global ``security: basicAuth`` — every request carries HTTP Basic
  credentials, so there is no session to hold. ``password_file`` holds ``name:password`` (AdGuard
  Home users have names). 401/403 mean the credentials were refused.
- Rules: ``GET /control/filtering/status`` → ``user_rules``; ``POST /control/filtering/set_rules
  {"rules": [...]}`` *replaces the whole list*, so every change is read-modify-write: the user's
  rules are kept as they are and detoxd's sit between its marker comments (``! detoxd begin``,
  ``! detoxd end``). Rules use AdGuard's DNS filtering syntax: ``||name^`` (the name and its
  subdomains), ``$client=ip|cidr`` for the named clients, ``@@`` for exceptions,
  ``$dnsrewrite=NXDOMAIN`` for the canary.
- Pausing: ``GET /control/status`` → ``protection_enabled``; undone with ``POST
  /control/protection {"enabled": true}``; filtering switched off (``FilterStatus.enabled``) is
  undone with ``POST /control/filtering/config {"enabled": true, "interval": ...}``.
- Query log (``GET /control/querylog``, newest first): ``response_status=blocked`` (deprecated
  in favour of ``reason`` but understood by every 0.107 release, unlike ``reason``), ``limit`` per
  page, the next page ``older_than`` the previous page's ``oldest``; each item gives ``time``
  (RFC 3339), ``client`` (the IP), ``question.name`` and ``reason`` (only ``FilteredBlackList``,
  the reason of user rules, is counted). ``GET /control/querylog/config`` says whether the log
  is ``enabled`` at all. The ``search`` parameter is not used: detoxd's names are too many to
  search one by one, and which names are detoxd's is decided by the agent (core/lookups).
After a crash the markers are found again in the rules, so nothing is ever added twice.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from detoxd.core import dnsengines
from detoxd.core.lookups import Lookup
from detoxd.core.network import (
    DnsEngineConfig,
    adguard_block,
    adguard_merged,
    adguard_rules,
    adguard_without_block,
)
from detoxd.netagent.engines import DnsEngine, DnsEngineError
from detoxd.netagent.webapi import Response, WebApi

log = logging.getLogger("detoxd.network")

QUERY_PAGE = 1000
MAX_QUERY_PAGES = 20  # as for Pi-hole: 20k blocked lookups in two days, the rest uncounted
_FRACTION = re.compile(r"(\.\d{6})\d+")  # Go writes nanoseconds; fromisoformat takes micro


def basic_credentials(secret: str) -> str:
    name, colon, password = secret.strip("\r\n").partition(":")
    if not colon or not name:
        raise DnsEngineError("auth_failed", "the password_file of an adguardhome engine holds name:password")
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


class AdGuardHomeEngine(DnsEngine):
    spec = dnsengines.BY_KIND["adguardhome"]
    has_query_log = True

    @classmethod
    def from_config(cls, config: DnsEngineConfig, secret: str | None) -> AdGuardHomeEngine:
        return cls(config, secret or "")

    def __init__(self, config: DnsEngineConfig, secret: str, *, cafile: str | None = None) -> None:
        assert config.url is not None
        self.config = config
        self._authorization = basic_credentials(secret)
        self.api = WebApi(config.url, config.tls_fingerprint, cafile=cafile)
        self._wanted: list[str] | None = None

    def apply(self, names: Sequence[str], allowed: Sequence[str]) -> None:
        self._wanted = adguard_rules(names, allowed, self.config.clients)
        self._sync()

    def check(self) -> list[str]:
        if self._wanted is None:
            return []
        return self._sync()

    def remove(self) -> None:
        self._wanted = None
        rules = self._user_rules()[0]
        if adguard_block(rules) is not None:
            self._set_rules(adguard_without_block(rules))
            log.info("adguardhome %s: removed detoxd's rules", self.api.origin)

    def describe(self) -> str:
        status = self._call("GET", "/control/status")
        version = status.body.get("version", "?") if isinstance(status.body, dict) else "?"
        return f"AdGuard Home at {self.api.origin}: version {version}, credentials accepted"

    def read_query_log(self, since: datetime, until: datetime) -> list[Lookup] | None:
        """The lookups AdGuard Home's user rules blocked since ``since`` (``until`` is now: the
        log is read from its newest end); None when its query log is off or not readable."""
        del until
        config = self._log_request("/control/querylog/config")
        if config is None or (isinstance(config.body, dict) and config.body.get("enabled") is False):
            return None
        found: list[Lookup] = []
        older_than = ""
        for _ in range(MAX_QUERY_PAGES):
            query = {"response_status": "blocked", "limit": QUERY_PAGE,
                     **({"older_than": older_than} if older_than else {})}
            reply = self._log_request("/control/querylog?" + urlencode(query))
            if reply is None:
                return None
            items = reply.body.get("data") if isinstance(reply.body, dict) else None
            if not isinstance(items, list):
                return found
            page = _adguard_lookups(items)
            found += [lookup for lookup in page if lookup.at >= since]
            oldest = reply.body.get("oldest")
            reached = _parse_time(oldest)
            if len(items) < QUERY_PAGE or reached is None or reached < since:
                return found
            assert isinstance(oldest, str)
            older_than = oldest
        log.warning("adguardhome %s: more than %d blocked lookups since %s: the rest are not counted",
                    self.api.origin, len(found), since.isoformat(timespec="minutes"))
        return found

    def _log_request(self, path: str) -> Response | None:
        """A query-log call: None when this server has no such endpoint or refuses this user."""
        reply = self.api.request("GET", path, None, {"Authorization": self._authorization})
        if reply.status in (403, 404, 405):
            return None
        if reply.status == 401:
            raise DnsEngineError("auth_failed", f"{self.api.origin}: the credentials were not accepted")
        self._ok(reply, f"GET {path.partition('?')[0]}")
        return reply

    def _sync(self) -> list[str]:
        assert self._wanted is not None
        drift = []
        rules, filtering = self._user_rules()
        if adguard_block(rules) != self._wanted:
            had_block = adguard_block(rules) is not None
            self._set_rules(adguard_merged(rules, self._wanted))
            if had_block:
                drift.append("detoxd's user rules were edited: restored")
        if filtering.get("enabled") is False:
            settings = {"enabled": True, "interval": filtering.get("interval", 24)}
            self._ok(self._call("POST", "/control/filtering/config", settings), "enable filtering")
            drift.append("filtering was switched off: switched on again")
        status = self._call("GET", "/control/status")
        if isinstance(status.body, dict) and status.body.get("protection_enabled") is False:
            self._ok(self._call("POST", "/control/protection", {"enabled": True}), "enable protection")
            drift.append("protection was paused: enabled again")
        return drift

    def _user_rules(self) -> tuple[list[str], dict[str, Any]]:
        reply = self._call("GET", "/control/filtering/status")
        if not isinstance(reply.body, dict):
            raise DnsEngineError("error", f"{self.api.origin}: filtering status is not JSON")
        rules = [rule for rule in reply.body.get("user_rules") or [] if isinstance(rule, str)]
        return rules, reply.body

    def _set_rules(self, rules: list[str]) -> None:
        self._ok(self._call("POST", "/control/filtering/set_rules", {"rules": rules}), "set rules")

    def _call(self, method: str, path: str, body: Any = None) -> Response:
        reply = self.api.request(method, path, body, {"Authorization": self._authorization})
        if reply.status in (401, 403):
            raise DnsEngineError("auth_failed", f"{self.api.origin}: the credentials were not accepted")
        if reply.status == 429:
            raise DnsEngineError("refused", f"{self.api.origin}: out of login attempts; retrying later")
        self._ok(reply, f"{method} {path}")
        return reply

    def _ok(self, reply: Response, what: str) -> None:
        if not 200 <= reply.status < 300:
            raise DnsEngineError("error", f"{self.api.origin}: {what}: HTTP {reply.status}")


def _adguard_lookups(items: list[Any]) -> list[Lookup]:
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        question, at, device = item.get("question"), item.get("time"), item.get("client")
        name = question.get("name") if isinstance(question, dict) else None
        if not (isinstance(name, str) and isinstance(at, str) and isinstance(device, str)):
            continue
        when = _parse_time(at)
        if when is not None and item.get("reason") == "FilteredBlackList":
            found.append(Lookup(when, device, name))
    return found


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(_FRACTION.sub(r"\1", text))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None

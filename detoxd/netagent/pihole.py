"""A Pi-hole v6 through its REST API under ``/api`` (FTL's OpenAPI spec, src/api/docs/content/specs,
Pi-hole API version 6.0 as shipped with FTL v6.x).

- Session login (auth.yaml): ``POST /api/auth {"password"}`` → ``session.sid``, sent as the
  ``X-FTL-SID`` header; 401 with ``session.valid: false`` is a wrong password; 429 with
  ``api_seats_exceeded`` means every API session slot is taken (``webserver.api.max_sessions``);
  the session is given back with ``DELETE /api/auth`` so detoxd never holds a seat for long.
- Entries (domains.yaml): one ``deny/exact`` domain per blocked name, ``POST
  /api/domains/deny/exact`` with ``domain`` as an array, detoxd's marker as ``comment``; the reply's
  ``processed.errors`` lists duplicates ("UNIQUE constraint failed"); ``POST
  /api/domains:batchDelete`` removes ours at the end; ``PUT`` repairs one that was disabled.
- Clients (groups.yaml, clients.yaml): with ``clients:``, detoxd's entries belong to a group named
  ``detoxd`` that holds exactly the named clients (each keeps its own groups, so the household's
  normal lists still apply to it); without, they belong to the Default group 0 (every device).
- Blocking (dns.yaml): ``GET /api/dns/blocking``; a pause (``"disabled"``) is undone with
  ``POST /api/dns/blocking {"blocking": true, "timer": null}``.
- Query log (queries.yaml, ``GET /api/queries``): only the lookups an exact deny entry blocked
  (``status=DENYLIST``, FTL's status name for "blocked by exact denylist") ``from``/``until`` a
  time, ``length`` per page, paged with ``start`` from the first page's ``cursor`` (the spec's
  server-side pagination, stable while new queries arrive). Each row gives ``time``, ``domain``,
  ``client.ip``. Which of these names are detoxd's is decided by the agent (core/lookups).
Every entry and client detoxd creates carries the marker comment, so after a crash a fresh agent
finds exactly its own — no local record needed, and nothing is ever added twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from detoxd.core import dnsengines
from detoxd.core.lookups import Lookup
from detoxd.core.network import MARKER, MARKER_COMMENT, DnsEngineConfig, PiholeEntry, pihole_plan
from detoxd.netagent.engines import DnsEngine, DnsEngineError
from detoxd.netagent.webapi import Response, WebApi

log = logging.getLogger("detoxd.network")

GROUP = MARKER
DEFAULT_GROUP = 0
DENY_EXACT = "/api/domains/deny/exact"
QUERY_PAGE = 1000
MAX_QUERY_PAGES = 20  # 20k blocked lookups in two days: more are left uncounted (and logged)


class PiholeEngine(DnsEngine):
    spec = dnsengines.BY_KIND["pihole"]
    has_query_log = True
    blocks_subdomains = False  # exact entries

    @classmethod
    def from_config(cls, config: DnsEngineConfig, secret: str | None) -> PiholeEngine:
        return cls(config, secret or "")

    def __init__(self, config: DnsEngineConfig, password: str, *, cafile: str | None = None) -> None:
        assert config.url is not None
        self.config = config
        self._password = password
        self.api = WebApi(config.url, config.tls_fingerprint, cafile=cafile)
        self._sid: str | None = None
        self._wanted: tuple[str, ...] | None = None

    # ---- the target ----

    def apply(self, names: Sequence[str], allowed: Sequence[str]) -> None:
        del allowed  # exact entries: an allowed name is simply not among the names
        self._wanted = tuple(names)
        try:
            self._sync(count_drift=False)
        finally:
            self._logout()

    def check(self) -> list[str]:
        if self._wanted is None:
            return []
        try:
            return self._sync(count_drift=True)
        finally:
            self._logout()

    def remove(self) -> None:
        self._wanted = None
        try:
            group = self._find_group()
            ours = [e.domain for e in self._entries() if e.ours]
            if ours:
                self._ok(self._call("POST", "/api/domains:batchDelete",
                                    [{"item": name, "type": "deny", "kind": "exact"} for name in ours]),
                         "batch delete", (204, 404))
            if group is not None:
                self._release_clients(group)
                self._ok(self._call("DELETE", f"/api/groups/{GROUP}"), "delete group", (204, 404))
            log.info("pihole %s: removed %d entries%s", self.api.origin, len(ours),
                     " and the detoxd group" if group is not None else "")
        finally:
            self._logout()

    def describe(self) -> str:
        try:
            reply = self._call("GET", "/api/info/version")
            version = _dig(reply.body, "version", "ftl", "local", "version") or "?"
            return f"Pi-hole at {self.api.origin}: FTL {version}, password accepted"
        finally:
            self._logout()

    def read_query_log(self, since: datetime, until: datetime) -> list[Lookup] | None:
        """The lookups detoxd's exact deny entries blocked in [since, until]; None when this
        Pi-hole does not let us read its query log (no such endpoint, or not permitted)."""
        window = {"from": int(since.timestamp()), "until": int(until.timestamp()) + 1,
                  "status": "DENYLIST", "length": QUERY_PAGE}
        found: list[Lookup] = []
        cursor: int | None = None
        try:
            for page in range(MAX_QUERY_PAGES):
                query = {**window, "start": page * QUERY_PAGE, **({"cursor": cursor} if cursor else {})}
                reply = self._call("GET", "/api/queries?" + urlencode(query))
                if reply.status in (403, 404):
                    return None
                self._ok(reply, "read the query log")
                rows = _dig(reply.body, "queries") or []
                found += _pihole_lookups(rows)
                cursor = cursor or _int(_dig(reply.body, "cursor"))
                if len(rows) < QUERY_PAGE or cursor is None:
                    return found
            log.warning("pihole %s: more than %d blocked lookups since %s: the rest are not counted",
                        self.api.origin, len(found), since.isoformat(timespec="minutes"))
            return found
        finally:
            self._logout()

    # ---- keeping it in sync ----

    def _sync(self, *, count_drift: bool) -> list[str]:
        assert self._wanted is not None
        drift: list[str] = []
        group = self._ensure_group(drift) if self.config.clients else DEFAULT_GROUP
        entries = self._entries()
        plan = pihole_plan(entries, self._wanted, group)
        if plan.add:
            self._add(plan.add, group)
            if count_drift:
                drift.append(f"{len(plan.add)} entries missing (e.g. {plan.add[0]}): re-added")
        for name in plan.repair:
            self._ok(self._call("PUT", f"{DENY_EXACT}/{quote(name, safe='')}",
                                {"type": "deny", "kind": "exact", "comment": MARKER_COMMENT,
                                 "groups": [group], "enabled": True}), f"repair {name}")
        if plan.repair:
            drift.append(f"{len(plan.repair)} entries disabled or moved (e.g. {plan.repair[0]}): repaired")
        if plan.delete:
            self._ok(self._call("POST", "/api/domains:batchDelete",
                                [{"item": n, "type": "deny", "kind": "exact"} for n in plan.delete]),
                     "batch delete", (204, 404))
        if self.config.clients:
            drift += self._ensure_clients(group)
        drift += self._ensure_blocking()
        return drift if count_drift else []

    def _add(self, names: Sequence[str], group: int) -> None:
        reply = self._call("POST", DENY_EXACT, {"domain": list(names), "comment": MARKER_COMMENT,
                                                "groups": [group], "enabled": True})
        if reply.status == 400 and _dig(reply.body, "error", "key") == "database_error":
            # One name that exists already fails a single-domain POST (duplicate): the next
            # check reads the list again and repairs it as one of ours or leaves the user's.
            log.info("pihole %s: %s", self.api.origin, _dig(reply.body, "error", "hint"))
            return
        self._ok(reply, "add entries", (200, 201))
        errors = _dig(reply.body, "processed", "errors") or []
        if errors:
            log.info("pihole %s: %d entries not added (%s)", self.api.origin, len(errors),
                     str(errors[0].get("error", ""))[:120] if isinstance(errors[0], dict) else "")

    def _entries(self) -> list[PiholeEntry]:
        reply = self._call("GET", DENY_EXACT)
        self._ok(reply, "list entries")
        entries = []
        for row in _dig(reply.body, "domains") or []:
            if isinstance(row, dict) and isinstance(row.get("domain"), str):
                entries.append(PiholeEntry(row["domain"], row.get("comment"),
                                           tuple(g for g in row.get("groups") or [] if isinstance(g, int)),
                                           bool(row.get("enabled", True))))
        return entries

    def _find_group(self) -> int | None:
        reply = self._call("GET", "/api/groups")
        self._ok(reply, "list groups")
        for group in _dig(reply.body, "groups") or []:
            if isinstance(group, dict) and group.get("name") == GROUP and isinstance(group.get("id"), int):
                return int(group["id"])
        return None

    def _ensure_group(self, drift: list[str]) -> int:
        reply = self._call("GET", "/api/groups")
        self._ok(reply, "list groups")
        for group in _dig(reply.body, "groups") or []:
            if isinstance(group, dict) and group.get("name") == GROUP:
                if not group.get("enabled", True):
                    self._ok(self._call("PUT", f"/api/groups/{GROUP}",
                                        {"name": GROUP, "comment": MARKER_COMMENT, "enabled": True}),
                             "enable group")
                    drift.append("the detoxd group was disabled: enabled again")
                return int(group["id"])
        reply = self._call("POST", "/api/groups", {"name": GROUP, "comment": MARKER_COMMENT, "enabled": True})
        self._ok(reply, "create group", (200, 201))
        created = self._find_group()
        if created is None:
            raise DnsEngineError("error", f"{self.api.origin}: the detoxd group was not created")
        return created

    def _clients(self) -> dict[str, dict[str, Any]]:
        reply = self._call("GET", "/api/clients")
        self._ok(reply, "list clients")
        return {str(row["client"]).lower(): row for row in _dig(reply.body, "clients") or []
                if isinstance(row, dict) and "client" in row}

    def _ensure_clients(self, group: int) -> list[str]:
        drift = []
        present = self._clients()
        for client in self.config.clients:
            row = present.get(client.lower())
            if row is None:
                self._ok(self._call("POST", "/api/clients", {"client": client, "comment": MARKER_COMMENT,
                                                             "groups": [DEFAULT_GROUP, group]}),
                         f"add client {client}", (200, 201))
                if present:
                    drift.append(f"client {client} was missing: added again")
                continue
            groups = [g for g in row.get("groups") or [] if isinstance(g, int)]
            if group not in groups:
                self._ok(self._call("PUT", f"/api/clients/{quote(str(row['client']), safe='')}",
                                    {"comment": row.get("comment"), "groups": [*groups, group]}),
                         f"regroup client {client}")
                drift.append(f"client {client} was taken out of the detoxd group: put back")
        return drift

    def _release_clients(self, group: int) -> None:
        for row in self._clients().values():
            groups = [g for g in row.get("groups") or [] if isinstance(g, int)]
            if group not in groups:
                continue
            path = f"/api/clients/{quote(str(row['client']), safe='')}"
            rest = [g for g in groups if g != group]
            if row.get("comment") == MARKER_COMMENT and rest in ([], [DEFAULT_GROUP]):
                self._ok(self._call("DELETE", path), "delete client", (204, 404))
            else:
                self._ok(self._call("PUT", path, {"comment": row.get("comment"), "groups": rest}),
                         "release client")

    def _ensure_blocking(self) -> list[str]:
        reply = self._call("GET", "/api/dns/blocking")
        self._ok(reply, "blocking status")
        if _dig(reply.body, "blocking") in ("enabled", None):
            return []
        self._ok(self._call("POST", "/api/dns/blocking", {"blocking": True, "timer": None}),
                 "enable blocking")
        return [f"blocking was {_dig(reply.body, 'blocking')}: enabled again"]

    # ---- the session ----

    def _call(self, method: str, path: str, body: Any = None) -> Response:
        if self._sid is None:
            self._login()
        reply = self.api.request(method, path, body, {"X-FTL-SID": self._sid or ""})
        if reply.status == 401:  # the session expired or was deleted in the web interface
            self._sid = None
            self._login()
            reply = self.api.request(method, path, body, {"X-FTL-SID": self._sid or ""})
        return reply

    def _login(self) -> None:
        reply = self.api.request("POST", "/api/auth", {"password": self._password})
        if reply.status == 429:
            key = _dig(reply.body, "error", "key")
            if key == "api_seats_exceeded":
                raise DnsEngineError("refused", f"{self.api.origin}: no free API session "
                                  "(Pi-hole's webserver.api.max_sessions); retrying")
            raise DnsEngineError("refused", f"{self.api.origin}: too many login attempts; retrying later")
        sid = _dig(reply.body, "session", "sid")
        if reply.status == 200 and _dig(reply.body, "session", "valid") is True:
            self._sid = sid if isinstance(sid, str) else ""  # "" : no password set on this Pi-hole
            return
        if reply.status == 401:
            raise DnsEngineError("auth_failed", f"{self.api.origin}: the password was not accepted")
        raise DnsEngineError("error", f"{self.api.origin}: login failed (HTTP {reply.status})")

    def _logout(self) -> None:
        if not self._sid:
            self._sid = None
            return
        with contextlib.suppress(DnsEngineError):  # if not, the session expires by itself
            self.api.request("DELETE", "/api/auth", None, {"X-FTL-SID": self._sid})
        self._sid = None
        self.api.close()

    def _ok(self, reply: Response, what: str, expected: tuple[int, ...] = (200,)) -> None:
        if reply.status in expected:
            return
        message = _dig(reply.body, "error", "message") or f"HTTP {reply.status}"
        raise DnsEngineError("error", f"{self.api.origin}: {what}: {str(message)[:200]}")


def _pihole_lookups(rows: Any) -> list[Lookup]:
    found = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("status") != "DENYLIST":
            continue  # the filter is the server's; checked again, cheaply
        at, name, device = row.get("time"), row.get("domain"), _dig(row, "client", "ip")
        if isinstance(at, int | float) and not isinstance(at, bool) and isinstance(name, str) \
                and isinstance(device, str):
            found.append(Lookup(datetime.fromtimestamp(at, UTC), device, name))
    return found


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value

"""Stand-in Pi-hole and AdGuard Home web APIs: neither can be installed on this machine (Pi-hole's
FTL and AdGuard Home are not Debian packages, and nothing may be downloaded), so these servers
implement just the endpoints detoxd uses, written from the projects' published specifications:

- Pi-hole: FTL's OpenAPI spec (src/api/docs/content/specs/*.yaml, "Pi-hole API" version 6.0, as in
  FTL v6.4.1): auth.yaml (POST/DELETE /api/auth, 401 "password incorrect", 429
  ``api_seats_exceeded`` when ``webserver.api.max_sessions`` are in use), domains.yaml (GET/POST
  /api/domains/deny/exact, PUT/DELETE .../{domain}, POST /api/domains:batchDelete; a duplicate
  in an array is reported in ``processed.errors``, a single duplicate is HTTP 400
  ``database_error`` "UNIQUE constraint failed"), groups.yaml, clients.yaml, dns.yaml
  (/api/dns/blocking), info.yaml (/api/info/version), queries.yaml (GET /api/queries: ``from``,
  ``until``, ``status``, ``length``, ``start``, ``cursor``; newest first; rows with ``id``,
  ``time``, ``domain``, ``status``, ``client: {ip, name}``; ``cursor``, ``recordsFiltered``).
- AdGuard Home: openapi/openapi.yaml (API version 0.107, as in v0.107.79): basicAuth on every
  request, GET /control/status, POST /control/protection, GET /control/filtering/status, POST
  /control/filtering/set_rules (replaces the whole list), POST /control/filtering/config,
  GET /control/querylog/config (``enabled``), GET /control/querylog (``limit``, ``older_than``,
  ``response_status``; newest first; items with ``time`` RFC 3339 in nanoseconds as Go writes
  it, ``client``, ``question: {name, type, class}``, ``reason``; ``oldest``).

Both serve HTTP or HTTPS (a self-signed certificate made per test with openssl), on 127.0.0.1
only, and record every request so tests can count calls and look for leaked secrets.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


def self_signed_certificate(directory: Path, name: str = "pi.hole") -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return key, cert


def der_fingerprint(cert: Path) -> bytes:
    import hashlib
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).digest()


class StandIn:
    """The HTTP(S) server around a handler class; one instance per test."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: tuple[Path, Path] | None = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.standin = self  # type: ignore[attr-defined]
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[1]), str(tls[0]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def standin(self) -> Any:
        return self.server.standin  # type: ignore[attr-defined]

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with self.standin.lock:
            self.standin.requests.append((self.command, self.path, raw, dict(self.headers)))
        return json.loads(raw) if raw else None

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        raise NotImplementedError


# ---- Pi-hole v6 ----

def _error(key: str, message: str, hint: str | None = None) -> dict[str, Any]:
    return {"error": {"key": key, "message": message, "hint": hint}, "took": 0.001}


class PiholeState:
    def __init__(self, password: str = "correct horse", max_sessions: int = 16) -> None:
        self.password = password
        self.max_sessions = max_sessions
        self.sessions: set[str] = set()
        self.domains: dict[str, dict[str, Any]] = {}  # deny/exact only
        self.groups: dict[str, dict[str, Any]] = {"Default": {"id": 0, "name": "Default", "enabled": True,
                                                               "comment": "The default group"}}
        self.clients: dict[str, dict[str, Any]] = {}
        self.blocking = "enabled"
        self.next_id = 1
        self.logins = 0
        self.queries: list[dict[str, Any]] = []  # FTL's in-memory query log, oldest first
        self.queries_endpoint = True  # False: an FTL without /api/queries (404)

    def log_query(self, at: float, client: str, domain: str, status: str = "FORWARDED") -> None:
        self.queries.append({"id": len(self.queries) + 1, "time": at, "type": "A", "domain": domain,
                             "cname": None, "status": status, "client": {"ip": client, "name": None},
                             "dnssec": "UNKNOWN", "reply": {"type": "IP", "time": 0.5}, "list_id": None,
                             "upstream": None, "ede": {"code": 0, "text": None}})

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class PiholeHandler(_JsonHandler):
    """FTL's behaviour for the endpoints above, per the spec's responses and examples."""

    @property
    def pihole(self) -> PiholeState:
        return self.standin.state  # type: ignore[no-any-return]

    def _dispatch(self) -> None:
        body = self._body()
        path = urlsplit(self.path).path
        state = self.pihole
        with self.standin.lock:
            if path == "/api/auth":
                return self._auth(body)
            sid = self.headers.get("X-FTL-SID") or self.headers.get("sid")
            if sid not in state.sessions:
                return self._send(401, {"session": {"valid": False, "totp": False, "sid": None,
                                                    "csrf": None, "validity": -1,
                                                    "message": "no SID provided"}, "took": 0.001})
            if path == "/api/queries" and self.command == "GET":
                return self._queries(parse_qs(urlsplit(self.path).query))
            if path == "/api/info/version":
                return self._send(200, {"version": {"ftl": {"local": {"version": "v6.4.1"}}}})
            if path == "/api/dns/blocking":
                if self.command == "POST":
                    state.blocking = "enabled" if body.get("blocking") else "disabled"
                return self._send(200, {"blocking": state.blocking, "timer": None, "took": 0.001})
            if path == "/api/domains:batchDelete":
                found = [item["item"] for item in body if item["item"] in state.domains]
                if not found:
                    return self._send(404, {"took": 0.001})
                for name in found:
                    del state.domains[name]
                return self._send(204)
            if path.startswith("/api/domains/deny/exact"):
                return self._domains(path[len("/api/domains/deny/exact"):].lstrip("/"), body)
            if path.startswith("/api/groups"):
                return self._groups(unquote(path[len("/api/groups"):].lstrip("/")), body)
            if path.startswith("/api/clients"):
                return self._clients(unquote(path[len("/api/clients"):].lstrip("/")), body)
        self._send(404, _error("not_found", "Not found"))

    def _queries(self, query: dict[str, list[str]]) -> None:
        state = self.pihole
        if not state.queries_endpoint:
            return self._send(404, _error("not_found", "Not found", "/api/queries"))

        def number(key: str, default: float) -> float:
            return float(query[key][0]) if key in query else default

        cursor = int(number("cursor", len(state.queries)))
        rows = [row for row in reversed(state.queries) if row["id"] <= cursor
                and number("from", 0) <= row["time"] < number("until", float("inf"))
                and ("status" not in query or row["status"] == query["status"][0])]
        start, length = int(number("start", 0)), int(number("length", 100))
        page = rows[start:start + length]
        return self._send(200, {"queries": page, "cursor": cursor if state.queries else None,
                                "recordsTotal": len(state.queries), "recordsFiltered": len(rows),
                                "draw": 0, "took": 0.001})

    def _auth(self, body: Any) -> None:
        state = self.pihole
        if self.command == "DELETE":
            sid = self.headers.get("X-FTL-SID")
            if sid in state.sessions:
                state.sessions.discard(sid)
                return self._send(204)
            return self._send(401, {"session": {"valid": False, "message": "no SID provided"}})
        if not isinstance(body, dict) or "password" not in body:
            return self._send(400, _error("bad_request", "No password found in JSON payload"))
        state.logins += 1
        if body["password"] != state.password:
            return self._send(401, {"session": {"valid": False, "totp": False, "sid": None, "csrf": None,
                                                "validity": -1, "message": "password incorrect"},
                                    "took": 0.003})
        if len(state.sessions) >= state.max_sessions:
            return self._send(429, _error("api_seats_exceeded", "API seats exceeded",
                                          "increase webserver.api.max_sessions"))
        sid = secrets.token_urlsafe(16)
        state.sessions.add(sid)
        self._send(200, {"session": {"valid": True, "totp": False, "sid": sid, "csrf": "x",
                                     "validity": 1800, "message": "password correct"}, "took": 0.003})

    def _domains(self, name: str, body: Any) -> None:
        state = self.pihole
        name = unquote(name)
        if self.command == "GET":
            rows = [row for row in state.domains.values() if not name or row["domain"] == name]
            return self._send(200, {"domains": rows, "took": 0.001})
        if self.command == "POST":
            names = body["domain"] if isinstance(body["domain"], list) else [body["domain"]]
            success, errors = [], []
            for domain in names:
                if domain in state.domains:
                    errors.append({"item": domain,
                                   "error": "UNIQUE constraint failed: domainlist.domain, domainlist.type"})
                    continue
                now = int(time.time())
                state.domains[domain] = {"domain": domain, "unicode": domain, "type": "deny",
                                         "kind": "exact",
                                         "comment": body.get("comment"), "groups": body.get("groups", [0]),
                                         "enabled": body.get("enabled", True), "id": state.new_id(),
                                         "date_added": now, "date_modified": now}
                success.append({"item": domain})
            if not isinstance(body["domain"], list) and errors:
                return self._send(400, _error("database_error", "Could not add to gravity database",
                                              errors[0]["error"]))
            rows = [state.domains[item["item"]] for item in success]
            return self._send(201, {"domains": rows, "processed": {"success": success, "errors": errors}})
        if self.command == "PUT":
            if name not in state.domains:
                return self._send(404, {"took": 0.001})
            row = state.domains[name]
            row.update(comment=body.get("comment"), groups=body.get("groups", [0]),
                       enabled=body.get("enabled", True))
            return self._send(200, {"domains": [row], "processed": None})
        if self.command == "DELETE":
            if state.domains.pop(name, None) is None:
                return self._send(404, {"took": 0.001})
            return self._send(204)
        return None

    def _groups(self, name: str, body: Any) -> None:
        state = self.pihole
        if self.command == "GET":
            return self._send(200, {"groups": list(state.groups.values())})
        if self.command == "POST":
            if body["name"] in state.groups:
                return self._send(400, _error("database_error", "Could not add to gravity database",
                                              "UNIQUE constraint failed: group.name"))
            state.groups[body["name"]] = {"id": state.new_id(), "name": body["name"],
                                          "comment": body.get("comment"),
                                          "enabled": body.get("enabled", True)}
            return self._send(201, {"groups": [state.groups[body["name"]]],
                                    "processed": {"success": [{"item": body["name"]}], "errors": []}})
        if self.command == "PUT" and name in state.groups:
            state.groups[name].update(enabled=body.get("enabled", True), comment=body.get("comment"))
            return self._send(200, {"groups": [state.groups[name]]})
        if self.command == "DELETE" and name in state.groups:
            gid = state.groups.pop(name)["id"]
            for row in [*state.domains.values(), *state.clients.values()]:
                row["groups"] = [g for g in row["groups"] if g != gid]
            return self._send(204)
        return self._send(404, {"took": 0.001})

    def _clients(self, client: str, body: Any) -> None:
        state = self.pihole
        if self.command == "GET":
            return self._send(200, {"clients": list(state.clients.values())})
        if self.command == "POST":
            names = body["client"] if isinstance(body["client"], list) else [body["client"]]
            for name in names:
                if name in state.clients:
                    return self._send(400, _error("database_error", "Could not add to gravity database",
                                                  "UNIQUE constraint failed: client.ip"))
                state.clients[name] = {"client": name, "comment": body.get("comment"),
                                       "groups": body.get("groups", [0]), "id": state.new_id()}
            return self._send(201, {"clients": [state.clients[n] for n in names]})
        if self.command == "PUT" and client in state.clients:
            state.clients[client].update(comment=body.get("comment"), groups=body.get("groups", [0]))
            return self._send(200, {"clients": [state.clients[client]]})
        if self.command == "DELETE" and client in state.clients:
            del state.clients[client]
            return self._send(204)
        return self._send(404, {"took": 0.001})


def pihole_standin(tls: tuple[Path, Path] | None = None, **state: Any) -> StandIn:
    standin = StandIn(PiholeHandler, tls)
    standin.state = PiholeState(**state)  # type: ignore[attr-defined]
    return standin


# ---- AdGuard Home ----

class AdGuardState:
    def __init__(self, name: str = "admin", password: str = "s3cret") -> None:
        self.credentials = "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()
        self.user_rules: list[str] = []
        self.protection_enabled = True
        self.filtering_enabled = True
        self.set_rules_calls = 0
        self.querylog: list[dict[str, Any]] = []  # oldest first
        self.querylog_enabled = True
        self.querylog_endpoint = True  # False: a server that answers 404 (an older or stripped build)

    def log_query(self, at: datetime, client: str, name: str, reason: str = "NotFilteredNotFound") -> None:
        zone = at.strftime("%z")
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123" + zone[:3] + ":" + zone[3:]  # Go's nanoseconds
        self.querylog.append({"answer": [], "client": client, "client_proto": "", "elapsedMs": "0.1",
                              "question": {"class": "IN", "name": name, "type": "A"},
                              "reason": reason, "rules": [], "status": "NOERROR", "time": stamp,
                              "_at": at})


class AdGuardHandler(_JsonHandler):
    def _querylog(self, state: AdGuardState, query: dict[str, list[str]]) -> None:
        self._send(200, _querylog_page(state, query))

    def _dispatch(self) -> None:
        body = self._body()
        state: AdGuardState = self.standin.state
        path = urlsplit(self.path).path
        with self.standin.lock:
            if self.headers.get("Authorization") != state.credentials:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="AdGuard Home"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if path == "/control/status":
                return self._send(200, {"version": "v0.107.79", "running": True, "dns_port": 53,
                                        "http_port": 80, "dns_addresses": ["127.0.0.1"],
                                        "protection_enabled": state.protection_enabled,
                                        "protection_disabled_duration": 0, "language": "en"})
            if path == "/control/protection" and self.command == "POST":
                state.protection_enabled = bool(body["enabled"])
                return self._send(200)
            if path == "/control/filtering/status":
                return self._send(200, {"enabled": state.filtering_enabled, "interval": 24, "filters": [],
                                        "whitelist_filters": [], "user_rules": list(state.user_rules)})
            if path == "/control/filtering/set_rules" and self.command == "POST":
                state.user_rules = list(body["rules"])  # replaces the whole list, as the spec says
                state.set_rules_calls += 1
                return self._send(200)
            if path == "/control/querylog/config" and state.querylog_endpoint:
                return self._send(200, {"enabled": state.querylog_enabled, "interval": 86400000,
                                        "anonymize_client_ip": False, "ignored": []})
            if path == "/control/querylog" and state.querylog_endpoint:
                return self._querylog(state, parse_qs(urlsplit(self.path).query))
            if path == "/control/filtering/config" and self.command == "POST":
                state.filtering_enabled = bool(body["enabled"])
                return self._send(200)
        return self._send(404)


BLOCKED_REASONS = {"blocked": ("FilteredBlackList", "FilteredBlockedService"),
                   "filtered": ("FilteredBlackList", "FilteredBlockedService", "FilteredSafeBrowsing",
                                "FilteredParental", "FilteredSafeSearch")}


def _querylog_page(state: AdGuardState, query: dict[str, list[str]]) -> dict[str, Any]:
    items = list(reversed(state.querylog)) if state.querylog_enabled else []
    if "older_than" in query:
        bound = datetime.fromisoformat(_micro(query["older_than"][0]))
        items = [item for item in items if item["_at"] < bound]
    reasons = BLOCKED_REASONS.get(query.get("response_status", ["all"])[0])
    if reasons is not None:
        items = [item for item in items if item["reason"] in reasons]
    page = items[:int(query.get("limit", ["500"])[0])]
    return {"data": [{k: v for k, v in item.items() if k != "_at"} for item in page],
            "oldest": page[-1]["time"] if page else ""}


def _micro(stamp: str) -> str:
    head, dot, rest = stamp.partition(".")
    return head + dot + rest[:6] + rest[9:] if dot else stamp


def adguard_standin(tls: tuple[Path, Path] | None = None, **state: Any) -> StandIn:
    standin = StandIn(AdGuardHandler, tls)
    standin.state = AdGuardState(**state)  # type: ignore[attr-defined]
    return standin

"""The household's DNS engines, seen from the root daemon: what the network agents must hold.

The daemon has no network (its sandbox keeps it so); the network agents (``detoxd netagent``,
:mod:`detoxd.netagent.agent`) talk to the engines. Each agent asks the daemon over the control
socket (``network_sync``) for the engines and the names, and reports back in the same request
how each engine is doing and what tampering it undid. This target is the daemon's side of that
exchange: ``apply`` records the names, ``check`` hands the agents' tamper reports to the engine
(each one counted in ``tamper_events`` with the engine named), ``state`` is the status' ``network``.

Engines only accumulate during a locked detox, like the names (removing one from detoxd.yaml must
not lift the block there), and an engine stays on the list after the detox until its agent
reports that detoxd's entries are gone (``idle``), so the end is carried out also for an engine
that was taken out of the config meanwhile. Both are kept in the state directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pwd
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from detoxd.core.dnsengines import AGENT_KINDS, serves
from detoxd.core.network import DnsEngineConfig, engine_from_json, engine_to_json
from detoxd.protocol import BAD_REQUEST, error_response
from detoxd.service import state_store
from detoxd.service.targets import Drift

log = logging.getLogger("detoxd")

NETWORK_FILE = "network.json"
AGENT_USER = "detoxd-network"  # the remote agent's system user (created by the package)
REPORT_STALE_SECONDS = 60.0  # agents sync every few seconds; older reports are from a gone agent
MAX_DRIFT_PER_SYNC = 100


def agent_uids() -> frozenset[int]:
    """Who may fetch the names: root, and the network agent's own user if it exists."""
    try:
        return frozenset({0, pwd.getpwnam(AGENT_USER).pw_uid})
    except KeyError:
        return frozenset({0})


class NetworkTarget:
    name = "household DNS engines"

    def __init__(self, state_dir: Path, monotonic: Callable[[], float]) -> None:
        self._file = state_dir / NETWORK_FILE
        self._monotonic = monotonic
        self.configured: tuple[DnsEngineConfig, ...] = ()
        self.allowed: frozenset[str] = frozenset()
        self.names: frozenset[str] = frozenset()
        self.active = False
        self.locked = False
        self._kept: dict[str, DnsEngineConfig] = {}  # engines that may still hold detoxd's entries
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}  # key -> (when, report)
        self._drift: list[Drift] = []
        self._sorted_of: tuple[frozenset[str], frozenset[str]] | None = None
        self._sorted_cache: tuple[list[str], list[str], str] = ([], [], "")
        self._load()

    # ---- the Target interface ----

    def apply(self, names: frozenset[str], order: Sequence[str]) -> None:
        del order  # engines keep no order
        self.names = names
        if names:
            for engine in self.configured:
                self._kept.setdefault(engine.key, engine)
        self._save()

    def check(self, now: float, *, full: bool) -> list[Drift]:
        drift, self._drift = self._drift, []
        return drift

    def remove(self) -> None:
        self.apply(frozenset(), ())

    def state(self) -> dict[str, Any]:
        fresh_since = self._monotonic() - REPORT_STALE_SECONDS
        rows = []
        for engine in self.engines():
            at, report = self._reports.get(engine.key, (None, {}))
            stale = at is None or at < fresh_since
            rows.append({
                "engine": engine.engine,
                "url": engine.url,
                "conf_dir": engine.conf_dir,
                "state": "no_agent" if stale else report.get("state", "pending"),
                "last_ok": report.get("last_ok"),
                "names": report.get("names", 0),
                "error": None if stale else report.get("error"),
                "tamper_events": report.get("tamper_events", 0),
                "clients": len(engine.clients),
                "query_log": report.get("query_log"),
            })
        return {"network": rows}

    # ---- what the agents get ----

    def configure(self, engines: tuple[DnsEngineConfig, ...], allowed: frozenset[str], *, active: bool,
                  locked: bool) -> None:
        self.configured, self.allowed, self.active, self.locked = engines, allowed, active, locked
        if active and locked:
            for engine in engines:
                self._kept.setdefault(engine.key, engine)
        self._save()

    def engines(self) -> list[DnsEngineConfig]:
        """The configured engines, then those a locked detox keeps or whose end is still due."""
        keys = {engine.key for engine in self.configured}
        kept = [engine for key, engine in self._kept.items() if key not in keys]
        if not (self.active and self.locked):
            kept = [engine for engine in kept if self._reports.get(engine.key, (0, {}))[1].get("state")
                    != "idle"]
        return [*self.configured, *kept]

    def sync(self, request: dict[str, Any]) -> dict[str, Any]:
        """One agent's ``network_sync``: take its reports, give it what to hold."""
        kind = request.get("agent", "all")
        if kind not in AGENT_KINDS:
            return error_response(BAD_REQUEST, f"agent must be one of {AGENT_KINDS}")
        self._take_reports(request.get("report"), request.get("drift"))
        engines = [e for e in self.engines() if serves(kind, e.engine)]
        names, allowed, digest = self._sorted()
        reply: dict[str, Any] = {"ok": True, "active": bool(names), "digest": digest,
                                 "engines": [engine_to_json(e) for e in engines]}
        if request.get("have") != digest:  # the names only when they changed: 100k names are 2.5 MB
            reply.update(names=names, allowed=allowed)
        return reply

    def _sorted(self) -> tuple[list[str], list[str], str]:
        """The names and allowed names, sorted, and their digest; computed once per change
        (agents sync every 2 s: sorting 100k names each time would cost 30 ms)."""
        if self._sorted_of is None or self._sorted_of[0] is not self.names \
                or self._sorted_of[1] is not self.allowed:
            names, allowed = sorted(self.names), sorted(self.allowed)
            hashed = hashlib.sha256("\n".join(names).encode())
            hashed.update(b"\0" + "\n".join(allowed).encode())
            self._sorted_of = (self.names, self.allowed)
            self._sorted_cache = (names, allowed, hashed.hexdigest())
        return self._sorted_cache

    def _take_reports(self, reports: Any, drifts: Any) -> None:
        known = {engine.key for engine in self.engines()}
        now = self._monotonic()
        for report in reports if isinstance(reports, list) else []:
            if isinstance(report, dict) and report.get("key") in known:
                clean = _clean_report(report)
                if clean["state"] == "idle" and report["key"] not in {e.key for e in self.configured}:
                    log.info("network: %s no longer holds detoxd's entries", report["key"])
                self._reports[str(report["key"])] = (now, clean)
        for drift in (drifts if isinstance(drifts, list) else [])[:MAX_DRIFT_PER_SYNC]:
            if isinstance(drift, dict) and drift.get("key") in known:
                self._drift.append(Drift(f"{drift['key']}", str(drift.get("detail", ""))[:300]))
        if any(self._reports.get(key, (0, {}))[1].get("state") == "idle" for key in self._kept):
            self._save()

    # ---- the state file ----

    def _load(self) -> None:
        try:
            data = state_store.read_json(self._file)
            for item in data.get("kept", []):
                engine = engine_from_json(item)
                self._kept[engine.key] = engine
        except FileNotFoundError:
            pass
        except (OSError, state_store.StateFileError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("ignoring unreadable %s: %s", self._file, exc)

    def _save(self) -> None:
        if not (self.active and self.locked) and not self.names:
            self._kept = {key: engine for key, engine in self._kept.items()
                          if self._reports.get(key, (0, {}))[1].get("state") != "idle"}
        data = {"version": 1, "kept": [engine_to_json(engine) for engine in self._kept.values()]}
        encoded = json.dumps(data, sort_keys=True).encode()
        try:
            if state_store.read_bounded(self._file, state_store.MAX_STATE_BYTES) == encoded:
                return
        except (OSError, state_store.StateFileError):
            pass
        try:
            state_store.write_atomic(self._file, encoded)
        except OSError as exc:
            # Never let this file stop the enforcement around it (configure() runs before the
            # hosts file is written): the engines are still in memory; retried at the next change.
            log.error("cannot write %s: %s", self._file, exc.strerror or exc)


QUERY_LOG_STATES = ("available", "not_available")  # can the engine count blocked lookups per device
REPORTED_STATES = frozenset({"in_sync", "idle", "pending", "unreachable", "auth_failed", "tls_error",
                             "refused", "error"})


def _clean_report(report: dict[str, Any]) -> dict[str, Any]:
    """Only the fields and shapes status shows (anyone may read status): bounded text, numbers."""
    state = report.get("state")

    def text(key: str, limit: int) -> str | None:
        value = report.get(key)
        return value[:limit] if isinstance(value, str) else None

    def count(key: str) -> int:
        value = report.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    return {"state": state if state in REPORTED_STATES else "error", "last_ok": text("last_ok", 40),
            "names": count("names"), "error": text("error", 300), "tamper_events": count("tamper_events"),
            "query_log": report.get("query_log") if report.get("query_log") in QUERY_LOG_STATES else None}

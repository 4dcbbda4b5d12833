"""`detoxd netagent`: puts the detox into the household's DNS engines, and keeps it there.

An unprivileged helper, in its own systemd unit: the root daemon has no network, so this process
talks to the engines. Every ``SYNC_SECONDS`` it sends the daemon a ``network_sync`` (its reports
in, the engines and names out); it applies changes at once, looks at each engine every
``CHECK_SECONDS`` (15 s: tampering is undone within 15 s plus the time of one round), and
retries an engine that failed with a backoff of 2, 4, 8 … at most 60 s. An engine that is down
never weakens anything: the local block is the daemon's and stays; this agent keeps retrying.
When the daemon is unreachable the agent keeps holding (and checking) what it last got.

Blocked lookups (the audit's "blocked lookups per device per day"): during a detox, when an
engine is first in sync and then every ``LOOKUP_SECONDS`` (5 min), the agent reads the blocked
part of the engine's query log for today (and yesterday, shortly after midnight), keeps only the
names of the detox (:mod:`detoxd.core.lookups`: any other domain is dropped in this process and
never sent), and hands each device's totals of the day to the daemon with the next
``network_sync`` (``lookups``). Pi-hole and AdGuard Home can tell; an engine whose log cannot be
read (no endpoint, not permitted, log off) and the local dnsmasq/Unbound show
``query_log: not_available`` in status, and nothing else changes.

Secrets: each engine's ``password_file`` is read from ``$CREDENTIALS_DIRECTORY`` (systemd's
``LoadCredential=``), where the unit puts copies readable by this process only; outside systemd
(by hand, as root) from the config directory, with the same ownership and 0600 checks as
``detoxd check``. A secret is only ever passed to the engine's target, never logged or reported.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from detoxd.client import ControlClient, ControlError
from detoxd.core import lookups
from detoxd.core.network import DnsEngineConfig, engine_from_json, engine_names, exceptions
from detoxd.netagent.engines import DnsEngine, DnsEngineError, Problem, make_engine
from detoxd.service.scheduler import local_zone

log = logging.getLogger("detoxd.network")

SYNC_SECONDS = 2.0
CHECK_SECONDS = 15.0
MAX_BACKOFF_SECONDS = 60.0
LOOKUP_SECONDS = 300.0
LOOKUPS_BUDGET_BYTES = 24 * 1024  # per network_sync, whose request may be 64 KiB (MAX_REQUEST_BYTES)
CREDENTIAL_PREFIX = "detoxd_"  # LoadCredential=detoxd:/etc/detoxd names each file detoxd_<name>

MakeEngine = Callable[[DnsEngineConfig, str | None], DnsEngine]


class SecretError(Exception):
    pass


def read_secret(config: DnsEngineConfig, config_dir: Path,
                environ: dict[str, str] | None = None) -> str | None:
    return read_secret_file(config.password_file, config.location, config_dir, environ)


def read_secret_file(password_file: str | None, location: str, config_dir: Path,
                     environ: dict[str, str] | None = None) -> str | None:
    """A ``password_file``'s secret (of a ``network:`` engine or of ``mail:``, at ``location``)."""
    if password_file is None:
        return None
    environ = dict(os.environ) if environ is None else environ
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        flat = password_file.replace("/", "_")
        for name in (CREDENTIAL_PREFIX + flat, flat):
            path = Path(credentials) / name
            if path.is_file():
                return path.read_text(encoding="utf-8").strip("\r\n")
        raise SecretError(f"{location}.password_file: no credential {CREDENTIAL_PREFIX}{flat} "
                          "(LoadCredential= in the unit)")
    path = config_dir / password_file
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretError(f"{location}.password_file: cannot read {password_file!r}: "
                          f"{exc.strerror}") from exc
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
            raise SecretError(f"{location}.password_file: refusing {password_file!r}: "
                              "must be a regular file of root's with mode 0600")
        return handle.read().strip("\r\n")


@dataclass
class DnsEngineRun:
    """One engine as the agent drives it."""

    config: DnsEngineConfig
    target: DnsEngine | None = None
    held: tuple[str, ...] | None = None  # what the engine holds now (None: unknown, since start)
    state: str = "pending"
    error: str | None = None
    last_ok: str | None = None
    failures: int = 0
    next_try: float = 0.0
    next_check: float = 0.0
    tamper_events: int = 0
    drift: list[str] = field(default_factory=list)
    query_log: str | None = None  # available | not_available (None: not read yet)
    next_lookups: float = 0.0
    lookups: Counter[lookups.LookupKey] = field(default_factory=Counter)

    def report(self) -> dict[str, Any]:
        return {"key": self.config.key, "state": self.state, "last_ok": self.last_ok,
                "names": len(self.held or ()), "error": self.error, "tamper_events": self.tamper_events,
                "query_log": self.query_log}


class NetAgent:
    def __init__(self, client: ControlClient, config_dir: Path, *, kind: str = "all",
                 make: MakeEngine = make_engine, monotonic: Callable[[], float] = time.monotonic,
                 check_seconds: float = CHECK_SECONDS, lookup_seconds: float = LOOKUP_SECONDS,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC), tz: tzinfo | None = None) -> None:
        self.client = client
        self.lookup_seconds = lookup_seconds
        self.wall = wall
        self.tz = tz if tz is not None else local_zone()
        self._sent_lookups: dict[tuple[str, str], dict[str, int]] = {}  # (date, device) -> counts
        self._name_set: tuple[tuple[str, ...], frozenset[str]] = ((), frozenset())
        self.config_dir = config_dir
        self.kind = kind
        self.make = make
        self.monotonic = monotonic
        self.check_seconds = check_seconds
        self.engines: dict[str, DnsEngineRun] = {}
        self.names: tuple[str, ...] = ()
        self.allowed: tuple[str, ...] = ()
        self.active: bool | None = None  # None: the daemon never answered since the agent started
        self.daemon_reachable = False
        self.digest: str | None = None  # of the names last received: the daemon resends on change
        self._stop = threading.Event()
        self._wake = threading.Event()

    def run(self) -> int:
        log.info("network agent running (%s engines), checking every %gs", self.kind, self.check_seconds)
        threading.Thread(target=self._listen, name="detoxd-netagent-events", daemon=True).start()
        while not self._stop.is_set():
            self._wake.clear()
            self.round()
            self._wake.wait(SYNC_SECONDS)  # or sooner: the daemon announced a change
        return 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _listen(self) -> None:
        """Wake the loop at every event the daemon publishes (a detox started or ended, a
        reload), so changes reach the engines at once instead of at the next 2 s sync. The
        events carry no names: the sync fetches them."""
        while not self._stop.is_set():
            try:
                with self.client.subscribe() as events:
                    for event in events:
                        if event.get("event") in ("status", "detox_started", "detox_ended", "config_error"):
                            self._wake.set()
            except (ControlError, OSError):
                pass
            self._stop.wait(SYNC_SECONDS)  # daemon gone or restarting: try again shortly

    def round(self) -> None:
        """One sync with the daemon, then one step for every engine that is due."""
        self.sync()
        now = self.monotonic()
        for run in list(self.engines.values()):
            if now >= run.next_try:
                self.step(run, now)

    def sync(self) -> None:
        reports = [run.report() for run in self.engines.values()]
        drift = [{"key": run.config.key, "detail": detail} for run in self.engines.values()
                 for detail in run.drift]
        batch = self._lookups_batch()
        extra: dict[str, Any] = {"lookups": batch} if batch else {}
        try:
            reply = self.client.request("network_sync", agent=self.kind, report=reports, drift=drift,
                                        have=self.digest, **extra)
        except ControlError as exc:
            if self.daemon_reachable:
                log.warning("daemon unreachable (%s): holding what the engines have", exc)
            self.daemon_reachable = False
            return
        if not reply.get("ok"):
            log.error("daemon refused network_sync: %s", reply.get("error"))
            return
        self.daemon_reachable = True
        for entry in batch:
            self._sent_lookups[(entry["date"], entry["device"])] = entry["counts"]
        for run in self.engines.values():
            run.drift.clear()  # delivered
        self._take(reply)

    def _lookups_batch(self) -> list[dict[str, Any]]:
        """The day totals the daemon does not have yet, as many as fit in one request; the rest
        go with the next syncs (a household of 100 phones is sent in a few rounds, not refused)."""
        current = lookups.entries(run.lookups for run in self.engines.values())
        keys = {(str(entry["date"]), str(entry["device"])) for entry in current}
        self._sent_lookups = {key: counts for key, counts in self._sent_lookups.items() if key in keys}
        batch: list[dict[str, Any]] = []
        size = 0
        for entry in current:
            if self._sent_lookups.get((str(entry["date"]), str(entry["device"]))) == entry["counts"]:
                continue
            size += len(json.dumps(entry))
            if size > LOOKUPS_BUDGET_BYTES:
                break
            batch.append(entry)
        return batch

    def _take(self, reply: dict[str, Any]) -> None:
        self.active = bool(reply.get("active"))
        if "names" in reply:
            self.names = engine_names(reply.get("names") or []) if self.active else ()
            self.allowed = exceptions(self.names, reply.get("allowed") or []) if self.active else ()
            self.digest = reply.get("digest")
        elif not self.active:
            self.names, self.allowed = (), ()
        wanted: dict[str, DnsEngineConfig] = {}
        for item in reply.get("engines") or []:
            try:
                engine = engine_from_json(item)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("ignoring an engine the daemon sent: %s", exc)
                continue
            wanted[engine.key] = engine
        for key in set(self.engines) - set(wanted):
            del self.engines[key]  # the daemon keeps an engine listed until its end was carried out
        for key, engine in wanted.items():
            run = self.engines.get(key)
            if run is None or run.config != engine:
                self.engines[key] = DnsEngineRun(engine)

    def step(self, run: DnsEngineRun, now: float) -> None:
        try:
            if run.target is None:
                run.target = self.make(run.config, read_secret(run.config, self.config_dir))
            if self.active is None:
                return  # nothing known yet: never remove or add on a guess
            if self.active and run.held != self.names:
                run.target.apply(self.names, self.allowed)
                log.info("%s: %d names applied", run.config.key, len(self.names))
                run.held, run.next_check = self.names, now + self.check_seconds
            elif self.active and now >= run.next_check:
                found = run.target.check()
                for detail in found:
                    log.warning("%s tampered with: %s", run.config.key, detail)
                run.drift += found
                run.tamper_events += len(found)
                run.next_check = now + self.check_seconds
            elif not self.active and run.state != "idle":
                run.target.remove()  # logs what it removed, if anything
                run.held = ()
        except DnsEngineError as exc:
            self._failed(run, now, exc.state, str(exc), run.target.fix(exc) if run.target else None)
            return
        except SecretError as exc:
            self._failed(run, now, "error", str(exc))
            return
        except OSError as exc:
            self._failed(run, now, "error", exc.strerror or str(exc))
            return
        run.state = "in_sync" if self.active else "idle"
        run.error, run.failures, run.next_try = None, 0, 0.0
        run.last_ok = datetime.now(UTC).isoformat(timespec="seconds")
        if self.active and now >= run.next_lookups:
            self.read_lookups(run, now)

    def read_lookups(self, run: DnsEngineRun, now: float) -> None:
        """Count the blocked lookups of the detox's names in the engine's query log. A failure
        here never touches the engine's state: the block is what matters; retried next time."""
        run.next_lookups = now + self.lookup_seconds
        if run.target is None or not run.target.has_query_log:
            run.query_log = "not_available"  # dnsmasq, Unbound: no per-device log to ask
            return
        until = self.wall().astimezone(self.tz)
        since = _day_start(until - timedelta(seconds=2 * self.lookup_seconds))
        try:
            found = run.target.read_query_log(since, until)
        except (DnsEngineError, OSError) as exc:
            log.warning("%s: query log not read (%s); trying again in %gs", run.config.key, exc,
                        self.lookup_seconds)
            return
        if found is None:
            if run.query_log != "not_available":
                log.info("%s: its query log cannot be read: no blocked-lookup counts from it", run.config.key)
            run.query_log = "not_available"
            return
        run.query_log = "available"
        subdomains = run.target.blocks_subdomains  # AdGuard's ||name^ blocks the names under it too
        if self._name_set[0] is not self.names:
            self._name_set = (self.names, frozenset(self.names))
        fresh = lookups.count(found, self._name_set[1], self.tz, since=since, subdomains=subdomains)
        run.lookups = lookups.keep_highest(run.lookups, fresh, since.date())

    def _failed(self, run: DnsEngineRun, now: float, state: str, message: str,
                fix: str | None = None) -> None:
        if run.state != state or run.error != message:
            log.error("%s: %s (retrying with backoff)%s", run.config.key, message,
                      f"; fix: {fix}" if fix else "")
        run.failures += 1
        run.state, run.error = state, message
        run.next_try = now + min(MAX_BACKOFF_SECONDS, 2.0 ** run.failures)
        run.target = None if state in ("auth_failed",) else run.target  # re-read a fixed secret


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def describe_engines(engines: tuple[DnsEngineConfig, ...], config_dir: Path,
                     make: MakeEngine = make_engine) -> list[tuple[bool, str]]:
    """For `detoxd check`: reach each engine, say what was found (version, credentials), or
    what is wrong and, where one is known, the fix."""
    results = []
    for engine in engines:
        try:
            target = make(engine, read_secret(engine, config_dir))
        except (DnsEngineError, SecretError, OSError) as exc:
            results.append((False, f"{engine.key}: {exc}"))
            continue
        problem = target.problem()
        if problem is None:
            try:
                results.append((True, target.describe()))
                continue
            except DnsEngineError as exc:
                problem = Problem(str(exc), target.fix(exc))
            except OSError as exc:
                problem = Problem(exc.strerror or str(exc))
        fix = f"; fix: {problem.fix}" if problem.fix else ""
        results.append((False, f"{engine.key}: {problem.reason}{fix}"))
    return results

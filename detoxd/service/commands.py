"""The command table: each wire command's handler, checked against who may call it.

Like fail2ban's transmitter or firewalld's decorated D-Bus methods, every command the control
socket takes is declared once, with :func:`command`: its name, who may call it (from
:data:`detoxd.protocol.COMMANDS`: root, a person at the seat, the network agent, anyone) and
whether it runs with the engine's lock held. :class:`CommandTable` is the control server's
handler: it answers an unknown command, refuses a caller the table does not allow, and turns an
:class:`~detoxd.protocol.ErrorReply` a handler raises into the reply, all with
:func:`~detoxd.protocol.error_response`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from detoxd.core import activity, browser, ics
from detoxd.protocol import (
    AGENT,
    ANYONE,
    BAD_REQUEST,
    COMMANDS,
    MAILER,
    NOT_AUTHORIZED,
    ROOT,
    SEAT,
    SUBSCRIBE_COMMAND,
    ErrorReply,
    Peer,
    bad_request,
    error_response,
)
from detoxd.service import audit, seat
from detoxd.service.mail import mail_uids
from detoxd.service.scheduler import local_zone
from detoxd.service.targets.network import agent_uids

if TYPE_CHECKING:
    from detoxd.service.engine import Engine

log = logging.getLogger("detoxd")

Reply = dict[str, Any]
Run = Callable[["Engine", dict[str, Any], Peer], Reply]


@dataclass(frozen=True)
class Command:
    name: str
    who: str  # ROOT, SEAT, AGENT or ANYONE
    run: Run
    locked: bool  # run with the engine's lock held (else the handler takes it where it needs it)


TABLE: dict[str, Command] = {}


def command(name: str, *, locked: bool = True) -> Callable[[Run], Run]:
    """Declare ``name``'s handler; who may call it is :data:`detoxd.protocol.COMMANDS`'s word."""
    def register(run: Run) -> Run:
        if name in TABLE:
            raise ValueError(f"command {name!r} declared twice")
        TABLE[name] = Command(name, COMMANDS[name], run, locked)
        return run
    return register


class Authorizer:
    """Who the peer (from SO_PEERCRED) is, against what a command asks for."""

    def __init__(self, logind: Callable[[], seat.Logind | None], *,
                 privileged: frozenset[int] | None = None,
                 agents: Callable[[], frozenset[int]] = agent_uids,
                 mailers: Callable[[], frozenset[int]] = mail_uids) -> None:
        self._logind = logind
        self._privileged = privileged if privileged is not None else frozenset({0, os.geteuid()})
        self._agents = agents
        self._mailers = mailers

    def refusal(self, name: str, who: str, peer: Peer) -> str | None:
        """None when ``peer`` may call command ``name``, else why not (the reply's error)."""
        if who == ANYONE:
            return None
        if who == ROOT:
            return None if peer.uid in self._privileged else f"'{name}' needs root"
        if who == AGENT:
            return None if peer.uid in self._agents() else f"'{name}' is for the network agent"
        if who == MAILER:
            return None if peer.uid in self._mailers() else f"'{name}' is for the mail agent"
        if who == SEAT:
            return seat.check_peer(peer.uid, peer.pid, self._logind())
        return f"'{name}' has no rule for who may call it"  # never: a test checks every command


def viewer(peer: Peer) -> int | None:
    """Whose things a reply may show: None for root, who sees everything (config errors as
    written, every user's events); else the caller's uid (its own events, and the system's)."""
    return None if peer.uid == 0 else peer.uid


class CommandTable:
    """The control server's handler for one engine (thread-safe: see :class:`Command`.locked)."""

    def __init__(self, engine: Engine, authorizer: Authorizer,
                 table: Mapping[str, Command] = TABLE) -> None:
        self.engine = engine
        self.authorizer = authorizer
        self.table = table

    def __call__(self, request: dict[str, Any], peer: Peer) -> Reply:
        name = request.get("cmd")
        found = self.table.get(name) if isinstance(name, str) else None
        if found is None:
            return error_response(BAD_REQUEST, f"unknown command {name!r}")
        refusal = self.authorizer.refusal(found.name, found.who, peer)
        if refusal is not None:
            log.warning("refused %s from uid %d: %s", found.name, peer.uid, refusal)
            return error_response(NOT_AUTHORIZED, refusal)
        try:
            if not found.locked:
                return found.run(self.engine, request, peer)
            with self.engine.lock:
                return found.run(self.engine, request, peer)
        except ErrorReply as error:
            return error.reply()


# ---- the commands ----

@command("status", locked=False)  # never waits on a busy engine: see Engine.current_status
def _status(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    return {"ok": True, "status": engine.current_status(private=viewer(peer) is None)}


@command("report", locked=False)  # built outside the lock: reading the journal takes a while
def _report(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    with engine.lock:
        window, now = engine.detox.report_window(), engine.clock.now()
    return engine.audit.report(viewer(peer), now=now, tz=local_zone(), window=window)


@command("reload", locked=False)  # reads the config outside the lock
def _reload(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    # `ExecReload=detoxd reload` is synchronous; tell systemd too, so that the unit shows
    # "reloading" and the following READY=1 ends it (matched by MONOTONIC_USEC on systemd 253+).
    engine.notifier.reloading(status="reloading the config")
    error = engine.reload()
    with engine.lock:
        engine.notifier.ready(status=engine.one_line())
        log.info("reload requested by uid %d: %s", peer.uid, "failed" if error else "ok")
        if error:
            raise ErrorReply("invalid_config", str(error), errors=[str(issue) for issue in error.issues])
        return {"ok": True, "status": engine.status(private=True)}


@command("start", locked=False)
def _start(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    # The config as it is on disk now, read outside the lock like every reload: a start right
    # after an edit must see that edit (the watcher settles for a moment first).
    engine.reload()
    with engine.lock:
        if "at" in request:  # `start --at "YYYY-MM-DD HH:MM"`: a detox that begins later
            return engine.detox.plan_start(request["at"], request.get("days"), peer,
                                           request.get("peer_lock"))
        return engine.detox.start(request.get("days"), peer, request.get("peer_lock"))


@command("cancel")
def _cancel(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    return engine.detox.cancel(peer)


@command("end")
def _end(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    if "peers_proof" in request:
        return engine.detox.end_with_peers(request["peers_proof"], peer)
    return engine.detox.end(peer)


@command("peer_lock")
def _peer_lock(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    return engine.detox.peer_lock()


@command("calendar")
def _calendar(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """The sessions as iCalendar text, for the tray's "export" (the agent cannot read /etc
    files that need root, and must not need a second copy of the config logic)."""
    planned = engine.sessions.plan
    if planned is None:
        raise ErrorReply("no_sessions", "no sessions planned in detoxd.yaml")
    return {"ok": True, "ics": ics.calendar(planned, engine.clock.now()).decode()}


@command("activity_targets")
def _activity_targets(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """What a tray agent measures in ActivityWatch: the blocked names (the hosts file shows
    them to everyone anyway) and the window names of the blocked apps."""
    window = engine.detox.report_window()
    if window is None:
        return {"ok": True, "detox": None, "names": [], "apps": {}}
    names = engine.applied.block_order(engine.hosts.names) if engine.hosts.names else engine.applied.order
    rules = {rule.name: rule for rule in engine.apps.rules()}
    return {"ok": True,
            "detox": {"started_at": _iso(window.started_at), "ends_at": _iso(window.ends_at),
                      "ended_at": _iso(window.ended_at)},
            "names": list(names[:activity.MAX_NAMES_IN_QUERY]),
            "apps": activity.window_app_names(rules.values())}


@command("activity_report")
def _activity_report(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """A tray agent's ActivityWatch totals on blocked names and apps (see Audit)."""
    return engine.audit.activity_report(
        request, peer, window=engine.detox.report_window(), tz=local_zone(),
        blocked_names=engine.hosts.names | engine.applied.names, blocked_apps=engine.apps.names())


@command("agent_report")
def _agent_report(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    return engine.agents.report(request, peer, during_detox=engine.state.active)


@command("network_sync")
def _network_sync(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """A network agent fetches the engines and names and reports each engine's state."""
    response = engine.network.sync(request)
    if response.get("ok") and "lookups" in request:  # counts of the engines' query logs
        response["journalled_lookups"] = engine.record_blocked_lookups(request["lookups"])
    engine.check(engine.clock.monotonic(), full=False)  # count the tampering it reported at once
    return response


@command("mail_sync")
def _mail_sync(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """The mail agent reports what the server accepted and fetches what waits (detoxd.service.mail)."""
    return engine.mail.sync(request, engine.clock.now())


@command("open")  # `detoxd open NAME [MINUTES]`: applied to every target before the answer
def _open(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    return _allowance_changed(engine, engine.allowances.open(request, peer,
                                                                    detox_active=engine.allowances_in_force))


@command("close")
def _close(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    return _allowance_changed(engine, engine.allowances.close(request, peer))


@command("exec_events")
def _exec_events(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """detoxd-execwatch: ``pids`` exec()d just now (as the daemon sees them); ``watching``
    false when it stops, ``lost`` when the kernel dropped events, ``lease_seconds`` how long
    to trust events without another word."""
    pids, lease = request.get("pids", []), request.get("lease_seconds", 0)
    if (not isinstance(pids, list) or len(pids) > 1024
            or not all(type(pid) is int and pid > 0 for pid in pids)):
        raise ErrorReply(BAD_REQUEST, "pids: a list of at most 1024 positive integers")
    if type(lease) not in (int, float) or not 0 <= lease <= 600:
        raise ErrorReply(BAD_REQUEST, "lease_seconds: a number from 0 to 600")
    engine.exec_events(pids, lease_seconds=float(lease), watching=request.get("watching") is True,
                       lost=request.get("lost") is True)
    return {"ok": True}


@command("browser_check", locked=False)  # a navigation waits for it: never on a busy engine
def _browser_check(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """The extension, at a main-frame navigation: blocked now? By what, and what would open it.
    Reads only what the engine replaces whole (frozen sets, a tuple), so no lock is needed."""
    return {"ok": True, **_verdict(engine, request).to_json()}


@command("browser_attempt")
def _browser_attempt(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """The extension showed its block page: counted per rule per local day, for the caller. A URL
    that is not blocked (an allowance opened meanwhile) is not counted, nor journalled."""
    verdict = _verdict(engine, request)
    if not verdict.blocked or verdict.rule is None:
        return {"ok": True, "attempts_today": 0, "blocked": False}
    day = engine.clock.now().astimezone(local_zone()).date().isoformat()
    count = engine.audit.browser_attempt(peer.uid, day, verdict.rule)
    return {"ok": True, "attempts_today": count, "blocked": True, "rule": verdict.rule, "date": day}


@command("browser_time")
def _browser_time(engine: Engine, request: dict[str, Any], peer: Peer) -> Reply:
    """The focused tab's time that local day on blocked names and paths and on allowance sites:
    the caller's running totals (replacing the last). Other names are dropped, never kept."""
    today = engine.clock.now().astimezone(local_zone()).date()
    try:
        day = browser.parse_day(request.get("day"), today=today, days_back=audit.MAX_DAYS_PER_REPORT)
        seconds, ignored = browser.parse_seconds(request.get("seconds"), _BrowserRules(engine))
    except ValueError as error:
        raise bad_request(str(error)) from None
    journalled = engine.audit.browser_time(peer.uid, day.isoformat(), seconds)
    return {"ok": True, "journalled": journalled, "ignored": ignored}


def _verdict(engine: Engine, request: dict[str, Any]) -> browser.Verdict:
    try:
        url = browser.parse_url(request.get("url"))
    except browser.UrlError as error:
        raise bad_request(str(error)) from None
    return browser.check(url, blocked=engine.names_blocked, enforced=engine.names_enforced,
                         paths=engine.browser.paths, allowances=engine.allowances.rules)


class _BrowserRules:
    """What browser_time may name: a name or path blocked now (or let through by an open
    allowance), or an allowance."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __contains__(self, name: object) -> bool:
        engine = self._engine
        return (name in engine.names_enforced or name in engine.browser.paths
                or any(rule.name == name for rule in engine.allowances.rules))


def _allowance_changed(engine: Engine, response: Reply) -> Reply:
    engine.enforce()
    engine.publish("allowance")
    return response


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def unbound() -> frozenset[str]:
    """Commands of the wire without a handler here (the control server answers ``subscribe``)."""
    return frozenset(COMMANDS) - frozenset(TABLE) - {SUBSCRIBE_COMMAND}

"""The daemon's side of the mail to the peers: its outbox, and ``mail_sync`` with the mail agent.

The daemon has no network: it writes messages into ``<state>/outbox`` (:mod:`detoxd.outbox`)
and hands them, with the server's settings (no secret), to detoxd-mail.service when it asks
(``mail_sync``, only root and the detoxd-mail user may). The agent says which messages the server
accepted (they leave the outbox then, and are kept in ``sent.json`` for status and the tray) and
how its last round went (a failure is a problem in status, with its fix, until a round succeeds).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pwd
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detoxd import durable
from detoxd.core import imip, informed
from detoxd.core.mail import MailSettings, settings_to_json
from detoxd.core.sessions import Person
from detoxd.outbox import (
    MAX_MESSAGE_BYTES,
    Outbox,
    OutboxError,
    Queued,
    new_message_id,
    outbox_dir,
    read_bounded,
)
from detoxd.protocol import bad_request

if TYPE_CHECKING:
    from detoxd.core.config import MainConfig

log = logging.getLogger("detoxd")

MAIL_USER = "detoxd-mail"
MAX_MESSAGES_PER_SYNC = 20
MESSAGES_BUDGET_BYTES = 3 << 20  # of a reply that may be 4 MiB (MAX_RESPONSE_BYTES)
SENT_SHOWN = 10  # the last messages delivered, in status
INFORMED_FILE = "informed.json"  # peers_informed: counted, told, the last message's time


def mail_uids() -> frozenset[int]:
    """Who may fetch the messages: root, and the mail agent's own user if it exists."""
    try:
        return frozenset({0, pwd.getpwnam(MAIL_USER).pw_uid})
    except KeyError:
        return frozenset({0})


class MailKeeper:
    def __init__(self, state_dir: Path) -> None:
        self.outbox = Outbox(outbox_dir(state_dir))
        self.settings: MailSettings | None = None
        self.last_round: dict[str, Any] | None = None  # the agent's last report
        # `peers_informed:` (detoxd.core.informed): what is counted and told, kept across restarts.
        self.chosen: tuple[str, ...] = ()
        self.share_activity = False
        self.me: Person = Person("me")
        self.peers: tuple[Person, ...] = ()
        self._informed_file = self.outbox.directory / INFORMED_FILE
        self.informed = informed.InformedState.from_json(_read_state(self._informed_file))
        self._informed_dirty = False
        self._lock = threading.Lock()  # the journal's listener and the tick
        self._status_cache: tuple[int | None, list[Queued], list[dict[str, Any]]] | None = None
        # Events journalled at start-up before the config is read (daemon_started): counted then.
        self._before_config: list[tuple[str, dict[str, Any], bool, datetime]] | None = []

    def configure(self, settings: MailSettings | None, main: MainConfig | None = None) -> None:
        self.settings = settings
        if main is not None:
            self.chosen = main.peers_informed if settings is not None else ()
            self.share_activity = main.share_activity
            self.me = main.me or Person("me")
            self.peers = main.peers
        early, self._before_config = self._before_config, None
        for kind, fields, active, at in early or ():
            self.on_event(kind, fields, active=active, now=at)

    # ---- peers_informed ----

    def on_event(self, kind: str, fields: dict[str, Any], *, active: bool, now: datetime) -> None:
        """A journal listener: count what the peers are to be told (during a detox only)."""
        if self._before_config is not None:
            if len(self._before_config) < 100:
                self._before_config.append((kind, fields, active, now))
            return
        if not self.chosen:
            return
        with self._lock:
            if kind == "detox_ended":
                self.informed = dataclasses.replace(self.informed, closing_due=True)
                self._informed_dirty = True
            elif active:
                counted = informed.count(self.informed, kind, self.chosen, now)
                if counted is not self.informed:
                    self.informed = counted
                    self._informed_dirty = True

    def tick(self, now: datetime, *, summary: Callable[[], dict[str, Any] | None],
             activity: Callable[[], str | None]) -> None:
        """Queue what is due: the counts (first at once, then at most hourly), the closing note."""
        with self._lock:
            state = self.informed
            dirty = self._informed_dirty
            self._informed_dirty = False
        if self.chosen and self.settings is not None and informed.due(state, now):
            subject, text = informed.message(self.me.name, state,
                                             activity=activity() if self.share_activity else None)
            self._queue_to_peers(subject, text, now, "informed")
            with self._lock:
                self.informed = informed.sent(self.informed, now)
            dirty = True
        if self.informed.closing_due:
            document = summary() if self.chosen and self.settings is not None else None
            if document is not None:
                line = (str(document.get("summary")) if self.share_activity
                        else informed.private_summary(document))
                subject, text = informed.closing(self.me.name, self.informed, line)
                self._queue_to_peers(subject, text, now, "closing")
            with self._lock:
                self.informed = informed.InformedState()
            dirty = True
        if dirty:
            self._save_informed()

    def _queue_to_peers(self, subject: str, text: str, now: datetime, kind: str) -> None:
        assert self.settings is not None
        for peer in self.peers:
            if not peer.email:
                continue
            envelope = imip.plain(self.me, self.settings.sender, peer, subject, text, now,
                                  new_message_id(self.settings.sender), kind)
            try:
                self.outbox.queue(envelope, self.settings.sender, subject, now)
            except OSError as error:
                log.error("mail: cannot queue the message to %s: %s", peer.email, error.strerror)
                continue
            self._status_cache = None
            log.info("mail: queued %s to %s (%s)", kind, peer.email, envelope.message_id)

    def _save_informed(self) -> None:
        try:
            self.outbox.ensure()
            data = json.dumps(self.informed.to_json()).encode()
            durable.replace_file(self._informed_file, data, mode=0o600)
        except OSError as error:
            log.error("mail: cannot save %s: %s", self._informed_file, error.strerror)

    def sync(self, request: dict[str, Any], now: datetime) -> dict[str, Any]:
        delivered = request.get("delivered", [])
        report = request.get("report")
        if not isinstance(delivered, list) or len(delivered) > MAX_MESSAGES_PER_SYNC or not all(
                isinstance(name, str) for name in delivered):
            raise bad_request("delivered: a list of at most 20 message names")
        if report is not None and not isinstance(report, dict):
            raise bad_request("report: an object")
        pending = self.outbox.pending()
        by_name = {item.name: item for item in pending}
        for name in delivered:
            item = by_name.pop(name, None)
            if item is not None:
                self.outbox.delivered(item, now)
                self._status_cache = None
                log.info("mail: %s to %s accepted by the server (%s)", item.kind, item.recipient,
                         item.message_id)
        if report is not None:
            self.last_round = {key: report.get(key) for key in ("at", "sent", "left", "code", "error", "fix")}
            self.last_round["at"] = now.isoformat(timespec="seconds")
        if self.settings is None:
            return {"ok": True, "mail": None, "messages": []}
        messages: list[dict[str, Any]] = []
        budget = MESSAGES_BUDGET_BYTES
        for item in by_name.values():
            size = len(item.data) * 2 + 512
            if len(messages) >= MAX_MESSAGES_PER_SYNC or (messages and size > budget):
                break
            budget -= size
            messages.append({"name": item.name, "to": item.recipient, "message_id": item.message_id,
                             "kind": item.kind, "subject": item.subject, "queued_at": item.queued_at,
                             "data": item.data.decode("ascii")})
        return {"ok": True, "mail": settings_to_json(self.settings), "messages": messages}

    def problems(self) -> list[str]:
        error = (self.last_round or {}).get("error")
        if self.settings is None or not error:
            return []
        fix = (self.last_round or {}).get("fix")
        return [f"mail: {error}" + (f"; fix: {fix}" if fix else "")]

    def status(self) -> dict[str, Any] | None:
        """For status and the tray: the server, what waits, what was sent to whom and when.
        The outbox is read again only when its directory changed (each tick builds a status)."""
        try:
            changed = self.outbox.directory.stat().st_mtime_ns
        except OSError:
            changed = None
        if self.settings is None and changed is None:
            return None
        if self._status_cache is None or self._status_cache[0] != changed:
            pending = self.outbox.pending()
            self._status_cache = (changed, pending, self.outbox.sent())
        _, pending, sent = self._status_cache
        last = self.last_round or {}
        return {
            "server": self.settings.address if self.settings is not None else None,
            "pending": [{"to": item.recipient, "kind": item.kind, "queued_at": item.queued_at}
                        for item in pending[:SENT_SHOWN]],
            "pending_count": len(pending),
            "sent": [{"to": record.get("to"), "kind": record.get("kind"), "sent_at": record.get("sent_at")}
                     for record in sent[-SENT_SHOWN:]],
            "last_try": last.get("at"),
            "error": last.get("error"),
            "fix": last.get("fix"),
        }


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_bounded(path, MAX_MESSAGE_BYTES))
    except (FileNotFoundError, OutboxError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

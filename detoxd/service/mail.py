"""The daemon's side of the mail to the peers: its outbox, and ``mail_sync`` with the mail agent.

The daemon has no network: it writes messages into ``<state>/outbox`` (:mod:`detoxd.outbox`)
and hands them, with the server's settings (no secret), to detoxd-mail.service when it asks
(``mail_sync``, only root and the detoxd-mail user may). The agent says which messages the server
accepted (they leave the outbox then, and are kept in ``sent.json`` for status and the tray) and
how its last round went (a failure is a problem in status, with its fix, until a round succeeds).
"""

from __future__ import annotations

import logging
import pwd
from datetime import datetime
from pathlib import Path
from typing import Any

from detoxd.core.mail import MailSettings, settings_to_json
from detoxd.outbox import Outbox, outbox_dir
from detoxd.protocol import bad_request

log = logging.getLogger("detoxd")

MAIL_USER = "detoxd-mail"
MAX_MESSAGES_PER_SYNC = 20
MESSAGES_BUDGET_BYTES = 3 << 20  # of a reply that may be 4 MiB (MAX_RESPONSE_BYTES)
SENT_SHOWN = 10  # the last messages delivered, in status


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

    def configure(self, settings: MailSettings | None) -> None:
        self.settings = settings

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
        """For status and the tray: the server, what waits, what was sent to whom and when."""
        if self.settings is None and not self.outbox.directory.exists():
            return None
        pending = self.outbox.pending()
        last = self.last_round or {}
        return {
            "server": self.settings.address if self.settings is not None else None,
            "pending": [{"to": item.recipient, "kind": item.kind, "queued_at": item.queued_at}
                        for item in pending[:SENT_SHOWN]],
            "pending_count": len(pending),
            "sent": [{"to": record.get("to"), "kind": record.get("kind"), "sent_at": record.get("sent_at")}
                     for record in self.outbox.sent()[-SENT_SHOWN:]],
            "last_try": last.get("at"),
            "error": last.get("error"),
            "fix": last.get("fix"),
        }

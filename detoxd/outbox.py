"""The mail outbox: messages to the peers, one file each, in the daemon's state directory.

Whoever queues (`detoxd sessions --send`, the daemon's informed messages) writes a message whole,
through :mod:`detoxd.durable` (a crash leaves it there or not at all), with its Message-ID fixed
at that moment; the sender (`detoxd mail-send`, detoxd-mail.service) removes it only after the
server accepted it, so a kill -9 at any moment loses nothing, and a message sent again after a
broken connection carries the same Message-ID (the peer's mail program shows it once).

Next to the messages: ``sent.json``, the last messages delivered (whom, what, when: for status
and the tray), and ``invited.json``, what each peer was invited to (to cancel it later).
Every file is opened without following links, checked to be a regular file, read with a bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from detoxd import durable
from detoxd.core.imip import Envelope

OUTBOX_DIR = "outbox"
SENT_FILE = "sent.json"
INVITED_FILE = "invited.json"
MAX_MESSAGE_BYTES = 2 << 20  # an invitation with a card is ~20 KiB
MAX_SENT_RECORDS = 50
_SUFFIX = ".msg.json"


class OutboxError(Exception):
    pass


@dataclass(frozen=True)
class Queued:
    name: str  # the file's name in the outbox
    recipient: str
    sender: str
    message_id: str
    kind: str
    subject: str
    queued_at: str
    data: bytes


def new_message_id(sender: str) -> str:
    domain = sender.rpartition("@")[2] or "detoxd.invalid"
    return f"<{uuid.uuid4().hex}.detoxd@{domain}>"


def outbox_dir(state_dir: Path) -> Path:
    return state_dir / OUTBOX_DIR


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._queued = 0  # orders the messages this writer queues in the same microsecond

    def ensure(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def queue(self, envelope: Envelope, sender: str, subject: str, now: datetime) -> Queued:
        self.ensure()
        self._queued += 1
        name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{self._queued:06d}-{uuid.uuid4().hex[:12]}{_SUFFIX}"
        item = Queued(name, envelope.recipient, sender, envelope.message_id, envelope.kind, subject,
                      now.isoformat(timespec="seconds"), envelope.data)
        record = {"version": 1, "to": item.recipient, "from": item.sender, "message_id": item.message_id,
                  "kind": item.kind, "subject": item.subject, "queued_at": item.queued_at,
                  "data": item.data.decode("ascii")}
        durable.replace_file(self.directory / name, json.dumps(record).encode(), mode=0o600)
        return item

    def pending(self) -> list[Queued]:
        """The queued messages, oldest first; an unreadable file is skipped (and left there)."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory)
                           if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."))
        except FileNotFoundError:
            return []
        found: list[Queued] = []
        for name in names:
            with contextlib.suppress(OutboxError, FileNotFoundError):
                found.append(self._read(name))
        return found

    def _read(self, name: str) -> Queued:
        raw = read_bounded(self.directory / name, MAX_MESSAGE_BYTES)
        try:
            record = json.loads(raw)
            return Queued(name, str(record["to"]), str(record["from"]), str(record["message_id"]),
                          str(record["kind"]), str(record.get("subject", "")), str(record["queued_at"]),
                          str(record["data"]).encode("ascii"))
        except (ValueError, KeyError, TypeError, UnicodeEncodeError) as error:
            raise OutboxError(f"{name}: not a queued message") from error

    def delivered(self, item: Queued, when: datetime) -> None:
        """The server accepted ``item``: note it in sent.json, then take it out of the outbox.
        (A crash between the two sends it once more, with the same Message-ID.)"""
        records = self.sent()
        records.append({"to": item.recipient, "kind": item.kind, "subject": item.subject,
                        "message_id": item.message_id, "sent_at": when.isoformat(timespec="seconds")})
        durable.replace_file(self.directory / SENT_FILE,
                             json.dumps(records[-MAX_SENT_RECORDS:], indent=1).encode(), mode=0o600)
        durable.remove_file(self.directory / item.name)

    def sent(self) -> list[dict[str, Any]]:
        data = _read_json(self.directory / SENT_FILE, [])
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    def invited(self) -> dict[str, Any]:
        data = _read_json(self.directory / INVITED_FILE, {})
        return data if isinstance(data, dict) else {}

    def set_invited(self, invited: dict[str, Any]) -> None:
        self.ensure()
        durable.replace_file(self.directory / INVITED_FILE, json.dumps(invited, indent=1).encode(),
                             mode=0o600)


def read_bounded(path: Path, limit: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == 2:
            raise FileNotFoundError(path) from error
        raise OutboxError(f"{path.name}: {error.strerror}") from error
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OutboxError(f"{path.name}: not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OutboxError(f"{path.name}: larger than {limit} bytes")
    return data


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(read_bounded(path, MAX_MESSAGE_BYTES))
    except (FileNotFoundError, OutboxError, ValueError):
        return default

"""`detoxd sessions --send` (the invitations into the outbox) and `detoxd mail-send` (the outbox
to the user's SMTP server, what detoxd-mail.service runs)."""

from __future__ import annotations

import sys

from detoxd.commands.common import EXIT_INVALID_CONFIG, EXIT_OK, EXIT_REFUSED
from detoxd.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from detoxd.core.plan import Plan
    from detoxd.service.loader import LoadedConfig


def send_invitations(loaded: LoadedConfig, planned: Plan | None, paths: Paths, cards: Path | None) -> int:
    """Queue an invitation (or its update) for each peer with an email, a CANCEL for each peer
    invited before who no longer is (every peer when the plan is gone)."""
    from datetime import UTC

    from detoxd.clock import SystemClock
    from detoxd.core import ics, imip
    from detoxd.core.sessions import Person
    from detoxd.outbox import Outbox, outbox_dir

    settings = loaded.main.mail
    if settings is None:
        print(f"detoxd: --send needs `mail:` in {paths.config_dir}/detoxd.yaml (the server to send "
              "through; see docs/mail.md)", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    outbox = Outbox(outbox_dir(paths.state_dir))
    now = SystemClock().now().astimezone(UTC)
    try:
        invited = outbox.invited()
    except PermissionError:
        invited = {}
    card_texts = _cards(cards) if cards is not None else {}
    if planned is not None and loaded.main.detox.peer_lock and cards is None:
        print("detoxd: warning: lock: peers, but no --cards DIR: the invitations carry no card "
              "(give the DIR of `start --shares-out DIR`)", file=sys.stderr)
    me = planned.me if planned is not None else (loaded.main.me or Person("me"))
    # Every send is an update of what was sent before: a higher SEQUENCE, even within a minute.
    sequence = max([ics.sequence(now)] + [int(record.get("sequence", 0)) + 1 for record in invited.values()
                                          if isinstance(record, dict)])
    queued: list[tuple[imip.Envelope, str]] = []
    keep: dict[str, object] = {}
    for peer in planned.peers if planned is not None else ():
        if not peer.email:
            print(f"detoxd: {peer.name} has no email in detoxd.yaml: not invited by mail", file=sys.stderr)
            continue
        assert planned is not None
        card = card_texts.get(peer.name.casefold())
        envelope = imip.invitation(planned, peer, settings.sender, now,
                                   _message_id(settings.sender), card=card, sequence=sequence)
        queued.append((envelope, f"Invitation: peer sessions with {me.name}"))
        keep[peer.email.casefold()] = {"name": peer.name, "email": peer.email, "sequence": sequence,
                                       "events": [e.to_json() for e in imip.sent_events(planned)]}
    for key, record in invited.items():
        if key in keep or not isinstance(record, dict):
            continue
        try:
            events = tuple(imip.SentEvent.from_json(item) for item in record["events"])
            peer = Person(str(record["name"]), str(record["email"]))
        except (KeyError, TypeError):
            continue
        envelope = imip.cancellation(me, settings.sender, peer, events, now, _message_id(settings.sender),
                                     sequence=sequence)
        queued.append((envelope, f"Cancelled: peer sessions with {me.name}"))
    if not queued:
        print("detoxd: nobody to send to: no peer in detoxd.yaml has an email, and nobody was "
              "invited before", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    try:
        for envelope, subject in queued:
            outbox.queue(envelope, settings.sender, subject, now)
            print(f"queued {envelope.kind} to {envelope.recipient} ({envelope.message_id})")
        outbox.set_invited(keep)
    except PermissionError:
        print(f"detoxd: --send writes into {outbox.directory}: run it as root (sudo)", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{len(queued)} message{'s' if len(queued) != 1 else ''} in the outbox; detoxd-mail.service "
          f"sends {'them' if len(queued) != 1 else 'it'} through {settings.address}")
    return EXIT_OK


def _message_id(sender: str) -> str:
    from detoxd.outbox import new_message_id

    return new_message_id(sender)


def _cards(directory: Path) -> dict[str, tuple[str, str]]:
    """The peers' cards in ``directory`` (of `start --shares-out`), by holder's name (casefolded)."""
    import os
    import stat

    from detoxd.core import peercards

    found: dict[str, tuple[str, str]] = {}
    try:
        candidates = sorted(path for path in directory.iterdir() if path.suffix == ".txt")
    except OSError as error:
        print(f"detoxd: cannot read {directory}: {error.strerror}", file=sys.stderr)
        return found
    for path in candidates:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            continue  # a symlink would let a user have root mail a file that is not a card
        parsed = peercards.parse_card_file(path.read_text(encoding="utf-8", errors="replace"))
        if parsed is not None:
            found[parsed.holder.casefold()] = (path.name, parsed.text)
    return found


def cmd_mail_send(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.mailsend import run_sender

    return run_sender(args, paths)


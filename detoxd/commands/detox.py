"""`detoxd start`, `end`, `reload`, `status`: the detox, through the daemon."""

from __future__ import annotations

import json
import os
import sys

from detoxd.commands.common import (
    EXIT_INVALID_CONFIG,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    CommandExit,
    ask,
    ask_or_exit,
    may_change,
    quiet_status,
)
from detoxd.paths import DEFAULTS, Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from pathlib import Path
    from typing import Any

    from detoxd.service.connections import Resolution


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    return show_status(str(paths.socket), as_json=args.json)


def show_status(socket: str, *, as_json: bool) -> int:
    """`detoxd status` for the daemon at ``socket`` (no other path: no pathlib to import)."""
    response = ask_or_exit(socket, "status")
    if as_json:  # the daemon's document as it is: the contract (detoxd/data/status.schema.json)
        print(json.dumps(response["status"], indent=2, sort_keys=True))
    else:
        from detoxd.core.statustext import format_status
        from detoxd.protocol import Status

        # A daemon on another socket is a demo or a test (scripts/try): no sudo needed there.
        start = "sudo detoxd start" if socket == DEFAULTS["socket"] else "detoxd start"
        print(format_status(Status.from_json(response["status"]), start_command=start))
    return EXIT_OK


def cmd_start(args: argparse.Namespace, paths: Paths) -> int:
    before = _addresses_before_block(paths)
    request: dict[str, Any] = {"days": args.days} if args.days else {}
    if args.at is not None:
        return _plan_start(args, paths, request)
    cards: list[Path] = []
    if args.shares_out is not None:
        request["peer_lock"], cards = _prepare_peer_lock(args, paths)
    try:
        response = ask_or_exit(paths, "start", invalid_config=lambda reply: [
            f"{_errors(reply)} in {paths.config_dir}: no detox was started; fix them (`detoxd check` "
            "lists them) and start again"], **request)
    except CommandExit:
        from detoxd.peerlock import remove_files

        remove_files(cards)  # useless without the detox they belong to
        raise
    from detoxd.core.statustext import names_blocked
    from detoxd.protocol import Status

    status = Status.from_json(response["status"])
    print(f"Detox started: {names_blocked(status.domains_blocked)} until {status.ends_at}.")
    if status.lock == "peers":
        from detoxd.peerlock import started_message

        print(started_message(cards, status.peers_needed or 0))
    elif status.locked:
        print("It is locked: it cannot be ended early. Good luck!")
    _close_connections(before)
    return EXIT_OK


def _plan_start(args: argparse.Namespace, paths: Paths, request: dict[str, Any]) -> int:
    """`start --at`: the daemon reads the time in this machine's zone and keeps the plan; with
    `lock: peers` the cards are written now (their end date counted from the planned start)."""
    cards: list[Path] = []
    if args.shares_out is not None:
        request["peer_lock"], cards = _prepare_peer_lock(args, paths, begins=_planned_moment(args.at))
    try:
        response = ask_or_exit(paths, "start", invalid_config=lambda reply: [
            f"{_errors(reply)} in {paths.config_dir}: no detox was planned; fix them (`detoxd check` "
            "lists them) and plan again"], at=args.at, **request)
    except CommandExit:
        from detoxd.peerlock import remove_files

        remove_files(cards)  # useless without the plan they belong to
        raise
    from detoxd.core.statustext import planned_lines
    from detoxd.protocol import Status

    for line in planned_lines(Status.from_json(response["status"])):
        print(line)
    if cards:
        from detoxd.peerlock import started_message

        print(started_message(cards, int(request["peer_lock"].get("needed", 0))))
    return EXIT_OK


def _planned_moment(text: str) -> datetime | None:
    """The planned start as this machine reads it (for the cards; the daemon decides)."""
    from datetime import datetime

    from detoxd.clock import SystemClock
    from detoxd.core import planned
    from detoxd.service.scheduler import local_zone

    moment = planned.parse_at(text, local_zone(), SystemClock().now())
    return moment if isinstance(moment, datetime) else None


def cmd_cancel(args: argparse.Namespace, paths: Paths) -> int:
    ask_or_exit(paths, "cancel")
    print("The planned detox is cancelled.")
    return EXIT_OK


def _errors(reply: dict[str, Any]) -> str:
    count = reply.get("total") or len(reply.get("errors") or ()) or 1
    return f"{count} error{'s' if count != 1 else ''}"


def _prepare_peer_lock(args: argparse.Namespace, paths: Paths,
                       begins: datetime | None = None) -> tuple[dict[str, Any], list[Path]]:
    """The peers' cards written to --shares-out and the verifier for the daemon."""
    from detoxd.clock import SystemClock
    from detoxd.core.yamlsource import ConfigError
    from detoxd.peerlock import PeerLockError, prepare_start
    from detoxd.service.loader import load_config

    try:
        loaded = load_config(paths.config_dir)
    except ConfigError as error:
        print(error, file=sys.stderr)
        raise CommandExit(EXIT_INVALID_CONFIG) from None
    status = quiet_status(paths)
    if status is None:
        print(f"detoxd: the daemon is not reachable at {paths.socket}: no cards were written",
              file=sys.stderr)
        raise CommandExit(EXIT_UNREACHABLE)
    if status.active:
        print("detoxd: a detox is already running: no cards were written", file=sys.stderr)
        raise CommandExit(EXIT_REFUSED)
    earlier = ask(paths, "peer_lock") or {}
    taken = [item["share_set"] for item in earlier.get("earlier_share_sets", [])]
    try:
        return prepare_start(loaded.main, args.shares_out, paths, args.days or loaded.main.detox.days,
                             begins or SystemClock().now(), taken)
    except PeerLockError as error:
        print(f"detoxd: {error}", file=sys.stderr)
        raise CommandExit(error.code) from None


def cmd_end(args: argparse.Namespace, paths: Paths) -> int:
    if args.with_peers:
        from functools import partial

        from detoxd.peerlock import end_with_peers

        if not may_change(paths):  # before anyone types 60 words for nothing
            print("detoxd: ending a detox needs root: try sudo", file=sys.stderr)
            return EXIT_REFUSED
        return end_with_peers(partial(ask, paths))
    ask_or_exit(paths, "end")
    print("Detox ended; the block is gone from the hosts file.")
    return EXIT_OK


def cmd_reload(_args: argparse.Namespace, paths: Paths) -> int:
    before = _addresses_before_block(paths)
    response = ask_or_exit(paths, "reload", timeout=120.0, invalid_config=lambda _reply: [
        "the daemon keeps enforcing the last good blocklist"])
    from detoxd.core.statustext import names_blocked
    from detoxd.protocol import Status

    status = Status.from_json(response["status"])
    print(f"reloaded: {names_blocked(status.domains_blocked)}")
    if status.active:
        _close_connections(before)
    return EXIT_OK


def _addresses_before_block(paths: Paths) -> Resolution | None:
    """Where the soon-blocked names point now, so their open connections can be closed after.

    Done here, not in the daemon: closing host connections needs the host network namespace,
    netlink and CAP_NET_ADMIN, which the service's sandbox deliberately does not have.
    """
    from detoxd.service.targets.browser import SYSTEM_HOSTS_FILE

    # Only root can close other processes' sockets, and a scratch hosts file blocks nothing
    # system-wide, so there is nothing to cut off then.
    if os.geteuid() != 0 or paths.hosts_file != SYSTEM_HOSTS_FILE:
        return None
    from detoxd.service import connections

    return connections.resolve(connections.names_about_to_be_blocked(paths.config_dir, paths.applied_file))


def _close_connections(before: Resolution | None) -> None:
    if before is not None:
        from detoxd.service import connections

        print(connections.close(before.addresses).summary())

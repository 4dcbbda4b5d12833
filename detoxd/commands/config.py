"""`detoxd check` and `sessions`: the config files, read here (no daemon needed)."""

from __future__ import annotations

import json
import sys

from detoxd.commands.common import (
    EXIT_INVALID_CONFIG,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    quiet_status,
    write_output,
)
from detoxd.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from typing import Any

    from detoxd.service.loader import LoadedConfig


def cmd_check(_args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.core.yamlsource import ConfigError
    from detoxd.service.loader import load_config

    try:
        loaded = load_config(paths.config_dir)
    except ConfigError as error:
        print(error, file=sys.stderr)
        for warning in error.warnings:
            print(warning, file=sys.stderr)
        count = error.total  # every error, also those past the ones shown
        print(f"{count} error{'s' if count != 1 else ''} in {paths.config_dir}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    print(f"{paths.config_dir}: ok, {len(loaded.names)} names would be blocked")
    if loaded.blocklist.paths:
        print(f"paths blocked in the browsers (by policy): {', '.join(loaded.blocklist.paths)}")
    for allowance in loaded.blocklist.allowances:
        print(_allowance_rule_line(allowance, loaded.names))
    unreached = 0
    if loaded.main.network:
        from detoxd.netagent.agent import describe_engines

        for reached, line in describe_engines(loaded.main.network, paths.config_dir):
            print(f"[{'  ok' if reached else 'FAIL'}] {line}")
            unreached += not reached
    if loaded.blocklist.apps:
        from detoxd.service.appwatch import check_report

        print(check_report(loaded.blocklist.apps))
    # A FAIL line under exit 0 would tell a script all is well: the files are valid, an engine is not.
    return EXIT_UNREACHABLE if unreached else EXIT_OK


def _allowance_rule_line(allowance: Any, blocked: frozenset[str]) -> str:
    """`check`: "allowance twitter: 20 min a day, at most 2 opens, opens 18 blocked names"."""
    from detoxd.core.allowances import unblocked

    parts = [f"{allowance.minutes_per_day:g} min a day" if allowance.minutes_per_day else "windows only"]
    if allowance.max_opens_per_day is not None:
        parts.append(f"at most {allowance.max_opens_per_day} opens")
    if allowance.min_gap_minutes:
        parts.append(f"{allowance.min_gap_minutes:g} min between opens")
    if allowance.windows:
        parts.append("windows " + ", ".join(str(window) for window in allowance.windows[:7]))
    parts.append(f"opens {len(unblocked(blocked, (allowance,)))} blocked names")
    return f"allowance {allowance.name}: " + ", ".join(parts)


def _detox_window(loaded: LoadedConfig, paths: Paths, now: datetime) -> tuple[datetime | None, datetime]:
    """The detox the sessions go with: the running one if the daemon reports one, else the planned
    one (`start --at`), else one started now (its start then None)."""
    from datetime import datetime, timedelta

    status = quiet_status(paths)
    if status is not None and status.active and status.started_at and status.ends_at:
        return datetime.fromisoformat(status.started_at), datetime.fromisoformat(status.ends_at)
    if status is not None and status.state == "scheduled" and status.starts_at:
        begins = datetime.fromisoformat(status.starts_at)
        return begins, begins + timedelta(days=status.days_total or loaded.main.detox.days)
    return None, now + timedelta(days=loaded.main.detox.days)


def cmd_sessions(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.clock import SystemClock
    from detoxd.core import ics, plan
    from detoxd.core.yamlsource import ConfigError
    from detoxd.service.loader import load_config
    from detoxd.service.scheduler import system_timezone

    if [args.json, args.ics == "-", args.notes == "-"].count(True) > 1:
        print("detoxd: only one of --json, --ics - and --notes - can use standard output", file=sys.stderr)
        return EXIT_USAGE
    if args.cards is not None and not args.ics and not getattr(args, "send", False):
        print("detoxd: --cards DIR goes with --ics FILE (each peer's copy of the invitation)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        loaded = load_config(paths.config_dir)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    now = SystemClock().now()
    window = _detox_window(loaded, paths, now)
    # `first: "day N HH:MM"`: on the running or planned detox's days, else on a detox started now.
    planned = plan.from_config(loaded.main, system_timezone(), window[0] or now)
    if plan.follows_the_detox(loaded.main) and window[0] is None:
        print("detoxd: sessions.first is a day of the detox: shown for a detox started now",
              file=sys.stderr)
    if planned is None and getattr(args, "send", False):  # cancels what was sent before
        from detoxd.commands.mail import send_invitations

        return send_invitations(loaded, None, paths, args.cards)
    if planned is None:
        print(f"detoxd: no sessions planned: add a `sessions:` section to {paths.config_dir}/detoxd.yaml",
              file=sys.stderr)
        return EXIT_INVALID_CONFIG
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    for text in plan.warnings(planned, *window):
        print(f"warning: {text}", file=sys.stderr)
    if args.ics:
        write_output(args.ics, ics.calendar(planned, now))
    if args.cards is not None and args.ics:
        from detoxd.peerlock import PeerLockError, write_invitations

        try:
            for line in write_invitations(args.cards, planned, now):
                print(line, file=sys.stderr)
        except PeerLockError as error:
            print(f"detoxd: {error}", file=sys.stderr)
            return error.code
    if args.notes:
        detox_settings = loaded.main.detox
        needed = detox_settings.peers_needed if detox_settings.peer_lock else None
        write_output(args.notes, ics.worksheet(planned, peers_needed=needed).encode())
    if getattr(args, "send", False):
        from detoxd.commands.mail import send_invitations

        sent = send_invitations(loaded, planned, paths, args.cards)
        if sent != EXIT_OK:
            return sent
    if args.json:
        print(json.dumps(plan.to_json(planned), indent=2))
    elif "-" not in (args.ics, args.notes):
        print(plan.format_text(planned))
    return EXIT_OK

"""Command line. Imports lazily: `detoxd status` must not pay for the scheduler, watchdog or tray."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from detoxd.paths import DEFAULTS, Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    from typing import Any

    from detoxd.protocol import Status
    from detoxd.service.connections import Resolution

EXIT_OK = 0
EXIT_INVALID_CONFIG = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_NOT_EFFECTIVE = 1  # doctor: at least one check failed
DAEMON_FAILURES = frozenset({"internal_error", "timeout", "busy", "too_large"})


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, measuring the terminal with os instead of importing shutil (and
    with it bz2, lzma and zlib) at every start: argparse builds one for each add_argument."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """What shutil.get_terminal_size() would say: $COLUMNS, the terminal, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="detoxd", description="A 14-day digital detox, enforced through /etc/hosts.")
    parser.add_argument("--config-dir", help="config directory [$DETOXD_CONFIG_DIR, /etc/detoxd]")
    parser.add_argument("--state-dir", help="state directory [$DETOXD_STATE_DIR, /var/lib/detoxd]")
    parser.add_argument("--hosts-file", help="hosts file [$DETOXD_HOSTS_FILE, /etc/hosts]")
    parser.add_argument("--socket", help="control socket [$DETOXD_SOCKET, /run/detoxd/control.sock]")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", prog="detoxd",
                                     parser_class=_Parser)

    run = commands.add_parser("run", help="run the daemon in the foreground (what systemd starts)")
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    start = commands.add_parser("start", help="begin a detox now")
    start.add_argument("--days", type=_positive_days, help="length in days (default: detox.days)")
    start.add_argument("--shares-out", metavar="DIR", type=Path,
                       help="with `lock: peers`: write each peer's card (their share of the "
                       "early-end key) and invitation to DIR")
    end = commands.add_parser("end", help="end a detox early (refused while it is locked)")
    end.add_argument("--with-peers", action="store_true",
                     help="with `lock: peers`: type peers_needed of the peers' shares (or pipe "
                     "them, one per line)")
    open_ = commands.add_parser(
        "open", help="open an allowance: its sites leave the block for MINUTES (default: what is left today)")
    open_.add_argument("name", help="the allowance's name in blocklist.yaml")
    open_.add_argument("minutes", nargs="?", type=_positive_minutes, help="minutes (default: all left today)")
    close = commands.add_parser("close", help="close an open allowance now (unused minutes are kept)")
    close.add_argument("name", help="the allowance's name in blocklist.yaml")
    commands.add_parser(
        "cut", help="close open connections to newly blocked sites (what detoxd-cutter.service runs)")
    commands.add_parser("reload", help="reload the config now; exit 1 with the errors if invalid")
    status = commands.add_parser("status", help="show the detox status")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("check", help="validate the config files (no daemon needed)")
    report = commands.add_parser(
        "report", help="the detox day by day: blocked sites before vs during, attempts, apps closed")
    report.add_argument("--json", action="store_true", help="machine-readable output (fields in the README)")
    report.add_argument("--html", metavar="FILE", help="write one self-contained page with charts")
    netagent = commands.add_parser(
        "netagent", help="put the detox into the household's DNS engines (what detoxd-network starts)")
    netagent.add_argument("--engines", choices=("remote", "local", "dnsmasq", "unbound", "all"),
                          default="all", help="remote: Pi-hole, AdGuard Home; local: dnsmasq and "
                          "Unbound; or one local engine (default: all)")
    netagent.add_argument("--check-seconds", type=_check_period, default=15.0,
                          metavar="SECONDS", help="how often each engine is checked for tampering "
                          "(default 15, at most 30)")
    netagent.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    tray = commands.add_parser("tray", help="run the tray agent in this desktop session")
    tray.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    doctor = commands.add_parser("doctor", help="check that the detox is effective (exit 0 only then)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--root", default="/", help="check the system files under this root (default: /)")
    sessions = commands.add_parser(
        "sessions", help="show the two peer sessions and their hot seats (no daemon needed)")
    sessions.add_argument("--json", action="store_true", help="machine-readable output")
    sessions.add_argument("--ics", metavar="FILE", help="write an iCalendar file to send (- for stdout)")
    sessions.add_argument("--notes", metavar="FILE", help="write a Markdown worksheet (- for stdout)")
    sessions.add_argument("--cards", metavar="DIR", type=Path,
                          help="with --ics: also write each peer's own copy of the invitation, "
                          "with their card from DIR (of `start --shares-out DIR`) attached, into DIR")
    install = commands.add_parser("install", help="install and enable the systemd service")
    install.add_argument("--root", default="/", help="install into this root (default: /)")
    install.add_argument("--now", action="store_true", help="also start the service")
    uninstall = commands.add_parser(
        "uninstall", help="remove the service and the hosts block (refused during a locked detox)")
    uninstall.add_argument("--root", default="/", help="uninstall from this root (default: /)")
    uninstall.add_argument("--purge", action="store_true", help="also remove config and state")
    uninstall.add_argument(
        "--block-only", action="store_true",
        help="only end the detox (refused while locked) and remove the hosts block; "
             "the Debian package runs this before its files are removed")
    return parser


def _check_period(text: str) -> float:
    """1 to 30 seconds: tampering on an engine must be found within 30 s."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= seconds <= 30:
        raise argparse.ArgumentTypeError("must be from 1 to 30 seconds")
    return seconds


def _version() -> str:
    from detoxd import __version__

    return f"detoxd {__version__}"


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    from detoxd.core.detox import DAYS_RULE, checked_days  # the daemon's check, in one place

    checked = checked_days(days)
    if checked is None:
        raise argparse.ArgumentTypeError(DAYS_RULE)
    return checked


def _positive_minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < minutes <= 1440:
        raise argparse.ArgumentTypeError("minutes must be more than 0 and at most 1440")
    return minutes


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = Paths.resolve({
        "config_dir": args.config_dir, "state_dir": args.state_dir,
        "hosts_file": args.hosts_file, "socket": args.socket,
    })
    handler: Callable[[argparse.Namespace, Paths], int] = COMMANDS[args.command]
    try:
        return handler(args, paths)
    except KeyboardInterrupt:
        return 130


# ---- commands ----

def cmd_run(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.clock import SystemClock
    from detoxd.service.daemon import Daemon
    from detoxd.service.logsetup import setup_logging

    setup_logging(verbose=args.verbose)
    if _quiet_status(paths) is not None:
        # Checked before anything is touched: a second daemon would recover the first one's
        # hosts-file journal from under it.
        print(f"detoxd: another detoxd already answers on {paths.socket}", file=sys.stderr)
        return EXIT_REFUSED
    # Browser policies under another root: for tests and image builds (default: the real /etc
    # when guarding /etc/hosts, none for a scratch hosts file).
    policy_root = os.environ.get("DETOXD_POLICY_ROOT")
    # For tests: a file standing in for the kernel's word on the clock (never for the system's detoxd).
    from detoxd.service.timesync import stand_in_from_environment

    clock = SystemClock(stand_in_from_environment(paths.state_dir, Path(DEFAULTS["state_dir"])))
    return Daemon(paths, clock, policy_root=Path(policy_root) if policy_root else None).run()


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
    for allowance in loaded.blocklist.allowances:
        print(_allowance_rule_line(allowance, loaded.names))
    if loaded.main.network:
        from detoxd.netagent.agent import describe_engines

        for reached, line in describe_engines(loaded.main.network, paths.config_dir):
            print(f"[{'  ok' if reached else 'FAIL'}] {line}")
    if loaded.blocklist.apps:
        from detoxd.service.appwatch import check_report

        print(check_report(loaded.blocklist.apps))
    return EXIT_OK


def cmd_sessions(args: argparse.Namespace, paths: Paths) -> int:
    from datetime import datetime, timedelta

    from detoxd.clock import SystemClock
    from detoxd.core import ics, plan
    from detoxd.core.yamlsource import ConfigError
    from detoxd.service.loader import load_config
    from detoxd.service.scheduler import system_timezone

    if [args.json, args.ics == "-", args.notes == "-"].count(True) > 1:
        print("detoxd: only one of --json, --ics - and --notes - can use standard output", file=sys.stderr)
        return EXIT_USAGE
    if args.cards is not None and not args.ics:
        print("detoxd: --cards DIR goes with --ics FILE (each peer's copy of the invitation)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        loaded = load_config(paths.config_dir)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    planned = plan.from_config(loaded.main, system_timezone())
    if planned is None:
        print(f"detoxd: no sessions planned: add a `sessions:` section to {paths.config_dir}/detoxd.yaml",
              file=sys.stderr)
        return EXIT_INVALID_CONFIG
    now = SystemClock().now()
    # The window: the running detox if the daemon reports one, else one started now.
    window: tuple[datetime | None, datetime] = (None, now + timedelta(days=loaded.main.detox.days))
    status = _quiet_status(paths)
    if status is not None and status.active and status.started_at and status.ends_at:
        window = (datetime.fromisoformat(status.started_at), datetime.fromisoformat(status.ends_at))
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    for text in plan.warnings(planned, *window):
        print(f"warning: {text}", file=sys.stderr)
    if args.ics:
        _write_output(args.ics, ics.calendar(planned, now))
    if args.cards is not None:
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
        _write_output(args.notes, ics.worksheet(planned, peers_needed=needed).encode())
    if args.json:
        print(json.dumps(plan.to_json(planned), indent=2))
    elif "-" not in (args.ics, args.notes):
        print(plan.format_text(planned))
    return EXIT_OK


def _quiet_status(paths: Paths) -> Status | None:
    from detoxd.client import ControlClient, ControlError
    from detoxd.protocol import Status

    try:
        response = ControlClient(paths.socket).request("status", timeout=2.0)
    except ControlError:
        return None
    status = response.get("status")
    return Status.from_json(status) if isinstance(status, dict) else None


def _write_output(target: str, data: bytes) -> None:
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        with open(target, "wb") as handle:
            handle.write(data)
        print(f"wrote {target}", file=sys.stderr)


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    response = _ask(paths, "status")
    if response is None:
        return EXIT_UNREACHABLE
    if not response.get("ok"):
        return _refused(response)
    if args.json:  # the daemon's document as it is: the contract (detoxd/data/status.schema.json)
        print(json.dumps(response["status"], indent=2, sort_keys=True))
    else:
        from detoxd.core.statustext import format_status
        from detoxd.protocol import Status

        # A daemon on another socket is a demo or a test (scripts/try): no sudo needed there.
        start = "sudo detoxd start" if paths.socket == Path(DEFAULTS["socket"]) else "detoxd start"
        print(format_status(Status.from_json(response["status"]), start_command=start))
    return EXIT_OK


def cmd_netagent(args: argparse.Namespace, paths: Paths) -> int:
    import signal

    from detoxd.client import ControlClient
    from detoxd.netagent.agent import NetAgent
    from detoxd.service.logsetup import setup_logging

    setup_logging(verbose=args.verbose)
    agent = NetAgent(ControlClient(paths.socket), paths.config_dir, kind=args.engines,
                     check_seconds=args.check_seconds)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    return agent.run()


def cmd_report(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.client import ControlClient, ControlError

    try:
        response = ControlClient(paths.socket).request("report", timeout=60.0)
    except ControlError as exc:
        document = _report_from_journal(paths)
        if document is None:
            print(f"detoxd: the daemon is not reachable at {paths.socket}: {exc}", file=sys.stderr)
            print("Is it running? `systemctl status detoxd`; as root, `detoxd report` reads the journal "
                  "itself", file=sys.stderr)
            return EXIT_UNREACHABLE
        print(f"detoxd: the daemon is not reachable; built from the journal in {paths.state_dir}",
              file=sys.stderr)
    else:
        if not response.get("ok") or not isinstance(response.get("report"), dict):
            return _refused(response)
        document = response["report"]
    if args.html:
        from detoxd import report_html

        try:
            page = report_html.render(document)
        except report_html.ChartsUnavailable as exc:
            print(f"detoxd: {exc}", file=sys.stderr)
            return EXIT_USAGE
        _write_output(args.html, page.encode())
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    elif args.html != "-":
        from detoxd.core.report import format_text

        print(format_text(document))
    return EXIT_OK


def _report_from_journal(paths: Paths) -> dict[str, Any] | None:
    """With the daemon down, root can still read the journal (it is root's alone)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from detoxd.core import report
    from detoxd.service import journal
    from detoxd.service.scheduler import system_timezone

    directory = journal.directory_for(paths.state_dir)
    if not os.access(directory, os.R_OK | os.X_OK):
        return None
    events, stats = journal.read_events(directory)
    zone = ZoneInfo(system_timezone())
    return report.build(events, now=datetime.now(zone), tz=zone, scope="all",
                        journal_stats={"events": stats.events, "segments": stats.segments,
                                       "corrupt_lines": stats.corrupt_lines,
                                       "newer_version_lines": stats.newer_version_lines})


def cmd_tray(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.agent.tray import run_agent
    from detoxd.service.logsetup import setup_logging

    setup_logging(verbose=args.verbose)
    return run_agent(paths)


def cmd_doctor(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd import doctor

    report = doctor.run(paths, root=Path(args.root))
    print(doctor.format_json(report) if args.json else doctor.format_human(report))
    return EXIT_OK if report.effective else EXIT_NOT_EFFECTIVE


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


def cmd_start(args: argparse.Namespace, paths: Paths) -> int:
    before = _addresses_before_block(paths)
    request: dict[str, Any] = {"days": args.days} if args.days else {}
    cards: list[Path] = []
    if args.shares_out is not None:
        prepared = _prepare_peer_lock(args, paths)
        if isinstance(prepared, int):
            return prepared
        request["peer_lock"], cards = prepared
    response = _ask(paths, "start", **request)
    if response is None or not response.get("ok"):
        from detoxd.peerlock import remove_files

        remove_files(cards)  # useless without the detox they belong to
    if response is None:
        return EXIT_UNREACHABLE
    if response.get("code") == "invalid_config":
        print(response["error"], file=sys.stderr)
        count = response.get("total") or len(response.get("errors") or ()) or 1
        print(f"{count} error{'s' if count != 1 else ''} in {paths.config_dir}: no detox was "
              "started; fix them (`detoxd check` lists them) and start again", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    if not response.get("ok"):
        return _refused(response)
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


def _prepare_peer_lock(args: argparse.Namespace, paths: Paths) -> tuple[dict[str, Any], list[Path]] | int:
    """The peers' cards written to --shares-out and the verifier for the daemon, or an exit code."""
    from detoxd.clock import SystemClock
    from detoxd.core.yamlsource import ConfigError
    from detoxd.peerlock import PeerLockError, prepare_start
    from detoxd.service.loader import load_config

    try:
        loaded = load_config(paths.config_dir)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    status = _quiet_status(paths)
    if status is None:
        print(f"detoxd: the daemon is not reachable at {paths.socket}: no cards were written",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    if status.active:
        print("detoxd: a detox is already running: no cards were written", file=sys.stderr)
        return EXIT_REFUSED
    earlier = _ask(paths, "peer_lock") or {}
    taken = [item["share_set"] for item in earlier.get("earlier_share_sets", [])]
    try:
        return prepare_start(loaded.main, args.shares_out, paths, args.days or loaded.main.detox.days,
                             SystemClock().now(), taken)
    except PeerLockError as error:
        print(f"detoxd: {error}", file=sys.stderr)
        return error.code


def cmd_end(args: argparse.Namespace, paths: Paths) -> int:
    if args.with_peers:
        from functools import partial

        from detoxd.peerlock import end_with_peers

        if not _may_change(paths):  # before anyone types 60 words for nothing
            print("detoxd: ending a detox needs root: try sudo", file=sys.stderr)
            return EXIT_REFUSED
        return end_with_peers(partial(_ask, paths))
    response = _ask(paths, "end")
    if response is None:
        return EXIT_UNREACHABLE
    if not response.get("ok"):
        return _refused(response)
    print("Detox ended; the block is gone from the hosts file.")
    return EXIT_OK


def cmd_reload(_args: argparse.Namespace, paths: Paths) -> int:
    before = _addresses_before_block(paths)
    response = _ask(paths, "reload", timeout=120.0)
    if response is None:
        return EXIT_UNREACHABLE
    if response.get("code") == "invalid_config":
        print(response["error"], file=sys.stderr)
        print("the daemon keeps enforcing the last good blocklist", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    if not response.get("ok"):
        return _refused(response)
    from detoxd.core.statustext import names_blocked
    from detoxd.protocol import Status

    status = Status.from_json(response["status"])
    print(f"reloaded: {names_blocked(status.domains_blocked)}")
    if status.active:
        _close_connections(before)
    return EXIT_OK


def _ask(paths: Paths, command: str, timeout: float = 10.0, **args: Any) -> dict[str, Any] | None:
    from detoxd.client import ControlClient, DaemonUnreachable, ProtocolError

    try:
        return ControlClient(paths.socket).request(command, timeout=timeout, **args)
    except DaemonUnreachable as exc:
        print(f"detoxd: the daemon is not reachable at {paths.socket}: {exc}", file=sys.stderr)
        print("Is it running? `systemctl status detoxd` or `sudo detoxd run`", file=sys.stderr)
        print("While it is not running, a detox's block stays in the hosts file but nothing "
              "restores it: `sudo systemctl start detoxd`", file=sys.stderr)
    except ProtocolError as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        print("Is the program listening there really detoxd, of this version?", file=sys.stderr)
    return None


def cmd_open(args: argparse.Namespace, paths: Paths) -> int:
    minutes = {"minutes": args.minutes} if args.minutes is not None else {}
    response = _ask(paths, "open", name=args.name, **minutes)
    if response is None:
        return EXIT_UNREACHABLE
    if not response.get("ok"):
        return _refused(response, root_helps=False)
    print(response.get("message", f"{args.name} is open"))
    return EXIT_OK


def cmd_close(args: argparse.Namespace, paths: Paths) -> int:
    response = _ask(paths, "close", name=args.name)
    if response is None:
        return EXIT_UNREACHABLE
    if not response.get("ok"):
        return _refused(response, root_helps=False)
    print(response.get("message", f"{args.name} is blocked again"))
    return EXIT_OK


def cmd_cut(_args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.service import cutter
    from detoxd.service.logsetup import setup_logging

    if os.geteuid() != 0:
        print("detoxd: closing other processes' connections needs root", file=sys.stderr)
        return EXIT_REFUSED
    setup_logging(verbose=False)
    print(cutter.run(paths.cutter_dir).summary())
    return EXIT_OK


def _may_change(paths: Paths) -> bool:
    """The daemon lets root and its own user change the detox; it created the socket."""
    try:
        daemon_uid = paths.socket.stat().st_uid
    except OSError:
        return True  # let the request say what is wrong
    return os.geteuid() in (0, daemon_uid)


def _refused(response: dict[str, Any], *, root_helps: bool = True) -> int:
    print(f"detoxd: {response.get('error', 'refused')}", file=sys.stderr)
    if response.get("code") == "not_authorized" and os.geteuid() != 0 and root_helps:
        print("(changing the detox needs root: try sudo)", file=sys.stderr)
    if response.get("code") in ("refused", "not_authorized"):
        return EXIT_REFUSED
    if response.get("code") in DAEMON_FAILURES:
        return EXIT_UNREACHABLE  # the daemon is there but could not answer this request
    return EXIT_USAGE


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


def cmd_install(args: argparse.Namespace, _paths: Paths) -> int:
    from detoxd import install

    if args.root == "/" and os.geteuid() != 0:
        print("detoxd: installing a system service needs root: try sudo", file=sys.stderr)
        return EXIT_REFUSED
    try:
        lines = install.install(Path(args.root), now=args.now, executable=install.find_executable())
    except install.UnsafeCode as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except install.InstallError as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK


def cmd_uninstall(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd import install

    if args.root == "/" and os.geteuid() != 0:
        print("detoxd: uninstalling a system service needs root: try sudo", file=sys.stderr)
        return EXIT_REFUSED
    refusal = _end_detox_for_uninstall(paths)
    if refusal is not None:
        print(f"detoxd: uninstall refused: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    if args.block_only:
        print(_remove_hosts_block(paths))
        return EXIT_OK
    try:
        lines = install.uninstall(Path(args.root), purge=args.purge)
    except install.InstallError as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    lines.insert(0, _remove_hosts_block(paths))
    print("\n".join(lines))
    return EXIT_OK


def _end_detox_for_uninstall(paths: Paths) -> str | None:
    """None when no detox is running any more; the reason when one is and cannot end."""
    from detoxd.client import ControlClient, DaemonUnreachable
    from detoxd.core import detox
    from detoxd.service import state_store

    try:
        status = ControlClient(paths.socket).request("status")["status"]
        if status["state"] == "idle":
            return None
        response = ControlClient(paths.socket).request("end")
        return None if response.get("ok") else str(response.get("error", "refused"))
    except DaemonUnreachable:
        pass
    # The daemon is down: the state file decides (the daemon would end a finished detox on start).
    try:
        state = state_store.load(paths.state_file)
    except state_store.StateFileError as exc:
        return f"cannot tell whether a detox is running: {exc}"
    if state.active and state.locked and detox.remaining(state).total_seconds() > 0:
        return f"a locked detox is running ({detox.days_left(state)} days left)"
    if state.active:
        ended = detox.request_end(state)
        if isinstance(ended, detox.Refusal):
            return ended.reason
        state_store.save(paths.state_file, ended)  # a reinstall must not resume it
    return None


def _remove_hosts_block(paths: Paths) -> str:
    from detoxd.core import hosts
    from detoxd.service import state_store
    from detoxd.service.targets.hosts.hostsfile import HostsFile

    state = state_store.load(paths.state_file) if paths.state_file.exists() else None
    managed = state.ratchet if state is not None else frozenset()
    hosts_file = HostsFile(paths.hosts_file, paths.state_dir)
    hosts_file.recover()
    if hosts_file.write(hosts.strip(hosts_file.read(), managed)):
        return f"removed detoxd's block from {paths.hosts_file}"
    return f"{paths.hosts_file} holds no detoxd block"


COMMANDS: dict[str, Callable[[argparse.Namespace, Paths], int]] = {
    "run": cmd_run,
    "start": cmd_start,
    "end": cmd_end,
    "reload": cmd_reload,
    "status": cmd_status,
    "report": cmd_report,
    "check": cmd_check,
    "doctor": cmd_doctor,
    "tray": cmd_tray,
    "netagent": cmd_netagent,
    "sessions": cmd_sessions,
    "install": cmd_install,
    "uninstall": cmd_uninstall,
    "open": cmd_open,
    "close": cmd_close,
    "cut": cmd_cut,
}


if __name__ == "__main__":
    sys.exit(main())

"""The command line's declarations: every command, option and argument (what `detoxd --help`
and the manual page, generated from :func:`build_parser`, show), and one range validator.

Imports only argparse and os: every `detoxd` command but the two plain forms of `status` (see
:func:`detoxd.commands.main`) builds this parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    from typing import Any


def number_in_range(low: float, high: float, message: str, *, low_included: bool = True
                    ) -> Callable[[str], float]:
    """An argparse ``type``: a number from ``low`` (or above it: ``low_included=False``) to
    ``high``; else ``message`` (or "'x' is not a number")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above_low = low <= value if low_included else low < value
        if not (above_low and value <= high):  # NaN fails both
            raise argparse.ArgumentTypeError(message)
        return value

    return parse


def DAYS(text: str) -> float:
    """A detox's length, by the daemon's own rule (core.detox, imported only when one is given)."""
    from detoxd.core.detox import DAYS_RULE, checked_days

    checked = checked_days(number_in_range(float("-inf"), float("inf"), DAYS_RULE)(text))
    if checked is None:
        raise argparse.ArgumentTypeError(DAYS_RULE)
    return checked


MINUTES = number_in_range(0, 1440, "minutes must be more than 0 and at most 1440", low_included=False)
# Tampering on an engine must be found within 30 s.
CHECK_SECONDS = number_in_range(1, 30, "must be from 1 to 30 seconds")


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
    start = commands.add_parser("start", help="begin a detox now, or plan one (--at)")
    start.add_argument("--days", type=DAYS, help="length in days (default: detox.days)")
    start.add_argument("--at", metavar="'YYYY-MM-DD HH:MM'",
                       help="plan the detox to begin then (local time), by itself; detoxd cancel "
                       "undoes the plan, except in its last 24 hours with detox.lock")
    start.add_argument("--shares-out", metavar="DIR", type=Path,
                       help="with `lock: peers`: write each peer's card (their share of the "
                       "early-end key) and invitation to DIR")
    commands.add_parser("cancel", help="cancel a planned detox (start --at); refused in its last 24 "
                        "hours when locked")
    end = commands.add_parser("end", help="end a detox early (refused while it is locked)")
    end.add_argument("--with-peers", action="store_true",
                     help="with `lock: peers`: type peers_needed of the peers' shares (or pipe "
                     "them, one per line)")
    open_ = commands.add_parser(
        "open", help="open an allowance: its sites leave the block for MINUTES (default: what is left today)")
    open_.add_argument("name", help="the allowance's name in blocklist.yaml")
    open_.add_argument("minutes", nargs="?", type=MINUTES, help="minutes (default: all left today)")
    close = commands.add_parser("close", help="close an open allowance now (unused minutes are kept)")
    close.add_argument("name", help="the allowance's name in blocklist.yaml")
    commands.add_parser(
        "cut", help="close open connections to newly blocked sites (what detoxd-cutter.service runs)")
    commands.add_parser(
        "execwatch", help="pass the kernel's exec events to the daemon, which closes blocked apps at "
        "once (what detoxd-execwatch.service runs)")
    commands.add_parser("reload", help="reload the config now; exit 1 with the errors if invalid")
    status = commands.add_parser("status", help="show the detox status")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("check", help="validate the config files (no daemon needed)")
    report = commands.add_parser(
        "report", help="the detox day by day: blocked sites before vs during, attempts, apps closed")
    report.add_argument("--json", action="store_true",
                        help="machine-readable output (fields in docs/report.md)")
    report.add_argument("--html", metavar="FILE", help="write one self-contained page with charts")
    netagent = commands.add_parser(
        "netagent", help="put the detox into the household's DNS engines (what detoxd-network starts)")
    netagent.add_argument("--engines", choices=("remote", "local", "dnsmasq", "unbound", "all"),
                          default="all", help="remote: Pi-hole, AdGuard Home; local: dnsmasq and "
                          "Unbound; or one local engine (default: all)")
    netagent.add_argument("--check-seconds", type=CHECK_SECONDS, default=15.0,
                          metavar="SECONDS", help="how often each engine is checked for tampering "
                          "(default 15, at most 30)")
    netagent.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    tray = commands.add_parser("tray", help="run the tray agent in this desktop session")
    tray.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    browser_host = commands.add_parser(
        "browser-host", help="relay the detoxd browser extension's messages to the daemon, as the "
        "browser's user (what the browser starts: native messaging host org.detoxd.browser_host)")
    browser_host.add_argument("caller", nargs=argparse.REMAINDER,
                              help="what the browser passes (its caller's origin; ignored)")
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
                          "with their card from DIR (of `start --shares-out DIR`) attached, into DIR; "
                          "with --send: attach each peer's card from DIR")
    sessions.add_argument("--send", action="store_true",
                          help="mail each peer with an email an invitation (iMIP) through mail:; "
                          "a changed plan sends an update, a removed one a cancellation (root)")
    mail_send = commands.add_parser(
        "mail-send", help="send the outbox's messages through mail: (what detoxd-mail starts)")
    mail_send.add_argument("--outbox", metavar="DIR", type=Path,
                           help="send from this outbox directly (as root; default: ask the daemon)")
    mail_send.add_argument("--once", action="store_true",
                           help="try each queued message once, then exit (4 if any is left)")
    mail_send.add_argument("--try-server", action="store_true",
                           help="only connect, STARTTLS and AUTH (no message), say what fails")
    mail_send.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
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


def _version() -> str:
    from detoxd import __version__

    return f"detoxd {__version__}"

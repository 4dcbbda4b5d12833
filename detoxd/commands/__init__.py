"""The command line, laid out as borgmatic's: :mod:`.arguments` declares every command and option
(the manual page is generated from it), one module per group of commands holds what they do, and
:mod:`.common` what they share (exit codes, asking the daemon: :func:`.common.ask_or_exit`).

The commands import the client, never the daemon's internals: what only the service side may do
(the state file and the hosts file while the daemon is down) is a function in
:mod:`detoxd.service`. Each command imports what it needs when it runs: `detoxd status` must not
pay for the scheduler, the watchdog or the tray.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from detoxd.paths import Paths

# command -> the module of detoxd.commands that runs it, as cmd_<command>
GROUPS = {
    "start": "detox", "cancel": "detox", "end": "detox", "reload": "detox", "status": "detox",
    "open": "allowance", "close": "allowance",
    "check": "config", "sessions": "config",
    "report": "report",
    "run": "processes", "netagent": "processes", "tray": "processes", "cut": "processes",
    "execwatch": "processes", "browser-host": "processes",
    "mail-send": "mail",
    "install": "system", "uninstall": "system", "doctor": "system",
}
# The paths' options of every command (None: from the environment, else the default).
PATH_OPTIONS = ("config_dir", "state_dir", "hosts_file", "socket")


class _StatusArguments:
    """What argparse makes of `status` and `status --json` (see :func:`main`)."""

    command = "status"

    def __init__(self, json: bool) -> None:
        self.json = json
        for option in PATH_OPTIONS:
            setattr(self, option, None)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args: argparse.Namespace | _StatusArguments
    if words[:1] == ["status"] and set(words[1:]) <= {"--json"}:
        # What people type most, and what must start fast: these two forms mean nothing else, and
        # argparse with the parsers of 16 commands is a third of `detoxd status`'s start.
        args = _StatusArguments(json="--json" in words)
    else:
        from detoxd.commands.arguments import build_parser

        args = build_parser().parse_args(words)
    return run(args)


def run(args: argparse.Namespace | _StatusArguments) -> int:
    from detoxd.commands.common import CommandExit

    try:
        if isinstance(args, _StatusArguments):
            # Only the socket's path: Paths holds pathlib's paths, a tenth of `detoxd status`.
            from detoxd.commands.detox import show_status
            from detoxd.paths import socket_path

            return show_status(socket_path(), as_json=args.json)
        from detoxd.paths import Paths

        paths = Paths.resolve({option: getattr(args, option) for option in PATH_OPTIONS})
        module = f"detoxd.commands.{GROUPS[args.command]}"
        __import__(module)  # the builtin: importlib would cost `detoxd status` an import
        handler: Callable[[argparse.Namespace, Paths], int] = getattr(
            sys.modules[module], f"cmd_{args.command.replace('-', '_')}")
        return handler(args, paths)
    except CommandExit as stop:
        return stop.code
    except KeyboardInterrupt:
        return 130

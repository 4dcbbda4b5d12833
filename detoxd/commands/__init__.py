"""The command line, laid out as borgmatic's: :mod:`.arguments` declares every command and option
(the manual page is generated from it), one module per group of commands holds what they do, and
:mod:`.common` what they share (exit codes, asking the daemon: :func:`.common.ask_or_exit`).

The commands import the client, never the daemon's internals: what only the service side may do
(the state file and the hosts file while the daemon is down) is a function in
:mod:`detoxd.service`. Each command imports what it needs when it runs: `detoxd status` must not
pay for the scheduler, the watchdog or the tray.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from detoxd.paths import Paths

# command -> the module of detoxd.commands that runs it, as cmd_<command>
GROUPS = {
    "start": "detox", "end": "detox", "reload": "detox", "status": "detox",
    "open": "allowance", "close": "allowance",
    "check": "config", "sessions": "config",
    "report": "report",
    "run": "processes", "netagent": "processes", "tray": "processes", "cut": "processes",
    "install": "system", "uninstall": "system", "doctor": "system",
}


def main(argv: Sequence[str] | None = None) -> int:
    from detoxd.commands.arguments import build_parser
    from detoxd.commands.common import CommandExit
    from detoxd.paths import Paths

    args = build_parser().parse_args(argv)
    paths = Paths.resolve({
        "config_dir": args.config_dir, "state_dir": args.state_dir,
        "hosts_file": args.hosts_file, "socket": args.socket,
    })
    handler: Callable[[argparse.Namespace, Paths], int] = getattr(
        import_module(f"detoxd.commands.{GROUPS[args.command]}"), f"cmd_{args.command}")
    try:
        return handler(args, paths)
    except CommandExit as stop:
        return stop.code
    except KeyboardInterrupt:
        return 130

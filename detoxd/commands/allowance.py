"""`detoxd open` and `close`: an allowance, through the daemon (which checks its budget)."""

from __future__ import annotations

from detoxd.commands.common import EXIT_OK, ask_or_exit
from detoxd.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse


def cmd_open(args: argparse.Namespace, paths: Paths) -> int:
    minutes = {"minutes": args.minutes} if args.minutes is not None else {}
    response = ask_or_exit(paths, "open", root_helps=False, name=args.name, **minutes)
    print(response.get("message", f"{args.name} is open"))
    return EXIT_OK


def cmd_close(args: argparse.Namespace, paths: Paths) -> int:
    response = ask_or_exit(paths, "close", root_helps=False, name=args.name)
    print(response.get("message", f"{args.name} is blocked again"))
    return EXIT_OK

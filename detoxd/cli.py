"""The `detoxd` entry point (the console script and ``python -m detoxd``): the commands are in
:mod:`detoxd.commands`; :func:`build_parser` is what the manual page is generated from."""

from __future__ import annotations

import sys

from detoxd.commands import main

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Every command and option (:mod:`detoxd.commands.arguments`; imported here only when asked
    for: `detoxd status` needs no parser)."""
    from detoxd.commands.arguments import build_parser as build

    return build()


if __name__ == "__main__":
    sys.exit(main())

"""The `detoxd` entry point (the console script and ``python -m detoxd``): the commands are in
:mod:`detoxd.commands`; :func:`build_parser` is what the manual page is generated from."""

from __future__ import annotations

import sys

from detoxd.commands import main
from detoxd.commands.arguments import build_parser

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())

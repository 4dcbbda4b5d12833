"""`detoxd report`: the detox day by day, from the daemon (or, for root, from the journal)."""

from __future__ import annotations

import json
import os
import sys

from detoxd.commands.common import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, refused, write_output
from detoxd.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse
    from typing import Any


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
            return refused(response)
        document = response["report"]
    if args.html:
        from detoxd import report_html

        try:
            page = report_html.render(document)
        except report_html.ChartsUnavailable as exc:
            print(f"detoxd: {exc}", file=sys.stderr)
            return EXIT_USAGE
        write_output(args.html, page.encode())
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

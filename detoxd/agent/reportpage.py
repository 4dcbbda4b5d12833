"""The tray's "Open the detox report": the daemon's report for this user, as the HTML page.

Written to ``~/.cache/detoxd/report.html`` (0600: it holds the user's own ActivityWatch time),
replaced atomically, and opened by the tray in the user's browser.
"""

from __future__ import annotations

import os
from pathlib import Path

from detoxd.client import ControlClient, ControlError
from detoxd.durable import replace_file


class ReportUnavailable(Exception):
    """Why there is no page; shown to the user."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "detoxd"


def write_page(socket_path: Path, directory: Path | None = None) -> Path:
    from detoxd import report_html

    try:
        response = ControlClient(socket_path).request("report", timeout=60.0)
    except ControlError as error:
        raise ReportUnavailable(f"The daemon is not reachable: {error}") from error
    document = response.get("report")
    if not response.get("ok") or not isinstance(document, dict):
        raise ReportUnavailable(f"No report: {response.get('error', 'the daemon refused')}")
    try:
        page = report_html.render(document)
    except report_html.ChartsUnavailable as error:
        raise ReportUnavailable(str(error)) from error
    directory = directory or cache_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / "report.html"
    replace_file(target, page.encode(), mode=0o600)
    return target

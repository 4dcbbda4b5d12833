"""Log line formats, checked in a real subprocess whose stderr is a file the test owns."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from detoxd.service.logsetup import syslog_priority

PROGRAM = """
import logging, sys
from detoxd.service.logsetup import setup_logging
setup_logging(verbose=sys.argv[1] == "verbose")
log = logging.getLogger("detoxd.test")
log.debug("checking")
log.info("blocked 12 domains")
log.warning("hosts file was edited")
log.error("cannot write hosts")
logging.getLogger("apscheduler.executors.default").info("Running job")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("main loop failed")
"""


def run_logging(tmp_path: Path, *, journal: str | None, verbose: bool = False) -> list[str]:
    """Run PROGRAM with stderr in a file; ``journal`` "self" sets JOURNAL_STREAM to that file's
    device:inode (what systemd does), any other value is passed as is."""
    stderr_path = tmp_path / "stderr"
    env = {key: value for key, value in os.environ.items() if key != "JOURNAL_STREAM"}
    with stderr_path.open("w") as stderr:
        if journal == "self":
            status = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"
        elif journal is not None:
            env["JOURNAL_STREAM"] = journal
        subprocess.run(
            [sys.executable, "-c", PROGRAM, "verbose" if verbose else "quiet"],
            env=env,
            stderr=stderr,
            check=True,
        )
    return stderr_path.read_text().splitlines()


def test_journal_lines_carry_syslog_priority_and_no_timestamp(tmp_path: Path) -> None:
    lines = run_logging(tmp_path, journal="self")
    assert lines[:3] == [
        "<6>detoxd.test: blocked 12 domains",
        "<4>detoxd.test: hosts file was edited",
        "<3>detoxd.test: cannot write hosts",
    ]
    assert lines[3] == "<3>detoxd.test: main loop failed"
    # Every traceback line keeps the error priority, or journald would file it as info.
    traceback = lines[4:]
    assert traceback[0] == "<3>Traceback (most recent call last):"
    assert traceback[-1] == "<3>ZeroDivisionError: division by zero"
    assert all(line.startswith("<3>") for line in traceback)


def test_verbose_adds_debug_lines_and_library_info(tmp_path: Path) -> None:
    lines = run_logging(tmp_path, journal="self", verbose=True)
    assert lines[0] == "<7>detoxd.test: checking"
    assert "<6>apscheduler.executors.default: Running job" in lines


def test_quiet_hides_debug_and_chatty_libraries(tmp_path: Path) -> None:
    lines = run_logging(tmp_path, journal="self")
    assert not any("checking" in line or "Running job" in line for line in lines)


def test_console_lines_have_timestamp_and_level(tmp_path: Path) -> None:
    lines = run_logging(tmp_path, journal=None)
    timestamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(timestamp + r" INFO detoxd\.test: blocked 12 domains", lines[0])
    assert re.fullmatch(timestamp + r" WARNING detoxd\.test: hosts file was edited", lines[1])
    assert not any(line.startswith("<") for line in lines)


def test_inherited_journal_stream_for_another_file_is_ignored(tmp_path: Path) -> None:
    """A child of the service inherits JOURNAL_STREAM even when its stderr goes elsewhere."""
    other = os.stat(sys.executable)
    lines = run_logging(tmp_path, journal=f"{other.st_dev}:{other.st_ino}")
    assert lines[0].endswith(" INFO detoxd.test: blocked 12 domains")
    assert not lines[0].startswith("<")


def test_malformed_journal_stream_falls_back_to_console(tmp_path: Path) -> None:
    lines = run_logging(tmp_path, journal="not-a-stream")
    assert lines[0].endswith(" INFO detoxd.test: blocked 12 domains")


def test_custom_levels_map_to_the_nearest_standard_priority() -> None:
    assert syslog_priority(logging.INFO + 5) == 6
    assert syslog_priority(logging.WARNING + 5) == 4
    assert syslog_priority(logging.CRITICAL) == 2
    assert syslog_priority(1) == 7

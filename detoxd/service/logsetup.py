"""Logging to stderr that journald understands.

Under systemd, stderr is a stream into journald. A line starting with ``<N>`` (a syslog
priority) is stored with that priority, so ``journalctl -p warning -u detoxd`` shows exactly
our warnings and errors; journald adds the timestamp itself. Started by hand, lines carry a
timestamp and the level name instead.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

# Python levels to syslog priorities (sd-daemon(3)); NOTICE (5) has no Python level.
_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

JOURNAL_FORMAT = "%(name)s: %(message)s"
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries that are chatty at INFO (APScheduler logs every job run).
_QUIET_LOGGERS = ("apscheduler", "watchdog")


class JournalFormatter(logging.Formatter):
    """Prefixes every line with the priority: journald splits a multi-line record (a
    traceback) into one entry per line, and unprefixed lines would all become "info"."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def syslog_priority(levelno: int) -> int:
    """The priority of the nearest standard level at or below ``levelno``."""
    for level in sorted(_SYSLOG_PRIORITY, reverse=True):
        if levelno >= level:
            return _SYSLOG_PRIORITY[level]
    return _SYSLOG_PRIORITY[logging.DEBUG]


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journald stream systemd connected us to.

    JOURNAL_STREAM ("device:inode") is inherited by children whose stderr may be redirected
    elsewhere, so compare it with the stream itself, as systemd.exec(5) recommends."""
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(stream.fileno())
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):  # unset or malformed variable, or a stream without a file
        return False


def setup_logging(verbose: bool = False, stream: TextIO | None = None) -> None:
    """Configure the root logger once for the whole process (a second call replaces it)."""
    target = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(target)
    if stream_is_journal(target):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)

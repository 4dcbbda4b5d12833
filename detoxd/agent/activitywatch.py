"""The tray agent's ActivityWatch reader: time on blocked sites and apps, sent to the daemon.

ActivityWatch runs per user (aw-server on localhost:5600), so the agent, not the root daemon,
asks it — through its query API, with a query (:mod:`detoxd.core.activity`) that keeps only the
blocked names and apps inside aw-server. Every ``REPORT_SECONDS`` the agent asks the daemon what
to measure (``activity_targets``), queries aw-server for the 14 days before the detox and each
day of it, and sends the days whose totals changed (``activity_report``); the daemon journals
them. When aw-server is not there the daemon is told why, and the report explains how to get it.

Only loopback addresses are ever asked (``DETOXD_ACTIVITYWATCH_URL`` overrides the address, for
a non-default port or tests): this data never leaves the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from detoxd.client import ControlClient, ControlError
from detoxd.core import activity

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:5600"
URL_ENVIRONMENT = "DETOXD_ACTIVITYWATCH_URL"
REPORT_SECONDS = float(os.environ.get("DETOXD_ACTIVITY_REPORT_SECONDS", "900"))
HTTP_TIMEOUT = 20.0  # a query over 28 days of a busy bucket takes a few seconds
MAX_ANSWER_BYTES = 16 * 1024 * 1024
DAYS_PER_REQUEST = 28  # the daemon takes at most 31
RETRY_SECONDS = 60.0  # the daemon did not answer: it may be starting


class Unavailable(Exception):
    """ActivityWatch cannot be asked; the message says why, for the report."""


class ActivityWatch:
    """A minimal client of aw-server's REST API (``/api/0``): buckets and queries."""

    def __init__(self, base_url: str | None = None, timeout: float = HTTP_TIMEOUT) -> None:
        self.base_url = (base_url or os.environ.get(URL_ENVIRONMENT) or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        _require_loopback(self.base_url)

    def buckets(self) -> dict[str, dict[str, Any]]:
        answer = self._call("GET", "/api/0/buckets/")
        if not isinstance(answer, dict):
            raise Unavailable("aw-server answered the bucket list with something else")
        return {str(key): value for key, value in answer.items() if isinstance(value, dict)}

    def query(self, periods: list[activity.Period], program: list[str]) -> list[Any]:
        body = {"timeperiods": [period.timeperiod for period in periods], "query": program}
        answer = self._call("POST", "/api/0/query/", body)
        if not isinstance(answer, list):
            raise Unavailable("aw-server answered the query with something else")
        return answer

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        # The scheme was checked to be http in __init__ (_require_loopback).
        request = urllib.request.Request(self.base_url + path, data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        # No proxy: a loopback address must not be sent to an HTTP proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=self.timeout) as response:
                raw = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode(errors="replace")
            raise Unavailable(f"aw-server at {self.base_url} refused {path}: HTTP {error.code} "
                              f"{_short(detail)}") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise Unavailable(f"aw-server is not running at {self.base_url} ({reason})") from error
        if len(raw) > MAX_ANSWER_BYTES:
            raise Unavailable(f"aw-server's answer to {path} is over {MAX_ANSWER_BYTES} bytes")
        try:
            return json.loads(raw)
        except ValueError as error:
            raise Unavailable(f"aw-server at {self.base_url} answered {path} with no JSON") from error


def _short(text: str) -> str:
    return " ".join(text.split())[:200]


def _require_loopback(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme != "http" or not host:
        raise ValueError(f"{URL_ENVIRONMENT}: {url!r} is not an http://host:port address")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{URL_ENVIRONMENT}: {host} is not a loopback address: ActivityWatch data "
                         "never leaves this machine")


def local_zone() -> tzinfo:
    """The zone the user's days are in: $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        with contextlib.suppress(Exception):
            return ZoneInfo(name)
    with contextlib.suppress(OSError, ValueError), open("/etc/localtime", "rb") as handle:
        return ZoneInfo.from_file(handle, key="localtime")
    return ZoneInfo("UTC")


def measure(watch: ActivityWatch, targets: dict[str, Any], now: datetime,
            tz: tzinfo) -> list[activity.DayTotals]:
    """Ask aw-server for the days of the detox ``targets`` describes (the daemon's answer to
    ``activity_targets``). Raises Unavailable."""
    detox = targets["detox"]
    started = datetime.fromisoformat(detox["started_at"])
    end = min(now, datetime.fromisoformat(detox.get("ended_at") or detox["ends_at"]))
    asked = activity.periods(started, end, tz)
    names: list[str] = list(targets.get("names") or [])
    apps: dict[str, list[str]] = dict(targets.get("apps") or {})
    buckets = watch.buckets()
    if not activity.has_watchers(buckets):
        raise Unavailable("aw-server runs, but no aw-watcher-window or aw-watcher-web has sent it data")
    hostname = socket.gethostname()
    if not asked:
        return []
    whole = activity.Period(asked[0].day, "all", asked[0].start, asked[-1].end)
    first_event = watch.query([whole], activity.first_event_query(buckets, hostname))[0]
    asked = activity.watched_periods(asked, first_event)
    if not asked:
        raise Unavailable("ActivityWatch has recorded nothing in the detox's days or the 14 before it")
    program = activity.query(buckets, names, apps, hostname)
    try:
        return activity.read_answer(watch.query(asked, program), asked, names, apps)
    except ValueError as error:
        raise Unavailable(f"aw-server's answer could not be read: {error}") from error


class Reporter:
    """Sends the daily totals to the daemon; remembers what it sent, so only changes travel."""

    def __init__(self, socket_path: Path, watch: ActivityWatch | None = None) -> None:
        self.client = ControlClient(socket_path)
        self.watch = watch
        self._sent: dict[str, dict[str, Any]] = {}
        self._detox: str | None = None

    def report_once(self, now: datetime | None = None, tz: tzinfo | None = None) -> dict[str, Any]:
        """One round; returns what happened (for logs and tests). Raises ControlError."""
        tz = tz or local_zone()
        now = now or datetime.now(tz)
        targets = self.client.request("activity_targets")
        if not targets.get("ok") or targets.get("detox") is None:
            return {"sent": 0, "why": "no detox to measure"}
        if targets["detox"]["started_at"] != self._detox:
            self._detox, self._sent = targets["detox"]["started_at"], {}
        try:
            watch = self.watch or ActivityWatch()
            days = measure(watch, targets, now, tz)
        except (Unavailable, ValueError) as error:
            self._sent = {}
            self.client.request("activity_report", available=False, reason=str(error))
            return {"sent": 0, "why": str(error)}
        changed = [day.to_json() for day in days if self._sent.get(day.day.isoformat()) != day.to_json()]
        for start in range(0, len(changed), DAYS_PER_REQUEST):
            chunk = changed[start:start + DAYS_PER_REQUEST]
            answer = self.client.request("activity_report", available=True, days=chunk)
            if not answer.get("ok"):
                log.warning("the daemon refused the activity report: %s", answer.get("error"))
                return {"sent": start, "why": str(answer.get("error"))}
            self._sent.update({day["date"]: day for day in chunk})
        return {"sent": len(changed), "why": None}

    def run(self, stopping: threading.Event, interval: float = REPORT_SECONDS) -> None:
        """The agent's thread: a round now, then every ``interval`` until ``stopping`` is set."""
        while not stopping.is_set():
            wait = interval
            try:
                outcome = self.report_once()
                log.debug("activity report: %s", outcome)
            except ControlError as error:
                self._sent = {}  # the daemon may have restarted: send everything again
                log.debug("activity report not sent: %s", error)
                wait = min(interval, RETRY_SECONDS)
            except Exception:  # never take the tray down for the audit
                log.exception("activity report failed")
            stopping.wait(wait)


def start_reporter(socket_path: Path, stopping: threading.Event) -> threading.Thread:
    """What the tray calls once: a daemon thread that reports until ``stopping``."""
    thread = threading.Thread(target=Reporter(socket_path).run, args=(stopping,),
                              name="detoxd-activitywatch", daemon=True)
    thread.start()
    return thread

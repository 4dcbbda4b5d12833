"""Flushes the resolver caches present on this machine when a block is applied or lifted.

A cache would keep answering a blocked name with its real address until its TTL ran out:
- systemd-resolved: the D-Bus method ``org.freedesktop.resolve1.Manager.FlushCaches`` on the
  system bus (jeepney; AF_UNIX only, so it works in the daemon's sandbox), else ``resolvectl
  flush-caches``;
- nscd: ``nscd -i hosts``;
- a local dnsmasq: SIGHUP, which clears its cache and re-reads its hosts files.

Each cache is detected first and left alone where absent. Nothing here raises: every outcome is
returned and logged, and the block stands whether or not a cache could be flushed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0
RESOLVED_BUS_NAME = "org.freedesktop.resolve1"
RESOLVED_OBJECT = "/org/freedesktop/resolve1"
RESOLVED_INTERFACE = "org.freedesktop.resolve1.Manager"


class Outcome(StrEnum):
    FLUSHED = "flushed"
    ABSENT = "not present"
    FAILED = "could not be flushed"


@dataclass(frozen=True)
class FlushResult:
    cache: str
    outcome: Outcome
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.cache}: {self.outcome.value}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Environment:
    """Where each cache shows itself; tests point these at temporary files and processes."""

    resolved_runtime_dir: Path = Path("/run/systemd/resolve")
    nscd_socket: Path = Path("/var/run/nscd/socket")
    proc: Path = Path("/proc")
    search_path: str | None = field(default_factory=lambda: os.environ.get("PATH", "/usr/sbin:/usr/bin")
                                    + ":/usr/sbin:/sbin")


def flush_all(environment: Environment | None = None) -> list[FlushResult]:
    """Flush every cache present; never raises. Results are logged, failures as warnings."""
    environment = environment or Environment()
    flushers: list[Callable[[Environment], FlushResult]] = [
        flush_systemd_resolved, flush_nscd, flush_dnsmasq]
    results = []
    for flush in flushers:
        try:
            result = flush(environment)
        except Exception as error:  # a cache must never fail the apply
            result = FlushResult(flush.__name__.removeprefix("flush_"), Outcome.FAILED, repr(error))
        level = logging.WARNING if result.outcome is Outcome.FAILED else logging.DEBUG
        if result.outcome is Outcome.FLUSHED:
            level = logging.INFO
        log.log(level, "resolver cache %s", result)
        results.append(result)
    return results


# ---- systemd-resolved ----

def flush_systemd_resolved(environment: Environment) -> FlushResult:
    if not environment.resolved_runtime_dir.is_dir():  # resolved creates it while running
        return FlushResult("systemd-resolved", Outcome.ABSENT)
    error = _flush_resolved_over_dbus()
    if error is None:
        return FlushResult("systemd-resolved", Outcome.FLUSHED, "D-Bus FlushCaches")
    resolvectl = shutil.which("resolvectl", path=environment.search_path)
    if resolvectl is None:
        return FlushResult("systemd-resolved", Outcome.FAILED, f"D-Bus: {error}; no resolvectl")
    failure = _run([resolvectl, "flush-caches"])
    if failure is None:
        return FlushResult("systemd-resolved", Outcome.FLUSHED, "resolvectl flush-caches")
    return FlushResult("systemd-resolved", Outcome.FAILED, f"D-Bus: {error}; resolvectl: {failure}")


def _flush_resolved_over_dbus() -> str | None:
    """None on success, else why not. The bus address comes from DBUS_SYSTEM_BUS_ADDRESS or
    the standard socket."""
    # jeepney ships no type hints.
    from jeepney import DBusAddress, MessageType, new_method_call  # type: ignore[import-untyped]
    from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]
    from jeepney.wrappers import DBusErrorResponse  # type: ignore[import-untyped]

    address = DBusAddress(RESOLVED_OBJECT, bus_name=RESOLVED_BUS_NAME, interface=RESOLVED_INTERFACE)
    try:
        with open_dbus_connection(bus="SYSTEM") as connection:
            reply = connection.send_and_get_reply(new_method_call(address, "FlushCaches"),
                                                  timeout=COMMAND_TIMEOUT)
            if reply.header.message_type is MessageType.error:
                raise DBusErrorResponse(reply)
    except (OSError, TimeoutError, DBusErrorResponse, ValueError, KeyError) as error:
        return str(error) or type(error).__name__
    return None


# ---- nscd ----

def flush_nscd(environment: Environment) -> FlushResult:
    nscd = shutil.which("nscd", path=environment.search_path)
    if nscd is None or not environment.nscd_socket.exists():
        return FlushResult("nscd", Outcome.ABSENT)
    failure = _run([nscd, "-i", "hosts"])
    if failure is None:
        return FlushResult("nscd", Outcome.FLUSHED, "nscd -i hosts")
    return FlushResult("nscd", Outcome.FAILED, failure)


# ---- dnsmasq ----

def flush_dnsmasq(environment: Environment) -> FlushResult:
    pids = dnsmasq_pids(environment.proc)
    if not pids:
        return FlushResult("dnsmasq", Outcome.ABSENT)
    signalled, errors = [], []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGHUP)
            signalled.append(pid)
        except ProcessLookupError:
            continue  # it exited meanwhile: no cache left to flush
        except OSError as error:
            errors.append(f"pid {pid}: {error.strerror}")
    if errors:
        return FlushResult("dnsmasq", Outcome.FAILED, "; ".join(errors))
    return FlushResult("dnsmasq", Outcome.FLUSHED, f"SIGHUP to pid {', '.join(map(str, signalled))}")


def dnsmasq_pids(proc: Path = Path("/proc")) -> list[int]:
    """Processes named dnsmasq. SIGHUP to a process only named so ends only that (user's) process."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "dnsmasq":
                pids.append(int(entry.name))
        except OSError:
            continue  # exited while we looked
    return sorted(pids)


def _run(command: list[str]) -> str | None:
    """None on success, else the error. An argument list, never a shell."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                                check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode != 0:
        return f"exit {result.returncode}: {result.stderr.strip() or result.stdout.strip()}"
    return None

"""Closes established TCP connections to the addresses that blocked names had before the block.

A browser tab keeps its open connection when the hosts file changes; only new lookups see the
block. So, just *before* the block is applied, the blocked names are resolved (getaddrinfo,
the system's own view), and just *after*, the established TCP connections to those addresses
are destroyed with ``ss -K`` (the kernel's SOCK_DESTROY, which needs CONFIG_INET_DIAG_DESTROY,
CAP_NET_ADMIN and the host's network namespace).

Resolving takes time, so only the first ``max_names`` names (shortest first: the main domains
of a list come before its deep sub-domains) are looked up, in parallel and within a time
budget; the result says how many were left out.

This does not run inside the daemon's sandbox: ``detoxd.service`` has ``PrivateNetwork=yes``
and no CAP_NET_ADMIN, and opening those would raise its exposure past the target (see the
unit's comments). The CLI, run as root on the host, does it around ``detoxd start`` and
``detoxd reload``: best effort, reported, never a reason to fail the command.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

MAX_NAMES = 2000
RESOLVE_BUDGET_SECONDS = 5.0
RESOLVE_WORKERS = 32
ADDRESSES_PER_SS_CALL = 64
SS_TIMEOUT = 10.0
DESTROY_OPTION = b"CONFIG_INET_DIAG_DESTROY"


@dataclass(frozen=True)
class Resolution:
    addresses: frozenset[str]
    looked_up: int
    answered: int  # names that resolved to at least one address worth closing
    left_out: int  # names not looked up (past max_names) or not answered within the budget

    def summary(self) -> str:
        text = f"{len(self.addresses)} addresses from {self.answered} of {self.looked_up} names"
        return text + (f" ({self.left_out} names left out)" if self.left_out else "")


@dataclass(frozen=True)
class CloseReport:
    closed: int
    remaining: int  # established connections to those addresses still open afterwards
    supported: bool | None  # kernel support for SOCK_DESTROY; None: unknown
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.remaining == 0

    def summary(self) -> str:
        if self.error:
            return f"open connections not closed: {self.error}"
        text = f"closed {self.closed} open connection{'s' if self.closed != 1 else ''} to blocked sites"
        return text + (f"; {self.remaining} still open" if self.remaining else "")


# ---- before the block ----

def names_about_to_be_blocked(config_dir: Path, applied_file: Path) -> frozenset[str]:
    """What the daemon blocks next: the config's names, else its last good blocklist."""
    from detoxd.core.yamlsource import ConfigError
    from detoxd.service.loader import load_config

    try:
        return load_config(config_dir).names
    except (ConfigError, OSError):
        pass
    try:
        names = json.loads(applied_file.read_bytes())["names"]
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset()
    return frozenset(name for name in names if isinstance(name, str))


def resolve(names: Collection[str], *, max_names: int = MAX_NAMES,
            budget: float = RESOLVE_BUDGET_SECONDS) -> Resolution:
    """The addresses ``names`` resolve to now, excluding loopback and unspecified ones."""
    chosen = sorted(names, key=lambda name: (len(name), name))[:max_names]
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=RESOLVE_WORKERS)
    futures = [executor.submit(_lookup, name) for name in chosen]
    done, _ = concurrent.futures.wait(futures, timeout=budget)
    # A stuck getaddrinfo cannot be interrupted: its thread is abandoned, not waited for.
    executor.shutdown(wait=False, cancel_futures=True)
    answers = [future.result() for future in done]
    addresses = frozenset(address for answer in answers for address in answer)
    answered = sum(1 for answer in answers if answer)
    return Resolution(addresses, len(chosen), answered, len(names) - len(done))


def _lookup(name: str) -> frozenset[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(info[4][0]) for info in infos if worth_closing(str(info[4][0])))


def worth_closing(address: str) -> bool:
    """Real remote addresses only: never this machine's own services, never the block's 0.0.0.0."""
    try:
        parsed = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return not (parsed.is_unspecified or parsed.is_loopback or parsed.is_multicast)


# ---- after the block ----

def close(addresses: Iterable[str], *, ss: str | None = None) -> CloseReport:
    """Destroy established TCP connections to ``addresses``. Never raises."""
    targets = sorted(address for address in addresses if worth_closing(address))
    supported = kernel_supports_destroy()
    if not targets:
        return CloseReport(0, 0, supported)
    program = ss or shutil.which("ss", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if program is None:
        return CloseReport(0, 0, supported, "ss (iproute2) is not installed")
    closed, errors = 0, []
    for batch in _batches(targets):
        output, error = _ss(program, ["-K", *_filter(batch)])
        closed += len(output.splitlines())
        if error:
            errors.append(error)
    remaining = sum(len(_ss(program, _filter(batch))[0].splitlines()) for batch in _batches(targets))
    if remaining and not errors:
        errors.append(_why_not_closed(supported))
    return CloseReport(closed, remaining, supported, "; ".join(dict.fromkeys(errors)))


def _why_not_closed(supported: bool | None) -> str:
    if supported is False:
        return "the kernel lacks CONFIG_INET_DIAG_DESTROY (ss -K cannot close sockets)"
    if os.geteuid() != 0:
        return "closing other processes' connections needs root"
    return "the kernel refused to close them (CONFIG_INET_DIAG_DESTROY missing or not permitted)"


def _filter(batch: list[str]) -> list[str]:
    """ss arguments: established TCP, numeric, no header, to any of ``batch``."""
    expression: list[str] = []
    for address in batch:
        expression += [*(["or"] if expression else []), "dst", _ss_address(address)]
    return ["-t", "-n", "-H", "state", "established", *expression]


def _ss_address(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _batches(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), ADDRESSES_PER_SS_CALL):
        yield items[start:start + ADDRESSES_PER_SS_CALL]


def _ss(program: str, arguments: list[str]) -> tuple[str, str]:
    """(stdout, error). Addresses were validated by ipaddress; an argument list, no shell."""
    try:
        result = subprocess.run([program, *arguments], capture_output=True, text=True,
                                timeout=SS_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as failure:
        return "", str(failure)
    message = result.stderr.strip()
    if result.returncode != 0 and not message:
        message = f"ss exited with {result.returncode}"
    return result.stdout, message


def kernel_supports_destroy(config_files: Iterable[Path] | None = None) -> bool | None:
    """From the kernel's build config: True, False, or None when no config can be read."""
    if config_files is None:
        config_files = [Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")]
    for path in config_files:
        try:
            raw = path.read_bytes()
            text = gzip.decompress(raw) if path.suffix == ".gz" else raw
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        for line in text.splitlines():
            if line.startswith(DESTROY_OPTION + b"="):
                return line.split(b"=", 1)[1].strip() == b"y"
        return False
    return None

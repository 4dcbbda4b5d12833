"""The connection cutter: closes open connections to names that were just blocked (``detoxd cut``).

The daemon's sandbox has no network and no CAP_NET_ADMIN (see ``detoxd.service``), so it cannot
close a browser tab's open connection itself. Instead it drops a small request into
``/run/detoxd/cutter/requests/`` whenever the block changes during a detox:

- ``open``: names an allowance just let through. They resolve now, so the cutter looks them up and
  remembers their addresses (``/run/detoxd/cutter/addresses.json``, gone at reboot like the
  connections themselves);
- ``block``: names just blocked (an allowance or window closed, or a config edit added them). The
  cutter closes established TCP connections (``ss -K``, :mod:`detoxd.service.connections`) to the
  remembered addresses and to what the names resolve to through DNS alone — the hosts file now
  says 0.0.0.0, so the files source of nsswitch is skipped for this lookup.

``detoxd-cutter.path`` (``DirectoryNotEmpty=``) starts the one-shot ``detoxd-cutter.service``,
which runs this with CAP_NET_ADMIN in the host's network namespace and removes each request it
handled; systemd starts it again while requests remain. The request format is JSON, written
atomically by root; every name is validated again before use.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Any

from detoxd.core.domains import normalize_domain
from detoxd.core.statustext import count
from detoxd.service import connections, state_store

log = logging.getLogger("detoxd.cutter")

MAX_NAMES_PER_REQUEST = 5000  # the cutter resolves at most connections.MAX_NAMES of them
MAX_REQUEST_BYTES = 1 << 20
MAX_REMEMBERED = 20_000  # addresses kept for names allowances opened
MAX_PENDING = 64  # requests waiting for a cutter that does not run (no systemd): stop adding

Resolver = Callable[[Collection[str]], set[str]]


def requests_dir(cutter_dir: Path) -> Path:
    return cutter_dir / "requests"


def request_cut(cutter_dir: Path, *, block: Iterable[str] = (), opened: Iterable[str] = ()) -> Path | None:
    """Queue a request for the cutter (daemon side). None when there is nothing to ask."""
    block_names = _shortest_first(block)
    open_names = _shortest_first(opened)
    if not block_names and not open_names:
        return None
    directory = requests_dir(cutter_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sum(1 for _ in directory.iterdir()) >= MAX_PENDING:
        log.warning("%d requests wait for the connection cutter: is detoxd-cutter.path enabled?",
                    MAX_PENDING)
        return None
    # Named so that a directory listing sorts them in the order they were made.
    path = directory / f"{time.monotonic_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    body = json.dumps({"version": 1, "block": block_names, "open": open_names})
    state_store.write_atomic(path, body.encode())
    return path


def shortest_names(names: Iterable[str]) -> list[str]:
    """The names a request keeps (at most :data:`MAX_NAMES_PER_REQUEST`, the shortest first)."""
    return _shortest_first(names)


def _shortest_first(names: Iterable[str]) -> list[str]:
    # The main domains of a site come before its deep sub-domains (see connections.resolve).
    # Neither a sort of them all nor heapq.nsmallest (a Python loop): a restart with a million
    # blocked names spent a second there. The lengths are counted in C (a host name has at most
    # 253 characters: one byte each), then only the names up to the length where
    # MAX_NAMES_PER_REQUEST is reached are sorted.
    pool: Collection[str] = names if isinstance(names, set | frozenset) else set(names)
    if len(pool) > MAX_NAMES_PER_REQUEST:
        lengths = list(map(len, pool))
        try:
            counted = bytes(lengths)
        except ValueError:  # a name longer than 255: not from the engine, sort them all
            cutoff = sorted(lengths)[MAX_NAMES_PER_REQUEST - 1]
        else:
            cutoff, taken = 0, counted.count(0)
            while taken < MAX_NAMES_PER_REQUEST:
                cutoff += 1
                taken += counted.count(cutoff)
        pool = list(compress(pool, map(cutoff.__ge__, lengths)))  # the same order: pool unchanged
    return sorted(pool, key=_length_then_name)[:MAX_NAMES_PER_REQUEST]


def _length_then_name(name: str) -> tuple[int, str]:
    return len(name), name


@dataclass(frozen=True)
class CutReport:
    requests: int
    remembered: int  # addresses learnt from names that were opened
    report: connections.CloseReport | None  # None: nothing was blocked

    def summary(self) -> str:
        cut = self.report.summary() if self.report is not None else "nothing newly blocked"
        return (f"{count(self.requests, 'request')}: {cut}; "
                f"{count(self.remembered, 'address', 'addresses')} remembered")


def run(cutter_dir: Path, *, ss: str | None = None, resolve: Resolver | None = None,
        resolve_dns: Resolver | None = None) -> CutReport:
    """Handle every queued request (cutter side), oldest first. Never raises for a bad request.

    ``resolve`` looks names up as the system does, ``resolve_dns`` through DNS alone (tests pass
    their own: a test must not resolve real names)."""
    lookup = resolve or _resolve
    lookup_dns = resolve_dns or _resolve_through_dns
    memory_file = cutter_dir / "addresses.json"
    memory = _load_memory(memory_file)
    to_block: set[str] = set()
    handled = 0
    directory = requests_dir(cutter_dir)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        request = _read_request(path)
        path.unlink(missing_ok=True)
        handled += 1
        if request is None:
            continue
        block, opened = request
        if opened:
            for name, addresses in _resolve_each(opened, lookup).items():
                memory[name] = sorted(set(memory.get(name, [])) | addresses)
        to_block |= set(block)
    report = None
    if to_block:
        addresses = {address for name in to_block for address in memory.pop(name, [])}
        addresses |= lookup_dns(to_block)
        report = connections.close(addresses, ss=ss)
    _save_memory(memory_file, memory)
    result = CutReport(handled, sum(len(found) for found in memory.values()), report)
    log.info("%s", result.summary())
    return result


def _read_request(path: Path) -> tuple[list[str], list[str]] | None:
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(MAX_REQUEST_BYTES))
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 request")
        return _valid_names(data.get("block", [])), _valid_names(data.get("open", []))
    except (OSError, ValueError) as exc:
        log.error("ignoring request %s: %s", path.name, exc)
        return None


def _valid_names(items: Any) -> list[str]:
    if not isinstance(items, list):
        raise ValueError("expected a list of names")
    names = []
    for item in items[:MAX_NAMES_PER_REQUEST]:
        if isinstance(item, str) and normalize_domain(item).name == item:
            names.append(item)
    return names


def _resolve_each(names: Collection[str], lookup: Resolver) -> dict[str, set[str]]:
    """Each name's addresses, looked up in parallel within the connections module's budget."""
    chosen = sorted(names, key=lambda n: (len(n), n))[:connections.MAX_NAMES]
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=connections.RESOLVE_WORKERS)
    futures = {executor.submit(lookup, [name]): name for name in chosen}
    done, _ = concurrent.futures.wait(futures, timeout=connections.RESOLVE_BUDGET_SECONDS)
    executor.shutdown(wait=False, cancel_futures=True)  # a stuck lookup is abandoned
    return {futures[future]: future.result() for future in done if future.result()}


def _resolve(names: Collection[str]) -> set[str]:
    return set(connections.resolve(names, budget=2.0).addresses)


def _resolve_through_dns(names: Collection[str]) -> set[str]:
    """What ``names`` resolve to without the hosts file (which now blocks them).

    glibc's ``__nss_configure_lookup`` replaces this process's nsswitch line for hosts; the
    cutter is a short-lived process of its own, so nothing else is affected."""
    try:
        libc = ctypes.CDLL(None)
        if libc.__nss_configure_lookup(b"hosts", b"dns") != 0:
            return set()
    except (OSError, AttributeError):  # not glibc
        return set()
    return set(connections.resolve(names).addresses)


def _load_memory(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("forgetting unreadable %s: %s", path, exc)
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: [a for a in addresses if isinstance(a, str) and connections.worth_closing(a)]
            for name, addresses in data.items()
            if isinstance(name, str) and isinstance(addresses, list)}


def _save_memory(path: Path, memory: dict[str, list[str]]) -> None:
    total = 0
    kept: dict[str, list[str]] = {}
    for name, addresses in memory.items():
        total += len(addresses)
        if total > MAX_REMEMBERED:
            break
        kept[name] = addresses
    state_store.write_atomic(path, json.dumps(kept).encode())

"""Blocked lookups per device per day, counted from a DNS engine's query log (pure).

The network agent reads the blocked part of each engine's query log; this module keeps only the
lookups of names the detox blocks (everything else a device looked up is dropped here, before
anything leaves the agent) and counts them per (local day, device, name). A lookup of a
subdomain counts for the blocked name above it when the engine blocks subdomains too (AdGuard
Home's ``||name^``), and not when it blocks exact names only (Pi-hole's ``deny/exact``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

MAX_DEVICES = 128  # per report: with two days, the daemon's 256 entries per sync
MAX_DEVICE_CHARS = 64
MAX_NAMES_PER_ENTRY = 64  # the daemon keeps as many (audit.MAX_NAMES_PER_DAY): the most looked up


@dataclass(frozen=True)
class Lookup:
    """One blocked query of an engine's log: when, from which device, which name."""

    at: datetime  # aware
    device: str
    name: str


LookupKey = tuple[date, str, str]  # (local day, device, blocked name)


def blocked_name(queried: str, names: Collection[str], *, subdomains: bool) -> str | None:
    """The detox's name that ``queried`` is a lookup of, or None (not ours: never counted)."""
    queried = queried.rstrip(".").lower()
    if queried in names:
        return queried
    if not subdomains:
        return None
    labels = queried.split(".")
    # Not mutated (scripts/mutation): starting at 0 would only try ``queried`` itself again.
    for start in range(1, len(labels) - 1):  # pragma: no mutate
        parent = ".".join(labels[start:])
        if parent in names:
            return parent
    return None


def count(lookups: Iterable[Lookup], names: Collection[str], tz: tzinfo, *, since: datetime,
          subdomains: bool) -> Counter[LookupKey]:
    counts: Counter[LookupKey] = Counter()
    for lookup in lookups:
        if lookup.at < since:
            continue
        name = blocked_name(lookup.name, names, subdomains=subdomains)
        device = " ".join(lookup.device.split())[:MAX_DEVICE_CHARS]
        if name is not None and device:
            counts[(lookup.at.astimezone(tz).date(), device, name)] += 1
    return counts


def entries(per_engine: Iterable[Mapping[LookupKey, int]]) -> list[dict[str, object]]:
    """The daemon's ``blocked_lookups`` entries: each device's totals of a day over all engines
    (two Pi-holes may serve one phone), newest days first, at most ``MAX_DEVICES`` per day and
    the ``MAX_NAMES_PER_ENTRY`` most looked-up names per device and day."""
    totals: Counter[LookupKey] = Counter()
    for counts in per_engine:
        totals.update(counts)
    by_day_device: dict[tuple[date, str], dict[str, int]] = {}
    for (day, device, name), lookups in totals.items():
        by_day_device.setdefault((day, device), {})[name] = lookups
    result: list[dict[str, object]] = []
    per_day: Counter[date] = Counter()
    for (day, device), names in sorted(by_day_device.items(), key=lambda item: (-item[0][0].toordinal(),
                                                                                item[0][1])):
        per_day[day] += 1
        if per_day[day] <= MAX_DEVICES:
            top = sorted(names.items(), key=lambda item: (-item[1], item[0]))[:MAX_NAMES_PER_ENTRY]
            result.append({"date": day.isoformat(), "device": device, "counts": dict(sorted(top))})
    return result


def keep_highest(previous: Mapping[LookupKey, int], fresh: Mapping[LookupKey, int],
                 first_day: date) -> Counter[LookupKey]:
    """Counts of a day so far never go down: an engine that keeps 24 h in memory forgets the
    first minutes of yesterday while the agent still reads yesterday. Days before ``first_day``
    are dropped (already reported)."""
    merged: Counter[LookupKey] = Counter({key: value for key, value in previous.items()
                                          if key[0] >= first_day})
    for key, value in fresh.items():
        if key[0] >= first_day and value > merged[key]:
            merged[key] = value
    return merged

"""Enforcement targets: each applies the names the engine decided, and keeps them applied.

Every target has the same small shape (:class:`Target`): ``apply`` the desired names, ``check``
for drift (and undo it), ``remove`` exactly what it added, report its ``state``. The engine decides
*what* is blocked; a target only knows *how* to put it in its place.

The daemon's targets, each in its place here: :mod:`.hosts` (the hosts file, with its guard and
crash-safe writer), :mod:`.browser` (browser policies, with the policy files), and
:mod:`.network` (the daemon's side of the network agents, which drive the household's DNS
engines from their own process: :mod:`detoxd.netagent`, behind its own interface,
:class:`detoxd.netagent.engines.DnsEngine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Drift:
    """Someone changed what a target holds, and the target put it back."""

    target: str  # "hosts file", "browser policy", ...
    detail: str  # what was restored, for the log and the journal


class Target(Protocol):
    name: str

    def apply(self, names: frozenset[str], order: Sequence[str]) -> None:
        """Hold exactly ``names`` (listed in ``order`` where the target keeps an order).
        Raises OSError when it cannot; the engine retries at the next tick."""

    def check(self, now: float, *, full: bool) -> list[Drift]:
        """Look for changes by others and undo them; ``full`` asks for a thorough look."""

    def remove(self) -> None:
        """Take out exactly what this target added (the end of a detox)."""

    def state(self) -> dict[str, Any]:
        """What the status and doctor show about this target."""

"""Closing the ways around a hosts-file block: resolver caches and browsers' own secure DNS.

The engine applies the block's names here whenever they change and checks on every tick.
Only a daemon guarding the machine's real hosts file touches
the machine's caches and browser policies: a scratch hosts file (the no-root demo, tests) has
nothing to flush, and browser policies then go under an explicit ``policy_root`` or nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detoxd.service import resolvers
from detoxd.service.targets import Drift
from detoxd.service.targets.browser.policyfiles import Action, BrowserPolicies

log = logging.getLogger(__name__)

SYSTEM_HOSTS_FILE = Path("/etc/hosts")


NAME = "browser policy"


class BrowserTarget:
    """Resolver caches flushed and browsers' secure DNS switched off while names are blocked."""

    name = NAME

    def __init__(self, hosts_file: Path, state_dir: Path, policy_root: Path | None = None) -> None:
        self.flush_caches = hosts_file == SYSTEM_HOSTS_FILE
        if policy_root is None and self.flush_caches:
            policy_root = Path("/")
        self.policies = BrowserPolicies(state_dir, policy_root) if policy_root is not None else None
        self.browser_policies = True  # `bypass.browser_policies` of the config in force
        self._names: frozenset[str] = frozenset()

    def apply(self, names: frozenset[str], order: Sequence[str] = ()) -> None:
        changed = names != self._names
        self._names = names
        if changed:
            self.block_changed(names, browser_policies=self.browser_policies)
        else:
            self.sync_policies(names, browser_policies=self.browser_policies)

    def check(self, now: float, *, full: bool) -> list[Drift]:
        return [Drift(NAME, "policy restored") for _ in range(self.verify(self._names))]

    def remove(self) -> None:
        self.apply(frozenset())

    def state(self) -> dict[str, Any]:
        records = self.policies.records() if self.policies is not None else ()
        return {"browser_policies": len(records)}

    def block_changed(self, names: frozenset[str], *, browser_policies: bool) -> None:
        """After the hosts file changed: flush caches; put policies in place or take them out.

        Switching ``bypass.browser_policies`` off mid-detox takes effect when the block is lifted,
        like every other relaxation of a running detox.
        """
        if self.flush_caches:
            resolvers.flush_all()
        self.sync_policies(names, browser_policies=browser_policies)

    def sync_policies(self, names: frozenset[str], *, browser_policies: bool) -> None:
        if self.policies is None:
            return
        wanted = bool(names) and (browser_policies or bool(self.policies.records()))
        for result in self.policies.apply() if wanted else self.policies.lift():
            log.info("%s", result)

    def verify(self, names: frozenset[str]) -> int:
        """Restore edited or deleted policies while blocking; returns how many were restored."""
        if self.policies is None or not names:
            return 0
        restored = [result for result in self.policies.verify() if result.action is Action.RESTORED]
        for result in restored:
            log.warning("%s", result)
        return len(restored)

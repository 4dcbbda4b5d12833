"""Closing the ways around a hosts-file block: resolver caches and browsers' own secure DNS.

The engine applies the block's names here whenever they change and checks on every tick; an
edit of a policy wakes the daemon's loop through inotify (:meth:`BrowserTarget.fileno`), so it
is restored within milliseconds, not at the next tick (idle, a quarter minute away: issue 26).
Only a daemon guarding the machine's real hosts file touches
the machine's caches and browser policies: a scratch hosts file (the no-root demo, tests) has
nothing to flush, and browser policies then go under an explicit ``policy_root`` or nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detoxd.core.policies import PolicySpec
from detoxd.service import inotify, resolvers
from detoxd.service.targets import Drift
from detoxd.service.targets.browser.chromium_extension import ChromiumExtension, extension_zip
from detoxd.service.targets.browser.firefox_extension import FirefoxExtension
from detoxd.service.targets.browser.policyfiles import Action, BrowserPolicies

log = logging.getLogger(__name__)

SYSTEM_HOSTS_FILE = Path("/etc/hosts")


NAME = "browser policy"
# A policy file being written (modified, not yet closed) is not restored until its writer closes
# it: read between `open(O_TRUNC)` and the write, it looked empty, and the restore (by rename)
# left the user's write to the replaced file: their own policies were lost at the end (CI,
# test_daemon_bypass). A writer that keeps it open holds the restore back this long at most.
WRITER_SETTLE_SECONDS = 1.0
_WRITE_DONE = inotify.IN_CLOSE_WRITE | inotify.IN_DELETE | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO
POLICY_CHANGES = (inotify.IN_MODIFY | inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM
                  | inotify.IN_CREATE | inotify.IN_DELETE | inotify.IN_ATTRIB)


class BrowserTarget:
    """Resolver caches flushed and browsers' secure DNS switched off while names are blocked."""

    name = NAME

    def __init__(self, hosts_file: Path, state_dir: Path, policy_root: Path | None = None) -> None:
        self.flush_caches = hosts_file == SYSTEM_HOSTS_FILE
        if policy_root is None and self.flush_caches:
            policy_root = Path("/")
        self.policies = BrowserPolicies(state_dir, policy_root) if policy_root is not None else None
        self.extension = ChromiumExtension(state_dir, policy_root) if policy_root is not None else None
        self._extension_error: str | None = None  # why the extension's files cannot be written
        if self.policies is not None and self.extension is not None:
            try:  # what a record made before a restart undoes (no key: no record of it either)
                self.policies.extra_specs = self.extension.specs(create=False)
            except (OSError, ValueError) as error:
                log.error("cannot read detoxd's browser extension key: %s", error)
        self.firefox = (FirefoxExtension(policy_root, self.extension.launcher)
                        if policy_root is not None and self.extension is not None else None)
        if self.policies is not None and self.firefox is not None:
            self.policies.extra_specs = (*self.policies.extra_specs, *self.firefox.specs())
        self.browser_policies = True  # `bypass.browser_policies` of the config in force
        self._names: frozenset[str] = frozenset()
        self._paths: frozenset[str] = frozenset()  # `paths:` entries in force (the engine's ratchet)
        self._notify: inotify.Inotify | None = None
        self._watches: dict[Path, int] = {}  # policy directory -> its watch
        self._being_written: set[tuple[int, str]] = set()  # (watch, file name) modified, not closed
        self._settle_until: float | None = None  # no restore before then while a file is written

    # ---- for the daemon's loop: policy edits wake it ----

    def fileno(self) -> int | None:
        """Readable when a policy directory changed; None while nothing is watched."""
        return self._notify.fd if self._notify is not None and self._watches else None

    def drain_events(self, now: float) -> None:
        if self._notify is None:
            return
        while events := self._notify.read_events():
            for event in events:
                if event.mask & _WRITE_DONE:
                    self._being_written.discard((event.wd, event.name))
                elif event.mask & inotify.IN_MODIFY:
                    self._being_written.add((event.wd, event.name))
        if not self._being_written:
            self._settle_until = None
        elif self._settle_until is None:
            self._settle_until = now + WRITER_SETTLE_SECONDS
        self._watch_directories()  # a directory removed and made again: watched again

    def deadline(self) -> float | None:
        """When to look again at a policy file still being written (None: none is)."""
        return self._settle_until

    def _settled(self, now: float) -> bool:
        if self._settle_until is not None and now >= self._settle_until:
            self._being_written.clear()  # a writer keeping the file open does not hold it off
            self._settle_until = None
        return self._settle_until is None

    def _watch_directories(self) -> None:
        """Watch the directory of every policy file while the block is on, none otherwise."""
        if self.policies is None:
            return
        policies = self.policies
        wanted = ({policies.path(spec).parent for spec in policies.specs.values()}
                  if self._names or self._paths else set())
        wanted = {directory for directory in wanted if directory.is_dir()}
        if wanted and self._notify is None:
            self._notify = inotify.Inotify()
        for directory in set(self._watches) - wanted:
            assert self._notify is not None
            self._notify.remove_watch(self._watches.pop(directory))
        for directory in wanted - set(self._watches):
            assert self._notify is not None
            try:
                self._watches[directory] = self._notify.add_watch(str(directory), POLICY_CHANGES)
            except OSError as exc:  # the periodic check still finds an edit, later
                log.warning("cannot watch %s for policy edits: %s", directory, exc.strerror)

    def set_paths(self, paths: frozenset[str]) -> None:
        """The `paths:` entries to block through the browsers' policies (empty: none)."""
        if paths == self._paths:
            return
        self._paths = paths
        self.sync_policies(self._names, browser_policies=self.browser_policies)

    @property
    def paths(self) -> frozenset[str]:
        return self._paths

    def paths_in_policy_files(self) -> frozenset[str]:
        """The paths detoxd's policy files block now (for a ratchet rebuilt after a lost state)."""
        return self.policies.paths_in_files() if self.policies is not None else frozenset()

    def apply(self, names: frozenset[str], order: Sequence[str] = ()) -> None:
        changed = names != self._names
        self._names = names
        if changed:
            self.block_changed(names, browser_policies=self.browser_policies)
        else:
            self.sync_policies(names, browser_policies=self.browser_policies)

    def check(self, now: float, *, full: bool) -> list[Drift]:
        if not self._settled(now):
            return []  # looked at again when its writer closes it, or at the deadline
        drift = [Drift(NAME, "policy restored") for _ in range(self.verify(self._names))]
        if self._extension_error is not None:
            self.sync_policies(self._names, browser_policies=self.browser_policies)  # tried again
            if self._extension_error is not None:  # the engine's problem (status, journal, doctor)
                raise OSError(self._extension_error)
        return drift

    def remove(self) -> None:
        self._paths = frozenset()
        self.apply(frozenset())

    def state(self) -> dict[str, Any]:
        records = self.policies.records() if self.policies is not None else ()
        return {"browser_policies": len(records), "paths": sorted(self._paths)}

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
        base = bool(names) and (browser_policies or self._base_records())
        extra = (*self._extension_specs(), *self._firefox_specs()) if base else ()
        if not base:
            self._extension_error = None
        self.policies.set_paths(self._paths, base=base, extra=extra)
        for result in self.policies.apply() if base or self._paths else self.policies.lift():
            log.info("%s", result)
        self._watch_directories()

    def _extension_specs(self) -> tuple[PolicySpec, ...]:
        """The extension's files written (before the policies that point at them) and its
        policies; none when they cannot be written (doctor says so)."""
        if self.extension is None:
            return ()
        try:
            for path in self.extension.write():
                log.info("browser extension: wrote %s", path)
            specs = self.extension.specs()
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            message = (f"detoxd's browser extension cannot be written under {self.extension.directory}: "
                       f"{reason}")
            if message != self._extension_error:
                log.error("%s", message)
            self._extension_error = message
            return ()
        self._extension_error = None
        return specs

    def _firefox_specs(self) -> tuple[PolicySpec, ...]:
        """Firefox's XPI written (before the policies that point at it) and its policies; none
        when it cannot be written (a problem, as for the Chromium package; doctor says so too).
        Called after :meth:`_extension_specs`, which clears the problem when its files are written."""
        if self.firefox is None:
            return ()
        try:
            if self.firefox.write(extension_zip("firefox")):
                log.info("browser extension: wrote %s", self.firefox.package)
            return self.firefox.specs()
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            message = f"detoxd's Firefox extension cannot be written at {self.firefox.package}: {reason}"
            if message != self._extension_error:
                log.error("%s", message)
            self._extension_error = self._extension_error or message
            return ()

    def _base_records(self) -> bool:
        """Whether a secure-DNS policy of detoxd's is in place (kept until the block is lifted)."""
        assert self.policies is not None
        base = {spec.key for spec in self.policies.base_specs}
        return any(key in base for key in self.policies.records())

    def verify(self, names: frozenset[str]) -> int:
        """Restore edited or deleted policies while blocking; returns how many files were restored
        (one file holds several of detoxd's policies: Firefox's DNS, extension and signature pref)."""
        if self.policies is None or not (names or self._paths):
            return 0
        if not (self.browser_policies or self.policies.records() or self._paths):
            # Switched off (`bypass.browser_policies: false`) and nothing of detoxd's in place:
            # nothing to restore. (Before issue 26 the tick a second after `start` wrote them.)
            return 0
        restored = [result for result in self.policies.verify() if result.action is Action.RESTORED]
        for result in restored:
            log.warning("%s", result)
        return len({result.path for result in restored})

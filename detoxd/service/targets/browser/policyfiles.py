"""Installs and removes the browser policy files (the shell around :mod:`detoxd.core.policies`).

Crash safety, as for the hosts file: every file is replaced by rename (temporary file in the
same directory, fsync, ``os.replace``, fsync of the directory), and what detoxd changed is
remembered in ``browser-policies.json`` in the state directory *before* the file changes, so a
crash at any point leaves either the old file or the new one plus a record that undoes it.
Restore rule, as for the hosts file: while the block is applied, :meth:`BrowserPolicies.verify`
notices an edited or deleted policy and puts it back; other edits to the same file are kept.

A policy directory may be missing; it is created world-readable (browsers run as users), and
under systemd it must be writable, which is what ``ConfigurationDirectory=`` and
``ReadWritePaths=`` in ``detoxd.service`` are for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from detoxd.core import policies
from detoxd.core.policies import InstalledBrowsers, PolicyError, PolicySpec, Record
from detoxd.durable import remove_file, remove_stale_temporaries, replace_file
from detoxd.paths import BROWSER_POLICIES_FILE
from detoxd.service import state_store

log = logging.getLogger(__name__)

STATE_NAME = BROWSER_POLICIES_FILE
STATE_VERSION = 1
FILE_MODE = 0o644
DIR_MODE = 0o755

# Where each browser is found, relative to the root. Snap and flatpak builds are sandboxed
# with their own view of /etc: system policy files cannot be relied on to reach them.
BROWSER_LOCATIONS: dict[str, tuple[str, ...]] = {
    policies.FIREFOX: ("usr/lib/firefox*", "usr/bin/firefox", "usr/bin/firefox-esr"),
    policies.CHROME: ("opt/google/chrome",),
    policies.CHROMIUM: ("usr/bin/chromium", "usr/lib/chromium"),
}
UNCOVERED_LOCATIONS: dict[str, tuple[str, ...]] = {
    policies.FIREFOX: ("snap/bin/firefox", "var/lib/flatpak/app/org.mozilla.firefox"),
    policies.CHROMIUM: ("snap/bin/chromium", "var/lib/flatpak/app/org.chromium.Chromium"),
    policies.CHROME: ("var/lib/flatpak/app/com.google.Chrome",),
}


class Action(StrEnum):
    INSTALLED = "installed"
    IN_PLACE = "already in place"
    RESTORED = "restored after tampering"
    REMOVED = "removed"
    LEFT = "left as it is (changed by someone else)"
    FAILED = "failed"


@dataclass(frozen=True)
class PolicyResult:
    browser: str
    path: Path
    action: Action
    detail: str = ""

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.browser} policy {self.path}: {self.action.value}{detail}"




def installed_browsers(root: Path = Path("/")) -> InstalledBrowsers:
    covered = tuple(name for name, patterns in BROWSER_LOCATIONS.items() if _any_exists(root, patterns))
    uncovered = tuple(f"{name} ({pattern})" for name, patterns in UNCOVERED_LOCATIONS.items()
                      for pattern in patterns if _any_exists(root, (pattern,)))
    return InstalledBrowsers(covered, uncovered)


def _any_exists(root: Path, patterns: Sequence[str]) -> bool:
    return any(next(iter(root.glob(pattern)), None) is not None for pattern in patterns)


class BrowserPolicies:
    """The policy files under ``root`` for the installed browsers; records go to ``state_dir``."""

    def __init__(self, state_dir: Path, root: Path = Path("/"),
                 specs: Sequence[PolicySpec] = policies.SPECS) -> None:
        self.root = Path(root)
        self.state_path = Path(state_dir) / STATE_NAME
        self.specs = {spec.file: spec for spec in specs}
        self._seen: dict[str, tuple[int, int, int] | None] = {}

    def remove_stale_temporaries(self) -> None:
        """At start-up: the temporary copies a kill between write and rename left beside each
        policy file (only those of detoxd's own policy files)."""
        for spec in self.specs.values():
            path = self.path(spec)
            remove_stale_temporaries(path.parent, only_for=path.name)

    def path(self, spec: PolicySpec) -> Path:
        return self.root / spec.file

    # ---- what the daemon calls ----

    def apply(self) -> list[PolicyResult]:
        """Install (or restore) the policy for every installed browser. Never raises."""
        browsers = installed_browsers(self.root).covered
        records = self._load()
        results = [self._apply_one(spec, records) for spec in self.specs.values()
                   if spec.browser in browsers]
        self._remember_stats()
        return results

    def verify(self) -> list[PolicyResult]:
        """The periodic check: apply again only when a policy file changed (cheap stat)."""
        if all(self._stat(spec) == self._seen.get(spec.file) for spec in self.specs.values()):
            return []
        return self.apply()

    def lift(self) -> list[PolicyResult]:
        """Remove exactly what detoxd added; forget each record once it is undone. Never raises."""
        records = self._load()
        results = []
        for file in list(records):
            result = self._lift_one(records[file])
            results.append(result)
            if result.action is not Action.FAILED:
                del records[file]
                self._save(records)
        self._seen.clear()
        return results

    def records(self) -> dict[str, Record]:
        return self._load()

    # ---- one file ----

    def _apply_one(self, spec: PolicySpec, records: dict[str, Record]) -> PolicyResult:
        path = self.path(spec)
        try:
            text = _read(path)
            document = policies.parse(text, str(path))
            if spec.file in records:
                if policies.is_applied(document, spec):
                    return PolicyResult(spec.browser, path, Action.IN_PLACE)
                _write(path, policies.render(policies.reapply(document, spec)))
                log.warning("browser policy %s was changed or removed: restored", path)
                return PolicyResult(spec.browser, path, Action.RESTORED)
            merged, record = policies.merge(document, spec)
            record = dataclasses.replace(record, original_text=text)
            records[spec.file] = record
            self._save(records)  # first: a crash after the write still knows what to undo
            if document != merged:
                _write(path, policies.render(merged))
            return PolicyResult(spec.browser, path, Action.INSTALLED)
        except (OSError, PolicyError) as error:
            log.error("cannot install the %s policy in %s: %s", spec.browser, path, error)
            return PolicyResult(spec.browser, path, Action.FAILED, str(error))

    def _lift_one(self, record: Record) -> PolicyResult:
        spec = self.specs.get(record.file)
        path = self.root / record.file
        browser = spec.browser if spec else "unknown"
        try:
            if spec is None:
                raise PolicyError(f"no policy known for {record.file}")
            text = _read(path)
            document = policies.parse(text, str(path))
            if not policies.is_applied(document, spec):
                return PolicyResult(browser, path, Action.LEFT)
            remaining = policies.unmerge(document, record, spec)
            if remaining is None:
                remove_file(path)
            else:
                _write(path, policies.render(remaining, record))
            return PolicyResult(browser, path, Action.REMOVED)
        except PolicyError as error:  # the file is someone else's now: leave it, forget it
            return PolicyResult(browser, path, Action.LEFT, str(error))
        except OSError as error:
            log.error("cannot remove the %s policy from %s: %s", browser, path, error)
            return PolicyResult(browser, path, Action.FAILED, str(error))

    # ---- records ----

    def _load(self) -> dict[str, Record]:
        try:
            data = state_store.read_json(self.state_path)
            return {item["file"]: Record.from_json(item) for item in data["records"]}
        except FileNotFoundError:
            return {}
        except (OSError, state_store.StateFileError, ValueError, KeyError, TypeError) as error:
            # Keep the evidence; without records detoxd cannot remove what it added.
            aside = state_store.set_aside(self.state_path)
            log.error("unreadable %s (%s): moved to %s", self.state_path, error, aside)
            return {}

    def _save(self, records: dict[str, Record]) -> None:
        if not records:
            self.state_path.unlink(missing_ok=True)
            return
        data = {"version": STATE_VERSION, "records": [record.to_json() for record in records.values()]}
        state_store.write_atomic(self.state_path, json.dumps(data, sort_keys=True).encode())

    def _remember_stats(self) -> None:
        self._seen = {spec.file: self._stat(spec) for spec in self.specs.values()}

    def _stat(self, spec: PolicySpec) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path(spec))
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as error:
        raise PolicyError(f"{path}: not UTF-8 text: left alone") from error


def _write(path: Path, text: str) -> None:
    """Replace ``path`` by rename, keeping an existing file's owner and mode."""
    _make_directory(path.parent)
    replace_file(path, text.encode(), mode=FILE_MODE, keep_existing_mode=True)


def _make_directory(directory: Path) -> None:
    missing = [parent for parent in (directory, *directory.parents) if not parent.exists()]
    for parent in reversed(missing):
        parent.mkdir(exist_ok=True)
        parent.chmod(DIR_MODE)  # browsers run as users: the path must stay readable


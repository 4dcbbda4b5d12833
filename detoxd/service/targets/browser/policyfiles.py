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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from detoxd.core import policies
from detoxd.core.paths import normalize_path
from detoxd.core.policies import InstalledBrowsers, PolicyError, PolicySpec, Record
from detoxd.durable import remove_file, remove_stale_temporaries, replace_file
from detoxd.paths import BROWSER_POLICIES_FILE
from detoxd.service import state_store

log = logging.getLogger(__name__)

Key = tuple[str, tuple[str, ...]]  # (file, key path): one record each
STATE_NAME = BROWSER_POLICIES_FILE
STATE_VERSION = 1
FILE_MODE = 0o644
DIR_MODE = 0o755

# Where each browser is found, relative to the root. Flatpak builds (and the snaps not listed as
# covered) are sandboxed with their own view of /etc: system policy files cannot be relied on to
# reach them (docs/cannot-be-undone.md says which do and which do not).
BROWSER_LOCATIONS: dict[str, tuple[str, ...]] = {
    # The Firefox snap reads /etc/firefox/policies too (Mozilla bug 1717216).
    policies.FIREFOX: ("usr/lib/firefox*", "usr/bin/firefox", "usr/bin/firefox-esr", "snap/bin/firefox"),
    policies.CHROME: ("opt/google/chrome",),
    policies.CHROMIUM: ("usr/bin/chromium", "usr/lib/chromium"),
    policies.BRAVE: ("opt/brave.com/brave", "usr/bin/brave-browser"),
    policies.EDGE: ("opt/microsoft/msedge", "usr/bin/microsoft-edge"),
    policies.VIVALDI: ("opt/vivaldi", "usr/bin/vivaldi"),
    policies.CHROMIUM_SNAP: ("snap/bin/chromium",),
}
UNCOVERED_LOCATIONS: dict[str, tuple[str, ...]] = {
    policies.FIREFOX: ("var/lib/flatpak/app/org.mozilla.firefox",),
    policies.CHROMIUM: ("var/lib/flatpak/app/org.chromium.Chromium",),
    policies.CHROME: ("var/lib/flatpak/app/com.google.Chrome",),
    policies.BRAVE: ("snap/bin/brave", "var/lib/flatpak/app/com.brave.Browser"),
    policies.EDGE: ("var/lib/flatpak/app/com.microsoft.Edge",),
    policies.VIVALDI: ("snap/bin/vivaldi", "var/lib/flatpak/app/com.vivaldi.Vivaldi"),
}


class Action(StrEnum):
    INSTALLED = "installed"
    IN_PLACE = "already in place"
    UPDATED = "updated (paths changed)"
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
        self.base_specs = tuple(specs)
        self.specs: dict[Key, PolicySpec] = {spec.key: spec for spec in specs}
        self.paths: tuple[str, ...] = ()
        self.extra_specs: tuple[PolicySpec, ...] = ()  # the extension's (chromium_extension)
        self._seen: dict[str, tuple[int, int, int] | None] = {}

    def set_paths(self, paths: Iterable[str], *, base: bool = True,
                  extra: Sequence[PolicySpec] = ()) -> None:
        """The `paths:` entries to block from now on (and whether the base specs, secure DNS off,
        are wanted, with ``extra``: the extension's): the next :meth:`apply` puts them in and takes
        out what is no longer wanted."""
        self.paths = tuple(sorted(paths))
        if extra:
            self.extra_specs = tuple(extra)
        wanted = (*((*self.base_specs, *extra) if base else ()), *policies.path_specs(self.paths))
        self.specs = {spec.key: spec for spec in wanted}
        self._seen.clear()

    def paths_in_files(self) -> frozenset[str]:
        """The `paths:` entries detoxd's own Chromium-family files hold now: every one was in force,
        so a ratchet rebuilt after a lost state keeps them (as it keeps the hosts file's names)."""
        found: set[str] = set()
        for _, file in policies.CHROMIUM_FAMILY_FILES:
            try:
                document = policies.parse(_read(self.root / file), file) or {}
            except (OSError, PolicyError):
                continue
            entries = document.get("URLBlocklist")
            if isinstance(entries, list):
                found.update(entry for entry in entries
                             if isinstance(entry, str) and normalize_path(entry).entry == entry)
        return frozenset(found)

    def all_specs(self) -> tuple[PolicySpec, ...]:
        """Every spec that could be in force (for watching directories)."""
        return (*self.base_specs, *self.extra_specs, *policies.path_specs(("example.com/x",)))

    def remove_stale_temporaries(self) -> None:
        """At start-up: the temporary copies a kill between write and rename left beside each
        policy file (only those of detoxd's own policy files)."""
        for spec in self.all_specs():
            path = self.path(spec)
            remove_stale_temporaries(path.parent, only_for=path.name)

    def path(self, spec: PolicySpec) -> Path:
        return self.root / spec.file

    # ---- what the daemon calls ----

    def apply(self) -> list[PolicyResult]:
        """Install (or restore) the policy for every installed browser. Never raises."""
        browsers = installed_browsers(self.root).covered
        records = self._load()
        results = [self._lift_record(key, records) for key in list(records) if key not in self.specs]
        results += [self._apply_one(spec, records) for spec in self.specs.values()
                    if spec.browser in browsers]
        self._remember_stats()
        return results

    def verify(self) -> list[PolicyResult]:
        """The periodic check: apply again only when a policy file changed (cheap stat)."""
        if self._seen and all(self._stat(spec) == self._seen.get(spec.file) for spec in self.specs.values()):
            return []
        return self.apply()

    def lift(self) -> list[PolicyResult]:
        """Remove exactly what detoxd added; forget each record once it is undone. Never raises."""
        records = self._load()
        results = [self._lift_record(key, records) for key in reversed(list(records))]
        self._seen.clear()
        return results

    def records(self) -> dict[Key, Record]:
        return self._load()

    def _lift_record(self, key: Key, records: dict[Key, Record]) -> PolicyResult:
        """Undo one record and forget it; a file detoxd created stays detoxd's to remove while
        another record of the same file remains (the created flag passes on to it)."""
        record = records[key]
        siblings = [other for other in records if other != key and other[0] == record.file]
        result = self._lift_one(record, last_of_file=not siblings)
        if result.action is not Action.FAILED:
            del records[key]
            if siblings and (record.created_file or record.original_text is not None):
                heir = records[siblings[0]]  # it now knows what the file was before detoxd
                records[siblings[0]] = dataclasses.replace(
                    heir, created_file=heir.created_file or record.created_file,
                    original_text=heir.original_text if heir.original_text is not None
                    else record.original_text)
            self._save(records)
        return result

    # ---- one file ----

    def _apply_one(self, spec: PolicySpec, records: dict[Key, Record]) -> PolicyResult:
        path = self.path(spec)
        try:
            text = _read(path)
            document = policies.parse(text, str(path))
            known = records.get(spec.key)
            if known is not None:
                if policies.is_applied(document, spec, known):
                    return PolicyResult(spec.browser, path, Action.IN_PLACE)
                merged, updated = policies.reapply(document, spec, known)
                if updated is not None and updated != known:  # a list's entries changed
                    records[spec.key] = updated
                    self._save(records)  # first, as for a new record
                _write(path, policies.render(merged))
                if updated != known:
                    return PolicyResult(spec.browser, path, Action.UPDATED)
                log.warning("browser policy %s was changed or removed: restored", path)
                return PolicyResult(spec.browser, path, Action.RESTORED)
            merged, record = policies.merge(document, spec)
            others = [other for other in records.values() if other.file == spec.file]
            record = dataclasses.replace(record, original_text=text if not others else None,
                                         created_file=record.created_file and not others)
            records[spec.key] = record
            self._save(records)  # first: a crash after the write still knows what to undo
            if document != merged:
                _write(path, policies.render(merged))
            return PolicyResult(spec.browser, path, Action.INSTALLED)
        except (OSError, PolicyError) as error:
            log.error("cannot install the %s policy in %s: %s", spec.browser, path, error)
            return PolicyResult(spec.browser, path, Action.FAILED, str(error))

    def _lift_one(self, record: Record, *, last_of_file: bool = True) -> PolicyResult:
        spec = self._spec_for(record)
        path = self.root / record.file
        browser = spec.browser if spec else "unknown"
        try:
            if spec is None:
                raise PolicyError(f"no policy known for {record.file}")
            text = _read(path)
            document = policies.parse(text, str(path))
            if not spec.members and not policies.is_applied(document, spec):
                return PolicyResult(browser, path, Action.LEFT)
            remaining = policies.unmerge(document, record, spec)
            if remaining is not None and last_of_file and (record.created_file or record.original_text):
                # The file's last record: containers another record of detoxd's made go too.
                original = None if record.created_file else policies.parse(record.original_text, str(path))
                remaining = policies.without_empty_containers(remaining, original)
                if not remaining and record.created_file:
                    remaining = None
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

    def _spec_for(self, record: Record) -> PolicySpec | None:
        """The spec a record was made for: a base spec, or (a list) any path spec of its key."""
        spec = self.specs.get(record.key)
        if spec is not None:
            return spec
        for known in self.all_specs():
            if known.key == record.key:
                return dataclasses.replace(known, value=tuple(record.added or ())) if known.members else known
        return None

    # ---- records ----

    def _load(self) -> dict[Key, Record]:
        try:
            data = state_store.read_json(self.state_path)
            records = (Record.from_json(item) for item in data["records"])
            return {record.key: record for record in records}
        except FileNotFoundError:
            return {}
        except (OSError, state_store.StateFileError, ValueError, KeyError, TypeError) as error:
            # Keep the evidence; without records detoxd cannot remove what it added.
            aside = state_store.set_aside(self.state_path)
            log.error("unreadable %s (%s): moved to %s", self.state_path, error, aside)
            return {}

    def _save(self, records: dict[Key, Record]) -> None:
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


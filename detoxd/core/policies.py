"""Browser policies that switch DNS-over-HTTPS off during a detox (pure: values in, values out).

A browser with secure DNS asks its own resolver over HTTPS and never reads /etc/hosts. Managed
policies turn that off: Firefox reads ``/etc/firefox/policies/policies.json`` (``DNSOverHTTPS``
disabled and locked), Chrome and Chromium read every JSON file in their ``policies/managed``
directory (``DnsOverHttpsMode: off``), and so do the Chromium-family browsers that read managed
policies on Linux: Brave, Microsoft Edge and Vivaldi, each from its own directory.

``paths:`` of the blocklist (``linkedin.com/feed``) go into the same files as lists:
``URLBlocklist`` for the Chromium family (its filter format takes ``host/path`` as it is written),
``WebsiteFilter.Block`` for Firefox (match patterns ``*://*.linkedin.com/feed*``). A list spec
(``members=True``) adds its entries to whatever list the user has there and takes out only those
it added (:attr:`Record.added`).

Each :class:`PolicySpec` sets one value at one key path of one JSON file. :func:`merge` sets it
and returns a :class:`Record` of exactly what it changed (the value it replaced, the containers
and the file it created); :func:`unmerge` undoes that record and nothing else. A user's other
policies, in the same file, are never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

JsonObject = dict[str, Any]

FIREFOX = "firefox"
CHROME = "chrome"
CHROMIUM = "chromium"
BRAVE = "brave"
EDGE = "edge"
VIVALDI = "vivaldi"
CHROMIUM_SNAP = "chromium (snap)"


class PolicyError(ValueError):
    """The existing file cannot take the policy without destroying something (never overwritten)."""


@dataclass(frozen=True)
class PolicySpec:
    browser: str
    file: str  # relative to the root, e.g. "etc/firefox/policies/policies.json"
    key_path: tuple[str, ...]
    value: Any
    members: bool = False  # value is a tuple of strings merged into the list at key_path

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.file, self.key_path)


@dataclass(frozen=True)
class Record:
    """What detoxd changed in one file: enough to undo exactly that, kept in the state dir."""

    file: str
    key_path: tuple[str, ...]
    created_file: bool
    created_containers: int  # how many of the key path's containers (from the end) detoxd made
    had_previous: bool
    previous: Any = None
    original_text: str | None = None  # the file before: given back byte for byte when nothing else changed
    added: tuple[str, ...] | None = None  # a list spec's entries detoxd put in (None: a value spec)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.file, self.key_path)

    def to_json(self) -> JsonObject:
        data = {"file": self.file, "key_path": list(self.key_path), "created_file": self.created_file,
                "created_containers": self.created_containers, "had_previous": self.had_previous,
                "previous": self.previous, "original_text": self.original_text}
        if self.added is not None:
            data["added"] = list(self.added)
        return data

    @classmethod
    def from_json(cls, data: JsonObject) -> Record:
        key_path = tuple(data["key_path"])
        if not key_path or not all(isinstance(key, str) for key in key_path):
            raise ValueError(f"invalid key path {data['key_path']!r}")
        added = data.get("added")
        if added is not None and not (isinstance(added, list)
                                      and all(isinstance(item, str) for item in added)):
            raise ValueError(f"invalid added entries {added!r}")
        return cls(str(data["file"]), key_path, bool(data["created_file"]),
                   int(data["created_containers"]), bool(data["had_previous"]), data.get("previous"),
                   _optional_str(data.get("original_text")), None if added is None else tuple(added))


FIREFOX_DOH_OFF = {"Enabled": False, "Locked": True}
FIREFOX_FILE = "etc/firefox/policies/policies.json"
# A file of detoxd's own in each managed directory: these browsers merge every file there.
CHROMIUM_FAMILY_FILES: tuple[tuple[str, str], ...] = (
    (CHROME, "etc/opt/chrome/policies/managed/detoxd.json"),
    (CHROMIUM, "etc/chromium/policies/managed/detoxd.json"),
    (BRAVE, "etc/brave/policies/managed/detoxd.json"),
    (EDGE, "etc/opt/edge/policies/managed/detoxd.json"),
    # Vivaldi's Linux directory is given as both in the wild; detoxd writes both (its own files).
    (VIVALDI, "etc/opt/vivaldi/policies/managed/detoxd.json"),
    (VIVALDI, "etc/vivaldi/policies/managed/detoxd.json"),
    # The Chromium snap (Ubuntu's chromium) reads the host's /etc/chromium-browser/policies.
    (CHROMIUM_SNAP, "etc/chromium-browser/policies/managed/detoxd.json"),
)
SPECS: tuple[PolicySpec, ...] = (
    PolicySpec(FIREFOX, FIREFOX_FILE, ("policies", "DNSOverHTTPS"), FIREFOX_DOH_OFF),
    *(PolicySpec(browser, file, ("DnsOverHttpsMode",), "off") for browser, file in CHROMIUM_FAMILY_FILES),
)
"""Secure DNS off: in force while names are blocked."""

CHROMIUM_URL_LIMIT = 1000  # URLBlocklist: "limited to 1000 entries; subsequent entries are ignored"


def path_specs(paths: tuple[str, ...]) -> tuple[PolicySpec, ...]:
    """The policies that block ``paths`` (``host/path-prefix``, from :mod:`detoxd.core.paths`)."""
    if not paths:
        return ()
    firefox = tuple(f"*://*.{entry}*" for entry in paths)
    return (
        PolicySpec(FIREFOX, FIREFOX_FILE, ("policies", "WebsiteFilter", "Block"), firefox, members=True),
        *(PolicySpec(browser, file, ("URLBlocklist",), tuple(paths), members=True)
          for browser, file in CHROMIUM_FAMILY_FILES),
    )


def parse(text: str | None, file: str) -> JsonObject | None:
    """The document in ``text`` (None: no file); raises PolicyError when it is not a JSON object."""
    if text is None:
        return None
    if not text.strip():
        return {}  # an empty file holds no policy: taking it over destroys nothing
    try:
        document = json.loads(text)
    except ValueError as error:
        raise PolicyError(f"{file}: not valid JSON ({error}): left alone") from None
    if not isinstance(document, dict):
        raise PolicyError(f"{file}: expected a JSON object: left alone")
    return document


def render(document: JsonObject, record: Record | None = None) -> str:
    """The file's text; the user's own text when ``document`` is what it held before detoxd."""
    if record is not None and record.original_text is not None:
        try:
            if json.loads(record.original_text) == document:
                return record.original_text
        except ValueError:
            pass
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def is_applied(document: JsonObject | None, spec: PolicySpec, record: Record | None = None) -> bool:
    """Whether ``document`` holds the policy; for a list spec: every entry, and none of the
    entries ``record`` added that the spec no longer wants."""
    found, value = _lookup(document or {}, spec.key_path)
    if not spec.members:
        return found and value == spec.value
    if not found or not isinstance(value, list):
        return False
    stale = set(record.added or ()) - set(spec.value) if record is not None else set()
    return set(spec.value) <= set(value) and not stale & set(value)


def merge(document: JsonObject | None, spec: PolicySpec) -> tuple[JsonObject, Record]:
    """``document`` with the policy set, and the record of what that changed."""
    result = _copy(document or {})
    container = result
    created = 0
    for depth, key in enumerate(spec.key_path[:-1]):
        child = container.get(key)
        if child is None:
            child = container[key] = {}
            created = created or len(spec.key_path) - 1 - depth  # this one and all below it
        elif not isinstance(child, dict):
            raise PolicyError(f"{spec.file}: {'.'.join(spec.key_path[:depth + 1])} is not an object: "
                              "left alone")
        container = child
    last = spec.key_path[-1]
    had_previous = last in container
    if spec.members:
        current = container.get(last, [])
        if not isinstance(current, list):
            raise PolicyError(f"{spec.file}: {'.'.join(spec.key_path)} is not a list: left alone")
        added = tuple(item for item in dict.fromkeys(spec.value) if item not in current)
        container[last] = [*current, *added]
        return result, Record(spec.file, spec.key_path, document is None, created, had_previous,
                              None, added=added)
    record = Record(spec.file, spec.key_path, document is None, created, had_previous,
                    container.get(last))
    container[last] = _copy(spec.value)
    return result, record


def reapply(document: JsonObject | None, spec: PolicySpec,
            record: Record | None = None) -> tuple[JsonObject, Record | None]:
    """Put the policy back (after tampering, or with a list spec's entries changed) and the record
    updated to match: a list's record then holds every entry detoxd added and still wants."""
    if spec.members and record is not None:
        stale = set(record.added or ()) - set(spec.value)
        trimmed = _without(document, spec.key_path, stale) if stale and document is not None else document
        merged, fresh = merge(trimmed, spec)
        kept = tuple(item for item in (record.added or ()) if item not in stale)
        fresh_items = tuple(item for item in (fresh.added or ()) if item not in kept)
        return merged, replace(record, added=kept + fresh_items)
    merged, _ = merge(document, spec)
    return merged, record


def _without(document: JsonObject, key_path: tuple[str, ...], items: set[str]) -> JsonObject:
    result: JsonObject = _copy(document)
    found, value = _lookup(result, key_path)
    if found and isinstance(value, list):
        value[:] = [item for item in value if item not in items]
    return result


def unmerge(document: JsonObject | None, record: Record, spec: PolicySpec) -> JsonObject | None:
    """Undo ``record``; None when the file should go (detoxd created it and it is empty again).

    A value someone else put there since is theirs: it is left as it is."""
    if document is None:
        return None
    if spec.members:
        return _unmerge_members(document, record)
    if not is_applied(document, spec):
        return document
    result: JsonObject = _copy(document)
    parents = _containers(result, record.key_path)
    last = record.key_path[-1]
    if record.had_previous:
        parents[-1][last] = _copy(record.previous)
    else:
        del parents[-1][last]
        _prune(parents, record)
    if record.created_file and not result:
        return None
    return result


def without_empty_containers(document: JsonObject, original: JsonObject | None) -> JsonObject:
    """``document`` without the empty objects that ``original`` (the file before detoxd; None: no
    file) did not have: what detoxd's records, undone one by one, can leave behind."""
    result: JsonObject = {}
    for key, value in document.items():
        before = original.get(key) if original is not None else None
        if isinstance(value, dict):
            value = without_empty_containers(value, before if isinstance(before, dict) else None)
            if not value and (original is None or key not in original):
                continue
        result[key] = value
    return result


def _containers(document: JsonObject, key_path: tuple[str, ...]) -> list[JsonObject]:
    """The objects along ``key_path`` in ``document``, outermost first, down to the last key's."""
    parents = [document]
    for key in key_path[:-1]:
        parents.append(parents[-1][key])
    return parents


def _unmerge_members(document: JsonObject, record: Record) -> JsonObject | None:
    """Take out the entries detoxd added (those still there); the list and the containers detoxd
    made go when they are empty again."""
    found, value = _lookup(document, record.key_path)
    if not found or not isinstance(value, list):
        return document
    result: JsonObject = _copy(document)
    parents = _containers(result, record.key_path)
    last = record.key_path[-1]
    added = set(record.added or ())
    remaining = [item for item in parents[-1][last] if item not in added]
    if remaining or record.had_previous:
        parents[-1][last] = remaining
    else:
        del parents[-1][last]
        _prune(parents, record)
    if record.created_file and not result:
        return None
    return result


def _prune(parents: list[JsonObject], record: Record) -> None:
    """Remove the containers detoxd created, innermost first, while they are empty."""
    for level in range(record.created_containers):
        index = len(parents) - 1 - level
        if index < 1 or parents[index]:
            return
        del parents[index - 1][record.key_path[index - 1]]


def _lookup(document: JsonObject, key_path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = document
    for key in key_path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


@dataclass(frozen=True)
class InstalledBrowsers:
    """The browsers found on the machine (doctor checks their policies)."""

    covered: tuple[str, ...]  # installed where the system policy files reach them
    uncovered: tuple[str, ...]  # e.g. "firefox (snap/bin/firefox)": not reachable by /etc policies

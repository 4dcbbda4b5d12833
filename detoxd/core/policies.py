"""Browser policies that switch DNS-over-HTTPS off during a detox (pure: values in, values out).

A browser with secure DNS asks its own resolver over HTTPS and never reads /etc/hosts. Managed
policies turn that off: Firefox reads ``/etc/firefox/policies/policies.json`` (``DNSOverHTTPS``
disabled and locked), Chrome and Chromium read every JSON file in their ``policies/managed``
directory (``DnsOverHttpsMode: off``).

Each :class:`PolicySpec` sets one value at one key path of one JSON file. :func:`merge` sets it
and returns a :class:`Record` of exactly what it changed (the value it replaced, the containers
and the file it created); :func:`unmerge` undoes that record and nothing else. A user's other
policies, in the same file, are never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]

FIREFOX = "firefox"
CHROME = "chrome"
CHROMIUM = "chromium"


class PolicyError(ValueError):
    """The existing file cannot take the policy without destroying something (never overwritten)."""


@dataclass(frozen=True)
class PolicySpec:
    browser: str
    file: str  # relative to the root, e.g. "etc/firefox/policies/policies.json"
    key_path: tuple[str, ...]
    value: Any


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

    def to_json(self) -> JsonObject:
        return {"file": self.file, "key_path": list(self.key_path), "created_file": self.created_file,
                "created_containers": self.created_containers, "had_previous": self.had_previous,
                "previous": self.previous, "original_text": self.original_text}

    @classmethod
    def from_json(cls, data: JsonObject) -> Record:
        key_path = tuple(data["key_path"])
        if not key_path or not all(isinstance(key, str) for key in key_path):
            raise ValueError(f"invalid key path {data['key_path']!r}")
        return cls(str(data["file"]), key_path, bool(data["created_file"]),
                   int(data["created_containers"]), bool(data["had_previous"]), data.get("previous"),
                   _optional_str(data.get("original_text")))


FIREFOX_DOH_OFF = {"Enabled": False, "Locked": True}
SPECS: tuple[PolicySpec, ...] = (
    PolicySpec(FIREFOX, "etc/firefox/policies/policies.json", ("policies", "DNSOverHTTPS"),
               FIREFOX_DOH_OFF),
    # A file of detoxd's own: Chrome merges every file in the directory.
    PolicySpec(CHROME, "etc/opt/chrome/policies/managed/detoxd.json", ("DnsOverHttpsMode",), "off"),
    PolicySpec(CHROMIUM, "etc/chromium/policies/managed/detoxd.json", ("DnsOverHttpsMode",), "off"),
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


def is_applied(document: JsonObject | None, spec: PolicySpec) -> bool:
    found, value = _lookup(document or {}, spec.key_path)
    return found and value == spec.value


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
    record = Record(spec.file, spec.key_path, document is None, created, had_previous,
                    container.get(last))
    container[last] = _copy(spec.value)
    return result, record


def reapply(document: JsonObject | None, spec: PolicySpec) -> JsonObject:
    """Put the policy back (after tampering) without changing the original record."""
    merged, _ = merge(document, spec)
    return merged


def unmerge(document: JsonObject | None, record: Record, spec: PolicySpec) -> JsonObject | None:
    """Undo ``record``; None when the file should go (detoxd created it and it is empty again).

    A value someone else put there since is theirs: it is left as it is."""
    if document is None:
        return None
    if not is_applied(document, spec):
        return document
    result: JsonObject = _copy(document)
    parents = [result]
    for key in record.key_path[:-1]:
        parents.append(parents[-1][key])
    last = record.key_path[-1]
    if record.had_previous:
        parents[-1][last] = _copy(record.previous)
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

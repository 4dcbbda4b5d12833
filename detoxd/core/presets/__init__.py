"""Built-in blocklists: one curated YAML file per category, shipped as package data.

Each file holds a ``description`` and a list of ``hosts``, commented with what each host is for.
Hosts are checked with :func:`detoxd.core.domains.normalize_domain` when a preset is loaded, so a
damaged file fails loudly instead of reaching ``/etc/hosts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import yaml

from detoxd.core.domains import normalize_domain

_SUFFIX = ".yaml"


class UnknownPresetError(KeyError):
    """Raised for a preset name that is not one of :data:`PRESET_NAMES`."""

    def __str__(self) -> str:  # KeyError's own str() would show the repr of the whole message
        return str(self.args[0])


class BrokenPresetError(ValueError):
    """A shipped preset file does not parse or holds an invalid host: a packaging bug."""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    hosts: tuple[str, ...]


def _preset_names() -> tuple[str, ...]:
    return tuple(
        sorted(
            entry.name.removesuffix(_SUFFIX)
            for entry in files(__name__).iterdir()
            if entry.name.endswith(_SUFFIX) and entry.is_file()
        )
    )


PRESET_NAMES: tuple[str, ...] = _preset_names()
"""The built-in presets, sorted: the names of the YAML files in this package."""


def load_preset(name: str) -> tuple[str, ...]:
    """The hosts preset ``name`` blocks, normalised, in file order."""
    return _load(name).hosts


def describe(name: str) -> str:
    """One line saying what preset ``name`` blocks."""
    return _load(name).description


@cache
def _load(name: str) -> Preset:
    if name not in PRESET_NAMES:  # also keeps names like "../x" away from the file system
        available = ", ".join(PRESET_NAMES)
        raise UnknownPresetError(f"unknown preset {name!r} (available: {available})")
    text = files(__name__).joinpath(name + _SUFFIX).read_text(encoding="utf-8")
    return _parse(name, text)


def _parse(name: str, text: str) -> Preset:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BrokenPresetError(f"preset {name!r} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise BrokenPresetError(f"preset {name!r} must be a mapping")
    description = document.get("description")
    hosts = document.get("hosts")
    if not isinstance(description, str) or not description.strip():
        raise BrokenPresetError(f"preset {name!r} needs a description")
    if not isinstance(hosts, list) or not hosts:
        raise BrokenPresetError(f"preset {name!r} needs a list of hosts")
    return Preset(name, description.strip(), tuple(_checked_host(name, host) for host in hosts))


def _checked_host(preset: str, host: object) -> str:
    """``host`` if it is exactly a normalised name; presets are written that way on purpose."""
    if not isinstance(host, str):
        raise BrokenPresetError(f"preset {preset!r}: {host!r} is not a host name")
    result = normalize_domain(host)
    if result.name != host or result.warning is not None:
        problem = result.error or f"should be written {result.name!r}"
        raise BrokenPresetError(f"preset {preset!r}: {problem}")
    return host

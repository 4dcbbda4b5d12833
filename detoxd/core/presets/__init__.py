"""Built-in blocklists: one curated YAML file per category, shipped as package data.

Each file holds a ``description``, a list of ``hosts``, commented with what each host is for, and
``groups``: which domains belong to one site (its pages, APIs and CDN), so that an allowance for
"twitter" opens everything the site needs; every host belongs to at least one group. Hosts are
checked with :func:`detoxd.core.domains.normalize_domain` when a preset is loaded, so a damaged file
fails loudly instead of reaching ``/etc/hosts``.
"""

from __future__ import annotations

import re
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
    # site name -> the domains that make it work; each covers itself and its sub-domains
    groups: dict[str, tuple[str, ...]]


# Not mutated (scripts/mutation): it runs once at import, before mutmut picks a mutant, so none of
# its mutants could ever be killed; test_presets checks PRESET_NAMES against the files.
def _preset_names() -> tuple[str, ...]:  # pragma: no mutate block
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


def load_groups(name: str) -> dict[str, tuple[str, ...]]:
    """The sites of preset ``name``: site name -> the domains it needs (with their sub-domains)."""
    return dict(_load(name).groups)


def covered(name: str, domains: frozenset[str] | set[str]) -> bool:
    """Whether ``name`` is one of ``domains`` or a sub-domain of one."""
    labels = name.split(".")
    return any(".".join(labels[index:]) in domains for index in range(len(labels)))


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
    checked = tuple(_checked_host(name, host) for host in hosts)
    return Preset(name, description.strip(), checked, _parse_groups(name, document.get("groups"), checked))


def _parse_groups(preset: str, groups: object, hosts: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    if not isinstance(groups, dict) or not groups:
        raise BrokenPresetError(f"preset {preset!r} needs a mapping of groups")
    result: dict[str, tuple[str, ...]] = {}
    for site, domains in groups.items():
        if not isinstance(site, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", site):
            raise BrokenPresetError(f"preset {preset!r}: group name {site!r} is not a lower-case word")
        if not isinstance(domains, list) or not domains:
            raise BrokenPresetError(f"preset {preset!r}: group {site!r} needs a list of domains")
        result[site] = tuple(_checked_host(preset, domain) for domain in domains)
        for domain in result[site]:
            if not any(covered(host, {domain}) for host in hosts):
                raise BrokenPresetError(f"preset {preset!r}: group {site!r}: {domain!r} covers no host")
    every_domain = {domain for domains in result.values() for domain in domains}
    uncovered = [host for host in hosts if not covered(host, every_domain)]
    if uncovered:
        raise BrokenPresetError(f"preset {preset!r}: hosts in no group: {', '.join(uncovered)}")
    return result


def _checked_host(preset: str, host: object) -> str:
    """``host`` if it is exactly a normalised name; presets are written that way on purpose."""
    if not isinstance(host, str):
        raise BrokenPresetError(f"preset {preset!r}: {host!r} is not a host name")
    result = normalize_domain(host)
    if result.name != host or result.warning is not None:
        problem = result.error or f"should be written {result.name!r}"
        raise BrokenPresetError(f"preset {preset!r}: {problem}")
    return host

"""One class per DNS engine, found through a registry by the kind the config names.

What the engines are (kind, label, config keys, remote or local) is the table in
:mod:`detoxd.core.dnsengines`; the class of a kind lives in ``detoxd/netagent/<kind>.py`` and
carries that row as :attr:`DnsEngine.spec`. :func:`engine_class` imports the module of a kind
on first use (the agent of a unit never loads the others) and refuses a kind it does not know
with :class:`UnknownDnsEngine`, never a guess.

A DNS engine puts the names into the engine, looks for changes others made (and undoes them),
and at the end takes out exactly what it added. It never raises anything but
:class:`DnsEngineError` for problems on the engine's side, and no message it produces contains a
secret. Its health check is :meth:`DnsEngine.problem` (what keeps it from working, seen from
here) with :meth:`DnsEngine.describe` (the engine asked), each failure with a fix where one exists.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from detoxd.core import dnsengines
from detoxd.core.dnsengines import DnsEngineSpec
from detoxd.core.lookups import Lookup
from detoxd.core.network import DnsEngineConfig
from detoxd.durable import remove_stale_temporaries, replace_file


class DnsEngineError(Exception):
    """The engine could not be reached or refused; ``state`` is what status shows."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state  # unreachable | auth_failed | tls_error | refused | error


class UnknownDnsEngine(DnsEngineError):
    """A kind no class serves: refused, never driven as some other engine."""

    def __init__(self, kind: str) -> None:
        known = ", ".join(dnsengines.KINDS)
        super().__init__("error", f"unknown DNS engine {kind!r} (detoxd drives: {known})")
        self.kind = kind


@dataclass(frozen=True)
class Problem:
    """Why an engine cannot be driven, and what the user can do about it (None: nothing known)."""

    reason: str
    fix: str | None = None


# What to do about a failure, by the state it puts the engine in (a class may say it better).
FIXES = {
    "unreachable": "check the engine's url: in detoxd.yaml, and that the engine runs and answers from here",
    "auth_failed": "put the engine's (app) password into the password_file that detoxd.yaml names",
    "tls_error": "pin the engine's certificate: tls_fingerprint: in detoxd.yaml (the reason gives it)",
}


class DnsEngine(ABC):
    """One household DNS engine, as the network agent drives it."""

    spec: ClassVar[DnsEngineSpec]
    #: Its query log tells which device looked up which blocked name (the blocked-lookup counts).
    has_query_log: ClassVar[bool] = False
    #: A blocked name's rule also blocks the names under it (so do its counted lookups).
    blocks_subdomains: ClassVar[bool] = True
    #: What to do about an error, by its state (see :data:`FIXES`).
    fixes: ClassVar[dict[str, str]] = FIXES

    config: DnsEngineConfig

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in vars(cls):
            _REGISTRY[cls.spec.kind] = cls

    @classmethod
    @abstractmethod
    def from_config(cls, config: DnsEngineConfig, secret: str | None) -> DnsEngine:
        """The engine of a ``network:`` entry, with the secret its ``password_file`` holds."""

    @abstractmethod
    def apply(self, names: Sequence[str], allowed: Sequence[str]) -> None:
        """Hold exactly these names (and exceptions for the allowed names under them)."""

    @abstractmethod
    def check(self) -> list[str]:
        """Find what others changed, put it back, and describe each change (for the log)."""

    @abstractmethod
    def remove(self) -> None:
        """Take out everything detoxd added, also after a crash, also when nothing was applied."""

    @abstractmethod
    def describe(self) -> str:
        """What `detoxd check` prints: the engine's version, whether the credentials work."""

    def read_query_log(self, since: datetime, until: datetime) -> list[Lookup] | None:
        """The blocked lookups since ``since``; None when the log cannot be read."""
        del since, until
        return None

    def problem(self) -> Problem | None:
        """What keeps this engine from being driven from here, seen without asking it (a
        missing program or directory, a file this user cannot write): None, or why and the fix."""
        return None

    def fix(self, error: DnsEngineError) -> str | None:
        """What the user can do about an error the engine gave (None: nothing but wait)."""
        return self.fixes.get(error.state)


_REGISTRY: dict[str, type[DnsEngine]] = {}  # kind -> class, filled as the modules are imported


def engine_class(kind: str) -> type[DnsEngine]:
    """The class that drives engines of ``kind``; :class:`UnknownDnsEngine` for any other."""
    if kind not in dnsengines.BY_KIND:
        raise UnknownDnsEngine(kind)
    if kind not in _REGISTRY:
        importlib.import_module(f"detoxd.netagent.{kind}")
    if kind not in _REGISTRY:
        raise DnsEngineError("error", f"detoxd.netagent.{kind} defines no DnsEngine for {kind!r}")
    return _REGISTRY[kind]


def make_engine(config: DnsEngineConfig, secret: str | None) -> DnsEngine:
    """The engine a ``network:`` entry names, or :class:`UnknownDnsEngine`."""
    return engine_class(config.engine).from_config(config, secret)


# ---- the files of the engines on this machine ----

def directory_problem(directory: Path, engine: DnsEngine, package: str) -> Problem | None:
    """Why detoxd cannot write its one file into a local engine's config directory, if it cannot."""
    if not directory.is_dir():
        return Problem(f"{directory} does not exist (is {engine.spec.label} installed?)",
                       f"apt-get install {package}, or set conf_dir: in detoxd.yaml to the directory "
                       f"{engine.spec.label} reads")
    if not os.access(directory, os.W_OK | os.X_OK):
        return Problem(f"{directory} is not writable by this user",
                       f"run the agent as its unit does: systemctl start {engine.spec.agent_unit}")
    return None


def write_config_file(path: Path, text: str) -> None:
    """Replace a config file an engine reads (mode 0644) through :mod:`detoxd.durable`: the
    engine sees the old file or the new one, whole, also after a crash (whose temporary file,
    if one was left beside it, goes first)."""
    remove_stale_temporaries(path.parent, only_for=path.name)
    replace_file(path, text.encode(), mode=0o644)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


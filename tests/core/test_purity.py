"""detoxd.core stays pure: values in, values out. Walks the AST of every module in it.

An allow-list: a core module imports the rest of core and what is named here, nothing else.
What touches the world or the clock (os, time, socket, subprocess, threading, ...) and detoxd's
shell (service, agent, client, commands, peerlock, codetrust, paths, protocol, ...) are not on it.
Imports for type checking only (under ``if TYPE_CHECKING:``) do not run: they may also name
:mod:`detoxd.protocol`, whose types (the status) core renders.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "detoxd" / "core"
ALLOWED = frozenset({
    # the standard library's pure parts
    "__future__", "bisect", "codecs", "collections", "collections.abc", "configparser", "dataclasses",
    "datetime", "encodings", "enum", "functools", "hashlib", "hmac", "ipaddress", "itertools", "json",
    "math", "operator", "posixpath", "re", "struct", "typing", "unicodedata", "urllib.parse", "zoneinfo",
    "importlib.resources",  # reading package data (the presets, the bundled fonts' paths)
    "uuid",  # ics: a calendar event's UID
    "email.message", "email.policy", "email.utils",  # imip: composing a message (never sending it)
    "pathlib",  # icon, textimage: the path of a bundled font, opened by Pillow
})
# Third-party libraries that compute, with their submodules.
LIBRARIES = frozenset({"PIL", "yaml", "icalendar", "shamir_mnemonic"})
TYPE_ONLY = frozenset({"detoxd.protocol"})


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of every node under ``if TYPE_CHECKING:``."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (getattr(node.test, "id", None) == "TYPE_CHECKING"
                                         or getattr(node.test, "attr", None) == "TYPE_CHECKING"):
            for child in node.body:
                inside.update(id(sub) for sub in ast.walk(child))
    return inside


def imported_modules(path: Path) -> list[tuple[str, bool]]:
    """(module, for type checking only) for each import of ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    type_only = _type_checking_nodes(tree)
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in type_only) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(("detoxd.core", id(node) in type_only))  # relative: within core
            elif node.module:
                found.append((node.module, id(node) in type_only))
    return found


def allowed(module: str, type_only: bool) -> bool:
    if module == "detoxd.core" or module.startswith("detoxd.core."):
        return True
    if type_only and module in TYPE_ONLY:
        return True
    return module in ALLOWED or module.split(".")[0] in LIBRARIES


def impurities(path: Path) -> list[str]:
    return [module for module, type_only in imported_modules(path) if not allowed(module, type_only)]


@pytest.mark.parametrize("module", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_only_what_is_allowed(module: Path) -> None:
    assert impurities(module) == []


def test_the_check_catches_what_is_not_on_the_list(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom time import monotonic\nfrom detoxd.service import engine\n"
                      "import detoxd.peerlock\nfrom detoxd import paths\nfrom detoxd.protocol import Status\n"
                      "import shutil\nfrom detoxd.core import hosts\nfrom . import menu\nimport re\n"
                      "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from detoxd.protocol import Status\n"
                      "    from detoxd.client import ControlClient\n")
    assert impurities(sample) == ["os.path", "time", "detoxd.service", "detoxd.peerlock", "detoxd",
                                  "detoxd.protocol", "shutil", "detoxd.client"]

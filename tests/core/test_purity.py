"""detoxd.core stays pure: values in, values out. Walks the AST of every module in it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "detoxd" / "core"
# What touches the world or the clock; reading package data through importlib.resources is fine.
FORBIDDEN = {"os", "socket", "subprocess", "threading", "time", "select", "signal", "shutil",
             "tempfile", "asyncio", "multiprocessing", "ctypes", "fcntl", "random"}
SHELL_PACKAGES = ("detoxd.service", "detoxd.agent", "detoxd.client", "detoxd.cli", "detoxd.install",
                  "detoxd.doctor", "detoxd.clock", "detoxd.durable", "watchdog", "psutil", "pystray",
                  "jeepney", "apscheduler")


def imported_modules(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def impurities(path: Path) -> list[str]:
    bad = []
    for module in imported_modules(path):
        top = module.split(".")[0]
        if top in FORBIDDEN or any(module == p or module.startswith(p + ".") for p in SHELL_PACKAGES):
            bad.append(module)
    return bad


@pytest.mark.parametrize("module", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_nothing_that_touches_the_world(module: Path) -> None:
    assert impurities(module) == []


def test_the_check_catches_an_impure_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom time import monotonic\nfrom detoxd.service import engine\n")
    assert impurities(sample) == ["os.path", "time", "time.monotonic", "detoxd.service",
                                  "detoxd.service.engine"]

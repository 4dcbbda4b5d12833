"""The pinned dependency sets (requirements/, docs/dependencies.md) agree with pyproject.toml's ranges.

A range changed in pyproject.toml without re-pinning (scripts/update-pins), or a pin edited by
hand outside the range, fails here rather than on a user's machine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"


def pins(*names: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        for line in (REQUIREMENTS / name).read_text().splitlines():
            match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
            if match:
                found[canonicalize_name(match[1])] = match[2]
    return found


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


SETS = {
    "pypi": (pins("pypi.txt"), declared("report", "test")),
    # Debian's matplotlib and the test tools' ranges hold there too.
    "debian12": (pins("debian12.txt", "debian12-system.txt"), declared("report", "test")),
}


@pytest.mark.parametrize("deps_set", SETS)
def test_every_declared_dependency_is_pinned_inside_its_range(deps_set: str) -> None:
    pinned, requirements = SETS[deps_set]
    assert requirements
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{deps_set}: {requirement} is not pinned (scripts/update-pins)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{deps_set}: {requirement.name}=={pinned[name]} is outside {requirement} (scripts/update-pins)")


def test_the_debian_set_takes_from_pypi_only_what_debian_lacks() -> None:
    from_pypi = pins("debian12.txt")
    from_debian = pins("debian12-system.txt")
    assert not set(from_pypi) & set(from_debian)
    runtime = {canonicalize_name(requirement.name) for requirement in declared("report")}
    assert runtime - set(from_debian) == {"shamir-mnemonic"}
    assert from_pypi["shamir-mnemonic"] == "0.3.0"  # what the .deb vendors (debian/vendor/README)


def test_every_pin_carries_hashes() -> None:
    for name in ("pypi.txt", "debian12.txt"):
        text = (REQUIREMENTS / name).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
        pinned = [block for block in blocks if re.match(r"[A-Za-z0-9][^\n]*==", block)]
        assert pinned, name
        for block in pinned:
            assert "--hash=sha256:" in block, f"{name}: {block.splitlines()[0]} has no hash"

"""The dependency set a venv holds (run it with that venv's python; see scripts/depset.sh).

    depset.py check debian12|pypi   exit 1, naming each distribution whose version (or, for Debian's,
                                    place) is not the pinned one, or whose requirements are unmet
    depset.py show debian12|pypi    one line: the set and the versions that matter most
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements"
DEBIAN_SITE = Path("/usr/lib/python3/dist-packages")
# Shown at the start and the end of scripts/test: what differs most between the sets.
KEY_DISTRIBUTIONS = ("PyYAML", "watchdog", "APScheduler", "psutil", "pystray", "Pillow", "icalendar",
                     "jeepney", "shamir-mnemonic", "matplotlib", "PyGObject", "pytest", "hypothesis",
                     "mypy", "ruff")


def pins(file: Path) -> dict[str, str]:
    """name → version of the ``name==version`` lines of a pin file."""
    found = {}
    for line in file.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            found[match[1]] = match[2]
    return found


def problems(deps_set: str) -> list[str]:
    found = []
    expected = pins(REQUIREMENTS / f"{deps_set}.txt")
    from_debian = pins(REQUIREMENTS / "debian12-system.txt") if deps_set == "debian12" else {}
    for name, version in {**expected, **from_debian}.items():
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found.append(f"{name} {version} is not installed")
            continue
        if distribution.version != version:
            found.append(f"{name} is {distribution.version}, pinned {version}")
        place = Path(str(distribution.locate_file(""))).resolve()
        if name in from_debian and place != DEBIAN_SITE:
            found.append(f"{name} comes from {place}, not from Debian's {DEBIAN_SITE}")
    unmet = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    # Debian's own packages are left out: their metadata may name what Debian provides otherwise
    # (pytz-deprecation-shim requires tzdata, which Debian's tzdata package stands in for).
    ours = {re.sub(r"[-_.]+", "-", name).lower() for name in (*expected, "detoxd")}
    for line in unmet.stdout.splitlines():
        if re.sub(r"[-_.]+", "-", line.split(" ")[0]).lower() in ours:
            found.append(line)
    return found


def show(deps_set: str) -> str:
    versions = []
    for name in KEY_DISTRIBUTIONS:
        if name == "PyGObject":  # in the pypi set only its `gi` package is exposed (no metadata)
            versions.append(gi_version())
            continue
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} missing")
    import yaml

    from detoxd.core import yamlsource

    parser = "libyaml C parser" if yamlsource._Loader is not yaml.SafeLoader else "pure-Python parser"
    versions[0] += f" ({parser})"
    python = f"Python {sys.version.split()[0]}, {sys.prefix}"
    return f"dependency set {deps_set} ({python}): " + ", ".join(versions)


def gi_version() -> str:
    try:
        import gi
    except ImportError:
        return "gi missing"
    return f"PyGObject {gi.__version__} (Debian's gi)"


def main() -> int:
    command, deps_set = sys.argv[1:3]
    if command == "show":
        print(show(deps_set))
        return 0
    found = problems(deps_set)
    for problem in found:
        print(f"dependency set {deps_set}: {problem}", file=sys.stderr)
    if found and deps_set == "debian12":
        print("(a Debian point release may have changed a version: scripts/update-pins)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

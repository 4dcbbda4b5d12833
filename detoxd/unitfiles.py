"""Whether a systemd unit is installed and enabled, read from its unit files as
`systemctl --root=ROOT is-enabled` reads them: no D-Bus, no running systemd.

`doctor` runs as a normal user too, where `systemctl is-enabled` needs the system D-Bus: on a
machine without a running one it says nothing, and "not installed" would be wrong. The answer is
in the file system anyway: the unit's file in the unit search path, and the links
`systemctl enable` made in ``*.wants/`` (or ``*.requires/``) directories.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

# The system unit search path, highest priority first (systemd.unit(5)); /lib is Debian's
# /usr/lib before the /usr merge.
UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system",
             "usr/lib/systemd/system", "lib/systemd/system")
RUNTIME_DIRS = ("run/systemd/system",)
INSTALL_KEYS = ("wantedby", "requiredby", "upheldby", "alias", "also")


def unit_state(root: Path, unit: str) -> str | None:
    """What `systemctl is-enabled UNIT` answers: "enabled", "enabled-runtime", "static",
    "disabled", "masked", "masked-runtime"; "" when no unit file is found; None when ``root``
    has no systemd unit directory at all (no systemd to ask about)."""
    dirs = [root / directory for directory in UNIT_DIRS]
    if not any(directory.is_dir() for directory in dirs):
        return None
    found = next((directory / unit for directory in dirs if os.path.lexists(directory / unit)), None)
    if found is None:
        return ""
    runtime = found.parent in {root / directory for directory in RUNTIME_DIRS}
    if found.is_symlink() and os.readlink(found) == "/dev/null":
        return "masked-runtime" if runtime else "masked"
    for directory, state in (("etc/systemd/system", "enabled"), ("run/systemd/system", "enabled-runtime")):
        if _linked_from(root / directory, unit):
            return state
    return "disabled" if _has_install_section(found) else "static"


def _linked_from(directory: Path, unit: str) -> bool:
    """A link to the unit in one of the directory's ``*.wants/`` or ``*.requires/``."""
    try:
        children = list(directory.iterdir())
    except OSError:
        return False
    return any(child.name.endswith((".wants", ".requires")) and os.path.lexists(child / unit)
               for child in children)


def _has_install_section(path: Path) -> bool:
    """An [Install] section that says how to enable the unit (else it is static)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    try:
        parser.read_string(path.read_text(errors="replace"))
    except (OSError, configparser.Error):
        return True  # unreadable: not static as far as anyone can tell; "disabled" is the safe word
    return parser.has_section("Install") and any(parser.get("Install", key, fallback="").strip()
                                                 for key in INSTALL_KEYS)

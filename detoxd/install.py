"""Install and uninstall detoxd as a system service: units, autostart entry, default config.

Everything is placed under ``root``: ``/`` for the running system, any other directory for an
offline tree (an image being built, or a test's temporary directory). Only on the running
system does systemd itself get involved (daemon-reload, start, stop). Both operations are
idempotent, and the returned lines say what changed, or that nothing did.

Before writing a unit, ``install`` checks (see :mod:`detoxd.codetrust`) that no one but root can
change the code the unit would run, and refuses otherwise. Where the Debian package already
provides the units (``/lib/systemd/system``), it only enables and starts them.

The caller (the CLI) decides whether uninstalling is allowed and removes the hosts block first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from detoxd import codetrust
from detoxd.core import firefoxext
from detoxd.durable import replace_file

SYSTEM_UNIT = "detoxd.service"
TRAY_UNIT = "detoxd-tray.service"
TRAY_AUTOSTART = "detoxd-tray.desktop"
CUTTER_UNIT = "detoxd-cutter.service"  # closes connections to newly blocked sites, on demand
CUTTER_PATH_UNIT = "detoxd-cutter.path"  # starts it when the daemon queues a request
EXECWATCH_UNIT = "detoxd-execwatch.service"  # the kernel's exec events -> blocked apps closed at once
# The household's DNS engines (docs/household-dns.md): installed, never enabled by
# install, since each needs a `network:` config for its engine first.
NETWORK_UNITS = ("detoxd-network.service", "detoxd-network-dnsmasq.service",
                 "detoxd-network-unbound.service")
# The messages to the peers through the user's SMTP server: installed, never enabled by install
# (it needs a `mail:` config first).
MAIL_UNIT = "detoxd-mail.service"
# Every unit installed but left for the admin to enable.
OPTIONAL_UNITS = (*NETWORK_UNITS, MAIL_UNIT)
# The users detoxd-network.service and detoxd-mail.service run as (systemd-sysusers). The Debian
# package ships it in
# /usr/lib/sysusers.d/detoxd.conf; a source install puts it where the admin's own files go.
NETWORK_SYSUSERS = "detoxd-network.sysusers"
CONFIG_FILES = ("detoxd.yaml", "blocklist.yaml")

# Where each file goes, relative to the root.
SYSTEM_UNIT_PATH = Path("etc/systemd/system") / SYSTEM_UNIT
TRAY_UNIT_PATH = Path("etc/systemd/user") / TRAY_UNIT
TRAY_AUTOSTART_PATH = Path("etc/xdg/autostart") / TRAY_AUTOSTART
CUTTER_UNIT_PATH = Path("etc/systemd/system") / CUTTER_UNIT
CUTTER_PATH_UNIT_PATH = Path("etc/systemd/system") / CUTTER_PATH_UNIT
EXECWATCH_UNIT_PATH = Path("etc/systemd/system") / EXECWATCH_UNIT
NETWORK_UNIT_PATHS = tuple(Path("etc/systemd/system") / name for name in NETWORK_UNITS)
OPTIONAL_UNIT_PATHS = tuple(Path("etc/systemd/system") / name for name in OPTIONAL_UNITS)
SYSUSERS_PATH = Path("etc/sysusers.d/detoxd.conf")
CONFIG_DIR = Path("etc/detoxd")
STATE_DIR = Path("var/lib/detoxd")
EVIDENCE_DIR = Path("var/log/detoxd")  # the detoxes' ledger and a state copy (LogsDirectory=)
# Units shipped by the Debian package (dh_installsystemd; Debian 12 still uses /lib).
PACKAGED_UNIT_DIRS = (Path("lib/systemd/system"), Path("usr/lib/systemd/system"))
PACKAGED_EXECUTABLE = Path("/usr/bin/detoxd")
# ConfigurationDirectory= in detoxd.service creates these for the browser policies; each is
# removed on uninstall when empty, with its parents up to (not including) these stops.
BROWSER_POLICY_DIRS = (
    Path("etc/firefox/policies"),
    Path("etc/opt/chrome/policies/managed"),
    Path("etc/chromium/policies/managed"),
    Path("etc/brave/policies/managed"),
    Path("etc/opt/edge/policies/managed"),
    Path("etc/opt/vivaldi/policies/managed"),
    Path("etc/vivaldi/policies/managed"),
    Path("etc/chromium-browser/policies/managed"),  # the Chromium snap reads this one
    Path("etc/chromium/native-messaging-hosts"),  # the extension's native host (Chromium, Chrome)
    Path("etc/opt/chrome/native-messaging-hosts"),
)
_POLICY_DIR_STOPS = (Path("etc"), Path("etc/opt"))
# Firefox's system-wide native-messaging hosts: ReadWritePaths= needs it to exist (the Debian
# package ships it; a source install makes it, and its uninstall removes it again when empty).
FIREFOX_HOST_DIR = Path(firefoxext.HOST_DIR)
SOURCE_INSTALL_HINT = (
    "install detoxd where only root can change it instead: the Debian package "
    "(`scripts/build-deb`, then `sudo apt install ./dist/detoxd_*_all.deb`; see the README) or, "
    "from a checkout, `sudo scripts/install-system --now` (a root-owned venv in /opt/detoxd)"
)

# The executable named in the shipped files; replaced by the real one on install.
TEMPLATE_EXECUTABLE = str(PACKAGED_EXECUTABLE)
# Characters that need no quoting in a unit's Exec line nor in a desktop entry's Exec key.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._+@/-]*")
# ProtectHome=yes hides these; an executable installed below one needs an exception.
HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))
_SOURCE_UNIT_DIR = Path(__file__).resolve().parent.parent / "systemd"


class InstallError(Exception):
    """Installing or uninstalling cannot proceed; the message says why."""


class UnsafeCode(InstallError):
    """The unit would run code that someone other than root can change."""

    def __init__(self, executable: Path, unsafe: Sequence[codetrust.Unsafe]) -> None:
        shown = [f"  {problem}" for problem in unsafe[:10]]
        if len(unsafe) > 10:
            shown.append(f"  ... and {len(unsafe) - 10} more")
        super().__init__(
            f"refusing to install a root service that runs {executable}: its code can be "
            "changed by someone other than root, who would become root at the next restart:\n"
            + "\n".join(shown) + "\n" + SOURCE_INSTALL_HINT
        )
        self.unsafe = list(unsafe)


@dataclass(frozen=True)
class Bundle:
    """The texts that get installed: unit templates and default config files."""

    system_unit: str
    tray_unit: str
    tray_autostart: str
    config: Mapping[str, str]  # file name in /etc/detoxd -> default text
    cutter_unit: str = field(default_factory=lambda: _unit_template(CUTTER_UNIT))
    cutter_path_unit: str = field(default_factory=lambda: _unit_template(CUTTER_PATH_UNIT))
    execwatch_unit: str = field(default_factory=lambda: _unit_template(EXECWATCH_UNIT))
    network_units: Mapping[str, str] = field(
        default_factory=lambda: {name: _unit_template(name) for name in OPTIONAL_UNITS})
    network_sysusers: str = field(default_factory=lambda: _unit_template(NETWORK_SYSUSERS))

    @classmethod
    def load(cls) -> Bundle:
        """Read from package data ``detoxd/data``; unit files fall back to ``systemd/`` of a
        source checkout (editable installs)."""
        return cls(
            system_unit=_unit_template(SYSTEM_UNIT),
            tray_unit=_unit_template(TRAY_UNIT),
            tray_autostart=_unit_template(TRAY_AUTOSTART),
            config={name: _package_data(name) for name in CONFIG_FILES},
        )


@dataclass
class _Report:
    """Collects human lines and remembers whether anything changed."""

    lines: list[str] = field(default_factory=list)
    changed: bool = False

    def did(self, line: str) -> None:
        self.lines.append(line)
        self.changed = True

    def note(self, line: str) -> None:
        self.lines.append(line)


def find_executable() -> Path:
    """The ``detoxd`` entry point of the running installation (pip, pipx or venv).

    The venv's bin directory comes first because it belongs to the interpreter running this
    code; ``sys.executable`` is not resolved, since that would leave the venv."""
    candidates = [Path(sys.executable).parent / "detoxd", Path(sys.argv[0])]
    on_path = shutil.which("detoxd")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.name == "detoxd" and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    raise InstallError("cannot find the detoxd executable; pass its path explicitly")


def render(template: str, executable: Path) -> str:
    """Put ``executable`` into every Exec line of a unit or desktop entry."""
    _check_plain_path(executable)

    def substitute(line: str) -> str:
        if line.startswith(("ExecStart=", "ExecReload=", "Exec=")):
            return line.replace(TEMPLATE_EXECUTABLE, str(executable))
        return line

    return "".join(substitute(line) for line in template.splitlines(keepends=True))


def render_system_unit(template: str, executable: Path, home_paths: Sequence[Path] = ()) -> str:
    """The system unit for ``executable``. ``home_paths`` (see :func:`home_paths_needed`) are
    made visible read-only inside an otherwise empty /home, /root and /run/user."""
    text = render(template, executable)
    if not home_paths:
        return text
    for path in home_paths:
        _check_plain_path(path)
    exception = (
        "# detoxd is installed in a home directory: show only that, read-only.\n"
        "ProtectHome=tmpfs\n"
        f"BindReadOnlyPaths={' '.join(str(path) for path in home_paths)}\n"
    )
    if "\nProtectHome=yes\n" not in text:
        raise InstallError("the unit template has no ProtectHome=yes line to relax")
    return text.replace("\nProtectHome=yes\n", "\n" + exception, 1)


def home_paths_needed(
    executable: Path, home_roots: Sequence[Path] = HOME_ROOTS, extra: Sequence[Path] = ()
) -> list[Path]:
    """Directories below ``home_roots`` that running ``executable`` needs: its installation
    prefix (a pipx/venv root, or ~/.local for ``pip install --user``), the prefix of the
    interpreter named by its ``#!`` line (a pyenv Python, say) and ``extra`` code directories
    (an editable install's checkout). Only root-owned code gets here (see :func:`check_code`)."""
    script = executable.resolve()
    needed = [_install_prefix(script), *(path.resolve() for path in extra)]
    interpreter = codetrust.shebang_interpreter(script)
    if interpreter is not None:
        needed.append(interpreter.resolve().parent.parent)
    in_home = [path for path in needed if any(path.is_relative_to(r) for r in home_roots)]
    outermost = [p for p in in_home if not any(p != o and p.is_relative_to(o) for o in in_home)]
    return sorted(set(outermost))


def install(
    root: Path,
    *,
    now: bool,
    executable: Path,
    bundle: Bundle | None = None,
    systemctl: str = "systemctl",
    trusted_uids: frozenset[int] = frozenset({0}),
) -> list[str]:
    """Put detoxd's files under ``root``, enable the service and the tray agent and, with
    ``now`` on the running system, start the service. Never overwrites existing config.
    Raises :class:`UnsafeCode` when anyone outside ``trusted_uids`` can change the code."""
    bundle = Bundle.load() if bundle is None else bundle
    if not executable.is_absolute():
        raise InstallError(f"the executable path must be absolute: {executable}")
    code_dirs = check_code(executable, trusted_uids)
    # The real file: a pipx symlink in ~/.local/bin would be hidden by the sandbox.
    executable = executable.resolve()
    report = _Report()
    packaged = packaged_unit(root)
    if packaged is not None and executable == PACKAGED_EXECUTABLE:
        report.note(f"{SYSTEM_UNIT}, {TRAY_UNIT} and {CUTTER_PATH_UNIT} come with the Debian package "
                    f"(/{packaged})")
        units_changed = False
    else:
        units_changed = _install_units(root, executable, bundle, report, code_dirs)
        if packaged is not None:
            report.note(f"/{SYSTEM_UNIT_PATH} overrides the packaged /{packaged}")
    _install_config(root, bundle.config, report)
    if not (root / FIREFOX_HOST_DIR).is_dir():
        (root / FIREFOX_HOST_DIR).mkdir(mode=0o755, parents=True)
        report.did(f"created /{FIREFOX_HOST_DIR} (Firefox finds detoxd's native host there)")

    manager = _Systemctl(root, systemctl)
    if units_changed:
        _create_network_user(root, report)
        if not any(manager.is_enabled(name) for name in NETWORK_UNITS):
            report.note(f"{', '.join(NETWORK_UNITS)}: installed, not enabled (each needs a "
                        "network: config first; then `systemctl enable --now` the engine's unit)")
        if not manager.is_enabled(MAIL_UNIT):
            report.note(f"{MAIL_UNIT}: installed, not enabled (it needs a mail: config first; then "
                        f"`systemctl enable --now {MAIL_UNIT}`)")
    if units_changed and manager.live and manager.booted:
        manager.run("daemon-reload")
    if not manager.is_enabled(SYSTEM_UNIT):
        manager.run("enable", SYSTEM_UNIT)
        report.did(f"enabled {SYSTEM_UNIT}: it starts at boot")
    if not manager.is_enabled(TRAY_UNIT, "--global"):
        manager.run("--global", "enable", TRAY_UNIT)
        report.did(f"enabled {TRAY_UNIT} for every user's graphical session")
    if not manager.is_enabled(CUTTER_PATH_UNIT):
        manager.run("enable", *(["--now"] if now and manager.live and manager.booted else []),
                    CUTTER_PATH_UNIT)
        report.did(f"enabled {CUTTER_PATH_UNIT}: open connections are closed when sites are blocked")
    if not manager.is_enabled(EXECWATCH_UNIT):
        manager.run("enable", *(["--now"] if now and manager.live and manager.booted else []),
                    EXECWATCH_UNIT)
        report.did(f"enabled {EXECWATCH_UNIT}: blocked apps are closed as they start")
    if now:
        _start(manager, restart=units_changed, report=report)
    if not report.changed:
        report.note(f"nothing changed: detoxd is already installed in {root}")
    return report.lines


def check_code(executable: Path, trusted_uids: frozenset[int] = frozenset({0})) -> list[Path]:
    """The directories ``executable`` loads code from, after making sure that nobody outside
    ``trusted_uids`` can change any of them (:class:`UnsafeCode` otherwise)."""
    try:
        layout, unsafe = codetrust.check_executable(executable, trusted_uids=trusted_uids)
    except codetrust.CodeTrustError as error:
        raise InstallError(str(error)) from error
    if unsafe or layout is None:
        raise UnsafeCode(executable, unsafe)
    return list(layout.code_dirs)


def packaged_unit(root: Path) -> Path | None:
    """Where the Debian package put detoxd.service, relative to ``root``; None if it did not."""
    for directory in PACKAGED_UNIT_DIRS:
        if (root / directory / SYSTEM_UNIT).is_file():
            return directory / SYSTEM_UNIT
    return None


def uninstall(root: Path, *, purge: bool, systemctl: str = "systemctl") -> list[str]:
    """Stop (on the running system) and disable the service and the tray agent, then remove
    their files and the empty browser policy directories; with ``purge`` also the config and
    the state. The Debian package's own files are left to apt (the lines say so)."""
    report = _Report()
    manager = _Systemctl(root, systemctl)
    packaged = packaged_unit(root)
    if (root / SYSTEM_UNIT_PATH).exists() or packaged is not None:
        if manager.live and manager.is_active(SYSTEM_UNIT):
            manager.run("stop", SYSTEM_UNIT)
            report.did(f"stopped {SYSTEM_UNIT}")
        if manager.is_enabled(SYSTEM_UNIT):
            manager.run("disable", SYSTEM_UNIT)
            report.did(f"disabled {SYSTEM_UNIT}")
    execwatch_installed = (root / EXECWATCH_UNIT_PATH).exists() or packaged is not None
    if execwatch_installed and manager.is_enabled(EXECWATCH_UNIT):
        manager.run("disable", *(["--now"] if manager.live and manager.booted else []), EXECWATCH_UNIT)
        report.did(f"disabled {EXECWATCH_UNIT}")
    cutter_installed = (root / CUTTER_PATH_UNIT_PATH).exists() or packaged is not None
    if cutter_installed and manager.is_enabled(CUTTER_PATH_UNIT):
        manager.run("disable", *(["--now"] if manager.live and manager.booted else []), CUTTER_PATH_UNIT)
        report.did(f"disabled {CUTTER_PATH_UNIT}")
    for name, relative in zip(OPTIONAL_UNITS, OPTIONAL_UNIT_PATHS, strict=True):
        if ((root / relative).exists() or packaged is not None) and manager.is_enabled(name):
            manager.run("disable", *(["--now"] if manager.live and manager.booted else []), name)
            report.did(f"disabled {name}")
    tray_installed = (root / TRAY_UNIT_PATH).exists() or packaged is not None
    if tray_installed and manager.is_enabled(TRAY_UNIT, "--global"):
        manager.run("--global", "disable", TRAY_UNIT)
        report.did(f"disabled {TRAY_UNIT} (running tray agents exit at logout)")
    removed = remove_files(root, purge=purge)
    for line in removed:
        report.did(line)
    if removed and manager.live and manager.booted:
        manager.run("daemon-reload")
    if not purge and (root / CONFIG_DIR).exists():
        report.note(f"kept /{CONFIG_DIR}: your configuration (--purge removes it)")
    if not purge and (root / STATE_DIR).exists():
        report.note(f"kept /{STATE_DIR}: the ended detox's state (--purge removes it)")
    if any("sysusers" in line for line in removed):
        report.note("kept the system users detoxd-network and detoxd-mail (system users are never deleted: "
                    "files it owned would pass to a later user of that uid)")
    if packaged is not None:
        report.note(f"the Debian package's files stay (/{packaged}, /usr/bin/detoxd): "
                    "`sudo apt purge detoxd` removes them with the config and the state")
    if not report.changed:
        report.note(f"nothing changed: detoxd is not installed in {root}")
    return report.lines


def remove_files(root: Path, *, purge: bool) -> list[str]:
    """Delete the installed unit and autostart files; with ``purge`` also /etc/detoxd,
    /var/lib/detoxd and /var/log/detoxd. Touches nothing else (not /etc/hosts). Returns what it
    removed."""
    removed = []
    for relative in (SYSTEM_UNIT_PATH, TRAY_UNIT_PATH, TRAY_AUTOSTART_PATH, CUTTER_UNIT_PATH,
                     CUTTER_PATH_UNIT_PATH, EXECWATCH_UNIT_PATH, *OPTIONAL_UNIT_PATHS, SYSUSERS_PATH):
        path = root / relative
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(f"removed /{relative}")
    removed += remove_empty_policy_dirs(root)
    for directory in (root / FIREFOX_HOST_DIR, (root / FIREFOX_HOST_DIR).parent):  # (and /usr/lib/mozilla)
        if (directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir())
                and not _owned_by_a_package(root, directory)):
            directory.rmdir()
            removed.append(f"removed empty /{directory.relative_to(root)}")
    if purge:
        for relative in (CONFIG_DIR, STATE_DIR, EVIDENCE_DIR):
            path = root / relative
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                removed.append(f"removed /{relative}")
    return removed


def remove_empty_policy_dirs(root: Path) -> list[str]:
    """Remove the browser policy directories systemd created for the service, and their
    parents, where they are empty and no Debian package owns them (an installed browser's
    directory stays). A policy file detoxd put there is removed when the detox ends."""
    removed = []
    stops = {root / stop for stop in _POLICY_DIR_STOPS}
    for relative in BROWSER_POLICY_DIRS:
        path = root / relative
        while path not in stops and path.is_relative_to(root / "etc"):
            if path.is_symlink() or not path.is_dir() or any(path.iterdir()):
                break
            if _owned_by_a_package(root, path):
                break
            path.rmdir()
            removed.append(f"removed empty /{path.relative_to(root)}")
            path = path.parent
    return removed


def _owned_by_a_package(root: Path, path: Path) -> bool:
    admin_dir = root / "var/lib/dpkg"
    if shutil.which("dpkg-query") is None or not admin_dir.is_dir():
        return False
    result = subprocess.run(
        ["dpkg-query", f"--admindir={admin_dir}", "--search", f"/{path.relative_to(root)}"],
        capture_output=True, text=True, check=False,
    )
    return result.returncode == 0


def _install_units(
    root: Path, executable: Path, bundle: Bundle, report: _Report, code_dirs: Sequence[Path]
) -> bool:
    home_paths = home_paths_needed(executable, extra=code_dirs)
    system_unit = render_system_unit(bundle.system_unit, executable, home_paths)
    wanted = {
        SYSTEM_UNIT_PATH: system_unit,
        TRAY_UNIT_PATH: render(bundle.tray_unit, executable),
        TRAY_AUTOSTART_PATH: render(bundle.tray_autostart, executable),
        CUTTER_UNIT_PATH: render(bundle.cutter_unit, executable),
        CUTTER_PATH_UNIT_PATH: bundle.cutter_path_unit,
        EXECWATCH_UNIT_PATH: render(bundle.execwatch_unit, executable),
        **{path: render(bundle.network_units[name], executable)
           for name, path in zip(OPTIONAL_UNITS, OPTIONAL_UNIT_PATHS, strict=True)},
        SYSUSERS_PATH: bundle.network_sysusers,
    }
    changed = False
    for relative, text in wanted.items():
        if _write_if_changed(root / relative, text):
            report.did(f"wrote /{relative}")
            changed = True
    return changed


def _create_network_user(root: Path, report: _Report) -> None:
    """Create detoxd-network from the sysusers file just written (systemd-sysusers(8), also
    offline with --root); without systemd-sysusers the unit fails until the user exists."""
    program = shutil.which("systemd-sysusers", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if program is None:
        report.note("systemd-sysusers is not installed: create the users detoxd-network and detoxd-mail "
                    f"(see /{SYSUSERS_PATH}) before enabling detoxd-network.service")
        return
    root_option = [] if root.resolve() == Path("/") else [f"--root={root}"]
    # Fixed arguments, no shell.
    result = subprocess.run([program, *root_option, str(root / SYSUSERS_PATH)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"systemd-sysusers {SYSUSERS_PATH} failed: {result.stderr.strip()}")


def _install_config(root: Path, config: Mapping[str, str], report: _Report) -> None:
    for name, text in config.items():
        relative = CONFIG_DIR / name
        if _write_if_missing(root / relative, text):
            report.did(f"wrote default /{relative}")


def _start(manager: _Systemctl, *, restart: bool, report: _Report) -> None:
    if not manager.live:
        report.note(f"not started: --now applies only to the running system, not {manager.root}")
    elif not manager.booted:
        report.note("not started: systemd is not running on this system")
    elif restart and manager.is_active(SYSTEM_UNIT):
        manager.run("restart", SYSTEM_UNIT)
        report.did(f"restarted {SYSTEM_UNIT} with the new unit")
    elif not manager.is_active(SYSTEM_UNIT):
        manager.run("start", SYSTEM_UNIT)
        report.did(f"started {SYSTEM_UNIT}")


@dataclass(frozen=True)
class _Systemctl:
    """systemctl on the running system (root ``/``) or offline on a directory tree."""

    root: Path
    command: str = "systemctl"

    @property
    def live(self) -> bool:
        return self.root.resolve() == Path("/")

    @property
    def booted(self) -> bool:
        """sd_booted(3): is systemd the running init?"""
        return Path("/run/systemd/system").is_dir()

    def run(self, *args: str) -> str:
        result = self._call(*args)
        if result.returncode != 0:
            raise InstallError(f"systemctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def is_enabled(self, unit: str, *options: str) -> bool:
        return self._call(*options, "is-enabled", unit).stdout.strip() == "enabled"

    def is_active(self, unit: str) -> bool:
        return self.booted and self._call("is-active", unit).stdout.strip() == "active"

    def _call(self, *args: str) -> subprocess.CompletedProcess[str]:
        root_option = [] if self.live else [f"--root={self.root}"]
        # Arguments are fixed unit names and a path, passed as a list: no shell involved.
        return subprocess.run(
            [self.command, *root_option, *args], capture_output=True, text=True, check=False
        )


def _write_if_changed(path: Path, text: str) -> bool:
    """Atomically replace ``path`` with ``text`` (mode 0644) unless it already holds it."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    replace_file(path, text.encode(), mode=0o644)
    return True


def _write_if_missing(path: Path, text: str) -> bool:
    """Create ``path`` with ``text``; an existing file (the user's) is left untouched."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return True


def _check_plain_path(path: Path) -> None:
    """Paths go unquoted into unit files and desktop entries, which run as root: refuse
    anything that would need quoting or could be read as a specifier (%) or variable ($)."""
    if not _PLAIN_PATH.fullmatch(str(path)):
        raise InstallError(
            f"unsupported path {str(path)!r}: install detoxd to a path made of letters, "
            "digits and ._+@/- only"
        )


def _install_prefix(script: Path) -> Path:
    """The venv root or prefix (``~/.local``) of a script in its ``bin/`` directory."""
    return script.parent.parent


def _unit_template(name: str) -> str:
    try:
        return _package_data(name)
    except InstallError:
        source = _SOURCE_UNIT_DIR / name
        if source.is_file():
            return source.read_text()
        raise


def _package_data(name: str) -> str:
    resource = resources.files("detoxd") / "data" / name
    try:
        return resource.read_text()
    except (FileNotFoundError, NotADirectoryError) as error:
        raise InstallError(f"package data detoxd/data/{name} is missing") from error

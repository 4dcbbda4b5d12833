"""This checkout's Python, runnable by any user wherever the checkout is.

Tests run the CLI, the tray and small clients as real unprivileged users (nobody, uid 1000).
Those users cannot read a clone in a private directory, e.g. /root/detoxd (/root is 0700), so
they are never given the checkout's own paths: the first test that needs it builds, once per
session, a world-readable copy in /tmp — a venv on the same base interpreter, this venv's
site-packages linked into it (hard links where the file is already world-readable, copies
otherwise) and a copy of ``detoxd/`` — and ``remove()`` (called from ``pytest_sessionfinish``)
deletes it. It never skips: a copy another user still cannot run is an error that says why.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import venv
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
# Other processes (e.g. a scenario script run inside a namespace) find the copy here.
ENVIRONMENT_VARIABLE = "DETOXD_TEST_USER_PYTHON"

_built: Path | None = None


def user_python() -> str:
    """The interpreter (with detoxd importable) that any user can run; built on first use."""
    global _built
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return os.environ[ENVIRONMENT_VARIABLE]
    if _built is None:
        _built = _build()
        os.environ[ENVIRONMENT_VARIABLE] = str(_python_in(_built))
    return str(_python_in(_built))


def python_for(user: int | None) -> str:
    """``sys.executable`` for ourselves, the world-readable copy for another user."""
    return sys.executable if user is None or user == os.geteuid() else user_python()


def remove() -> None:
    global _built
    if _built is not None:
        shutil.rmtree(_built, ignore_errors=True)
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
        _built = None


def _python_in(root: Path) -> Path:
    return root / "venv" / "bin" / "python"


def _build() -> Path:
    root = Path(tempfile.mkdtemp(prefix="detoxd-test-python-"))
    try:
        root.chmod(0o755)
        builder = venv.EnvBuilder(system_site_packages=_includes_system_site_packages(),
                                  symlinks=True, with_pip=False)
        builder.create(root / "venv")
        target = Path(subprocess.run([str(_python_in(root)), "-c", "import sysconfig; "
                                      "print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
        _link_tree(Path(sysconfig.get_paths()["purelib"]), target, skip=_editable_install)
        shutil.copytree(REPO_ROOT / "detoxd", target / "detoxd",
                        ignore=shutil.ignore_patterns("__pycache__"))
        _open_to_all(root)
        _check_runnable(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def _includes_system_site_packages() -> bool:
    config = Path(sys.prefix) / "pyvenv.cfg"
    if not config.exists():
        return True  # not a venv: the system interpreter sees its site packages
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


def _editable_install(name: str) -> bool:
    """The editable install points at the checkout, which is exactly what must not be used."""
    return name.startswith("__editable__") or (name.startswith("detoxd-") and name.endswith(".dist-info"))


def _link_tree(source: Path, target: Path, skip: Callable[[str], bool] | None) -> None:
    for entry in source.iterdir():
        if (skip is not None and skip(entry.name)) or entry.name == "__pycache__":
            continue
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            destination.mkdir(exist_ok=True)
            _link_tree(entry, destination, None)
        elif entry.is_symlink():
            destination.symlink_to(os.readlink(entry))
        else:
            _link_or_copy(entry, destination)


def _link_or_copy(source: Path, destination: Path) -> None:
    # A hard link shares the inode: only for files already readable by all, so that opening the
    # copy up never changes a mode of the checkout's own files.
    if source.stat().st_mode & stat.S_IROTH:
        try:
            os.link(source, destination)
            return
        except OSError:  # another file system, or links not allowed here
            pass
    shutil.copy2(source, destination)


def _open_to_all(root: Path) -> None:
    """Readable (and where it was executable, executable) by every user, whatever the umask."""
    for directory, _names, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode) and not mode & stat.S_IROTH:
                path.chmod(mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0))


def _check_runnable(root: Path) -> None:
    if os.geteuid() != 0:
        return  # only root can run something as another user; the tests that do say so
    result = subprocess.run([str(_python_in(root)), "-c", "import detoxd.cli"], user=NOBODY, group=NOBODY,
                            extra_groups=[], cwd="/", capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"uid {NOBODY} cannot run the world-readable copy in {root} (is the base "
                           f"interpreter {sys.base_prefix} readable by all?):\n{result.stderr}")

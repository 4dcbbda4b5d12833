"""Is the code a root service would run changeable by anyone but root?

``detoxd install`` refuses to write a unit whose code a non-root user could change, as sudo
refuses a sudoers file: otherwise anything running as that user becomes root at the next
restart of the service. "The code" is everything the unit's interpreter would load:

- the script named in ``ExecStart=`` and the interpreter named by its ``#!`` line;
- every directory on that interpreter's ``sys.path`` (recursively: a writable subdirectory
  of site-packages is as bad as a writable site-packages), and ``.pth`` additions;
- where the ``detoxd`` package is really imported from: an editable install maps it to a
  source checkout (setuptools' ``MAPPING``, or a ``.pth`` line);
- every directory on the way to each of those, symlinks followed (a writable parent can swap
  a root-owned child).

A path is unsafe when it is not owned by root, is group-writable by a group other than root's,
is world-writable (a sticky world-writable *parent* such as /tmp is fine: the sticky bit keeps
others from renaming root's entries), or carries a POSIX ACL with extra entries.

The interpreter is run (as root, to ask for its ``sys.path``) only after the interpreter
itself and the directories it reads before any ``.pth`` file is processed have been found
safe; ``-S`` keeps site-packages' ``.pth`` files from running before they are checked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Size of an access ACL holding only the three entries that mirror the mode bits
# (4-byte header + 3 entries of 8 bytes): anything longer names extra users or groups.
_MINIMAL_ACL_SIZE = 28
_MAX_SYMLINKS = 40
# The unit's environment: no PYTHONPATH, no HOME (site falls back to root's pw entry), and
# the working directory / (run from elsewhere, `-c` would put that directory on sys.path).
_CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
# Asked with -S: the directories site.main() would add, for the venv and its base Python
# (a superset when system site packages are off: stricter, never looser).
_SITE_QUERY = """
import glob, json, os, site, sys
prefixes = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
# Under -S, sys.prefix is the base Python's: site.venv() would switch it to the venv.
bin_dir = os.path.dirname(os.path.abspath(sys.executable))
venvs = [d for d in (bin_dir, os.path.dirname(bin_dir)) if os.path.isfile(os.path.join(d, "pyvenv.cfg"))]
extra = [p for v in venvs for p in glob.glob(os.path.join(v, "lib*", "python*", "site-packages"))]
print(json.dumps({
    "path": sys.path,
    "site": site.getsitepackages(venvs + prefixes) + extra,
    "user_site": site.getusersitepackages(),
}))
"""
# Asked without -S, once the above is known to be safe: the real sys.path (.pth additions)
# and where packages really come from (editable installs map them elsewhere).
_IMPORT_QUERY = """
import importlib.util, json, sys
mapped = []
for finder in sys.meta_path:
    owner = finder if isinstance(finder, type) else type(finder)  # setuptools adds the class
    module = sys.modules.get(getattr(owner, "__module__", ""), None)
    mapping = getattr(module, "MAPPING", None) if module else None
    if isinstance(mapping, dict):
        mapped += [str(value) for value in mapping.values()]
spec = importlib.util.find_spec("detoxd")
if spec is not None:
    mapped += list(spec.submodule_search_locations or [])
    if spec.origin:
        mapped.append(spec.origin)
print(json.dumps({"path": sys.path, "mapped": mapped}))
"""


@dataclass(frozen=True)
class Unsafe:
    """A path that someone other than root can change, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass(frozen=True)
class CodeLayout:
    """Where the code of one executable comes from."""

    script: Path
    interpreter: Path | None
    code_dirs: tuple[Path, ...]  # sys.path entries and mapped package locations that exist


class CodeTrustError(Exception):
    """The executable's code cannot even be inspected (no #! line, the interpreter fails)."""


def check_executable(executable: Path, *, trusted_uids: frozenset[int] = frozenset({0})
) -> tuple[CodeLayout | None, list[Unsafe]]:
    """Everything unsafe about running ``executable`` as a root service. Stops early (layout
    ``None``) when the script or its interpreter is unsafe: its sys.path is not asked then."""
    unsafe = list(unsafe_chain(executable, trusted_uids))
    interpreter = shebang_interpreter(executable)
    if interpreter is not None:
        unsafe += unsafe_chain(interpreter, trusted_uids)
    if unsafe or interpreter is None:
        return None, unsafe
    before_site = _ask(interpreter, ["-E", "-S", "-c", _SITE_QUERY])
    first_dirs = _existing([*_strings(before_site["path"]), *_strings(before_site["site"]),
                             *_strings([before_site["user_site"]])])
    unsafe += unsafe_trees(first_dirs, trusted_uids)
    if unsafe:
        return None, unsafe
    after_site = _ask(interpreter, ["-E", "-c", _IMPORT_QUERY])
    code_dirs = _existing([*map(str, first_dirs), *_strings(after_site["path"])])
    code_dirs += [d for d in _existing(after_site["mapped"], modules=True) if d not in code_dirs]
    unsafe += unsafe_trees([d for d in code_dirs if d not in first_dirs], trusted_uids)
    # sys.path[0] is the script's directory (e.g. /usr/bin): its entries are importable.
    unsafe += unsafe_entries(executable.resolve().parent, trusted_uids)
    return CodeLayout(executable, interpreter, tuple(code_dirs)), unsafe


def shebang_interpreter(script: Path) -> Path | None:
    """The absolute interpreter of a ``#!`` line; None for a binary or a relative name."""
    try:
        with script.open("rb") as file:
            first_line = file.readline(4096)
    except OSError:
        return None
    if not first_line.startswith(b"#!"):
        return None
    words = first_line[2:].decode(errors="replace").split()
    if not words or not words[0].startswith("/"):
        return None
    if Path(words[0]).name == "env":
        raise CodeTrustError(f"{script}: its #! line runs {' '.join(words)}, which depends on PATH; "
                             "a root service needs an absolute interpreter")
    return Path(words[0])


def traversed(path: Path) -> list[Path]:
    """Every path the kernel looks at to open ``path``: each ancestor, each symlink, and
    the same for every symlink's target, in order."""
    seen: list[Path] = [Path("/")]
    pending = list(Path(os.path.abspath(path)).parts[1:])
    current = Path("/")
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
            continue
        candidate = current / part
        seen.append(candidate)
        if candidate.is_symlink():
            links += 1
            if links > _MAX_SYMLINKS:
                raise CodeTrustError(f"{path}: too many levels of symbolic links")
            target = Path(os.readlink(candidate))
            pending = list((target if target.is_absolute() else current / target).parts[1:]) + pending
            current = Path("/")
        else:
            current = candidate
    return seen


def unsafe_chain(path: Path, trusted_uids: frozenset[int] = frozenset({0})) -> Iterator[Unsafe]:
    """Problems on the way to ``path`` and with ``path`` itself."""
    chain = traversed(path)
    for index, step in enumerate(chain):
        leaf = index == len(chain) - 1
        problem = _problem(step, trusted_uids, sticky_ok=not leaf)
        if problem is not None:
            yield problem


def unsafe_trees(roots: Iterable[Path], trusted_uids: frozenset[int] = frozenset({0})) -> list[Unsafe]:
    """Problems with each root's chain and with everything below it (symlinks not followed
    inside a tree: their targets are loaded from wherever they point, so those are checked)."""
    problems: list[Unsafe] = []
    for root in roots:
        problems += unsafe_chain(root, trusted_uids)
        for entry in _walk(root.resolve()):
            problem = _problem(entry, trusted_uids, sticky_ok=False)
            if problem is not None:
                problems.append(problem)
            if entry.is_symlink() and entry.exists():
                problems += unsafe_chain(entry, trusted_uids)
    return _unique(problems)


def unsafe_entries(directory: Path, trusted_uids: frozenset[int] = frozenset({0})) -> list[Unsafe]:
    """The directory's chain and its direct entries (not recursive)."""
    problems = list(unsafe_chain(directory, trusted_uids))
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return problems
    for entry in entries:
        problem = _problem(entry, trusted_uids, sticky_ok=False)
        if problem is not None:
            problems.append(problem)
    return problems


def _problem(path: Path, trusted_uids: frozenset[int], *, sticky_ok: bool) -> Unsafe | None:
    try:
        status = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(status.st_mode):
        return None  # a symlink's own mode means nothing; its directory and target are checked
    if status.st_uid not in trusted_uids:
        return Unsafe(path, f"owned by {_user_name(status.st_uid)}")
    mode = status.st_mode
    if mode & stat.S_IWOTH and not (sticky_ok and stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
        return Unsafe(path, "writable by everyone")
    if mode & stat.S_IWGRP and status.st_gid != 0:
        return Unsafe(path, f"writable by group {_group_name(status.st_gid)}")
    if _has_extended_acl(path):
        return Unsafe(path, "has an ACL that may let others write (see getfacl)")
    return None


def _has_extended_acl(path: Path) -> bool:
    try:
        return len(os.getxattr(path, "system.posix_acl_access", follow_symlinks=False)) > _MINIMAL_ACL_SIZE
    except OSError:
        return False  # no ACL, or a file system without ACL support


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for directory, subdirectories, files in os.walk(root):
        base = Path(directory)
        for name in subdirectories + files:
            yield base / name


def _ask(interpreter: Path, arguments: Sequence[str]) -> dict[str, object]:
    try:
        result = subprocess.run([str(interpreter), *arguments], capture_output=True, text=True,
                                env=_CLEAN_ENV, cwd="/", timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CodeTrustError(f"cannot run {interpreter}: {error}") from error
    if result.returncode != 0:
        raise CodeTrustError(f"{interpreter} failed: {result.stderr.strip()[-500:]}")
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def _existing(entries: object, *, modules: bool = False) -> list[Path]:
    """The absolute paths in ``entries`` that exist; with ``modules``, a module file stands
    for its directory (a package's origin ``.../detoxd/__init__.py``)."""
    paths: list[Path] = []
    if not isinstance(entries, Iterable):
        return paths
    for entry in entries:
        if not isinstance(entry, str) or not entry.startswith("/"):
            continue  # "" (the current directory) is not on the path of a script run
        path = Path(entry)
        if modules and path.is_file():
            path = path.parent
        if path.exists() and path not in paths:
            paths.append(path)
    return paths


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _unique(problems: Iterable[Unsafe]) -> list[Unsafe]:
    seen: dict[Path, Unsafe] = {}
    for problem in problems:
        seen.setdefault(problem.path, problem)
    return list(seen.values())


def _user_name(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group_name(gid: int) -> str:
    import grp

    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"

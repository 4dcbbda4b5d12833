"""mako: the ``do-not-disturb`` mode, made to hide notifications for the detox.

mako has no do-not-disturb of its own: a mode does what the user's config says for it, and
Debian ships no config, so switching the mode on alone hides nothing. This back-end therefore
makes sure the config mako reads has ``[mode=do-not-disturb]`` with ``invisible=1``: when the
user's own config says so already it is left alone; otherwise a marked section is appended (the
file is created when there is none), mako reloads it, and the mode is switched on. At the end
exactly that section comes out again (a file detoxd created is removed, with the directories it
created), mako reloads, and the mode is put back as the user had it.

The config mako reads is found from the running server: its ``-c``/``--config`` argument, else
``~/.mako/config`` or ``$XDG_CONFIG_HOME/mako/config`` in its own environment (mako's order).
A symlinked config (dotfiles) is written through the link, so the link stays a link. mako sends
no signal when its modes change; the agent sees ``SetModes`` and ``Reload`` calls by monitoring.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from detoxd.agent.dnd import Backend, Problem, Watch
from detoxd.agent.dnd.bus import DBUS, NOTIFICATIONS_NAME, BusError, address, call, name_owner
from detoxd.durable import replace_file

log = logging.getLogger(__name__)

INTERFACE = "fr.emersion.Mako"
MAKO = address("/fr/emersion/Mako", NOTIFICATIONS_NAME, INTERFACE)
MODE = "do-not-disturb"
SECTION = f"[mode={MODE}]"
BEGIN = "# >>> detoxd: hides notifications during the digital detox; removed when it ends >>>"
END = "# <<< detoxd <<<"
BLOCK = f"{BEGIN}\n{SECTION}\ninvisible=1\n{END}\n"
TRUE_VALUES = ("1", "true")


class MakoConfigError(Exception):
    """The config could not be made to hide notifications; ``problem`` says why and what to do."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.reason)
        self.problem = problem


def config_hides(text: str) -> bool:
    """Whether a mako config makes ``[mode=do-not-disturb]`` invisible (the last word counts)."""
    section, invisible = None, False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == SECTION and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            if key == "invisible":
                invisible = value.lower() in TRUE_VALUES
    return invisible


def add_block(text: str) -> tuple[str, bool]:
    """``text`` with detoxd's section appended, and whether a final newline had to be added."""
    newline = bool(text) and not text.endswith("\n")
    return text + ("\n" if newline else "") + BLOCK, newline


def remove_block(text: str, newline_added: bool) -> str | None:
    """``text`` without detoxd's section (and the newline it added), or None if it is not there."""
    at = text.find(BLOCK)
    if at >= 0:
        rest = text[at + len(BLOCK):]
        # The newline detoxd added goes too, unless the user wrote after the section since.
        start = at - 1 if newline_added and not rest and at > 0 and text[at - 1] == "\n" else at
        return text[:start] + rest
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        return None
    # The user edited inside the section: take out the marked lines, whatever they hold now.
    stop = text.find("\n", end)
    return text[:begin] + (text[stop + 1:] if stop >= 0 else "")


class MakoBackend(Backend):
    name: ClassVar[str] = "mako"
    label: ClassVar[str] = "mako"
    servers: ClassVar[tuple[str, ...]] = ("mako",)
    programs: ClassVar[tuple[str, ...]] = ("mako",)

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._environ = environ  # tests: the environment to use when /proc says nothing

    # ---- the switch ----

    def is_silenced(self) -> bool:
        if MODE not in self._modes():
            return False
        return config_hides(_read(self.config_path()) or "")

    def silence(self) -> None:
        self._make_config_hide()
        modes = self._modes()
        if MODE not in modes:
            call(MAKO, "SetModes", "as", ([*modes, MODE],))

    def unsilence(self) -> None:
        call(MAKO, "SetModes", "as", ([mode for mode in self._modes() if mode != MODE],))

    def prior(self) -> dict[str, Any]:
        return {"silenced": self.is_silenced(), "mode": MODE in self._modes()}

    def restore(self, prior: Mapping[str, Any]) -> None:
        self._take_block_out()
        running = self._running()
        if running:
            self._reload()
            if prior.get("mode", prior.get("silenced")):
                modes = self._modes()
                if MODE not in modes:
                    call(MAKO, "SetModes", "as", ([*modes, MODE],))
            else:
                self.unsilence()

    def watch(self) -> Watch:
        return Watch(calls=tuple({"interface": INTERFACE, "member": member}
                                 for member in ("SetModes", "SetMode", "Reload")))

    def not_silenced(self) -> Problem:
        path = self.config_path()
        return Problem(f"mako's do-not-disturb mode does not hide notifications ({path})",
                       f"add '{SECTION}' and 'invisible=1' to {path}, then run makoctl reload")

    # ---- the config file ----

    def config_path(self) -> Path:
        """The file the running mako reads (or would create: the XDG one)."""
        pid = self._server_pid()
        args = _proc_args(pid)
        explicit = _config_argument(args)
        if explicit is not None:
            cwd = _proc_cwd(pid)
            return Path(explicit) if os.path.isabs(explicit) or cwd is None else cwd / explicit
        environ = _proc_environ(pid) or dict(self._environ if self._environ is not None else os.environ)
        home = Path(environ.get("HOME") or Path.home())
        config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        for candidate in (home / ".mako/config", config_home / "mako/config"):
            if candidate.exists():
                return candidate
        return config_home / "mako/config"

    def _make_config_hide(self) -> None:
        path = self.config_path()
        text = _read(path)
        if text is not None and config_hides(text):
            if not self.undo:
                log.info("%s already hides notifications in mako's do-not-disturb mode", path)
            return
        new_text, newline = add_block(text or "")
        target = path.resolve() if text is not None else path
        try:
            created_dirs = _make_parents(target.parent)
            _write(target, new_text)
        except OSError as error:
            raise MakoConfigError(Problem(
                f"cannot add detoxd's do-not-disturb section to mako's config {path}: "
                f"{error.strerror or error}",
                f"add '{SECTION}' and 'invisible=1' to {path}, then run makoctl reload")) from error
        self.undo = {"path": str(target), "created": text is None, "created_dirs": created_dirs,
                     "newline_added": newline}
        log.info("added a do-not-disturb section to mako's config %s", target)
        try:
            self._reload()
        except BusError as error:
            self._take_block_out()
            with contextlib.suppress(BusError):
                self._reload()
            raise MakoConfigError(Problem(
                f"mako cannot load {path} ({error}); detoxd took its section out again",
                f"fix the error makoctl reload shows, or add '{SECTION}' and 'invisible=1' to {path} "
                "yourself")) from error

    def _take_block_out(self) -> None:
        undo, self.undo = self.undo, {}
        if not undo.get("path"):
            return
        path = Path(undo["path"])
        text = _read(path)
        if text is None:
            return
        remaining = remove_block(text, bool(undo.get("newline_added")))
        if remaining is None:
            log.warning("detoxd's section is no longer in %s: left as it is", path)
            return
        if undo.get("created") and not remaining.strip():
            path.unlink()
            for directory in reversed(undo.get("created_dirs") or []):
                with contextlib.suppress(OSError):
                    Path(directory).rmdir()  # only when empty: never remove what the user put there
        else:
            _write(path, remaining)
        log.info("took detoxd's do-not-disturb section out of %s", path)

    # ---- mako on the bus ----

    def _modes(self) -> list[str]:
        return [str(mode) for mode in call(MAKO, "ListModes")[0]]

    def _reload(self) -> None:
        call(MAKO, "Reload")

    def _running(self) -> bool:
        try:
            self._modes()
        except BusError:
            return False
        return True

    def _server_pid(self) -> int | None:
        owner = name_owner(NOTIFICATIONS_NAME)
        if owner is None:
            return None
        try:
            return int(call(DBUS, "GetConnectionUnixProcessID", "s", (owner,))[0])
        except BusError:
            return None


def _config_argument(args: list[str]) -> str | None:
    for index, arg in enumerate(args):
        if arg in ("-c", "--config") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--config="):
            return arg.removeprefix("--config=")
        if arg.startswith("-c") and len(arg) > 2:
            return arg[2:]
    return None


def _proc_args(pid: int | None) -> list[str]:
    if pid is None:
        return []
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part][1:]
    except OSError:
        return []


def _proc_cwd(pid: int | None) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) if pid is not None else None
    except OSError:
        return None


def _proc_environ(pid: int | None) -> dict[str, str] | None:
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (entry.decode(errors="replace").split("=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {key: value for key, value in pairs}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _make_parents(directory: Path) -> list[str]:
    """Create ``directory`` and missing parents; return the ones created, outermost first."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
    return [str(path) for path in reversed(missing)]


def _write(path: Path, text: str) -> None:
    """Replace ``path``'s content atomically (:mod:`detoxd.durable`), keeping its permissions."""
    replace_file(path, text.encode(), mode=0o644, keep_existing_mode=True)

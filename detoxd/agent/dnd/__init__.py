"""Silencing desktop notifications for the detox: one small back-end per notification server.

Which back-end applies is decided by what really runs: the owner of
``org.freedesktop.Notifications`` on the session bus, its ``GetServerInformation`` name and its
executable, then the desktop name (:func:`choose`). A back-end never claims a session by the
desktop name alone.

"Silenced" is a measurement: after every change the keeper asks the program again (dunst's
``paused``, xfconf, GSettings, ...). When the answer is still "notifications on", the report says
why and what to do, like Safe Eyes' dependency messages; such a back-end is retried but its
failure is not counted as the user switching notifications back on.

``DndKeeper`` does the bookkeeping: before the first change it saves the user's setting in
``$XDG_STATE_HOME/detoxd/dnd.json`` (a setting that was never set is saved as never set, and is
reset, not written, at the end); while the detox runs it re-asserts do-not-disturb when the user
switches it off (and counts that); when the detox is over it restores exactly what it changed
and removes the file. The file outlives the agent, so an agent that was not running when the
detox ended restores the setting when it next starts and sees the daemon idle.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from detoxd.durable import replace_file

log = logging.getLogger(__name__)

STATE_FILE_NAME = "dnd.json"
STATE_VERSION = 2
SUPPORTED = "dunst, mako, SwayNC, xfce4-notifyd, mate-notification-daemon, GNOME Shell, Cinnamon, KDE Plasma"


@dataclass(frozen=True)
class Problem:
    """Why notifications are not silenced, and what the user can do about it."""

    reason: str
    fix: str


@dataclass(frozen=True)
class DesktopSession:
    """What a back-end is chosen by: the notification server on the bus, then the desktop."""

    desktops: tuple[str, ...]
    server_name: str | None  # GetServerInformation's name; None when nothing owns the name
    server_program: str | None = None  # the owner's executable name, from /proc
    server_pid: int | None = None
    #: With no owner: the executables D-Bus would start for the name (its .service files).
    activatable: tuple[str, ...] = ()

    def on_desktop(self, *names: str) -> bool:
        wanted = {name.lower() for name in names}
        return any(desktop.lower() in wanted for desktop in self.desktops)

    @property
    def has_server(self) -> bool:
        return self.server_name is not None or self.server_pid is not None

    def describe_server(self) -> str:
        program = f" ({self.server_program}, pid {self.server_pid})" if self.server_program else ""
        return f"{self.server_name or 'an unnamed server'!r}{program}"


@dataclass(frozen=True)
class Watch:
    """What to listen to on the session bus to see the setting change the moment it does.

    ``signals``: match rules (keyword arguments of ``jeepney.MatchRule``) for change signals.
    ``calls``: match rules for method calls that change it, for programs that send no signal
    (seen with ``BecomeMonitor`` on a separate connection)."""

    signals: tuple[Mapping[str, Any], ...] = ()
    calls: tuple[Mapping[str, Any], ...] = ()


class Backend(ABC):
    """One notification server's do-not-disturb switch."""

    name: ClassVar[str]  # stored in the state file: never rename
    label: ClassVar[str]  # shown to the user: "Notifications silenced (GNOME)"
    servers: ClassVar[tuple[str, ...]] = ()  # GetServerInformation names of the servers it controls
    programs: ClassVar[tuple[str, ...]] = ()  # their executables' names
    desktops: ClassVar[tuple[str, ...]] = ()  # XDG_CURRENT_DESKTOP names whose server this is
    #: The setting lives outside the server (xfconf, dconf): it can be switched on before a
    #: server that D-Bus starts on demand is running, and that server reads it when it starts.
    settings_outlive_server: ClassVar[bool] = False

    #: What this back-end changed beyond the one setting (mako: its config file), kept in the
    #: state file between silencing and restoring. The keeper loads and saves it.
    undo: dict[str, Any]

    def __init__(self) -> None:
        self.undo = {}

    def serves(self, session: DesktopSession) -> bool:
        """Whether the running notification server is this back-end's."""
        return session.server_name in self.servers or session.server_program in self.programs

    def starts_on_demand(self, session: DesktopSession) -> bool:
        """No server runs yet, and the one D-Bus would start for the first notification is this
        back-end's (named by the desktop when several could start)."""
        if not self.settings_outlive_server or session.has_server:
            return False
        ours = [program for program in session.activatable if program in self.programs]
        return bool(ours) and (len(session.activatable) == 1 or session.on_desktop(*self.desktops))

    def check(self) -> Problem | None:
        """Whatever this back-end needs besides the server (a settings schema, xfconfd), or why not."""
        return None

    @abstractmethod
    def is_silenced(self) -> bool:
        """The program's own answer: is do-not-disturb on now? (KDE: does our inhibition hold?)"""

    @abstractmethod
    def silence(self) -> None:
        """Turn do-not-disturb on."""

    @abstractmethod
    def unsilence(self) -> None:
        """Turn do-not-disturb off."""

    def prior(self) -> dict[str, Any]:
        """The user's setting, saved before the first change."""
        return {"silenced": self.is_silenced()}

    def restore(self, prior: Mapping[str, Any]) -> None:
        """Put back what ``prior`` returned before the detox (and undo ``self.undo``)."""
        if prior.get("silenced"):
            self.silence()
        else:
            self.unsilence()

    def watch(self) -> Watch:
        return Watch()

    def not_silenced(self) -> Problem:
        """The report when ``silence()`` returned but the program still says "notifications on"."""
        return Problem(f"{self.label} still shows notifications after detoxd switched do-not-disturb on",
                       f"switch do-not-disturb on in {self.label}'s settings by hand")


def all_backends() -> list[Backend]:
    """Every back-end; the first whose ``serves`` matches the running server is used."""
    from detoxd.agent.dnd.cinnamon import CinnamonBackend
    from detoxd.agent.dnd.dunst import DunstBackend
    from detoxd.agent.dnd.gnome import GnomeBackend
    from detoxd.agent.dnd.kde import KdeBackend
    from detoxd.agent.dnd.mako import MakoBackend
    from detoxd.agent.dnd.mate import MateBackend
    from detoxd.agent.dnd.swaync import SwayncBackend
    from detoxd.agent.dnd.xfce import XfceBackend

    return [DunstBackend(), MakoBackend(), SwayncBackend(), KdeBackend(), XfceBackend(),
            CinnamonBackend(), MateBackend(), GnomeBackend()]


def probe_session(environ: Mapping[str, str] = os.environ) -> DesktopSession:
    from detoxd.agent.dnd.bus import activatable_servers, notification_server

    desktops = tuple(part for part in environ.get("XDG_CURRENT_DESKTOP", "").split(":") if part)
    name, program, pid = notification_server()
    activatable = activatable_servers(environ) if name is None and pid is None else ()
    return DesktopSession(desktops, name, program, pid, activatable)


NO_SERVER = Problem(
    "no notification server is running on the session bus (nothing owns org.freedesktop.Notifications)",
    "start your desktop's notification daemon (for example dunst, mako or xfce4-notifyd); "
    "detoxd silences it as soon as it appears")


def choose(session: DesktopSession, backends: Sequence[Backend] | None = None,
           ) -> tuple[Backend | None, Problem | None]:
    """The back-end for the running notification server, or why there is none."""
    candidates = all_backends() if backends is None else backends
    if not session.has_server:
        on_demand = next((b for b in candidates if b.starts_on_demand(session)), None)
        if on_demand is None or on_demand.check() is not None:
            return None, NO_SERVER
        return on_demand, None
    broken: Problem | None = None
    for backend in candidates:
        try:
            if not backend.serves(session):
                continue
            problem = backend.check()
        except Exception as error:  # a broken probe must not hide the other back-ends
            log.exception("probing the %s do-not-disturb back-end failed", backend.label)
            broken = broken or Problem(f"probing {backend.label} failed: {error}", "see the tray agent's log")
            continue
        return (None, problem) if problem else (backend, None)
    if broken is not None:
        return None, broken
    return None, Problem(
        f"the notification server {session.describe_server()} is not one detoxd can silence",
        f"switch its do-not-disturb on by hand, or use one detoxd supports: {SUPPORTED}")


def available(session: DesktopSession, backends: Sequence[Backend] | None = None) -> Backend | None:
    """The back-end for this session's notification server, or None."""
    return choose(session, backends)[0]


def backend_named(name: str, backends: Sequence[Backend] | None = None) -> Backend | None:
    return next((b for b in (all_backends() if backends is None else backends) if b.name == name), None)


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local/state")
    return Path(base) / "detoxd"


@dataclass
class Saved:
    """The state file: which back-end we changed, what the user had, and what happened since."""

    backend: str
    prior: dict[str, Any]
    silenced: bool = False  # the program said "silenced" when we last asked
    reasserted: int = 0
    undo: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "backend": self.backend, "prior": self.prior,
                           "silenced": self.silenced, "reasserted": self.reasserted,
                           "undo": self.undo}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Saved:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") not in (1, STATE_VERSION):
            raise ValueError("not a detoxd do-not-disturb state file")
        return cls(str(data["backend"]), dict(data["prior"]), bool(data.get("silenced")),
                   int(data.get("reasserted", 0)), dict(data.get("undo") or {}))


@dataclass(frozen=True)
class DndReport:
    """What the keeper measured on its last round, for the tray, the daemon and ``doctor``."""

    silenced: bool  # the program itself said do-not-disturb is on, after our last change
    backend: str | None  # the back-end's label
    problem: Problem | None = None
    reasserted: int = 0
    holding: bool = False  # a saved setting waits to be restored


class DndKeeper:
    """Keeps notifications silenced while ``update(True)``; restores the user's setting after."""

    def __init__(self, backend: Backend | None, directory: Path,
                 backends: Sequence[Backend] | None = None, problem: Problem | None = None) -> None:
        self.backend = backend
        self.problem = problem  # why there is no back-end (from ``choose``)
        self.path = directory / STATE_FILE_NAME
        self._backends = backends
        self._last_problem: Problem | None = None

    @property
    def reasserted(self) -> int:
        saved = self._load()
        return saved.reasserted if saved else 0

    @property
    def silencing(self) -> bool:
        """Whether we hold notifications silenced (a saved setting waits to be restored)."""
        return self._load() is not None

    def update(self, wanted: bool) -> DndReport:
        """Bring the desktop in line: silenced while ``wanted``, the user's own setting after.

        A failure to silence is part of the report; a failure to restore raises (the caller logs
        it and tries again later: the saved setting stays until a restore succeeds).
        """
        if not wanted:
            self._restore()
            return DndReport(False, self.backend.label if self.backend else None)
        if self.backend is None:
            return DndReport(False, None, self.problem or NO_SERVER, self.reasserted, self.silencing)
        try:
            return self._keep_silenced(self.backend)
        except Exception as error:  # a bus error, a vanished server, an unwritable config, ...
            problem = getattr(error, "problem", None)
            if not isinstance(problem, Problem):
                problem = Problem(f"{self.backend.label}: {error}",
                                  f"check that {self.backend.label} is running; detoxd retries")
            if problem != self._last_problem:
                log.warning("cannot silence notifications (%s): %s", self.backend.label, error)
            self._last_problem = problem
            self._mark(silenced=False)
            return DndReport(False, self.backend.label, problem, self.reasserted, self.silencing)

    def _keep_silenced(self, backend: Backend) -> DndReport:
        saved = self._load()
        if saved is None or saved.backend != backend.name:
            if saved is not None:
                self._restore_other(saved)  # the user switched servers: put the old one back first
            saved = Saved(backend.name, backend.prior())
            self._save(saved)
            log.info("saved the user's notification setting (%s): %s", backend.label, saved.prior)
        backend.undo = saved.undo
        if backend.is_silenced():
            if not saved.silenced:
                saved.silenced = True
                self._save(saved)
            return DndReport(True, backend.label, None, saved.reasserted, True)
        was_silenced = saved.silenced
        try:
            backend.silence()
        finally:
            saved.undo = backend.undo  # whatever it changed, even half-way
            self._save(saved)
        if not backend.is_silenced():  # measured: the program's own answer after the change
            problem = backend.not_silenced()
            if problem != self._last_problem:  # retried every round: say it once
                log.warning("silencing notifications had no effect (%s): %s", backend.label, problem.reason)
            self._last_problem = problem
            saved.silenced = False
            self._save(saved)
            return DndReport(False, backend.label, problem, saved.reasserted, True)
        if was_silenced:
            saved.reasserted += 1
            log.warning("notifications were switched back on during the detox (%s): silenced again, "
                        "%d times so far", backend.label, saved.reasserted)
        else:
            log.info("notifications silenced for the detox (%s)", backend.label)
        self._last_problem = None
        saved.silenced = True
        self._save(saved)
        return DndReport(True, backend.label, None, saved.reasserted, True)

    def _mark(self, *, silenced: bool) -> None:
        saved = self._load()
        if saved is not None and saved.silenced != silenced:
            saved.silenced = silenced
            self._save(saved)

    def _restore_other(self, saved: Saved) -> None:
        """Restore another server's setting; if it cannot be reached now, keep its record aside
        (``dnd-NAME.json``) for when it runs again, instead of blocking this server's silence."""
        try:
            self._restore()
        except Exception as error:
            aside = self.path.with_name(f"dnd-{saved.backend}.json")
            log.warning("cannot restore the setting of %s now (%s); kept in %s for when it runs again",
                        saved.backend, error, aside)
            self.path.replace(aside)

    def _restore(self) -> None:
        if self.backend is not None:
            aside = self.path.with_name(f"dnd-{self.backend.name}.json")
            if aside.exists() and not self.path.exists():
                aside.replace(self.path)  # set aside while another server ran: restore it now
        saved = self._load()
        if saved is None:
            return
        backend = self.backend if self.backend and self.backend.name == saved.backend else None
        backend = backend or backend_named(saved.backend, self._backends)
        if backend is None:
            log.warning("cannot restore notifications: unknown back-end %r in %s", saved.backend, self.path)
            return
        backend.undo = saved.undo
        backend.restore(saved.prior)
        self.path.unlink(missing_ok=True)
        log.info("restored the user's notification setting (%s): %s", backend.label, saved.prior)

    def _load(self) -> Saved | None:
        try:
            return Saved.from_json(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.error("ignoring unreadable %s: %s", self.path, error)
            return None

    def _save(self, saved: Saved) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(self.path, saved.to_json().encode(), mode=0o600)

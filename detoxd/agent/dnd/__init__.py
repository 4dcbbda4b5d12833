"""Silencing desktop notifications for the detox: one small back-end per desktop.

Each back-end knows whether it applies to this session (``available``), whether notifications
are silenced now, how to silence them and how to put back what the user had. ``DndKeeper``
does the bookkeeping: before the first change it saves the user's setting in
``$XDG_STATE_HOME/detoxd/dnd.json``; while the detox runs it re-asserts do-not-disturb when
the user switches it off (and counts that); when the detox is over it restores the saved
setting and removes the file. The file outlives the agent, so an agent that was not running
when the detox ended restores the setting when it next starts and sees the daemon idle.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from detoxd.durable import replace_file

log = logging.getLogger(__name__)

STATE_FILE_NAME = "dnd.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class Session:
    """What the back-ends decide by: the desktop names and the notification daemon's name."""

    desktops: tuple[str, ...]
    server_name: str | None

    def on_desktop(self, *names: str) -> bool:
        wanted = {name.lower() for name in names}
        return any(desktop.lower() in wanted for desktop in self.desktops)


class Backend(ABC):
    """One desktop's do-not-disturb switch."""

    name: ClassVar[str]  # stored in the state file: never rename
    label: ClassVar[str]  # shown to the user: "Notifications silenced (GNOME)"

    @abstractmethod
    def available(self, session: Session) -> bool:
        """Whether this back-end controls the notifications of this session."""

    @abstractmethod
    def is_silenced(self) -> bool:
        """Whether do-not-disturb is on now (for KDE: whether our inhibition holds)."""

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
        """Put back what ``prior`` returned before the detox."""
        if prior.get("silenced"):
            self.silence()
        else:
            self.unsilence()


def all_backends() -> list[Backend]:
    """Every back-end, most specific first (a desktop's own daemon before generic ones)."""
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


def probe_session(environ: Mapping[str, str] = os.environ) -> Session:
    from detoxd.agent.dnd.bus import notification_server_name

    desktops = tuple(part for part in environ.get("XDG_CURRENT_DESKTOP", "").split(":") if part)
    return Session(desktops, notification_server_name())


def available(session: Session, backends: Sequence[Backend] | None = None) -> Backend | None:
    """The first back-end that controls this session's notifications, or None."""
    for backend in all_backends() if backends is None else backends:
        try:
            if backend.available(session):
                return backend
        except Exception:  # a broken probe must not hide the other back-ends
            log.exception("probing the %s do-not-disturb back-end failed", backend.label)
    return None


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
    silenced: bool = False  # we silenced successfully at least once
    reasserted: int = 0

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "backend": self.backend, "prior": self.prior,
                           "silenced": self.silenced, "reasserted": self.reasserted}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Saved:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a detoxd do-not-disturb state file")
        return cls(str(data["backend"]), dict(data["prior"]), bool(data.get("silenced")),
                   int(data.get("reasserted", 0)))


class DndKeeper:
    """Keeps notifications silenced while ``update(True)``; restores the user's setting after."""

    def __init__(self, backend: Backend | None, directory: Path,
                 backends: Sequence[Backend] | None = None) -> None:
        self.backend = backend
        self.path = directory / STATE_FILE_NAME
        self._backends = backends

    @property
    def reasserted(self) -> int:
        saved = self._load()
        return saved.reasserted if saved else 0

    @property
    def silencing(self) -> bool:
        """Whether we hold notifications silenced (a saved setting waits to be restored)."""
        return self._load() is not None

    def update(self, wanted: bool) -> None:
        """Bring the desktop in line: silenced while ``wanted``, the user's own setting after.

        Raises whatever the back-end raises; the caller logs it and tries again later.
        """
        if wanted:
            self._keep_silenced()
        else:
            self._restore()

    def _keep_silenced(self) -> None:
        backend = self.backend
        if backend is None:
            return
        saved = self._load()
        if saved is None or saved.backend != backend.name:
            if saved is not None:
                self._restore()  # the user switched desktops: put the old one back first
            saved = Saved(backend.name, backend.prior())
            self._save(saved)
            log.info("saved the user's notification setting (%s): %s", backend.label, saved.prior)
        if backend.is_silenced():
            if not saved.silenced:
                saved.silenced = True
                self._save(saved)
            return
        backend.silence()
        if saved.silenced:
            saved.reasserted += 1
            log.warning("notifications were switched back on during the detox (%s): silenced again, "
                        "%d times so far", backend.label, saved.reasserted)
        else:
            saved.silenced = True
            log.info("notifications silenced for the detox (%s)", backend.label)
        self._save(saved)

    def _restore(self) -> None:
        saved = self._load()
        if saved is None:
            return
        backend = self.backend if self.backend and self.backend.name == saved.backend else None
        backend = backend or backend_named(saved.backend, self._backends)
        if backend is None:
            log.warning("cannot restore notifications: unknown back-end %r in %s", saved.backend, self.path)
            return
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

"""mako: the ``do-not-disturb`` mode (what ``makoctl mode -a do-not-disturb`` sets).

The user's mako config decides what the mode does; the usual one is
``[mode=do-not-disturb]`` with ``invisible=1``. Uses mako's own D-Bus API (``fr.emersion.Mako``).
"""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import Backend, Session
from detoxd.agent.dnd.bus import address, call

MAKO = address("/fr/emersion/Mako", "org.freedesktop.Notifications", "fr.emersion.Mako")
MODE = "do-not-disturb"


class MakoBackend(Backend):
    name: ClassVar[str] = "mako"
    label: ClassVar[str] = "mako"

    def available(self, session: Session) -> bool:
        return session.server_name == "mako"

    def is_silenced(self) -> bool:
        return MODE in self._modes()

    def silence(self) -> None:
        modes = self._modes()
        if MODE not in modes:
            call(MAKO, "SetModes", "as", ([*modes, MODE],))

    def unsilence(self) -> None:
        call(MAKO, "SetModes", "as", ([mode for mode in self._modes() if mode != MODE],))

    def _modes(self) -> list[str]:
        return [str(mode) for mode in call(MAKO, "ListModes")[0]]

"""Cinnamon: ``org.cinnamon.desktop.notifications display-notifications``."""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import Session
from detoxd.agent.dnd.gsettings import GSettingsBackend


class CinnamonBackend(GSettingsBackend):
    name: ClassVar[str] = "cinnamon"
    label: ClassVar[str] = "Cinnamon"
    schema: ClassVar[str] = "org.cinnamon.desktop.notifications"
    key: ClassVar[str] = "display-notifications"
    key_means_shown: ClassVar[bool] = True

    def available(self, session: Session) -> bool:
        ours = session.server_name == "cinnamon" or session.on_desktop("X-Cinnamon", "Cinnamon")
        return ours and self.schema_installed()

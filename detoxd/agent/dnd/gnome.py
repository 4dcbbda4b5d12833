"""GNOME Shell: ``org.gnome.desktop.notifications show-banners`` (the "Do Not Disturb" switch)."""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import Session
from detoxd.agent.dnd.gsettings import GSettingsBackend


class GnomeBackend(GSettingsBackend):
    name: ClassVar[str] = "gnome"
    label: ClassVar[str] = "GNOME"
    schema: ClassVar[str] = "org.gnome.desktop.notifications"
    key: ClassVar[str] = "show-banners"
    key_means_shown: ClassVar[bool] = True

    def available(self, session: Session) -> bool:
        ours = session.server_name == "gnome-shell" or session.on_desktop("GNOME", "ubuntu", "Unity")
        return ours and self.schema_installed()

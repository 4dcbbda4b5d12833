"""MATE: ``org.mate.NotificationDaemon do-not-disturb`` (mate-notification-daemon 1.24+)."""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import Session
from detoxd.agent.dnd.gsettings import GSettingsBackend


class MateBackend(GSettingsBackend):
    name: ClassVar[str] = "mate"
    label: ClassVar[str] = "MATE"
    schema: ClassVar[str] = "org.mate.NotificationDaemon"
    key: ClassVar[str] = "do-not-disturb"
    key_means_shown: ClassVar[bool] = False

    def available(self, session: Session) -> bool:
        return session.on_desktop("MATE") and self.schema_installed()

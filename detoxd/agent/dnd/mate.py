"""MATE: ``org.mate.NotificationDaemon do-not-disturb`` (mate-notification-daemon 1.24+).

The server calls itself "Notification Daemon", like GNOME's old notification-daemon, so it is
recognised by its executable, or by that name on a MATE desktop.
"""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd import DesktopSession
from detoxd.agent.dnd.gsettings import GSettingsBackend


class MateBackend(GSettingsBackend):
    name: ClassVar[str] = "mate"
    label: ClassVar[str] = "MATE"
    programs: ClassVar[tuple[str, ...]] = ("mate-notification-daemon",)
    desktops: ClassVar[tuple[str, ...]] = ("MATE",)
    settings_outlive_server: ClassVar[bool] = True
    schema: ClassVar[str] = "org.mate.NotificationDaemon"
    key: ClassVar[str] = "do-not-disturb"
    key_means_shown: ClassVar[bool] = False
    package: ClassVar[str] = "mate-notification-daemon-common"

    def serves(self, session: DesktopSession) -> bool:
        if session.server_program in self.programs:
            return True
        return session.server_name == "Notification Daemon" and session.on_desktop("MATE")

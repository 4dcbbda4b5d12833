"""Cinnamon: ``org.cinnamon.desktop.notifications display-notifications``."""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd.gsettings import GSettingsBackend


class CinnamonBackend(GSettingsBackend):
    name: ClassVar[str] = "cinnamon"
    label: ClassVar[str] = "Cinnamon"
    servers: ClassVar[tuple[str, ...]] = ("cinnamon",)
    programs: ClassVar[tuple[str, ...]] = ("cinnamon",)
    desktops: ClassVar[tuple[str, ...]] = ("X-Cinnamon", "Cinnamon")
    settings_outlive_server: ClassVar[bool] = True
    schema: ClassVar[str] = "org.cinnamon.desktop.notifications"
    key: ClassVar[str] = "display-notifications"
    key_means_shown: ClassVar[bool] = True
    package: ClassVar[str] = "cinnamon-desktop-data"

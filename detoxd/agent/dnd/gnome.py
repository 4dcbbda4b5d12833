"""GNOME Shell: ``org.gnome.desktop.notifications show-banners`` (the "Do Not Disturb" switch)."""

from __future__ import annotations

from typing import ClassVar

from detoxd.agent.dnd.gsettings import GSettingsBackend


class GnomeBackend(GSettingsBackend):
    name: ClassVar[str] = "gnome"
    label: ClassVar[str] = "GNOME"
    servers: ClassVar[tuple[str, ...]] = ("gnome-shell",)
    programs: ClassVar[tuple[str, ...]] = ("gnome-shell",)
    desktops: ClassVar[tuple[str, ...]] = ("GNOME", "ubuntu")
    settings_outlive_server: ClassVar[bool] = True
    schema: ClassVar[str] = "org.gnome.desktop.notifications"
    key: ClassVar[str] = "show-banners"
    key_means_shown: ClassVar[bool] = True
    package: ClassVar[str] = "gsettings-desktop-schemas"

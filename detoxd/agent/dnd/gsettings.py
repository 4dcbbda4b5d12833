"""A do-not-disturb switch that is one boolean GSettings key (GNOME, Cinnamon, MATE).

GSettings (Gio, through python3-gi) writes where the desktop reads: dconf normally, the
keyfile back-end when ``GSETTINGS_BACKEND=keyfile``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from detoxd.agent.dnd import Backend


class GSettingsBackend(Backend):
    schema: ClassVar[str]
    key: ClassVar[str]
    key_means_shown: ClassVar[bool]  # True: the key is "show notifications"; False: "do not disturb"

    def schema_installed(self) -> bool:
        try:
            gio = _gio()
        except (ImportError, ValueError):
            return False
        source = gio.SettingsSchemaSource.get_default()
        schema = source.lookup(self.schema, True) if source is not None else None
        return schema is not None and schema.has_key(self.key)

    def is_silenced(self) -> bool:
        value = bool(self._settings().get_boolean(self.key))
        return not value if self.key_means_shown else value

    def silence(self) -> None:
        self._write(not self.key_means_shown)

    def unsilence(self) -> None:
        self._write(self.key_means_shown)

    def _write(self, value: bool) -> None:
        settings = self._settings()
        settings.set_boolean(self.key, value)
        _gio().Settings.sync()

    def _settings(self) -> Any:
        return _gio().Settings.new(self.schema)


def _gio() -> Any:
    import gi

    gi.require_version("Gio", "2.0")
    from gi.repository import Gio

    return Gio

"""A do-not-disturb switch that is one boolean GSettings key (GNOME, Cinnamon, MATE).

GSettings (Gio, through python3-gi) writes where the desktop reads: dconf normally, the
keyfile back-end when ``GSETTINGS_BACKEND=keyfile``. dconf's writer announces every change on
the session bus (``ca.desrt.dconf.Writer.Notify``), which is what the agent watches. A key the
user never set is reset at the end, not written with the default's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from detoxd.agent.dnd import Backend, Problem, Watch


class GSettingsBackend(Backend):
    schema: ClassVar[str]
    key: ClassVar[str]
    key_means_shown: ClassVar[bool]  # True: the key is "show notifications"; False: "do not disturb"
    package: ClassVar[str]  # the Debian package with the schema

    def schema_installed(self) -> bool:
        return self._schema() is not None

    def check(self) -> Problem | None:
        if self.schema_installed():
            return None
        return Problem(f"the GSettings schema {self.schema} (key {self.key}) is not installed",
                       f"apt-get install {self.package}")

    def value(self) -> bool | None:
        """The user's own value of the key, or None when it was never set."""
        user_value = self._settings().get_user_value(self.key)
        return None if user_value is None else bool(user_value.get_boolean())

    def is_silenced(self) -> bool:
        value = bool(self._settings().get_boolean(self.key))
        return not value if self.key_means_shown else value

    def silence(self) -> None:
        self._write(not self.key_means_shown)

    def unsilence(self) -> None:
        self._write(self.key_means_shown)

    def prior(self) -> dict[str, Any]:
        return {"value": self.value(), "silenced": self.is_silenced()}

    def restore(self, prior: Mapping[str, Any]) -> None:
        if "value" not in prior:  # a state file of version 1
            super().restore(prior)
            return
        settings = self._settings()
        if prior["value"] is None:
            settings.reset(self.key)
        else:
            settings.set_boolean(self.key, bool(prior["value"]))
        _gio().Settings.sync()

    def watch(self) -> Watch:
        schema = self._schema()
        path = schema.get_path() if schema is not None else None
        if not path:
            return Watch()
        return Watch(signals=({"type": "signal", "interface": "ca.desrt.dconf.Writer", "member": "Notify",
                               "arg0path": path},))

    def not_silenced(self) -> Problem:
        wanted = "false" if self.key_means_shown else "true"
        return Problem(f"GSettings still has {self.schema} {self.key} showing notifications after detoxd "
                       "changed it (is the dconf service running?)",
                       f"gsettings set {self.schema} {self.key} {wanted}")

    def _write(self, value: bool) -> None:
        settings = self._settings()
        settings.set_boolean(self.key, value)
        _gio().Settings.sync()

    def _settings(self) -> Any:
        return _gio().Settings.new(self.schema)

    def _schema(self) -> Any:
        try:
            gio = _gio()
        except (ImportError, ValueError):
            return None
        source = gio.SettingsSchemaSource.get_default()
        schema = source.lookup(self.schema, True) if source is not None else None
        return schema if schema is not None and schema.has_key(self.key) else None


def _gio() -> Any:
    import gi

    gi.require_version("Gio", "2.0")
    from gi.repository import Gio

    return Gio

"""SwayNotificationCenter: ``GetDnd``/``SetDnd`` of its control centre (``swaync-client --dnd-on``).

swaync announces every change with its ``Subscribe`` signal (``SubscribeV2`` in later versions).
It keeps the switch in GSettings (``org.erikreider.swaync dnd-state``); a user who never set it
gets the key reset at the end, not an explicit ``false``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from detoxd.agent.dnd import Backend, Problem, Watch
from detoxd.agent.dnd.bus import address, call

SWAYNC_NAME = "org.erikreider.swaync.cc"
SWAYNC_PATH = "/org/erikreider/swaync/cc"
SWAYNC = address(SWAYNC_PATH, SWAYNC_NAME, SWAYNC_NAME)
SCHEMA, KEY = "org.erikreider.swaync", "dnd-state"
STORE_WAIT_SECONDS = 1.0


class SwayncBackend(Backend):
    name: ClassVar[str] = "swaync"
    label: ClassVar[str] = "SwayNC"
    servers: ClassVar[tuple[str, ...]] = ("SwayNotificationCenter",)
    programs: ClassVar[tuple[str, ...]] = ("swaync",)

    def is_silenced(self) -> bool:
        return bool(call(SWAYNC, "GetDnd")[0])

    def silence(self) -> None:
        call(SWAYNC, "SetDnd", "b", (True,))

    def unsilence(self) -> None:
        call(SWAYNC, "SetDnd", "b", (False,))

    def prior(self) -> dict[str, Any]:
        return {"silenced": self.is_silenced(), "stored": _stored()}

    def restore(self, prior: Mapping[str, Any]) -> None:
        super().restore(prior)
        if "stored" in prior and prior["stored"] is None and _settings() is not None:
            # swaync writes the key itself, a moment after SetDnd: reset after its write landed.
            wanted = bool(prior.get("silenced"))
            deadline = time.monotonic() + STORE_WAIT_SECONDS
            while _stored() is not wanted and time.monotonic() < deadline:
                time.sleep(0.02)
            settings = _settings()
            settings.reset(KEY)
            type(settings).sync()  # Gio.Settings.sync: wait for dconf

    def watch(self) -> Watch:
        return Watch(signals=({"type": "signal", "interface": SWAYNC_NAME, "path": SWAYNC_PATH},))

    def not_silenced(self) -> Problem:
        return Problem("SwayNC still reports do-not-disturb off after detoxd switched it on",
                       "swaync-client --dnd-on")


def _settings() -> Any:
    """swaync's GSettings, or None where its schema is not installed."""
    with contextlib.suppress(ImportError, ValueError):
        import gi

        gi.require_version("Gio", "2.0")
        from gi.repository import Gio

        source = Gio.SettingsSchemaSource.get_default()
        if source is not None and source.lookup(SCHEMA, True) is not None:
            return Gio.Settings.new(SCHEMA)
    return None


def _stored() -> bool | None:
    settings = _settings()
    value = settings.get_user_value(KEY) if settings is not None else None
    return None if value is None else bool(value.get_boolean())

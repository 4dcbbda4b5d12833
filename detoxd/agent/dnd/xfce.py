"""XFCE: xfconf channel ``xfce4-notifyd``, property ``/do-not-disturb``, over xfconfd's D-Bus API.

xfce4-notifyd reads the property from xfconfd; xfconfd announces changes with
``PropertyChanged`` and ``PropertyRemoved``. A property the user never set is reset at the end
(``ResetProperty``), not written as ``false``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from detoxd.agent.dnd import Backend, Problem, Watch
from detoxd.agent.dnd.bus import BusError, address, call

XFCONF = address("/org/xfce/Xfconf", "org.xfce.Xfconf", "org.xfce.Xfconf")
CHANNEL = "xfce4-notifyd"
PROPERTY = "/do-not-disturb"


class XfceBackend(Backend):
    name: ClassVar[str] = "xfce"
    label: ClassVar[str] = "XFCE"
    servers: ClassVar[tuple[str, ...]] = ("Xfce Notify Daemon",)
    programs: ClassVar[tuple[str, ...]] = ("xfce4-notifyd",)
    desktops: ClassVar[tuple[str, ...]] = ("XFCE",)
    settings_outlive_server: ClassVar[bool] = True

    def check(self) -> Problem | None:
        try:
            call(XFCONF, "ListChannels")
        except BusError as error:
            return Problem(f"xfce4-notifyd runs, but its settings service xfconfd does not answer ({error})",
                           "install and start xfconf (apt-get install xfconf)")
        return None

    def value(self) -> bool | None:
        """The property, or None when it was never set."""
        try:
            _signature, value = call(XFCONF, "GetProperty", "ss", (CHANNEL, PROPERTY))[0]
        except BusError as error:
            if "PropertyNotFound" in str(error) or "InvalidProperty" in str(error):
                return None
            raise
        return bool(value)

    def is_silenced(self) -> bool:
        return self.value() is True

    def silence(self) -> None:
        self._set(True)

    def unsilence(self) -> None:
        self._set(False)

    def prior(self) -> dict[str, Any]:
        return {"value": self.value()}

    def restore(self, prior: Mapping[str, Any]) -> None:
        if "value" not in prior:  # a state file of version 1
            super().restore(prior)
        elif prior["value"] is None:
            call(XFCONF, "ResetProperty", "ssb", (CHANNEL, PROPERTY, False))
        else:
            self._set(bool(prior["value"]))

    def watch(self) -> Watch:
        return Watch(signals=({"type": "signal", "interface": "org.xfce.Xfconf", "path": "/org/xfce/Xfconf",
                               "arg0": CHANNEL},))

    def not_silenced(self) -> Problem:
        return Problem(f"xfconf still has {CHANNEL} {PROPERTY} off after detoxd switched it on",
                       f"xfconf-query -c {CHANNEL} -p {PROPERTY} -n -t bool -s true")

    def _set(self, value: bool) -> None:
        call(XFCONF, "SetProperty", "ssv", (CHANNEL, PROPERTY, ("b", value)))

"""The tray agents the daemon heard from: what each says about its user's do-not-disturb.

Any user may report, but only for their own uid (from SO_PEERCRED), and a report only informs
(status and doctor show it): nothing a tray says changes enforcement. An agent that stops
reporting is forgotten after :data:`AGENT_REPORT_SECONDS`, and journalled as gone. An agent reports
when what it sees changes; while its subscription to the daemon's events stays open it is alive
and needs no report to say so (issue 26: no wake-ups for a sign of life).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detoxd.protocol import BUSY, ErrorReply, Peer, bad_request
from detoxd.service import journal

MAX_AGENT_TEXT = 400  # a tray's reason or fix, as shown by doctor
AGENT_REPORT_SECONDS = 60.0  # without a subscription open, older reports are from gone agents
MAX_AGENTS = 256


class AgentRegistry:
    """Called with the engine's lock held."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._agents: dict[int, tuple[float, dict[str, Any]]] = {}  # uid -> (when, tray report)
        # The uids with a subscription open now (the control server's); their agents are alive.
        self.subscribed: Callable[[], frozenset[int]] = frozenset

    def report(self, request: dict[str, Any], peer: Peer, *, during_detox: bool) -> dict[str, Any]:
        """A tray agent says whether it silenced its user's notifications (for status/doctor)."""
        silenced = request.get("notifications_silenced")
        backend = request.get("backend")
        if not isinstance(silenced, bool) or not isinstance(backend, str | None):
            raise bad_request("notifications_silenced must be a bool")
        if peer.uid not in self._agents and len(self._agents) >= MAX_AGENTS:
            raise ErrorReply(BUSY, "too many agents")
        report = {"uid": peer.uid, "notifications_silenced": silenced, "backend": (backend or "")[:64]}
        for key in ("reason", "fix"):  # why silencing did not take, and what to do (shown by doctor)
            text = request.get(key)
            if isinstance(text, str) and text:
                report[key] = text[:MAX_AGENT_TEXT]
        if peer.uid not in self._agents:
            journal.record("agent_connected", uid=peer.uid, during_detox=during_detox)
        self._agents[peer.uid] = (self._monotonic(), report)
        return {"ok": True}

    def reports(self, *, during_detox: bool) -> list[dict[str, Any]]:
        """The fresh reports; agents that went away are forgotten (and journalled) here."""
        fresh_since = self._monotonic() - AGENT_REPORT_SECONDS
        alive = self.subscribed() if self._agents else frozenset()
        for uid in [uid for uid, (at, _) in self._agents.items() if at < fresh_since and uid not in alive]:
            del self._agents[uid]  # that agent stopped, or its session ended
            journal.record("agent_disconnected", uid=uid, during_detox=during_detox)
        return [report for _, report in self._agents.values()]

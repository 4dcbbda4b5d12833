"""The tray's part of allowances that needs no desktop: the notice before a window closes."""

from __future__ import annotations

from datetime import UTC, datetime

from detoxd.agent.tray import _notice_for


def test_a_closing_allowance_becomes_a_notice_until_it_closes() -> None:
    moment = datetime(2026, 6, 1, 10, 48, tzinfo=UTC)
    found = _notice_for("allowance_closing", {"event": "allowance_closing", "name": "twitter",
                                              "closes_at": "2026-06-01T10:50:00+00:00"}, moment)
    assert found is not None
    summary, notice = found
    assert summary == "detoxd allowance"
    closes = datetime(2026, 6, 1, 10, 50, tzinfo=UTC)
    assert notice.until == closes
    assert notice.text == f"twitter closes at {closes.astimezone():%H:%M}: blocked again in 2 minutes"


def test_other_events_are_not_allowance_notices() -> None:
    assert _notice_for("allowance", {"event": "allowance"}, datetime(2026, 6, 1, tzinfo=UTC)) is None

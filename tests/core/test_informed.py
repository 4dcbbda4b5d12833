"""peers_informed's counting, timing and wording (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detoxd.core import informed
from detoxd.core.informed import InformedState

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_only_chosen_kinds_are_counted() -> None:
    state = InformedState()
    state = informed.count(state, "tamper", ("end_attempt",), AT)
    assert state == InformedState()
    state = informed.count(state, "allowance_opened", ("allowance",), AT)
    state = informed.count(state, "hot_seat", ("allowance",), AT)
    assert state.pending == {"allowance": 1} and state.first_pending_at == AT.isoformat()


def test_the_first_at_once_then_hourly() -> None:
    state = informed.count(InformedState(), "tamper", ("tamper",), AT)
    assert informed.due(state, AT)
    state = informed.sent(state, AT)
    assert state.pending == {} and state.told == {"tamper": 1}
    state = informed.count(state, "state_lost", ("tamper",), AT + timedelta(minutes=1))
    assert not informed.due(state, AT + timedelta(minutes=59))
    assert informed.due(state, AT + timedelta(hours=1))
    assert InformedState.from_json(state.to_json()) == state
    odd = InformedState.from_json({"pending": {"tamper": 2, "bogus": 1}, "told": "x"})
    assert odd.pending == {"tamper": 2} and odd.told == {}


def test_activity_only_when_given() -> None:
    state = informed.count(InformedState(), "end_refused", ("end_attempt",), AT)
    _, text = informed.message("Robert", state)
    assert "Blocked apps" not in text and "- 1 attempt to end the detox early" in text
    _, shared = informed.message("Robert", state, activity="Blocked apps closed during the detox: 3.")
    assert "Blocked apps closed during the detox: 3." in shared


def test_the_private_summary_leaves_out_activity() -> None:
    document = {"detox": {"days_elapsed": 14.0, "days_so_far": 14},
                "totals": {"during": {"tamper_attempts": 2, "end_attempts": 1, "allowance_minutes": 40.0,
                                      "blocked_lookups": 99, "apps_closed": {"slack": 3},
                                      "blocked_site_seconds": 600}},
                "sessions": [{"hot_seats": [1]}, {"hot_seats": []}]}
    line = informed.private_summary(document)
    assert line == ("14 days: 2 tamper attempts, 1 attempt to end it early, 40 min of allowances, "
                    "1 peer session held")

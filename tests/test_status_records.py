"""The typed status's records behave as frozen dataclasses (without the dataclasses module, which
`detoxd status` cannot afford: see detoxd/protocol.py)."""

from __future__ import annotations

import pytest

from detoxd.protocol import AllowanceStatus, EngineRow, Status


def test_fields_in_order_with_their_defaults_and_a_fresh_mutable_default_each() -> None:
    assert Status._FIELDS[:3] == ("state", "locked", "lock") and Status._FIELDS[-1] == "extra"
    first, second = Status(), Status()
    assert first.state == "idle" and first.network == () and first.apps_closed == {}
    assert first.apps_closed is not second.apps_closed and first.extra is not second.extra
    assert EngineRow("pihole", "https://pi.hole").url == "https://pi.hole"  # positionally too


def test_equal_by_value_frozen_and_replaced_by_a_copy() -> None:
    status = Status(state="active", domains_blocked=3)
    assert status == Status(state="active", domains_blocked=3) and status != Status(state="active")
    assert status != status.to_json()
    with pytest.raises(AttributeError, match="frozen"):
        status.state = "idle"  # type: ignore[misc]
    stale = status.replace(stale=True, hosts_in_sync=False)
    assert stale.stale and not stale.hosts_in_sync and stale.domains_blocked == 3
    assert status.stale is False  # the original is unchanged
    with pytest.raises(TypeError, match="unhashable"):  # a dict field, as in a frozen dataclass
        hash(AllowanceStatus(name="x"))


def test_a_wrong_field_is_refused_as_by_a_dataclass() -> None:
    with pytest.raises(TypeError, match="no field 'bogus'"):
        Status(bogus=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="twice"):
        EngineRow("pihole", engine="unbound")  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes"):
        AllowanceStatus(*range(8))


def test_the_json_round_trip_keeps_unknown_keys_and_leaves_out_what_the_daemon_does() -> None:
    document = {"state": "active", "future_key": [1], "network": [{"engine": "dnsmasq", "new": True}]}
    status = Status.from_json(document)
    assert status.extra == {"future_key": [1]} and status.network[0].extra == {"new": True}
    written = status.to_json()
    assert written["future_key"] == [1] and written["network"][0]["new"] is True
    assert "peer_lock" not in written and "snapshot_age_seconds" not in written
    assert Status.from_json(written) == status
    assert repr(status).startswith("Status.from_json({'state': 'active'")

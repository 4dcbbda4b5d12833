"""Reading the kernel's word on the clock (detoxd.service.timesync; the decision: core.timesync)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detoxd.core.timesync import MAX_ERROR_US, STA_UNSYNC, TimeSync, from_timex
from detoxd.service import timesync


def test_the_rule_is_timedateds_maximum_error() -> None:
    assert from_timex(12_000, 0).confirmed
    assert from_timex(12_000, STA_UNSYNC).confirmed  # chrony may keep STA_UNSYNC while synced
    unset = from_timex(MAX_ERROR_US, STA_UNSYNC)  # what `date -s` leaves
    assert not unset.confirmed and str(unset) == (
        "the kernel (adjtimex): not synchronised (maximum error 16 s, STA_UNSYNC)")


def test_adjtimex_is_read_without_setting_anything() -> None:
    reading = timesync.read_adjtimex()  # None in a sandbox that forbids the call
    assert reading is None or reading.source == "the kernel (adjtimex)"


def test_a_reading_is_kept_but_not_across_a_step_of_the_clock() -> None:
    answers = [TimeSync(True, "a"), TimeSync(False, "b"), TimeSync(False, "c"), TimeSync(True, "d")]
    offset, now = [0.0], [0.0]
    reader = timesync.Reader(lambda: offset[0], lambda: now[0], lambda: answers.pop(0))
    assert reader().source == "a"
    now[0] = 30.0
    assert reader().source == "a"  # kept
    offset[0] = 15 * 86400.0  # someone set the clock: asked again at once
    assert reader().source == "b"
    now[0] = 31.0
    assert reader().source == "b"  # "not synchronised" is kept only briefly...
    now[0] = 31.0 + timesync.UNCONFIRMED_AGE_SECONDS
    assert reader().source == "c"  # ...NTP may have synchronised meanwhile


def test_a_stand_in_reads_like_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = tmp_path / "adjtimex.json"
    stand_in.write_text('{"maxerror_us": 1000, "status": 0}')
    assert timesync.read_stand_in(stand_in).confirmed
    stand_in.write_text("garbage")
    assert not timesync.read_stand_in(stand_in).confirmed
    monkeypatch.setenv(timesync.STAND_IN_VARIABLE, str(stand_in))
    system = Path("/var/lib/detoxd")
    assert timesync.stand_in_from_environment(system, system) is None  # never the system's detoxd
    assert timesync.stand_in_from_environment(tmp_path / "state", system) == stand_in

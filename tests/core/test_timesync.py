"""The decision on one adjtimex reading (detoxd.core.timesync): timedated's 16 s rule, and what
the user reads about it. The reading itself is tested in tests/service/test_timesync.py."""

from __future__ import annotations

import pytest

from detoxd.core.timesync import MAX_ERROR_US, STA_UNSYNC, UNKNOWN, TimeSync, from_timex


@pytest.mark.parametrize(("maxerror_us", "confirmed"), [
    (0, True), (1, True), (MAX_ERROR_US - 1, True),  # under 16 s: synchronised
    (MAX_ERROR_US, False), (MAX_ERROR_US + 1, False),  # 16 s (what `date -s` leaves) or more: not
    (-1, False),  # a reading the kernel never gives: not trusted
])
def test_the_clock_is_confirmed_below_16_seconds_of_maximum_error(maxerror_us: int, confirmed: bool) -> None:
    assert MAX_ERROR_US == 16_000_000
    assert from_timex(maxerror_us, 0).confirmed is confirmed
    assert from_timex(maxerror_us, STA_UNSYNC).confirmed is confirmed  # the flag alone decides nothing


def test_what_the_user_reads_about_a_reading() -> None:
    assert STA_UNSYNC == 0x40
    assert str(from_timex(12_000, 0)) == "the kernel (adjtimex): synchronised (maximum error 0.012 s)"
    assert str(from_timex(12_000, STA_UNSYNC | 0x2001, "a test stand-in")) == (
        "a test stand-in: synchronised (maximum error 0.012 s, STA_UNSYNC)")
    assert str(from_timex(16_500_000, 0x2001)) == (  # other status bits are not named
        "the kernel (adjtimex): not synchronised (maximum error 16.5 s)")
    assert from_timex(1, 0).source == "the kernel (adjtimex)"
    assert str(TimeSync(True, "systemd-timedated")) == "systemd-timedated: synchronised"
    assert str(UNKNOWN) == ("no source: not synchronised "
                            "(neither adjtimex nor systemd-timedated could be asked)")
    assert UNKNOWN.confirmed is False

"""Counting blocked lookups per (local day, device, name): only the detox's names survive."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from detoxd.core.lookups import MAX_DEVICES, Lookup, blocked_name, count, entries, keep_highest

NAMES = frozenset({"twitter.com", "linkedin.com"})
BERLIN = ZoneInfo("Europe/Berlin")


def test_only_blocked_names_and_subdomains_only_where_the_engine_blocks_them() -> None:
    assert blocked_name("Twitter.com.", NAMES, subdomains=False) == "twitter.com"
    assert blocked_name("m.twitter.com", NAMES, subdomains=False) is None
    assert blocked_name("m.twitter.com", NAMES, subdomains=True) == "twitter.com"
    assert blocked_name("nottwitter.com", NAMES, subdomains=True) is None
    assert blocked_name("com", NAMES, subdomains=True) is None
    assert blocked_name("my-bank.example", NAMES, subdomains=True) is None


def test_counted_per_local_day_and_device() -> None:
    late = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: still the 2nd
    later = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # 00:30 in Berlin: the 3rd
    found = [Lookup(late, "192.168.1.23", "twitter.com"), Lookup(later, "192.168.1.23", "twitter.com"),
             Lookup(later, "192.168.1.23", "twitter.com"), Lookup(later, " 192.168.1.40\n", "linkedin.com"),
             Lookup(later, "192.168.1.23", "my-bank.example"),
             Lookup(datetime(2026, 3, 1, 10, tzinfo=UTC), "192.168.1.23", "twitter.com")]  # before since
    counts = count(found, NAMES, BERLIN, since=datetime(2026, 3, 2, tzinfo=BERLIN), subdomains=False)
    assert counts == {(date(2026, 3, 2), "192.168.1.23", "twitter.com"): 1,
                      (date(2026, 3, 3), "192.168.1.23", "twitter.com"): 2,
                      (date(2026, 3, 3), "192.168.1.40", "linkedin.com"): 1}
    assert entries([counts, {(date(2026, 3, 3), "192.168.1.23", "twitter.com"): 5}]) == [
        {"date": "2026-03-03", "device": "192.168.1.23", "counts": {"twitter.com": 7}},
        {"date": "2026-03-03", "device": "192.168.1.40", "counts": {"linkedin.com": 1}},
        {"date": "2026-03-02", "device": "192.168.1.23", "counts": {"twitter.com": 1}}]


def test_a_days_counts_never_go_down_and_old_days_are_dropped() -> None:
    day1, day2 = date(2026, 3, 2), date(2026, 3, 3)
    before = {(day1, "a", "twitter.com"): 9, (day2, "a", "twitter.com"): 1}
    fresh = {(day1, "a", "twitter.com"): 7, (day2, "a", "twitter.com"): 3}  # the engine forgot some of day 1
    assert keep_highest(before, fresh, day1) == {(day1, "a", "twitter.com"): 9, (day2, "a", "twitter.com"): 3}
    assert keep_highest(before, fresh, day2) == {(day2, "a", "twitter.com"): 3}


def test_devices_per_day_are_bounded() -> None:
    day = date(2026, 3, 2)
    many = {(day, f"10.0.{i // 256}.{i % 256}", "twitter.com"): 1 for i in range(MAX_DEVICES + 50)}
    assert len(entries([many])) == MAX_DEVICES

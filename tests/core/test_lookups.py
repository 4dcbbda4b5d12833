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


def test_a_lookup_at_the_first_instant_counts_and_device_names_are_tidied() -> None:
    since = datetime(2026, 3, 2, 8, tzinfo=UTC)
    found = [Lookup(since, "my\t phone\n", "twitter.com"), Lookup(since, " \t", "twitter.com"),
             Lookup(since, "x" * 70, "twitter.com")]
    assert count(found, NAMES, UTC, since=since, subdomains=False) == {
        (date(2026, 3, 2), "my phone", "twitter.com"): 1,  # runs of spaces are one space
        (date(2026, 3, 2), "x" * 64, "twitter.com"): 1}  # at most 64 characters; no name: not counted


def test_a_top_level_domain_never_takes_in_the_names_below_it() -> None:
    assert blocked_name("x.com", frozenset({"com"}), subdomains=True) is None
    assert blocked_name("a.b.twitter.com", NAMES, subdomains=True) == "twitter.com"
    assert blocked_name("a.linkedin.com", frozenset({"a.linkedin.com", "linkedin.com"}), subdomains=True) == (
        "a.linkedin.com")


def test_an_entry_keeps_the_64_most_looked_up_names() -> None:
    day = date(2026, 3, 2)
    counts = {(day, "phone", f"site{n:02d}.com"): n + 1 for n in range(70)}  # site69 looked up most
    counts[(day, "phone", "a-tie.com")] = 7  # as many as site06, the 64th: the name decides
    [entry] = entries([counts])
    kept = entry["counts"]
    assert isinstance(kept, dict) and len(kept) == 64
    assert "site69.com" in kept and "site07.com" in kept and "a-tie.com" in kept
    assert "site06.com" not in kept and "site05.com" not in kept and list(kept) == sorted(kept)


def test_a_count_of_nothing_adds_no_entry() -> None:
    day = date(2026, 3, 2)
    assert dict(keep_highest({}, {(day, "a", "twitter.com"): 0}, day)) == {}

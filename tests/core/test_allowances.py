"""Allowances: budgets, opens, gaps, windows (across midnight and DST), days, the ratchet, clocks.

Every test runs on an injected clock (FakeClock), so a day of allowance time takes milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from detoxd.clock import FakeClock
from detoxd.core import allowances as al
from detoxd.core.detox import BootReading, Refusal
from detoxd.core.yamlsource import Source, parse_document

BERLIN = ZoneInfo("Europe/Berlin")
CATALOG = al.builtin_catalog()
# Monday 1 June 2026, 09:00 in Berlin (07:00 UTC)
MONDAY_9 = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)


def parse(text: str) -> tuple[tuple[al.Allowance, ...], Source]:
    source = Source("blocklist.yaml")
    root = parse_document(text, source)
    assert root is not None
    return al.parse_allowances(source, root.value["allowances"], "allowances", CATALOG), source


def rule(text: str) -> al.Allowance:
    rules, source = parse(text)
    assert not source.errors, source.errors
    return rules[0]


TWITTER = """
allowances:
  - name: twitter
    sites: [twitter.com, x.com]
    minutes_per_day: 20
    max_opens_per_day: 2
    min_gap_minutes: 60
    windows: ["Mon-Fri 12:30-12:50"]
"""


class World:
    """The daemon's view: a clock, the rules and the state, ticked and settled before each step."""

    def __init__(self, rules: Sequence[al.Allowance], start: datetime = MONDAY_9,
                 tz: ZoneInfo = BERLIN) -> None:
        self.clock = FakeClock(start)
        self.rules = tuple(rules)
        self.tz = tz
        self.state = al.started(al.AllowancesState(), self.rules, locked=True)
        self.step()

    def step(self) -> None:
        boot = BootReading(self.clock.boot_id(), self.clock.boottime())
        self.state = al.settle(al.tick(self.state, self.clock.now(), boot), self.rules, self.tz)

    def advance(self, minutes: float) -> None:
        # Ticks a minute at a time, as the daemon would (every second): the result must not
        # depend on it, which test_counting_does_not_depend_on_how_often_it_ticks checks.
        for _ in range(int(minutes)):
            self.clock.advance(60)
            self.step()
        if minutes % 1:
            self.clock.advance(minutes % 1 * 60)
            self.step()

    def open(self, name: str = "twitter", minutes: float | None = None) -> al.Opened | Refusal:
        found = al.find(self.rules, name)
        assert isinstance(found, al.Allowance)
        result = al.open_allowance(self.state, found, self.tz, minutes=minutes, detox_active=True)
        if isinstance(result, al.Opened):
            self.state = result.state
        return result

    def close(self, name: str = "twitter") -> str | Refusal:
        found = al.find(self.rules, name)
        assert isinstance(found, al.Allowance)
        result = al.close_allowance(self.state, found, self.tz)
        if isinstance(result, Refusal):
            return result
        self.state, message = result
        return message

    def is_open(self, name: str = "twitter") -> bool:
        found = al.find(self.rules, name)
        assert isinstance(found, al.Allowance)
        return al.is_open(self.state, found, self.tz)

    def status(self) -> dict[str, object]:
        return al.status(self.state, self.rules, self.tz, self.clock.now(), detox_active=True)[0]


# ---- parsing ----

def test_the_issue_example_parses() -> None:
    twitter = rule(TWITTER)
    assert twitter.name == "twitter"
    assert twitter.minutes_per_day == 20
    assert twitter.max_opens_per_day == 2
    assert twitter.min_gap_minutes == 60
    assert [str(window) for window in twitter.windows] == [
        "Mon 12:30-12:50", "Tue 12:30-12:50", "Wed 12:30-12:50", "Thu 12:30-12:50", "Fri 12:30-12:50"]


def test_a_site_brings_its_related_hosts_and_nothing_else() -> None:
    twitter = rule(TWITTER)
    for host in ("twitter.com", "www.twitter.com", "api.twitter.com", "x.com", "api.x.com",
                 "t.co", "pbs.twimg.com", "video.twimg.com", "abs.twimg.com"):
        assert twitter.opens(host), host
    for host in ("facebook.com", "nottwitter.com", "linkedin.com"):
        assert not twitter.opens(host), host


def test_a_preset_opens_all_its_sites_and_a_plain_domain_itself() -> None:
    linkedin = rule('allowances:\n  - name: linkedin\n    sites: [professional-networking]\n'
                    '    windows: ["Sat 10:00-10:30"]\n')
    assert linkedin.opens("media.licdn.com") and linkedin.opens("www.xing.com")
    assert linkedin.minutes_per_day == 0
    news = rule("allowances:\n  - name: hn\n    sites: [news.ycombinator.com]\n    minutes_per_day: 5\n")
    assert news.domains == frozenset({"news.ycombinator.com"})
    by_site = rule("allowances:\n  - name: t\n    sites: [twitter]\n    minutes_per_day: 5\n")
    assert by_site.domains == frozenset(CATALOG["twitter"])


@pytest.mark.parametrize(("text", "expected"), [
    ("Mon-Fri 12:30-12:50", [(d, 750, 770) for d in range(5)]),
    ("Sat 10:00-10:30", [(5, 600, 630)]),
    ("12:00-12:15", [(d, 720, 735) for d in range(7)]),
    ("daily 12:00-12:15", [(d, 720, 735) for d in range(7)]),
    ("Sat,Sun 09:00-24:00", [(5, 540, 1440), (6, 540, 1440)]),
    ("Fri-Mon 08:00-08:10", [(0, 480, 490), (4, 480, 490), (5, 480, 490), (6, 480, 490)]),
    ("Fri 23:30-00:30", [(4, 1410, 1470)]),  # past midnight: ends Saturday 00:30
    ("monday 7:05-7:10", [(0, 425, 430)]),
])
def test_windows(text: str, expected: list[tuple[int, int, int]]) -> None:
    parsed = al.parse_window(text)
    assert not isinstance(parsed, str), parsed
    assert sorted((w.day, w.start, w.end) for w in parsed) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("Mon-Fri", "is not a window"),
    ("Mon-Fri 12:30", "is not a window"),
    ("Mo-Xy 12:30-12:50", "days are Mon..Sun"),
    ("Mon 25:00-26:00", "times are HH:MM"),
    ("Mon 12:61-13:00", "times are HH:MM"),
    ("Mon 12:00-12:00", "must not start when it ends"),
])
def test_bad_windows_say_why(text: str, problem: str) -> None:
    parsed = al.parse_window(text)
    assert isinstance(parsed, str) and problem in parsed


def test_every_error_names_its_line_and_key() -> None:
    text = """allowances:
  - name: twitter
    sites: [twiter..com]
    minutes_per_day: -5
    windows: ["Mon-Fri 12:30"]
    colour: blue
  - name: Twitter Two
    sites: [x.com]
  - name: twitter
    sites: [x.com]
    minutes_per_day: 5
    day_starts_at: "4 am"
"""
    rules, source = parse(text)
    assert rules == ()
    messages = [str(issue) for issue in source.errors]
    expected = [
        "blocklist.yaml:3: allowances[0].sites[0]: ",
        "blocklist.yaml:4: allowances[0].minutes_per_day: must be between 0 and 1440, got -5",
        "blocklist.yaml:5: allowances[0].windows[0]: 'Mon-Fri 12:30' is not a window",
        "blocklist.yaml:6: allowances[0].colour: unknown key",
        "blocklist.yaml:7: allowances[1].name: 'Twitter Two': use lower-case letters",
        "blocklist.yaml:7: allowances[1]: an allowance needs minutes_per_day, windows, or both",
        "blocklist.yaml:12: allowances[2].day_starts_at: '4 am' is not a time of day",
    ]
    assert len(messages) == len(expected), messages
    for prefix in expected:
        assert any(message.startswith(prefix) for message in messages), (prefix, messages)


def test_a_second_allowance_with_the_same_name_is_an_error() -> None:
    _, source = parse("allowances:\n  - {name: a, sites: [x.com], minutes_per_day: 5}\n"
                      "  - {name: a, sites: [t.co], minutes_per_day: 5}\n")
    assert [str(issue) for issue in source.errors] == [
        "blocklist.yaml:3: allowances[1].name: 'a' is already the name of allowances[0]"]


# ---- budgets, opens and gaps ----

def test_open_defaults_to_what_is_left_and_comes_back_by_itself() -> None:
    world = World([rule(TWITTER)])
    assert not world.is_open()
    opened = world.open()
    assert isinstance(opened, al.Opened), opened
    assert opened.granted_seconds == 20 * 60
    assert world.is_open()
    world.advance(19.5)
    assert world.is_open()
    assert world.status()["minutes_left_today"] == 0
    world.advance(0.5)
    assert not world.is_open()
    assert world.state.usage_of("twitter").spent_seconds == pytest.approx(1200)


def test_close_keeps_the_unused_time() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(minutes=10), al.Opened)
    world.advance(4)
    assert world.close() == "twitter is blocked again; 16 min left today"
    assert not world.is_open()
    world.advance(120)
    assert world.status()["minutes_left_today"] == 16
    assert world.state.usage_of("twitter").spent_seconds == pytest.approx(240)


def test_a_spent_budget_is_refused() -> None:
    world = World([rule(TWITTER.replace("max_opens_per_day: 2", "max_opens_per_day: 5")
                        .replace("min_gap_minutes: 60", "min_gap_minutes: 0"))])
    assert isinstance(world.open(minutes=15), al.Opened)
    world.advance(15)
    asked_more = world.open(minutes=10)
    assert isinstance(asked_more, al.Opened) and asked_more.granted_seconds == 300
    assert "all that is left today" in asked_more.message
    world.advance(5)
    refused = world.open()
    assert isinstance(refused, Refusal)
    assert refused.reason == "today's 20 min for twitter are used up; a new day starts Tue 00:00"


def test_opens_per_day_are_limited() -> None:
    world = World([rule(TWITTER.replace("min_gap_minutes: 60", "min_gap_minutes: 0"))])
    for _ in range(2):
        assert isinstance(world.open(minutes=1), al.Opened)
        world.advance(1)
    refused = world.open(minutes=1)
    assert isinstance(refused, Refusal)
    assert "already opened 2 times today, the most allowed" in refused.reason
    assert world.status()["opens_left_today"] == 0


def test_the_gap_counts_from_the_end_of_the_last_open() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(minutes=5), al.Opened)
    world.advance(5)
    world.advance(59)
    refused = world.open()
    assert isinstance(refused, Refusal)
    assert refused.reason.startswith("twitter can open again in 1 min, at 10:05")
    world.advance(1)
    assert isinstance(world.open(), al.Opened)


def test_a_second_open_while_open_is_refused() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(minutes=5), al.Opened)
    refused = world.open(minutes=5)
    assert isinstance(refused, Refusal) and "already open (5 min left)" in refused.reason


def test_nothing_opens_outside_a_detox() -> None:
    twitter = rule(TWITTER)
    state = al.tick(al.AllowancesState(), MONDAY_9, BootReading("b", 1.0))
    refused = al.open_allowance(state, twitter, BERLIN, minutes=None, detox_active=False)
    assert isinstance(refused, Refusal) and "no detox is running" in refused.reason


def test_counting_does_not_depend_on_how_often_it_ticks() -> None:
    coarse = World([rule(TWITTER)])
    fine = World([rule(TWITTER)])
    for world in (coarse, fine):
        assert isinstance(world.open(minutes=12), al.Opened)
    coarse.clock.advance(7 * 60)
    coarse.step()
    fine.advance(7)
    assert coarse.state.usage_of("twitter") == fine.state.usage_of("twitter")


# ---- days ----

def test_a_new_day_refills_at_midnight_local_time() -> None:
    world = World([rule(TWITTER)], start=datetime(2026, 6, 1, 21, 0, tzinfo=UTC))  # 23:00 Berlin
    assert isinstance(world.open(), al.Opened)
    world.advance(20)
    assert world.status()["minutes_left_today"] == 0
    world.advance(40)  # 00:00 in Berlin
    assert world.status()["minutes_left_today"] == 20
    assert world.status()["opens_left_today"] == 2


def test_day_starts_at_moves_the_boundary() -> None:
    text = TWITTER.replace("min_gap_minutes: 60", 'day_starts_at: "04:00"')
    world = World([rule(text)], start=datetime(2026, 6, 1, 22, 0, tzinfo=UTC))  # 00:00 Berlin
    assert isinstance(world.open(), al.Opened)
    world.advance(20)
    world.advance(3 * 60 + 39)  # 03:59: still the same day
    assert world.status()["minutes_left_today"] == 0
    world.advance(1)
    assert world.status()["minutes_left_today"] == 20


def test_an_open_session_over_midnight_charges_the_new_day_for_its_part() -> None:
    world = World([rule(TWITTER)], start=datetime(2026, 6, 1, 21, 50, tzinfo=UTC))  # 23:50
    assert isinstance(world.open(minutes=20), al.Opened)
    world.advance(20)
    assert not world.is_open()
    assert world.state.usage_of("twitter").spent_seconds == pytest.approx(600)


def test_a_clock_set_back_refills_nothing() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(), al.Opened)
    world.advance(20)
    world.clock.jump(-24 * 3600)  # yesterday, says the system clock
    world.step()
    assert world.status()["minutes_left_today"] == 0
    assert isinstance(world.open(), Refusal)


def test_a_clock_set_forward_refills_nothing_and_opens_no_window() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(), al.Opened)
    world.advance(20)
    world.clock.jump(24 * 3600)  # tomorrow, says the system clock
    world.step()
    assert world.status()["minutes_left_today"] == 0
    world.clock.jump(-24 * 3600 + 3.5 * 3600 - 20 * 60)  # 12:30 today: the window's start
    world.step()
    assert not world.is_open()


def test_small_clock_corrections_are_followed() -> None:
    world = World([rule(TWITTER)])
    world.clock.jump(1.5)  # an NTP step
    world.step()
    assert world.state.clock is not None and world.state.clock.at == world.clock.now()


def test_after_a_reboot_the_trusted_clock_follows_the_wall_clock_but_not_backwards() -> None:
    world = World([rule(TWITTER)])
    world.clock.jump(3600)  # not followed within the boot
    world.step()
    assert world.state.clock is not None
    behind = world.clock.now() - world.state.clock.at
    assert behind == timedelta(hours=1)
    world.clock.reboot(downtime_seconds=600, boot_id="boot-2")
    world.step()
    assert world.state.clock.at == world.clock.now()
    world.clock.reboot(downtime_seconds=-7200, boot_id="boot-3")  # set back while off
    world.step()
    assert world.state.clock.at > world.clock.now()


# ---- windows ----

def test_a_window_opens_and_closes_on_its_own_without_spending() -> None:
    world = World([rule(TWITTER)])
    world.advance(3 * 60 + 29)  # 12:29
    assert not world.is_open()
    world.advance(1)
    assert world.is_open()
    status = world.status()
    assert status["open_until"] == "2026-06-01T10:50:00+00:00"
    world.advance(18)
    soon = al.closing_soon(world.state, world.rules, BERLIN)
    assert [(r.name, until.isoformat()) for r, until in soon] == [("twitter", "2026-06-01T10:50:00+00:00")]
    world.advance(2)
    assert not world.is_open()
    assert world.status()["minutes_left_today"] == 20
    assert world.status()["next_window"] == "2026-06-02T10:30:00+00:00"


def test_close_during_a_window_blocks_for_the_rest_of_it() -> None:
    world = World([rule(TWITTER)])
    world.advance(3 * 60 + 35)  # 12:35
    assert world.is_open()
    assert isinstance(world.close(), str)
    assert not world.is_open()
    assert isinstance(world.open(minutes=2), al.Opened)  # the budget is still there
    world.advance(2)
    assert not world.is_open()
    world.advance(24 * 60)  # the next day's window opens again
    assert world.is_open()


def test_windows_only_allowance_refuses_open_outside_its_window() -> None:
    linkedin = rule('allowances:\n  - name: linkedin\n    sites: [linkedin.com]\n'
                    '    windows: ["Sat 10:00-10:30"]\n')
    world = World([linkedin])
    refused = world.open("linkedin")
    assert isinstance(refused, Refusal)
    assert refused.reason == "linkedin opens only in its windows: next Sat 10:00"


def test_a_window_across_midnight_spans_two_days() -> None:
    late = rule('allowances:\n  - name: t\n    sites: [x.com]\n    windows: ["Fri 23:30-00:30"]\n')
    world = World([late], start=datetime(2026, 6, 5, 21, 29, tzinfo=UTC))  # Friday 23:29 Berlin
    assert not world.is_open("t")
    world.advance(1)
    assert world.is_open("t")
    world.advance(59)  # Saturday 00:29
    assert world.is_open("t")
    world.advance(1)
    assert not world.is_open("t")


def test_touching_windows_are_one_span() -> None:
    joined = rule('allowances:\n  - name: t\n    sites: [x.com]\n'
                  '    windows: ["Sun 23:30-24:00", "Mon 00:00-00:30"]\n')
    sunday = datetime(2026, 6, 7, 21, 45, tzinfo=UTC)  # Sunday 23:45 Berlin
    span = al.current_window(joined, sunday, BERLIN)
    assert span == (datetime(2026, 6, 7, 21, 30, tzinfo=UTC), datetime(2026, 6, 7, 22, 30, tzinfo=UTC))


def test_windows_keep_local_time_across_the_spring_change() -> None:
    # Berlin: Sunday 29 March 2026, 02:00 CET -> 03:00 CEST.
    daily = rule('allowances:\n  - name: t\n    sites: [x.com]\n    windows: ["12:30-12:50"]\n')
    saturday = datetime(2026, 3, 28, 11, 30, tzinfo=UTC)  # 12:30 CET
    sunday = datetime(2026, 3, 29, 10, 30, tzinfo=UTC)  # 12:30 CEST
    assert al.current_window(daily, saturday, BERLIN) is not None
    assert al.next_window(daily, saturday, BERLIN) == (sunday, sunday + timedelta(minutes=20))
    world = World([daily], start=datetime(2026, 3, 28, 11, 50, tzinfo=UTC))
    world.advance(22 * 60 + 39)  # 23 real hours later it is 12:29 CEST
    assert not world.is_open("t")
    world.advance(1)
    assert world.is_open("t")


def test_a_window_in_the_hour_that_repeats_happens_once() -> None:
    # Berlin: Sunday 25 October 2026, 03:00 CEST -> 02:00 CET; 02:10-02:40 comes twice.
    night = rule('allowances:\n  - name: t\n    sites: [x.com]\n    windows: ["Sun 02:10-02:40"]\n')
    first = datetime(2026, 10, 25, 0, 10, tzinfo=UTC)  # 02:10 CEST
    assert al.current_window(night, first, BERLIN) == (first, first + timedelta(minutes=30))
    assert al.current_window(night, first + timedelta(hours=1), BERLIN) is None  # 02:10 CET


def test_a_window_across_the_autumn_change_lasts_an_hour_longer() -> None:
    night = rule('allowances:\n  - name: t\n    sites: [x.com]\n    windows: ["Sun 01:30-03:30"]\n')
    start = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # 01:30 CEST
    span = al.current_window(night, start, BERLIN)
    assert span is not None and span[1] - span[0] == timedelta(hours=3)


def test_a_day_across_a_dst_change_is_still_one_day() -> None:
    twitter = rule(TWITTER)
    before = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)  # Sunday 00:30 CEST
    after = datetime(2026, 10, 25, 22, 30, tzinfo=UTC)  # Sunday 23:30 CET
    assert al.day_of(before, BERLIN, 0) == al.day_of(after, BERLIN, 0)
    assert al.day_of(after + timedelta(hours=1), BERLIN, 0) > al.day_of(after, BERLIN, 0)
    assert twitter.day_starts_at == 0


# ---- the ratchet ----

def ratchet(old_text: str, new_text: str) -> tuple[tuple[al.Allowance, ...], list[str]]:
    old, _ = parse(old_text)
    new, source = parse(new_text)
    assert not source.errors
    held, issues = al.ratchet(old, new, "blocklist.yaml")
    return held, [str(issue) for issue in issues]


def test_a_lock_allows_lowering_and_shortening() -> None:
    lowered = (TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 10")
               .replace("12:30-12:50", "12:30-12:40").replace("Mon-Fri", "Mon-Wed")
               .replace("max_opens_per_day: 2", "max_opens_per_day: 1")
               .replace("min_gap_minutes: 60", "min_gap_minutes: 90")
               .replace("[twitter.com, x.com]", "[x.com]"))
    held, issues = ratchet(TWITTER, lowered)
    assert issues == []
    assert held == parse(lowered)[0]


def test_a_lock_refuses_raising_and_adding() -> None:
    raised = (TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 30")
              .replace("12:30-12:50", "12:00-12:50")
              .replace("    max_opens_per_day: 2\n", "")
              .replace("min_gap_minutes: 60", "min_gap_minutes: 10")
              .replace("[twitter.com, x.com]", "[twitter.com, facebook.com]")
              + "  - name: reddit\n    sites: [reddit.com]\n    minutes_per_day: 5\n")
    held, issues = ratchet(TWITTER, raised)
    assert [h.name for h in held] == ["twitter"]
    twitter = held[0]
    original = rule(TWITTER)
    assert twitter.minutes_per_day == 20
    assert twitter.max_opens_per_day == 2
    assert twitter.min_gap_minutes == 60
    assert twitter.windows == original.windows  # only the part within 12:30-12:50 stays
    assert twitter.domains == original.domains
    assert issues == [
        "blocklist.yaml:5: allowances[0].minutes_per_day: warning: raised from 20 to 30 during a "
        "locked detox: refused until it ends",
        "blocklist.yaml:3: allowances[0].max_opens_per_day: warning: raised from 2 to no limit during a "
        "locked detox: refused until it ends",
        "blocklist.yaml:6: allowances[0].min_gap_minutes: warning: lowered from 60 to 10 during a "
        "locked detox: refused until it ends",
        "blocklist.yaml:4: allowances[0].sites: warning: sites added (facebook.com, facebook.net, fb.com, "
        "fb.me, fb.watch) during a locked detox: refused until it ends",
        "blocklist.yaml:7: allowances[0].windows: warning: windows widened or added during a "
        "locked detox: refused until it ends",
        "blocklist.yaml:8: allowances[1]: warning: new allowance 'reddit' refused: allowances cannot be "
        "added during a locked detox",
    ]


def test_a_removed_allowance_cannot_come_back_during_the_lock() -> None:
    held, _ = ratchet(TWITTER, "allowances: []\n")
    assert held == ()
    again, issues = al.ratchet(held, [rule(TWITTER)], "blocklist.yaml")
    assert again == () and "new allowance 'twitter' refused" in issues[0].message


def test_no_lock_no_ratchet() -> None:
    raised = rule(TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 60"))
    assert al.ratchet(None, [raised], "blocklist.yaml") == ((raised,), [])


@pytest.mark.parametrize(("new", "old", "expected"), [
    ([(0, 720, 780)], [(0, 750, 770)], [(0, 750, 770)]),
    ([(0, 720, 780)], [(0, 700, 730), (0, 730, 800)], [(0, 720, 780)]),  # two touching: no loss
    ([(6, 1410, 1470)], [(0, 0, 60)], [(0, 0, 30)]),  # across the week's end
    ([(0, 0, 60)], [(6, 1410, 1470)], [(0, 0, 30)]),
    ([(2, 600, 660)], [(0, 600, 660)], []),
])
def test_intersect_windows(new: list[tuple[int, int, int]], old: list[tuple[int, int, int]],
                           expected: list[tuple[int, int, int]]) -> None:
    result = al.intersect_windows([al.Window(*w) for w in new], [al.Window(*w) for w in old])
    assert [(w.day, w.start, w.end) for w in result] == expected


def test_a_lowered_budget_shortens_an_open_session() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(minutes=15), al.Opened)
    world.advance(5)
    world.rules = (rule(TWITTER.replace("minutes_per_day: 20", "minutes_per_day: 8")),)
    world.step()
    assert world.is_open()
    world.advance(3)
    assert not world.is_open()
    assert world.state.usage_of("twitter").spent_seconds == pytest.approx(480)


# ---- names ----

def test_only_blocked_names_of_open_allowances_are_let_through() -> None:
    world = World([rule(TWITTER)])
    blocked = frozenset({"twitter.com", "www.twitter.com", "api.x.com", "pbs.twimg.com", "facebook.com"})
    assert al.unblocked(blocked, al.open_rules(world.state, world.rules, BERLIN)) == frozenset()
    assert isinstance(world.open(), al.Opened)
    opened = al.unblocked(blocked, al.open_rules(world.state, world.rules, BERLIN))
    assert opened == blocked - {"facebook.com"}


# ---- status and persistence ----

def test_status_fields() -> None:
    world = World([rule(TWITTER)])
    assert world.status() == {"name": "twitter", "open": False, "open_until": None,
                              "minutes_left_today": 20, "opens_left_today": 2,
                              "next_window": "2026-06-01T10:30:00+00:00"}
    assert isinstance(world.open(minutes=6), al.Opened)
    world.advance(1)
    assert world.status() == {"name": "twitter", "open": True, "open_until": "2026-06-01T07:06:00+00:00",
                              "minutes_left_today": 14, "opens_left_today": 1,
                              "next_window": "2026-06-01T10:30:00+00:00"}


def test_status_shows_times_on_the_system_clock() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(minutes=6), al.Opened)
    world.clock.jump(3600)  # not trusted, but what the user's clock shows
    world.step()
    assert world.status()["open_until"] == "2026-06-01T08:06:00+00:00"


def test_state_survives_a_restart_in_the_middle_of_an_open() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(minutes=10), al.Opened)
    world.advance(4)
    saved = json.dumps(al.to_json(world.state))
    world.state = al.from_json(json.loads(saved))
    world.advance(5.5)
    assert world.is_open()
    world.advance(0.5)
    assert not world.is_open()
    assert world.state.usage_of("twitter").spent_seconds == pytest.approx(600)
    assert al.from_json(json.loads(json.dumps(al.to_json(world.state)))) == world.state


def test_a_reboot_during_an_open_counts_the_downtime() -> None:
    world = World([rule(TWITTER)])
    assert isinstance(world.open(minutes=10), al.Opened)
    world.advance(2)
    state = al.from_json(json.loads(json.dumps(al.to_json(world.state))))
    world.state = state
    world.clock.reboot(downtime_seconds=300, boot_id="boot-2")
    world.step()
    assert world.is_open()
    assert world.state.usage_of("twitter").spent_seconds == pytest.approx(420, abs=11)
    world.advance(3)
    assert not world.is_open()


@pytest.mark.parametrize("damage", [
    {"version": 2},
    {"version": 1, "clock": None, "usage": {"t": {"day": None, "spent_seconds": "nan", "opens": 0,
                                                  "last_closed": None, "session": None,
                                                  "window_closed_until": None}}, "ceiling": None},
    {"version": 1, "clock": None, "usage": {}, "ceiling": [
        {"name": "t", "domains": ["x.com\n0.0.0.0 evil"], "minutes_per_day": 1, "max_opens_per_day": None,
         "min_gap_minutes": 0, "windows": [], "day_starts_at": 0}]},
])
def test_damaged_state_is_refused(damage: dict[str, object]) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        al.from_json(damage)


def test_the_end_of_a_detox_forgets_usage_and_the_ceiling_but_keeps_the_clock() -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    trusted = al.TrustedClock.first(start, BootReading("boot-1", 100.0))
    state = al.AllowancesState(trusted, {"twitter": al.Usage(spent_seconds=60.0, opens=1)},
                               (rule(TWITTER),))
    assert al.ended(state) == al.AllowancesState(trusted, {}, None)


def test_the_state_file_field_for_field_and_each_damage_named() -> None:
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    state = al.AllowancesState(
        al.TrustedClock(at, al.Checkpoint(at, BootReading("boot-1", 100.5))),
        {"twitter": al.Usage(day=at.date(), spent_seconds=61.5, opens=2, last_closed=at,
                             session=al.RunningOpen(at + timedelta(minutes=5), at),
                             window_closed_until=at + timedelta(hours=1))},
        (al.Allowance("twitter", frozenset({"x.com", "twitter.com"}), 20.0, 2, 60.0,
                      (al.Window(0, 750, 770),), 240),))
    data = al.to_json(state)
    assert data == {
        "version": 1,
        "clock": {"at": "2026-03-02T09:00:00+00:00", "wall": "2026-03-02T09:00:00+00:00",
                  "boot_id": "boot-1", "boottime": 100.5},
        "usage": {"twitter": {"day": "2026-03-02", "spent_seconds": 61.5, "opens": 2,
                              "last_closed": "2026-03-02T09:00:00+00:00",
                              "session": {"until": "2026-03-02T09:05:00+00:00",
                                          "counted_to": "2026-03-02T09:00:00+00:00"},
                              "window_closed_until": "2026-03-02T10:00:00+00:00"}},
        "ceiling": [{"name": "twitter", "domains": ["twitter.com", "x.com"], "minutes_per_day": 20.0,
                     "max_opens_per_day": 2, "min_gap_minutes": 60.0, "windows": [[0, 750, 770]],
                     "day_starts_at": 240}]}
    assert al.from_json(json.loads(json.dumps(data))) == state
    empty = al.from_json({"version": 1, "clock": None, "usage": {"t": {
        "day": None, "spent_seconds": 0, "opens": 0, "last_closed": None, "session": None,
        "window_closed_until": None}}, "ceiling": None})
    assert empty == al.AllowancesState(None, {"t": al.Usage()}, None)
    usage = data["usage"]["twitter"]
    ceiling = data["ceiling"][0]
    not_finite = "is not a finite, non-negative number"
    for damage, message in [
        ([], "not a version 1 allowances state"),
        ({**data, "version": "1"}, "not a version 1 allowances state"),
        ({**data, "usage": {"t": {**usage, "spent_seconds": -1}}}, f"-1 {not_finite}"),
        ({**data, "usage": {"t": {**usage, "spent_seconds": "inf"}}}, f"'inf' {not_finite}"),
        ({**data, "usage": {"t": {**usage, "last_closed": "2026-03-02T09:00:00"}}},
         "'2026-03-02T09:00:00' has no time zone"),
        ({**data, "ceiling": [{**ceiling, "domains": ["X.com"]}]}, "invalid domain 'X.com'"),
        ({**data, "ceiling": [{**ceiling, "min_gap_minutes": -0.5}]}, f"-0.5 {not_finite}"),
    ]:
        with pytest.raises(ValueError) as raised:
            al.from_json(damage)
        assert str(raised.value) == message
    assert al._finite(0) == 0.0


def test_windows_that_only_touch_share_nothing() -> None:
    before = al.Window(0, 12 * 60, 12 * 60 + 30)  # Monday 12:00-12:30
    after = al.Window(0, 12 * 60 + 30, 13 * 60)  # Monday 12:30-13:00
    assert al.intersect_windows([after], [before]) == ()
    assert al.intersect_windows([after], [al.Window(0, 12 * 60 + 29, 13 * 60)]) == (after,)


def test_moving_the_start_of_the_day_is_refused_during_the_lock() -> None:
    moved = TWITTER + "    day_starts_at: '04:00'\n"
    held, issues = ratchet(TWITTER, moved)
    assert held == (rule(TWITTER),)
    assert issues == ["blocklist.yaml:9: allowances[0].day_starts_at: warning: changed during a locked "
                      "detox: refused until it ends"]

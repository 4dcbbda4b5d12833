"""Weekly block windows: parsing (FILE:LINE: key), planning over weeks, midnight, DST, a time zone
change and clock jumps (the allowances' trusted clock), the ratchet and `lock: true`, persistence.

All pure, on injected time (FakeClock where a clock is read): a month of windows takes milliseconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from detoxd.clock import FakeClock
from detoxd.core import allowances as al
from detoxd.core import schedule as sc
from detoxd.core.config import parse_main
from detoxd.core.detox import BootReading

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
MONDAY = datetime(2026, 6, 1, tzinfo=BERLIN)  # Monday 1 June 2026, 00:00 in Berlin
WORKDAYS = """schedule:
  - name: workdays
    days: [mon, tue, wed, thu, fri]
    from: "09:00"
    to: "17:30"
    block:
      presets: [social]
      domains: [news.ycombinator.com]
"""
NIGHT = """schedule:
  - name: night
    days: [sun]
    from: "22:00"
    to: "07:00"
    lock: true
"""


def entries(text: str) -> tuple[sc.BlockWindow, ...]:
    config, source = parse_main(text)
    assert config is not None and not source.errors, [str(issue) for issue in source.errors]
    return config.schedule


def local(day: int, hour: int, minute: int = 0, tz: ZoneInfo = BERLIN) -> datetime:
    """Day ``day`` of June 2026 (1 = Monday) at a local time, as a UTC moment."""
    return datetime(2026, 6, day, hour, minute, tzinfo=tz).astimezone(UTC)


def test_the_contract_keys_parse() -> None:
    (workdays,) = entries(WORKDAYS)
    assert workdays.name == "workdays" and workdays.days == frozenset(range(5))
    assert (workdays.start, workdays.end) == (9 * 60, 17 * 60 + 30)
    assert workdays.presets == ("social",) and workdays.domains == ("news.ycombinator.com",)
    assert not workdays.lock and not workdays.whole_blocklist
    (night,) = entries(NIGHT)
    assert night.whole_blocklist and night.lock and night.end == 31 * 60  # 07:00 the next day


def test_errors_name_file_line_and_key() -> None:
    _, source = parse_main("""detox:
  after: [weekend]
schedule:
  - name: workdays
    days: [mon, funday]
    from: 9am
    to: 17:30
    block:
      presets: [nosuchpreset]
    colour: red
  - name: loop
    days: [mon]
    from: "10:00"
    to: "10:00"
""")
    found = {str(issue) for issue in source.errors}
    assert ("detoxd.yaml:5: schedule[0].days[1]: 'funday' is not a day "
            "(mon, tue, wed, thu, fri, sat, sun)") in found
    assert any(text.startswith("detoxd.yaml:6: schedule[0].from: '9am' is not a time") for text in found)
    assert 'detoxd.yaml:7: schedule[0].to: write the time in quotes, like "17:30"' in found
    assert any(text.startswith("detoxd.yaml:9: schedule[0].block.presets[0]: unknown preset")
               for text in found)
    assert any(text.startswith("detoxd.yaml:10: schedule[0].colour: unknown key") for text in found)
    assert "detoxd.yaml:14: schedule[1].to: a window must not end when it starts" in found


def test_an_entry_in_error_is_not_also_reported_as_missing_from_detox_after() -> None:
    _, source = parse_main("detox:\n  after: [workdays]\n" + WORKDAYS.replace('"17:30"', "17:30"))
    assert [issue.path for issue in source.errors] == ["schedule[0].to"]


def test_detox_after_must_name_an_entry() -> None:
    _, source = parse_main("detox:\n  after: [weekend]\n" + WORKDAYS)
    assert [str(issue) for issue in source.errors] == [
        "detoxd.yaml:2: detox.after[0]: no schedule entry named 'weekend' (schedule entries: workdays)"]


def test_detox_after_names_entries() -> None:
    config, source = parse_main("detox:\n  after: [workdays]\n" + WORKDAYS)
    assert config is not None and not source.errors
    assert config.detox.after == ("workdays",)


def test_four_weeks_of_workday_windows_open_and_close_on_time() -> None:
    (workdays,) = entries(WORKDAYS)
    moment, opened, closed = local(1, 0), [], []
    end = moment + timedelta(days=28)
    while True:
        change = sc.next_change_of(workdays, moment, BERLIN)
        assert change is not None and change > moment
        if change >= end:
            break
        (opened if not sc.is_active(workdays, moment, BERLIN) else closed).append(change)
        moment = change
    assert len(opened) == len(closed) == 20  # five a week, four weeks
    assert all(when.astimezone(BERLIN).strftime("%a %H:%M") in
               {f"{day} 09:00" for day in ("Mon", "Tue", "Wed", "Thu", "Fri")} for when in opened)
    assert {when.astimezone(BERLIN).strftime("%H:%M") for when in closed} == {"17:30"}
    assert not sc.is_active(workdays, local(6, 12), BERLIN)  # Saturday


def test_a_window_across_midnight_blocks_into_the_next_day() -> None:
    (night,) = entries(NIGHT)
    assert sc.is_active(night, local(7, 23), BERLIN)  # Sunday 23:00
    assert sc.is_active(night, local(8, 6, 59), BERLIN)  # Monday 06:59
    assert not sc.is_active(night, local(8, 7), BERLIN)
    assert sc.next_change_of(night, local(7, 23), BERLIN) == local(8, 7)
    assert not sc.is_active(night, local(7, 21, 59), BERLIN)


def test_dst_the_window_keeps_its_wall_times() -> None:
    (workdays,) = entries(WORKDAYS)
    # Friday 23 October and Monday 26 October 2026: the clocks went back on the Sunday between.
    friday = datetime(2026, 10, 23, 9, 0, tzinfo=BERLIN)
    monday = datetime(2026, 10, 26, 9, 0, tzinfo=BERLIN)
    assert sc.next_change_of(workdays, friday - timedelta(minutes=1), BERLIN) == friday
    assert sc.next_change_of(workdays, datetime(2026, 10, 24, tzinfo=BERLIN), BERLIN) == monday
    assert monday.astimezone(UTC) - friday.astimezone(UTC) == timedelta(days=3, hours=1)  # 73 h, 09:00 both
    # A window through the hour that is skipped in spring (29 March 2026, 02:00 -> 03:00).
    (spring,) = entries(WORKDAYS.replace("[mon, tue, wed, thu, fri]", "[sun]")
                        .replace('"09:00"', '"02:30"').replace('"17:30"', '"04:00"'))
    sunday = datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN)
    opens = sc.next_change_of(spring, sunday, BERLIN)
    assert opens is not None and opens.astimezone(BERLIN).strftime("%H:%M") == "03:30"
    assert sc.next_change_of(spring, opens, BERLIN) == datetime(2026, 3, 29, 4, 0, tzinfo=BERLIN)


def test_a_time_zone_change_moves_the_windows_to_the_new_wall_clock() -> None:
    (workdays,) = entries(WORKDAYS)
    moment = local(1, 12)  # Monday 12:00 in Berlin = 19:00 in Tokyo
    assert sc.is_active(workdays, moment, BERLIN)
    assert not sc.is_active(workdays, moment, TOKYO)
    assert sc.next_change_of(workdays, moment, TOKYO) == local(2, 9, tz=TOKYO)


def test_clock_jumps_do_not_open_or_close_a_window() -> None:
    """The windows read the allowances' trusted clock: the wall clock set to Saturday (or back
    to Sunday night) moves nothing; real time passing does."""
    (workdays,) = entries(WORKDAYS)
    clock = FakeClock(local(1, 10))  # Monday 10:00: in the window
    state = al.tick(al.AllowancesState(), clock.now(), BootReading(clock.boot_id(), clock.boottime()))

    def trusted() -> datetime:
        nonlocal state
        state = al.tick(state, clock.now(), BootReading(clock.boot_id(), clock.boottime()))
        assert state.clock is not None
        return state.clock.at

    assert sc.is_active(workdays, trusted(), BERLIN)
    clock.jump(5 * 86400)  # set to Saturday
    assert sc.is_active(workdays, trusted(), BERLIN)
    clock.jump(-6 * 86400)  # set back to Sunday night
    assert sc.is_active(workdays, trusted(), BERLIN)
    clock.advance(8 * 3600)  # 18:00 for real
    assert not sc.is_active(workdays, trusted(), BERLIN)


def test_active_names_are_the_union_of_the_active_windows() -> None:
    (workdays,) = entries(WORKDAYS)
    (night,) = entries(NIGHT)
    whole = frozenset({"reddit.com", "www.reddit.com"})
    names = {rule: sc.names_of(rule, whole, lambda preset: ("x.com", "t.co"), ())
             for rule in (workdays, night)}
    assert names[workdays] == {"x.com", "t.co", "news.ycombinator.com", "www.news.ycombinator.com"}
    assert names[night] == whole
    assert sc.active_names((workdays, night), names, local(1, 10), BERLIN) == names[workdays]
    assert sc.active_names((workdays, night), names, local(7, 23), BERLIN) == whole
    assert sc.active_names((workdays, night), names, local(6, 10), BERLIN) == frozenset()
    assert sc.next_change((workdays, night), sc.ScheduleState(), local(6, 10), BERLIN) == local(7, 22)


# ---- the ratchet ----

def test_a_window_in_force_cannot_be_shortened_until_it_ends() -> None:
    (workdays,) = entries(WORKDAYS)
    (shorter,) = entries(WORKDAYS.replace('"17:30"', '"12:00"'))
    state, _ = sc.reconcile(sc.ScheduleState(), (workdays,), local(1, 8), BERLIN)
    state, issues = sc.reconcile(state, (shorter,), local(1, 10), BERLIN)  # in force
    assert [held.edit for held in state.held] == ["shorter"]
    (warning,) = issues
    assert str(warning).startswith("detoxd.yaml:2: schedule[0]: warning: schedule entry 'workdays' shorter: "
                                   "held until Mon 2026-06-01 17:30")
    rules = sc.in_force(state, (shorter,), detox_active=False, after=())
    names = {rule: frozenset({rule.describe()}) for rule in rules}
    assert sc.active_names(rules, names, local(1, 13), BERLIN) == {workdays.describe()}
    assert sc.next_change(rules, state, local(1, 13), BERLIN) == local(1, 17, 30)
    state, released = sc.release(state, local(1, 17, 30), BERLIN)
    assert [held.rule for held in released] == [workdays] and state.held == ()
    # Outside its window the same edit applies at once.
    state, issues = sc.reconcile(sc.ScheduleState((workdays,)), (shorter,), local(1, 18), BERLIN)
    assert state.held == () and issues == []


def test_removing_a_window_in_force_is_held_and_adding_or_widening_is_immediate() -> None:
    (workdays,) = entries(WORKDAYS)
    state, issues = sc.reconcile(sc.ScheduleState((workdays,)), (), local(1, 10), BERLIN)
    assert [held.edit for held in state.held] == ["removed"] and len(issues) == 1
    (wider,) = entries(WORKDAYS.replace('"17:30"', '"19:00"').replace("fri]", "fri, sat]"))
    state, issues = sc.reconcile(sc.ScheduleState((workdays,)), (wider,), local(1, 10), BERLIN)
    assert state.held == () and issues == [] and state.known == (wider,)


def test_a_lock_holds_every_loosening_edit_for_24_hours() -> None:
    (night,) = entries(NIGHT)
    edits = {
        "removed": "schedule: []\n",
        "shorter": NIGHT.replace('"07:00"', '"06:00"'),
        "fewer days": NIGHT.replace("[sun]", "[sat]"),
        "fewer names": NIGHT + "    block:\n      domains: [example.com]\n",
        "lock taken off": NIGHT.replace("lock: true", "lock: false"),
    }
    wednesday = local(3, 12)  # the window is not in force
    for edit, text in edits.items():
        written = entries(text) if edit != "removed" else ()
        state, issues = sc.reconcile(sc.ScheduleState((night,)), written, wednesday, BERLIN)
        assert [held.edit for held in state.held] == [edit], edit
        assert "it has lock: true" in str(issues[0]) and "Thu 2026-06-04 12:00" in str(issues[0])
        assert sc.release(state, wednesday + timedelta(hours=23, minutes=59), BERLIN)[1] == []
        assert sc.release(state, wednesday + timedelta(hours=24), BERLIN)[0].held == ()
    # Tighter is immediate, under the lock too.
    (longer,) = entries(NIGHT.replace('"07:00"', '"08:00"'))
    state, issues = sc.reconcile(sc.ScheduleState((night,)), (longer,), wednesday, BERLIN)
    assert state.held == () and issues == []


def test_a_locked_edit_that_comes_due_inside_the_window_waits_for_its_end() -> None:
    (night,) = entries(NIGHT)
    saturday = local(6, 23)  # the delay ends Sunday 23:00, inside Sunday 22:00-07:00
    state, _ = sc.reconcile(sc.ScheduleState((night,)), (), saturday, BERLIN)
    assert state.held[0].takes_effect(saturday, BERLIN) == local(8, 7)
    assert sc.release(state, local(7, 23, 30), BERLIN)[1] == []
    assert sc.release(state, local(8, 7), BERLIN)[0].held == ()


def test_the_delay_counts_from_the_first_edit_and_undoing_it_ends_the_hold() -> None:
    (night,) = entries(NIGHT)
    (shorter,) = entries(NIGHT.replace('"07:00"', '"06:00"'))
    state, _ = sc.reconcile(sc.ScheduleState((night,)), (shorter,), local(3, 12), BERLIN)
    state, _ = sc.reconcile(state, (), local(3, 20), BERLIN)  # then removed: still from 12:00
    assert state.held[0].since == local(3, 12) and state.held[0].edit == "removed"
    state, issues = sc.reconcile(state, (night,), local(3, 21), BERLIN)  # put back as it was
    assert state.held == () and issues == []


def test_held_state_round_trips_through_json() -> None:
    (night,) = entries(NIGHT)
    (workdays,) = entries(WORKDAYS)
    state, _ = sc.reconcile(sc.ScheduleState((night, workdays)), (workdays,), local(3, 12), BERLIN)
    state = sc.ScheduleState(state.known, state.held, local(3, 13))
    again = sc.from_json(json.loads(json.dumps(sc.to_json(state))))
    assert again == state


def test_after_entries_wait_for_the_end_of_a_detox() -> None:
    (workdays,) = entries(WORKDAYS)
    assert sc.in_force(sc.ScheduleState(), (workdays,), detox_active=False, after=("workdays",)) == ()
    assert sc.in_force(sc.ScheduleState(after_since=local(1, 8)), (workdays,), detox_active=False,
                       after=("workdays",)) == (workdays,)
    rows = sc.status((), (workdays,), sc.ScheduleState(), local(1, 10), BERLIN, lambda moment: moment,
                     detox_active=False, after=("workdays",))
    assert rows[0]["waiting_for_detox_end"] and not rows[0]["active"]


def test_status_rows() -> None:
    (workdays,) = entries(WORKDAYS)
    rows = sc.status((workdays,), (workdays,), sc.ScheduleState(), local(1, 10), BERLIN, lambda m: m,
                     detox_active=False, after=())
    assert rows == [{"name": "workdays", "days": ["mon", "tue", "wed", "thu", "fri"],
                     "window": "09:00-17:30", "blocks": ["news.ycombinator.com", "social"], "lock": False,
                     "active": True, "next_change": "2026-06-01T15:30:00+00:00", "after_detox": False,
                     "waiting_for_detox_end": False, "pending": None}]


def test_the_tick_plan_agrees_with_the_window_spans_over_four_weeks() -> None:
    rules = entries(WORKDAYS) + entries(NIGHT)
    names = {rule: frozenset({rule.name}) for rule in rules}
    moment = local(1, 0, 7)
    while moment < local(29, 0):
        planned = sc.plan(rules, names, sc.ScheduleState(), moment, BERLIN)
        assert planned.active == {rule.name for rule in rules if sc.is_active(rule, moment, BERLIN)}
        changes = [sc.next_change_of(rule, moment, BERLIN) for rule in rules]
        assert planned.next_change == min(change for change in changes if change is not None)
        moment += timedelta(minutes=97)


def test_a_window_that_never_ends_is_planned_again_at_most_weekly() -> None:
    (always,) = entries(NIGHT.replace("[sun]", "[mon, tue, wed, thu, fri, sat, sun]")
                        .replace('"22:00"', '"00:00"').replace('"07:00"', '"24:00"'))
    active, change = sc.plan_rule(always, local(3, 12), BERLIN)
    assert active and change is not None and change > local(3, 12) + timedelta(days=6)


def test_any_users_status_counts_an_entrys_domains_instead_of_naming_them() -> None:
    (workdays,) = entries(WORKDAYS)
    [row] = sc.status((workdays,), (workdays,), sc.ScheduleState(), local(1, 10), BERLIN, lambda m: m,
                      detox_active=False, after=(), private=False)
    assert row["blocks"] == ["1 domain", "social"]

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from detoxd.core import report

START = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
END = START + timedelta(days=14)


class Journal:
    """Events as the daemon journals them: v, seq, at, kind, fields."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, at: datetime, kind: str, **fields: Any) -> None:
        self.events.append({"v": 1, "seq": len(self.events) + 1, "at": at.isoformat(), "kind": kind,
                            **fields})


def finished_detox() -> Journal:
    journal = Journal()
    journal.add(START, "detox_started", days=14, locked=True, names=145, ends_at=END.isoformat(), by_uid=0)
    # ActivityWatch, sent by uid 1000's tray during the detox: 9 h 40 min over the 14 days before
    # (12 days of 40 min, 2 days of 50 min) and 12 min during it.
    reported_at = START + timedelta(days=2)
    for n in range(14):
        day = (START - timedelta(days=14 - n)).date().isoformat()
        seconds = 3000 if n in (0, 13) else 2400
        journal.add(reported_at, "activity_day", uid=1000, date=day, phase="before",
                    sites={"facebook.com": seconds - 600, "x.com": 600}, apps={"slack": 1800})
    for n in range(15):  # the agent sends every day it watched, also the empty ones
        day = (START + timedelta(days=n)).date().isoformat()
        journal.add(reported_at, "activity_day", uid=1000, date=day, phase="during",
                    sites={"x.com": 720} if day == "2026-11-19" else {}, apps={})
    for n in range(3):
        journal.add(START + timedelta(days=1, hours=n), "tamper", target="hosts_file",
                    restored="block of 145 names")
    for n in range(11):
        journal.add(START + timedelta(days=n % 5, hours=2), "app_closed", app="slack", uid=1000, pid=100 + n)
    journal.add(END + timedelta(seconds=5), "detox_ended", early=False, reason="finished")
    return journal


def test_the_closing_summary_reads_like_the_challenge() -> None:
    journal = finished_detox()
    document = report.build(journal.events, now=END + timedelta(days=1), tz=UTC)
    assert document["summary"] == ("14 days: 3 tamper attempts, Slack closed 11 times, 0 h 12 min on "
                                   "blocked sites vs 9 h 40 min in the 14 days before")
    assert document["detox"]["state"] == "over"
    assert document["totals"]["before"]["blocked_site_seconds"] == 9 * 3600 + 40 * 60
    assert document["totals"]["during"]["blocked_site_seconds"] == 12 * 60
    assert document["totals"]["before"]["blocked_app_seconds"] == 14 * 1800
    assert document["totals"]["during"]["apps_closed"] == {"slack": 11}
    assert document["totals"]["before"]["tamper_attempts"] == 0


def test_days_are_the_14_before_and_each_day_of_the_detox() -> None:
    document = report.build(finished_detox().events, now=END + timedelta(days=1), tz=UTC)
    days = document["days"]
    before = [row for row in days if row["phase"] == "before"]
    during = [row for row in days if row["phase"] == "during"]
    assert [row["date"] for row in before] == [f"2026-11-{d:02d}" for d in range(3, 17)]
    assert [row["day"] for row in before] == list(range(-14, 0))
    # 09:00 on the 17th to 09:00 on 1 December: 15 calendar days, the first and last partial.
    assert during[0]["date"] == "2026-11-17" and during[-1]["date"] == "2026-12-01"
    assert len(during) == 15 and during[0]["day"] == 1
    by_date = {row["date"]: row for row in days}
    assert by_date["2026-11-18"]["tamper_attempts"] == 3
    assert by_date["2026-11-18"]["tamper_targets"] == {"hosts_file": 3}
    assert by_date["2026-11-19"]["sites"] == {"x.com": 720}
    assert by_date["2026-11-03"]["sites"] == {"facebook.com": 2400, "x.com": 600}
    assert by_date["2026-11-20"]["blocked_site_seconds"] == 0
    assert sum(sum(row["apps_closed"].values()) for row in during) == 11
    assert [tamper["target"] for tamper in document["tampers"]] == ["hosts_file"] * 3


def test_figures_nothing_measured_stay_null() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    document = report.build(journal.events, now=START + timedelta(hours=5), tz=UTC)
    row = document["days"][-1]
    assert row["blocked_site_seconds"] is None and row["blocked_lookups"] is None
    assert document["totals"]["during"]["blocked_site_seconds"] is None
    assert document["activitywatch"]["available"] is False
    assert "install it" in document["activitywatch"]["message"]
    assert "not measured (no ActivityWatch)" in document["summary"]


def test_activitywatch_unavailable_says_why() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    journal.add(START, "activity_unavailable", uid=1000, reason="aw-server is not running on localhost:5600")
    document = report.build(journal.events, now=START + timedelta(hours=5), tz=UTC)
    assert document["activitywatch"]["message"].startswith(
        "No ActivityWatch data (aw-server is not running on localhost:5600). ")


def test_a_resent_day_replaces_the_earlier_report_and_users_add_up() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    day = "2026-11-17"
    for hours, seconds in ((1, 60), (2, 90)):
        journal.add(START + timedelta(hours=hours), "activity_day", uid=1000, date=day, phase="during",
                    sites={"x.com": seconds})
    journal.add(START + timedelta(hours=2), "activity_day", uid=1001, date=day, phase="during",
                sites={"x.com": 10, "reddit.com": 30})
    document = report.build(journal.events, now=START + timedelta(hours=3), tz=UTC)
    row = document["days"][-1]
    assert row["blocked_site_seconds"] == 130
    assert row["sites"] == {"x.com": 100, "reddit.com": 30}


def test_blocked_lookups_are_the_latest_count_per_device_and_day() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    at = START + timedelta(hours=1)
    journal.add(at, "blocked_lookups", date="2026-11-17", device="10.0.0.7", counts={"facebook.com": 4})
    journal.add(at, "blocked_lookups", date="2026-11-17", device="10.0.0.7", counts={"facebook.com": 9})
    journal.add(at, "blocked_lookups", date="2026-11-17", device="10.0.0.8",
                counts={"facebook.com": 1, "x.com": 2})
    document = report.build(journal.events, now=START + timedelta(days=1, hours=1), tz=UTC)
    first, second = document["days"][-2:]
    assert first["blocked_lookups"] == 12
    assert first["lookups_by_site"] == {"facebook.com": 10, "x.com": 2}
    assert second["blocked_lookups"] == 0  # an engine reports, and saw nothing that day
    assert document["days"][0]["blocked_lookups"] is None  # before the detox: nothing enforced
    assert document["totals"]["during"]["blocked_lookups"] == 12


def test_while_running_the_summary_compares_per_day() -> None:
    journal = finished_detox()
    journal.events = [event for event in journal.events if event["kind"] != "detox_ended"]
    now = START + timedelta(days=4, hours=3)  # 5 calendar days, after the last app closed
    document = report.build(journal.events, now=now, tz=UTC)
    assert document["detox"]["state"] == "active" and document["detox"]["days_so_far"] == 5
    assert document["summary"].startswith("Day 5 of 14 so far: 3 tamper attempts, Slack closed 11 times")
    # 720 s over 5 days = 2.4 min a day; 34800 s over 14 days = 41.4 min a day
    assert document["summary"].endswith("0 h 2 min a day on blocked sites vs 0 h 41 min a day before")


def test_local_days_follow_the_time_zone() -> None:
    journal = Journal()
    start = datetime(2026, 11, 17, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    journal.add(start, "detox_started", days=14, ends_at=(start + timedelta(days=14)).isoformat())
    journal.add(start + timedelta(minutes=45), "tamper", target="hosts_file", restored="block")
    document = report.build(journal.events, now=start + timedelta(hours=2), tz=ZoneInfo("Europe/Berlin"))
    during = [row for row in document["days"] if row["phase"] == "during"]
    assert [(row["date"], row["tamper_attempts"]) for row in during] == [("2026-11-17", 0), ("2026-11-18", 1)]


def test_other_users_see_only_their_own_and_no_devices() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    journal.add(START, "app_closed", app="slack", uid=1000, pid=1)
    journal.add(START, "app_closed", app="discord", uid=1001, pid=2)
    journal.add(START, "activity_day", uid=1000, date="2026-11-17", sites={"x.com": 5})
    journal.add(START, "blocked_lookups", date="2026-11-17", device="laptop-of-ada", counts={"x.com": 3})
    journal.add(START, "config_error", errors=1, first="blocklist.yaml:3: domains[0]: bad")
    journal.add(START, "allowance_closed", uid=1000, allowance="twitter", minutes_used=4.0)
    journal.add(START, "allowance_closed", uid=None, allowance="twitter", minutes_used=6.0)  # by the clock
    visible = report.visible_events(journal.events, viewer_uid=1001)
    closed = [event for event in visible if event["kind"] == "allowance_closed"]
    assert [(event.get("uid", "hidden"), event["minutes_used"]) for event in closed] == [
        ("hidden", 4.0), ("hidden", 6.0)]  # the household's allowance: everyone sees it, not who
    kinds = [(event["kind"], event.get("uid")) for event in visible]
    assert ("app_closed", 1001) in kinds and ("app_closed", 1000) not in kinds
    assert ("activity_day", 1000) not in kinds
    lookups = next(event for event in visible if event["kind"] == "blocked_lookups")
    assert lookups["device"] == "(hidden)" and lookups["counts"] == {"x.com": 3}
    assert "first" not in next(event for event in visible if event["kind"] == "config_error")
    assert report.visible_events(journal.events, viewer_uid=None) == journal.events


def test_no_detox_yet() -> None:
    document = report.build([], now=START, tz=UTC)
    assert document["detox"] is None and document["days"] == []
    assert "No detox in the journal yet" in document["summary"]
    assert report.format_text(document) == document["summary"]


def test_sessions_and_allowances() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    session_start = START + timedelta(days=2)
    journal.add(session_start, "session_started", session=1, starts_at=session_start.isoformat())
    for n, person in enumerate(["Robert Craven", "Ada Lovelace"]):
        journal.add(session_start + timedelta(minutes=30 * n), "hot_seat", session=1, person=person)
    journal.add(START + timedelta(hours=3), "allowance_opened", uid=1000, names=["x.com"], minutes=15)
    journal.add(START + timedelta(hours=3, minutes=10), "allowance_closed", uid=1000, minutes_used=10.5)
    document = report.build(journal.events, now=START + timedelta(days=3), tz=UTC)
    assert document["sessions"] == [{
        "session": 1, "started_at": session_start.isoformat(),
        "hot_seats": [{"person": "Robert Craven", "at": session_start.isoformat()},
                      {"person": "Ada Lovelace", "at": (session_start + timedelta(minutes=30)).isoformat()}]}]
    assert document["totals"]["during"]["allowance_minutes"] == 10.5
    assert "11 min of allowances" not in document["summary"]  # rounds to 10
    assert "10 min of allowances" in document["summary"]
    assert document["summary"].endswith("1 peer session held")
    text = report.format_text(document)
    assert "Session 1" in text and "Robert Craven, Ada Lovelace" in text


def test_corrupt_fields_do_not_break_the_report() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days="fourteen")
    journal.events.append({"v": 1, "seq": 9, "at": "not a time", "kind": "tamper"})
    journal.add(START, "activity_day", uid=1000, date="2026-11-17", sites={"x.com": "a lot", "y.com": -5})
    journal.add(START, "blocked_lookups", counts=["x.com"])
    document = report.build(journal.events, now=START + timedelta(hours=1), tz=UTC)
    assert document["detox"]["days_total"] == 14
    assert document["days"][-1]["blocked_site_seconds"] == 0
    assert document["days"][-1]["tamper_attempts"] == 0


def test_duration_text() -> None:
    assert report.duration_text(12 * 60) == "0 h 12 min"
    assert report.duration_text(9 * 3600 + 40 * 60 + 20) == "9 h 40 min"
    assert report.duration_text(None) == "unknown"


def test_events_in_the_same_second_as_the_start_count() -> None:
    start = START.replace(microsecond=654321)
    journal = Journal()
    journal.add(START, "tamper", target="hosts file", restored="block")  # journalled as whole seconds
    window = report.DetoxWindow(start, start + timedelta(days=14))
    document = report.build(journal.events, now=start + timedelta(minutes=1), tz=UTC, window=window)
    assert document["totals"]["during"]["tamper_attempts"] == 1


def test_failed_peer_end_attempts_and_restarts_are_counted() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    journal.add(START + timedelta(hours=1), "peer_end_attempt", ended=False, by_uid=0)
    journal.add(START + timedelta(hours=2), "daemon_started", version="0.1.0")
    document = report.build(journal.events, now=START + timedelta(hours=3), tz=UTC)
    assert document["totals"]["during"]["end_attempts"] == 1
    assert document["totals"]["during"]["daemon_starts"] == 1


def test_a_detox_whose_start_rotated_away_is_found_from_a_segment_header() -> None:
    journal = Journal()
    journal.add(START + timedelta(days=3), "segment_started", detox_started_at=START.isoformat(),
                detox_ends_at=END.isoformat())
    journal.add(START + timedelta(days=3, hours=1), "tamper", target="hosts file", restored="block")
    journal.add(START + timedelta(days=4), "segment_started", detox_started_at=START.isoformat(),
                detox_ends_at=END.isoformat())
    journal.add(END, "detox_ended", early=False, reason="finished")
    window = report.find_window(journal.events)
    assert window == report.DetoxWindow(START, END, END)
    document = report.build(journal.events, now=END + timedelta(hours=1), tz=UTC)
    assert document["summary"].startswith("14 days: 1 tamper attempt,")


def test_the_json_fields_are_the_documented_contract() -> None:
    """`detoxd report --json` is for scripts: renaming or dropping a field must fail here (and in
    docs/report.md's table) before it reaches anyone's script."""
    document = report.build(finished_detox().events, now=END + timedelta(days=1), tz=UTC,
                            journal_stats={"events": 1, "segments": 1, "corrupt_lines": 0,
                                           "newer_version_lines": 0})
    assert set(document) == {"version", "generated_at", "scope", "detox", "days", "totals", "tampers",
                             "sessions", "activitywatch", "site_time", "summary", "schedule", "continues",
                             "journal"}
    assert set(document["detox"]) == {"state", "started_at", "ends_at", "ended_at", "days_total",
                                      "days_so_far", "days_elapsed"}
    assert set(document["days"][0]) == {
        "date", "phase", "day", "blocked_site_seconds", "sites", "blocked_app_seconds", "apps",
        "blocked_lookups", "lookups_by_site", "tamper_attempts", "tamper_targets", "apps_closed",
        "allowance_minutes", "allowances_opened", "clock_jumps", "config_errors", "hot_seats",
        "agent_disconnects", "end_attempts", "daemon_starts", "site_time_source", "browser_attempts",
        "attempts_by_site"}
    assert set(document["totals"]) == {"before", "during"}
    assert set(document["totals"]["during"]) == {
        "days", "days_with_activitywatch", "days_with_browser_time", "days_measured",
        "blocked_site_seconds", "blocked_app_seconds", "blocked_lookups", "browser_attempts",
        "tamper_attempts", "apps_closed", "allowance_minutes", "clock_jumps",
        "config_errors", "end_attempts", "daemon_starts"}
    assert set(document["tampers"][0]) == {"at", "target", "restored"}
    assert set(document["activitywatch"]) == {"available", "last_report_at", "message"}
    assert set(document["journal"]) == {"events", "segments", "corrupt_lines", "newer_version_lines",
                                        "lost_events"}


def test_days_activitywatch_did_not_watch_are_not_zero_minutes() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    for n in range(3):  # installed on the first day of the detox
        day = (START + timedelta(days=n)).date().isoformat()
        journal.add(START + timedelta(days=n), "activity_day", uid=1000, date=day, phase="during",
                    sites={"x.com": 60 * (n + 1)}, apps={})
    document = report.build(journal.events, now=START + timedelta(days=2, hours=1), tz=UTC)
    assert document["totals"]["before"]["blocked_site_seconds"] is None
    assert document["totals"]["during"]["days_with_activitywatch"] == 3
    assert document["summary"].endswith(
        "0 h 6 min on blocked sites (ActivityWatch has nothing from before the detox to compare)")
    # Four of the 14 days before watched: the comparison says so.
    for n in range(1, 5):
        day = (START - timedelta(days=n)).date().isoformat()
        journal.add(START, "activity_day", uid=1000, date=day, phase="before", sites={"x.com": 600}, apps={})
    document = report.build(journal.events, now=START + timedelta(days=14), tz=UTC)
    assert document["summary"].endswith("0 h 6 min on blocked sites vs 0 h 40 min in the 4 days "
                                        "ActivityWatch saw before")


def test_each_counted_event_lands_on_its_day_and_only_its_own_figure() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    day2 = START + timedelta(days=1)
    journal.add(day2, "tamper", target="hosts_file", restored="block")
    journal.add(day2, "tamper", restored="block")  # no target: "unknown"
    journal.add(day2, "app_closed", app="slack", uid=1000, pid=1)
    journal.add(day2, "app_closed", app="slack", uid=1000, pid=2)
    journal.add(day2, "app_closed", uid=1000, pid=3)  # no app: "unknown"
    journal.add(day2, "allowance_opened", uid=1000, names=["x.com"], minutes=15)
    journal.add(day2, "allowance_closed", uid=1000, minutes_used=2.25)
    journal.add(day2, "allowance_closed", uid=1000, minutes_used=1.0)
    journal.add(day2, "allowance_closed", uid=1000, minutes_used=True)  # not a number: 0
    journal.add(day2, "clock_jump", seconds=3600)
    journal.add(day2, "config_error", errors=1)
    journal.add(day2, "hot_seat", session=1, person="Ada")
    journal.add(day2, "agent_disconnected", uid=1000)  # during_detox missing: counted
    journal.add(day2, "agent_disconnected", uid=1000, during_detox=False)
    journal.add(day2, "peer_end_attempt", ended=False)
    journal.add(day2, "peer_end_attempt", ended=True)  # the one that worked is no attempt to count
    journal.add(day2, "daemon_started", version="0.1.0")
    journal.add(day2, "something_new", value=1)  # a kind this version does not know
    document = report.build(journal.events, now=START + timedelta(days=1, hours=1), tz=UTC)
    first, second = document["days"][-2:]
    assert second == {
        "date": "2026-11-18", "phase": "during", "day": 2,
        "blocked_site_seconds": None, "sites": {}, "blocked_app_seconds": None, "apps": {},
        "blocked_lookups": None, "lookups_by_site": {},
        "tamper_attempts": 2, "tamper_targets": {"hosts_file": 1, "unknown": 1},
        "apps_closed": {"slack": 2, "unknown": 1},
        "allowance_minutes": 3.2, "allowances_opened": 1,  # 3.25 rounded to one decimal
        "clock_jumps": 1, "config_errors": 1, "hot_seats": 1, "agent_disconnects": 1,
        "end_attempts": 1, "daemon_starts": 1,
        "site_time_source": None, "browser_attempts": None, "attempts_by_site": {},
    }
    assert first["tamper_attempts"] == 0 and first["apps_closed"] == {} and first["day"] == 1
    during = document["totals"]["during"]
    assert (during["days"], during["tamper_attempts"], during["apps_closed"], during["allowance_minutes"],
            during["clock_jumps"], during["config_errors"], during["end_attempts"],
            during["daemon_starts"]) == (2, 2, {"slack": 2, "unknown": 1}, 3.2, 1, 1, 1, 1)
    assert document["summary"] == ("Day 2 of 14 so far: 2 tamper attempts, Slack closed 2 times, "
                                   "Unknown closed once, 1 attempt to end it early, 3 min of allowances, "
                                   "time on blocked sites not measured (no ActivityWatch), "
                                   "1 peer session held")


def test_the_summary_says_one_in_the_singular() -> None:
    journal = Journal()
    ends = START + timedelta(days=1)
    journal.add(START, "detox_started", days=1, ends_at=ends.isoformat())
    journal.add(START + timedelta(hours=1), "tamper", target="hosts_file", restored="block")
    journal.add(START + timedelta(hours=1), "app_closed", app="discord", uid=1000, pid=1)
    journal.add(START + timedelta(hours=1), "blocked_lookups", date="2026-11-17", device="d",
                counts={"x.com": 1})
    for hours in (2, 3):
        journal.add(START + timedelta(hours=hours), "peer_end_attempt", ended=False)
    journal.add(START + timedelta(hours=1), "activity_day", uid=1000, date="2026-11-16", sites={"x.com": 600})
    journal.add(START + timedelta(hours=1), "activity_day", uid=1000, date="2026-11-17", sites={"x.com": 60})
    journal.add(ends, "detox_ended", early=False, reason="finished")
    document = report.build(journal.events, now=ends + timedelta(hours=1), tz=UTC)
    assert document["summary"] == ("1 day: 1 tamper attempt, Discord closed once, 1 blocked lookup, "
                                   "2 attempts to end it early, 0 h 1 min on blocked sites vs "
                                   "0 h 10 min in the 1 day ActivityWatch saw before")


def test_a_detox_shorter_than_half_a_day_is_day_1_of_1() -> None:
    journal = Journal()
    ends = START + timedelta(minutes=15)
    journal.add(START, "detox_started", days=0.01, ends_at=ends.isoformat())
    document = report.build(journal.events, now=START + timedelta(minutes=5), tz=UTC)
    assert document["detox"]["days_total"] == 0.01
    assert document["summary"].startswith("Day 1 of 1 so far: 0 tamper attempts")


def test_a_detox_started_in_the_evening_never_says_day_15_of_14() -> None:
    journal = Journal()
    start = START.replace(hour=20)
    ends = start + timedelta(days=14)
    journal.add(start, "detox_started", days=14, ends_at=ends.isoformat())
    document = report.build(journal.events, now=ends - timedelta(hours=1), tz=UTC)
    assert document["detox"]["days_so_far"] == 15
    assert document["summary"].startswith("Day 15 of 15 so far")


def test_a_detox_ended_early_counts_its_days_to_a_tenth() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    ended = START + timedelta(days=2, hours=12)
    journal.add(ended, "detox_ended", early=True, reason="ended")
    document = report.build(journal.events, now=ended + timedelta(days=1), tz=UTC)
    assert document["detox"]["days_elapsed"] == 2.5 and document["detox"]["state"] == "over"
    assert document["summary"].startswith("2.5 days: 0 tamper attempts, ")
    almost = START + timedelta(days=2, hours=1)  # 2.04 days: said as 2
    journal.events[-1]["at"] = almost.isoformat()
    document = report.build(journal.events, now=almost + timedelta(days=1), tz=UTC)
    assert document["summary"].startswith("2 days: 0 tamper attempts, ")


def test_the_text_report_is_one_aligned_line_per_day() -> None:
    journal = Journal()
    journal.add(START, "detox_started", days=14, ends_at=END.isoformat())
    journal.add(START, "activity_day", uid=1000, date="2026-11-17", sites={"x.com": 750},
                apps={"slack": 3600})
    journal.add(START + timedelta(hours=1), "tamper", target="hosts_file", restored="block")
    journal.add(START + timedelta(hours=1), "app_closed", app="slack", uid=1000, pid=1)
    journal.add(START + timedelta(hours=1), "app_closed", app="discord", uid=1000, pid=2)
    journal.add(START + timedelta(hours=2), "blocked_lookups", date="2026-11-17", device="d",
                counts={"x.com": 7})
    journal.add(START + timedelta(hours=2), "session_started", session=2,
                starts_at="2026-11-17T11:00:00+00:00")
    document = report.build(journal.events, now=START + timedelta(hours=3), tz=UTC)
    lines = report.format_text(document).split("\n")
    assert lines[0] == document["summary"] and lines[1] == ""
    assert lines[2] == "date                blocked sites  blocked apps  lookups  tamper  apps closed"
    assert lines[3] == "2026-11-03  before              -             -        -       0  "
    assert lines[16] == "2026-11-16  before              -             -        -       0  "
    assert lines[17] == "2026-11-17  during     0 h 12 min     1 h 0 min        7       1  slack 1, discord 1"
    assert lines[18:] == ["Session 2 (2026-11-17T11:00:00+00:00): no hot seats yet"]
    # Without ActivityWatch, why not comes between the summary and the table.
    journal.events = [event for event in journal.events if event["kind"] != "activity_day"]
    document = report.build(journal.events, now=START + timedelta(hours=3), tz=UTC)
    lines = report.format_text(document).split("\n")
    assert lines[1] == "" and lines[2].startswith("No ActivityWatch data. ") and lines[3] == ""
    assert lines[4].startswith("date ")


def test_scheduled_hours_per_day_next_to_the_attempts_inside_the_windows() -> None:
    journal = finished_detox()
    after = END + timedelta(seconds=5)
    journal.add(after, "schedule_after_detox", entries=["workdays"])
    day = datetime(2026, 12, 2, tzinfo=UTC)
    journal.add(day + timedelta(hours=9), "window_opened", entry="workdays", until="")
    journal.add(day + timedelta(hours=10), "tamper", target="hosts_file", restored="x")
    journal.add(day + timedelta(hours=12), "daemon_started", version="1")
    journal.add(day + timedelta(hours=12), "window_opened", entry="workdays", until="")  # after a restart
    journal.add(day + timedelta(hours=17, minutes=30), "window_closed", entry="workdays")
    journal.add(day + timedelta(hours=18), "app_closed", app="slack", uid=1000, pid=1)  # outside
    journal.add(day + timedelta(hours=23), "window_opened", entry="night", until="")
    document = report.build(journal.events, now=day + timedelta(days=1, hours=2), tz=UTC)
    assert document["schedule"] == [
        {"date": "2026-12-02", "scheduled_hours": 9.5, "attempts_in_windows": 1},
        {"date": "2026-12-03", "scheduled_hours": 2.0, "attempts_in_windows": 0}]
    assert document["continues"] == ["workdays"]
    assert document["summary"].endswith("; continuing: workdays")
    text = report.format_text(document)
    assert "2026-12-02  9 h 30 min  1" in text and "2026-12-03   2 h 0 min  0" in text

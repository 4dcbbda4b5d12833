from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from detoxd.core import activity
from detoxd.core.apps import builtin_presets


def test_periods_are_14_whole_days_before_then_the_detox_cut_at_midnight() -> None:
    start = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
    found = activity.periods(start, start + timedelta(days=1, hours=5), UTC)
    before = [period for period in found if period.phase == "before"]
    during = [period for period in found if period.phase == "during"]
    assert len(before) == 14
    assert before[0].start == datetime(2026, 11, 3, tzinfo=UTC)
    assert before[-1].end == datetime(2026, 11, 17, tzinfo=UTC)
    assert [(p.start.hour, p.end.day, p.end.hour) for p in during] == [(9, 18, 0), (0, 18, 14)]
    assert during[0].timeperiod == "2026-11-17T09:00:00+00:00/2026-11-18T00:00:00+00:00"


def test_a_day_with_a_clock_change_has_its_real_length() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 11, 8, 12, 0, tzinfo=berlin)  # 25 October 2026 is 25 hours long
    day = next(period for period in activity.periods(start, start, berlin)
               if period.day.isoformat() == "2026-10-25")
    assert day.end.astimezone(UTC) - day.start.astimezone(UTC) == timedelta(hours=25)
    assert day.timeperiod == "2026-10-25T00:00:00+02:00/2026-10-26T00:00:00+01:00"


def test_the_query_filters_in_the_server_and_quotes_safely() -> None:
    buckets = {
        "aw-watcher-web-firefox_laptop": {"type": "web.tab.current", "hostname": "laptop"},
        "aw-watcher-web-chrome_laptop": {"type": "web.tab.current", "hostname": "unknown"},
        "aw-watcher-window_laptop": {"type": "currentwindow", "hostname": "laptop"},
        "aw-watcher-window_desktop": {"type": "currentwindow", "hostname": "desktop"},
        "aw-watcher-afk_laptop": {"type": "afkstatus", "hostname": "laptop"},
    }
    program = activity.query(buckets, ["www.facebook.com", "facebook.com"],
                             {"slack": ["com.slack.Slack", "slack"]}, "laptop")
    text = "\n".join(program)
    assert "aw-watcher-window_desktop" not in text  # another machine's windows
    assert 'concat(flood(query_bucket("aw-watcher-web-chrome_laptop")), ' \
           'flood(query_bucket("aw-watcher-web-firefox_laptop")))' in text
    assert 'filter_keyvals(web, "$domain", ["facebook.com"]);' in text
    assert 'filter_keyvals_regex(window, "app", "(?i)^(com\\.slack\\.Slack|slack)$");' in text
    assert program[-1] == 'RETURN = {"sites": sites, "apps": apps};'
    with pytest.raises(ValueError):
        activity.query({'bad";RETURN=1;"': {"type": "web.tab.current"}}, ["x.com"], {}, "laptop")


def test_without_watchers_the_query_asks_for_nothing() -> None:
    program = activity.query({}, ["x.com"], {"slack": ["slack"]}, "laptop")
    assert program == ["sites = [];", "apps = [];", 'RETURN = {"sites": sites, "apps": apps};']
    assert not activity.has_watchers({"aw-watcher-afk_x": {"type": "afkstatus"}})


def test_the_answer_is_checked_again_for_blocked_names_only() -> None:
    start = datetime(2026, 11, 17, 9, tzinfo=UTC)
    asked = activity.periods(start, start + timedelta(hours=1), UTC)
    answer = [{"sites": [], "apps": []}] * 14 + [{
        "sites": [{"duration": 30.0, "data": {"$domain": "facebook.com"}},
                  {"duration": 99.0, "data": {"$domain": "my-bank.example"}},  # filter ignored
                  {"duration": 5.0, "data": {"$domain": "x.com"}}],
        "apps": [{"duration": 12.0, "data": {"app": "Slack"}}, {"duration": 7.0, "data": {"app": "Firefox"}}],
    }]
    days = activity.read_answer(answer, asked, ["facebook.com", "www.x.com"], {"slack": ["slack"]})
    assert days[-1].sites == {"facebook.com": 30.0, "www.x.com": 5.0}
    assert days[-1].apps == {"slack": 12.0}
    with pytest.raises(ValueError):
        activity.read_answer(answer[:3], asked, [], {})


def test_window_names_of_app_rules() -> None:
    rules = builtin_presets()
    names = activity.window_app_names([rules["slack"], rules["discord"]])
    assert {"slack", "com.slack.Slack"} <= set(names["slack"])
    assert {"discord", "com.discordapp.Discord", "vesktop"} <= set(names["discord"])


def test_days_before_the_first_event_were_not_watched() -> None:
    start = datetime(2026, 11, 17, 9, tzinfo=UTC)
    asked = activity.periods(start, start + timedelta(hours=1), UTC)
    watched = activity.watched_periods(asked, [{"timestamp": "2026-11-14T15:00:00+00:00", "duration": 5,
                                                "data": {}}])
    assert [period.day.isoformat() for period in watched] == ["2026-11-14", "2026-11-15", "2026-11-16",
                                                             "2026-11-17"]
    assert activity.watched_periods(asked, []) == []
    assert activity.watched_periods(asked, [{"timestamp": "yesterday"}]) == []
    program = activity.first_event_query({"aw-watcher-web-firefox": {"type": "web.tab.current"},
                                          "aw-watcher-window_laptop": {"type": "currentwindow",
                                                                       "hostname": "laptop"}}, "laptop")
    assert program == ['events = sort_by_timestamp(concat(query_bucket("aw-watcher-web-firefox"), '
                       'query_bucket("aw-watcher-window_laptop")));', "RETURN = limit_events(events, 1);"]

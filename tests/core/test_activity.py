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


def test_the_whole_query_program_with_every_kind_of_watcher() -> None:
    buckets = {"web-ff": {"type": "web.tab.current"}, "win": {"type": "currentwindow", "hostname": "l"},
               "afk": {"type": "afkstatus", "hostname": "l"}}
    program = activity.query(buckets, ["www.x.com", "facebook.com"], {"chat": ["chat.app", "Chat"]}, "l")
    assert program == [
        'afk = flood(query_bucket("afk"));',
        'not_afk = filter_keyvals(afk, "status", ["not-afk"]);',
        'window = flood(query_bucket("win"));',
        "window = filter_period_intersect(window, not_afk);",
        'web = flood(query_bucket("web-ff"));',
        f'browser = filter_keyvals_regex(window, "app", "{activity.BROWSER_APPS}");',
        "web = filter_period_intersect(web, browser);",
        "web = split_url_events(web);",
        'web = filter_keyvals(web, "$domain", ["facebook.com", "x.com"]);',
        'sites = merge_events_by_keys(web, ["$domain"]);',
        'apps = filter_keyvals_regex(window, "app", "(?i)^(Chat|chat\\.app)$");',
        'apps = merge_events_by_keys(apps, ["app"]);',
        'RETURN = {"sites": sites, "apps": apps};',
    ]
    # Web only, with AFK but no window watcher: web time counts while not away.
    program = activity.query({"web": {"type": "web.tab.current"}, "afk": {"type": "afkstatus"}},
                             ["x.com"], {"chat": ["chat"]}, "l")
    assert program[2:4] == ['web = flood(query_bucket("web"));',
                            "web = filter_period_intersect(web, not_afk);"]
    assert program[-2] == "apps = [];"  # no window watcher: no app time
    # A window watcher without AFK: every window counts; no blocked names: no site time.
    program = activity.query({"win": {"type": "currentwindow"}}, [], {"chat": ["chat"]}, "l")
    assert program[:2] == ['window = flood(query_bucket("win"));', "sites = [];"]
    assert activity.query({"win": {"type": "currentwindow"}}, ["x.com"], {}, "l")[-2] == "apps = [];"


def test_at_most_5000_names_go_into_a_query() -> None:
    names = [f"site{n:05d}.com" for n in range(activity.MAX_NAMES_IN_QUERY + 1)]
    program = activity.query({"web": {"type": "web.tab.current"}}, names, {}, "l")
    listed = next(line for line in program if line.startswith("web = filter_keyvals(web"))
    assert listed.count('"site') == 5000 and '"site05000.com"' not in listed


def test_quoting_refuses_what_could_end_a_string_or_a_statement() -> None:
    assert activity._string("a-b.c") == '"a-b.c"'
    for text in ('a"b', "a\nb", "a;b"):
        with pytest.raises(ValueError) as raised:
            activity._string(text)
        assert str(raised.value) == f"cannot quote {text!r} for a query"


def test_the_answer_adds_up_per_rule_and_name_and_ignores_what_is_not_an_event() -> None:
    start = datetime(2026, 11, 17, 9, tzinfo=UTC)
    asked = activity.periods(start, start + timedelta(hours=1), UTC)
    answer: list[object] = [{"sites": [], "apps": []}] * 14 + [{
        "sites": [{"duration": 1.25, "data": {"$domain": "x.com"}},
                  {"duration": 2, "data": {"$domain": "x.com"}},
                  {"duration": 0, "data": {"$domain": "x.com"}},
                  {"duration": -4, "data": {"$domain": "x.com"}},
                  {"duration": "5", "data": {"$domain": "x.com"}}, {"duration": 5, "data": {"$domain": 7}},
                  {"duration": 5, "data": "x.com"}, "x.com"],
        "apps": [{"duration": 1.04, "data": {"app": "CHAT"}}, {"duration": 2, "data": {"app": "chat.app"}}],
    }]
    days = activity.read_answer(answer, asked, ["x.com"], {"chat": ["chat", "chat.app"]})
    assert days[-1] == activity.DayTotals(start.date(), "during", {"x.com": 3.2}, {"chat": 3.0})
    assert days[0] == activity.DayTotals(asked[0].day, "before", {}, {})
    assert days[-1].to_json() == {"date": "2026-11-17", "phase": "during", "sites": {"x.com": 3.2},
                                  "apps": {"chat": 3.0}}
    for broken, message in (([*answer[:14], "no"], "a result is not an object"),
                            (answer[:14], "expected 15 results, got 14")):
        with pytest.raises(ValueError) as raised:
            activity.read_answer(broken, asked, [], {})
        assert str(raised.value) == message
    assert activity.read_answer([{"sites": "x", "apps": None}], asked[-1:], ["x.com"], {})[0].sites == {}


def test_window_names_are_the_rule_its_programs_its_directories_and_flatpak_ids() -> None:
    from detoxd.core.apps import AppRule, Matcher

    rule = AppRule("chat", (Matcher("name", "Chat-Bin"), Matcher("path", "/opt/chat/bin/chat-x"),
                            Matcher("directory", "/opt/Chatter/"), Matcher("flatpak", "org.chat.Chat"),
                            Matcher("path", "/opt/chat/.hidden;rm")))
    assert activity.window_app_names([rule]) == {
        "chat": ["chat", "Chat-Bin", "chat-x", "Chatter", "org.chat.Chat"]}


def test_only_web_and_window_buckets_are_watchers_and_this_hosts_come_first() -> None:
    assert activity.has_watchers({"w": {"type": "currentwindow"}})
    assert activity.has_watchers({"a": {"type": "afkstatus"}, "w": {"type": "web.tab.current"}})
    assert not activity.has_watchers({})
    assert activity.first_event_query({"a": {"type": "afkstatus"}}, "l") == ["RETURN = [];"]
    assert activity.first_event_query({"w": {"type": "currentwindow", "hostname": "other"}}, "l") == [
        'events = sort_by_timestamp(query_bucket("w"));', "RETURN = limit_events(events, 1);"]

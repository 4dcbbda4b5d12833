"""The report's time on blocked sites from the browser extension where ActivityWatch is absent,
and the extension's block-page attempts (issue 23)."""

from __future__ import annotations

from datetime import UTC, timedelta

from detoxd.core import report
from tests.core.test_report import END, START, Journal


def detox(journal: Journal) -> None:
    journal.add(START, "detox_started", days=14, locked=True, names=2, ends_at=END.isoformat(), by_uid=0)


def day(n: int) -> str:
    return (START + timedelta(days=n)).date().isoformat()


def test_browser_time_stands_in_where_activitywatch_is_absent_and_says_so() -> None:
    journal = Journal()
    detox(journal)
    for n in range(3):  # running totals: the latest of each day counts
        journal.add(START + timedelta(days=n, hours=1), "browser_day", uid=1000, date=day(n),
                    seconds={"x.com": 60})
        journal.add(START + timedelta(days=n, hours=2), "browser_day", uid=1000, date=day(n),
                    seconds={"x.com": 120, "linkedin.com/feed": 60 * n})
    document = report.build(journal.events, now=START + timedelta(days=2, hours=3), tz=UTC)
    during = document["totals"]["during"]
    assert during["blocked_site_seconds"] == 3 * 120 + 60 + 120
    assert (during["days_measured"], during["days_with_browser_time"], during["days_with_activitywatch"]) == (
        3, 3, 0)
    assert document["days"][-1]["sites"] == {"x.com": 120, "linkedin.com/feed": 120}
    assert document["days"][-1]["site_time_source"] == "browser"
    assert document["days"][0]["site_time_source"] is None  # before the detox: not measured
    assert document["site_time"]["source"] == "browser"
    assert "from the detoxd browser extension, as ActivityWatch is absent" in document["site_time"]["message"]
    assert document["summary"].endswith(
        "0 h 9 min on blocked sites (from the browser extension; nothing from before the detox to compare)")
    text = report.format_text(document)
    assert document["site_time"]["message"] in text and "No ActivityWatch data" not in text


def test_activitywatch_wins_for_a_users_day_it_reported() -> None:
    journal = Journal()
    detox(journal)
    journal.add(START, "activity_day", uid=1000, date=day(0), phase="during", sites={"x.com": 600}, apps={})
    journal.add(START, "browser_day", uid=1000, date=day(0), seconds={"x.com": 500})  # the same time
    journal.add(START, "browser_day", uid=1000, date=day(1), seconds={"x.com": 30})
    journal.add(START, "browser_day", uid=1001, date=day(0), seconds={"x.com": 40})  # another user
    document = report.build(journal.events, now=START + timedelta(days=1, hours=3), tz=UTC)
    first, second = document["days"][-2:]
    assert (first["blocked_site_seconds"], first["site_time_source"]) == (640, "activitywatch and browser")
    assert (second["blocked_site_seconds"], second["site_time_source"]) == (30, "browser")
    assert document["site_time"]["source"] == "activitywatch and browser"
    # The user's own report: their ActivityWatch day, the other user's time unseen.
    mine = report.build(report.visible_events(journal.events, 1000), now=START + timedelta(days=1, hours=3),
                        tz=UTC)
    assert mine["days"][-2]["blocked_site_seconds"] == 600
    assert mine["days"][-2]["site_time_source"] == "activitywatch"


def test_block_pages_shown_are_counted_per_day_and_seen_without_who() -> None:
    journal = Journal()
    detox(journal)
    journal.add(START, "browser_attempts", uid=1000, date=day(0), counts={"x.com": 1}, source="browser")
    journal.add(START, "browser_attempts", uid=1000, date=day(0), counts={"x.com": 1}, source="browser")
    journal.add(START, "browser_attempts", uid=1001, date=day(0), counts={"linkedin.com/feed": 2},
                source="browser")
    now = START + timedelta(days=1, hours=1)
    document = report.build(journal.events, now=now, tz=UTC)
    first, second = document["days"][-2:]
    assert (first["browser_attempts"], first["attempts_by_site"]) == (4, {"x.com": 2, "linkedin.com/feed": 2})
    assert (second["browser_attempts"], second["attempts_by_site"]) == (0, {})
    assert document["days"][0]["browser_attempts"] is None  # before: the extension was not there
    assert document["totals"]["during"]["browser_attempts"] == 4
    assert "4 block pages shown in the browser" in document["summary"]
    lines = report.format_text(document).split("\n")
    header = lines.index("date                blocked sites  blocked apps  lookups  pages  tamper  "
                         "apps closed")
    assert lines[header + 1] == "2026-11-03  before              -             -        -      -       0  "
    assert lines[header + 15] == "2026-11-17  during              -             -        -      4       0  "
    seen = report.visible_events(journal.events, 1002)
    assert [event.get("uid") for event in seen if event["kind"] == "browser_attempts"] == [None] * 3
    assert report.build(seen, now=now, tz=UTC)["totals"]["during"]["browser_attempts"] == 4
    # browser_day is the user's own
    journal.add(START, "browser_day", uid=1000, date=day(0), seconds={"x.com": 5})
    kinds = [event["kind"] for event in report.visible_events(journal.events, 1002)]
    assert "browser_day" not in kinds and "browser_day" in [event["kind"] for event in journal.events]

"""The HTML report in a real browser: Debian's chromium, headless, renders the page that
`detoxd report --html` writes; the DOM must hold the charts' SVG and the screenshot must show
them (not a blank page). The screenshot goes to tests/artifacts/ (docs/report.png is a copy).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detoxd import report_html
from detoxd.core import report

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
START = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def sample_journal() -> list[dict[str, Any]]:
    """A finished 14-day detox with everything the report can show; the minutes are varied by a
    fixed pattern, not at random, so the picture is the same every time."""
    events: list[dict[str, Any]] = []

    def add(at: datetime, kind: str, **fields: Any) -> None:
        events.append({"v": 1, "seq": len(events) + 1, "at": at.isoformat(), "kind": kind, **fields})

    end = START + timedelta(days=14)
    add(START, "detox_started", days=14, locked=True, names=145, ends_at=end.isoformat(), by_uid=0)
    pattern = [38, 52, 41, 47, 29, 63, 55, 44, 36, 49, 58, 33, 40, 45]
    for n, minutes in enumerate(pattern):
        day = (START - timedelta(days=14 - n)).date().isoformat()
        add(START + timedelta(hours=1), "activity_day", uid=1000, date=day, phase="before",
            sites={"facebook.com": minutes * 30, "x.com": minutes * 18, "linkedin.com": minutes * 12},
            apps={"slack": minutes * 40})
    for n in range(15):
        day = (START + timedelta(days=n)).date().isoformat()
        seconds = [240, 120, 60, 0, 90, 0, 0, 30, 0, 0, 60, 0, 0, 0, 0][n]
        add(START + timedelta(days=n, hours=2), "activity_day", uid=1000, date=day, phase="during",
            sites={"x.com": seconds} if seconds else {}, apps={})
        add(START + timedelta(days=n, hours=3), "blocked_lookups", date=day, device="10.0.0.7",
            counts={"facebook.com": max(0, 12 - n), "x.com": max(0, 7 - n // 2)})
    for n in (0, 1, 5):
        add(START + timedelta(days=n, hours=4), "tamper", target="hosts file",
            restored="the block of 145 names")
    for n in range(11):
        add(START + timedelta(days=n // 3, hours=5 + n % 3), "app_closed", app="slack", uid=1000,
            pid=4000 + n)
    session = START + timedelta(days=2, hours=1)
    add(session, "session_started", session=1, starts_at=session.isoformat())
    for n, person in enumerate(["Robert Craven", "Ada Lovelace", "Grace Hopper", "Alan Turing",
                                "Hedy Lamarr", "Tim Berners-Lee"]):
        add(session + timedelta(minutes=30 * n), "hot_seat", session=1, person=person)
    add(START + timedelta(days=3, hours=6), "allowance_opened", uid=1000, names=["linkedin.com"], minutes=15)
    add(START + timedelta(days=3, hours=6, minutes=12), "allowance_closed", uid=1000, minutes_used=12)
    add(end, "detox_ended", early=False, reason="finished")
    return events


def sample_document() -> dict[str, Any]:
    return report.build(sample_journal(), now=START + timedelta(days=15), tz=UTC)


def test_the_page_is_self_contained_with_svg_charts(tmp_path: Path) -> None:
    page = report_html.render(sample_document())
    assert page.count("<svg") == 3  # time per day, what was stopped, where the time went
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "default-src 'none'" in page
    assert "14 days: 3 tamper attempts, Slack closed 11 times" in page
    assert "Robert Craven → Ada Lovelace" in page


def test_without_activitywatch_the_page_says_how_to_get_it() -> None:
    events = [event for event in sample_journal() if event["kind"] != "activity_day"]
    page = report_html.render(report.build(events, now=START + timedelta(days=15), tz=UTC))
    assert "No ActivityWatch data" in page and "aw-watcher-web" in page
    assert page.count("<svg") == 1  # only what the detox stopped


def test_without_matplotlib_the_page_has_everything_but_the_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package only Suggests matplotlib: without it the page is still written, and says how
    to get the charts."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    assert not report_html.charts_available()
    page = report_html.render(sample_document())
    assert "<svg" not in page and "<script" not in page
    assert "The charts need matplotlib, which is not installed: sudo apt install python3-matplotlib" in page
    assert "14 days: 3 tamper attempts, Slack closed 11 times" in page  # the summary
    assert "tamper attempts undone" in page  # the tiles
    assert "<details open><summary>Day by day" in page  # every figure, shown
    assert "<td>facebook.com</td>" in page  # where the time went, as a table
    assert "Robert Craven → Ada Lovelace" in page
    events = [event for event in sample_journal() if event["kind"] != "activity_day"]
    page = report_html.render(report.build(events, now=START + timedelta(days=15), tz=UTC))
    assert "No ActivityWatch data" in page and "<svg" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup --test installs it)")
def test_chromium_renders_the_charts(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = tmp_path / "report.html"
    page.write_text(report_html.render(sample_document()))
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<svg\b", dom.stdout)) == 3
    assert len(re.findall(r"<path\b", dom.stdout)) > 30  # bars and lines really drawn
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={screenshot}",
                           "--window-size=1100,2000", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1100, 2000)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200  # text, bars, anti-aliasing: not a blank or single-colour page
    # The charts' own colours are on the page, each in more than a few pixels.
    for hex_colour in (report_html.BEFORE_COLOUR, report_html.DURING_COLOUR, report_html.TAMPER_COLOUR):
        rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        assert sum(count for count, colour in colours if colour == rgb) > 500, hex_colour
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / "report.png")


def test_the_page_shows_the_block_windows_hours_and_what_continues() -> None:
    events = sample_journal()
    end = START + timedelta(days=14)
    events.append({"v": 1, "seq": 900, "at": (end + timedelta(seconds=1)).isoformat(),
                   "kind": "schedule_after_detox", "entries": ["<workdays>"]})
    midnight = (START + timedelta(days=15)).replace(hour=0)
    for seq, (hours, kind) in enumerate([(9, "window_opened"), (18.5, "window_closed")]):
        at = (midnight + timedelta(hours=hours)).isoformat()
        events.append({"v": 1, "seq": 901 + seq, "at": at, "kind": kind, "entry": "<workdays>"})
    page = report_html.render(report.build(events, now=START + timedelta(days=16), tz=UTC))
    assert "<h2>Block windows</h2>" in page and "<td>9 h 30 min</td>" in page
    assert "Continuing after the detox: &lt;workdays&gt;" in page and "<workdays>" not in page


def test_without_activitywatch_the_browser_extensions_time_is_charted_and_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    events = [event for event in sample_journal() if event["kind"] != "activity_day"]
    for n in range(3):
        day = (START + timedelta(days=n)).date().isoformat()
        events.append({"v": 1, "seq": 1000 + n, "at": (START + timedelta(days=n, hours=8)).isoformat(),
                       "kind": "browser_day", "uid": 1000, "date": day, "seconds": {"x.com": 600 * (n + 1)}})
        events.append({"v": 1, "seq": 2000 + n, "at": (START + timedelta(days=n, hours=8)).isoformat(),
                       "kind": "browser_attempts", "uid": 1000, "date": day, "counts": {"x.com": n + 1},
                       "source": "browser"})
    document = report.build(events, now=START + timedelta(days=15), tz=UTC)
    page = report_html.render(document)
    assert "No ActivityWatch data" not in page
    assert "during the detox (from the browser extension)" in page  # the time chart's caption
    assert page.count("<svg") == 3
    assert "block pages shown" in page and ">6</div>" in page  # the tile: 1 + 2 + 3
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # without the charts: the note says it
    assert html.escape(document["site_time"]["message"]) in report_html.render(document)

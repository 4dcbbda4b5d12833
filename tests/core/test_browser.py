"""The browser extension's questions, answered purely: URL validation and matching (issue 23)."""

from __future__ import annotations

from datetime import date

import pytest

from detoxd.core import browser
from detoxd.core.allowance_rules import Allowance
from detoxd.core.browser import Verdict, WebUrl

SOCIAL = Allowance("social", frozenset({"facebook.com"}))
BLOCKED = frozenset({"twitter.com", "www.twitter.com"})  # in the hosts file now
ENFORCED = BLOCKED | {"facebook.com", "www.facebook.com"}  # with what the open allowance lets through
PATHS = ("linkedin.com/feed", "youtube.com/shorts")


def check(url: str) -> Verdict:
    return browser.check(browser.parse_url(url), blocked=BLOCKED, enforced=ENFORCED, paths=PATHS,
                         allowances=(SOCIAL,))


@pytest.mark.parametrize(("url", "expected"), [
    ("https://twitter.com/home", Verdict(True, "domain", "twitter.com", None)),
    ("http://WWW.Twitter.COM./x?y#z", Verdict(True, "domain", "www.twitter.com", None)),
    ("https://user:pw@twitter.com:8443/", Verdict(True, "domain", "twitter.com", None)),
    # the hosts file blocks names, not their sub-domains: what it lets through is not blocked
    ("https://mobile.twitter.com/", Verdict(False)),
    ("https://www.linkedin.com/feed/", Verdict(True, "path", "linkedin.com/feed", None)),
    ("https://linkedin.com/feedback", Verdict(True, "path", "linkedin.com/feed", None)),
    ("https://linkedin.com/messaging/", Verdict(False)),
    ("https://notlinkedin.com/feed", Verdict(False)),
    ("https://m.youtube.com/shorts/abc", Verdict(True, "path", "youtube.com/shorts", None)),
    ("https://youtube.com/Shorts", Verdict(False)),  # paths are case-sensitive, as in the policies
    # an open allowance lets the name through: not blocked, and the allowance is named
    ("https://facebook.com/", Verdict(False, None, None, "social")),
    ("about:blank", Verdict(False)),
    ("chrome://extensions/", Verdict(False)),
    ("file:///etc/hosts", Verdict(False)),
    ("https://[::1]:8080/feed", Verdict(False)),
    ("http://127.0.0.1/", Verdict(False)),
])
def test_what_is_blocked(url: str, expected: Verdict) -> None:
    assert check(url) == expected


def test_a_blocked_name_names_the_allowance_that_would_open_it() -> None:
    verdict = browser.check(browser.parse_url("https://www.facebook.com/"), blocked=ENFORCED,
                            enforced=ENFORCED, paths=(), allowances=(SOCIAL,))
    assert verdict.to_json() == {"blocked": True, "kind": "domain", "rule": "www.facebook.com",
                                 "allowance": "social"}


def test_a_name_and_a_path_both_blocking_report_the_name() -> None:
    verdict = browser.check(WebUrl("twitter.com", "/feed"), blocked=BLOCKED, enforced=BLOCKED,
                            paths=("twitter.com/feed",), allowances=())
    assert (verdict.kind, verdict.rule) == ("domain", "twitter.com")


@pytest.mark.parametrize("url", [
    None, 3, ["https://x.com"], "", "x" * 8193, "https://exa mple.com/", "https://exämple.com/",
    "https://a.com/\n", "no scheme", "https://", "https:///path", "https://a..b/", "https://-a.com/",
    "https://a.com:99999/", "https://a.com:x/", "https://a;b.com/", "http://" + "a" * 64 + ".com/",
    "https://[::1/", "1https://a.com/",
])
def test_what_is_not_a_url(url: object) -> None:
    with pytest.raises(browser.UrlError):
        browser.parse_url(url)


def test_days_and_seconds() -> None:
    today = date(2026, 6, 1)
    assert browser.parse_day("2026-05-20", today=today, days_back=31) == date(2026, 5, 20)
    assert browser.parse_day("2026-06-02", today=today, days_back=31) == date(2026, 6, 2)
    for bad in ("2026-06-03", "2026-04-01", "2026-02-30", "1.6.2026", 20260601, None):
        with pytest.raises(ValueError):
            browser.parse_day(bad, today=today, days_back=31)
    known = {"twitter.com", "linkedin.com/feed", "social"}
    assert browser.parse_seconds({"twitter.com": 60, "social": 0, "bank.example": 5, "linkedin.com/feed": 7},
                                 known) == ({"linkedin.com/feed": 7, "twitter.com": 60}, 1)
    for bad in ([], {"twitter.com": -1}, {"twitter.com": 1.5}, {"twitter.com": True},
                {"twitter.com": 25 * 3600 + 1}, {f"n{i}": 1 for i in range(65)}, {"x" * 1201: 1}):
        with pytest.raises(ValueError):
            browser.parse_seconds(bad, known)

"""detoxd's extension in Debian's real chromium (headless, CDP over --remote-debugging-pipe).

A real daemon (a scratch hosts file, ``DETOXD_POLICY_ROOT`` = a scratch root: every browser file it
writes goes there, and every path inside them points there) starts a detox; chromium then runs in
a mount namespace with the scratch root's policy and native-messaging directories bound over
/etc/chromium's (tests/integration/chromium.py). Test names resolve to a local HTTP server through
chromium's own ``--host-resolver-rules``; what that server was asked for is evidence too. Every
wait is for an event: a CDP event, or the daemon's answer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from detoxd.service import journal
from detoxd.service.targets.browser.chromium_extension import ChromiumExtension
from tests.integration.chromium import (
    BLOCK_PAGE_DONE,
    LOADED,
    attach,
    environment_for_host,
    launch,
    rendered,
    stderr_tail,
    target_event,
    wait_for_extension,
)
from tests.integration.conftest import DetoxdEnv, wait_for
from tests.integration.test_browser_paths import Site

BLOCKED_NAME = "blocked-name.example"
SITE = "paths-test.example"  # /feed blocked, the rest open
ALLOWED = "allowed-site.example"  # blocked, but the allowance "social" opens it
BLOCKLIST = f"""domains: [{BLOCKED_NAME}, {ALLOWED}]
paths: [{SITE}/feed]
allowances:
  - name: social
    sites: [{ALLOWED}]
    minutes_per_day: 30
"""
# The blocked name fails as the hosts file makes it fail (the daemon's is a scratch file here);
# the others reach the test's server.
RESOLVER_RULES = f"--host-resolver-rules=MAP {BLOCKED_NAME} ~NOTFOUND, MAP *.example 127.0.0.1"


def url(site: Site, host: str, path: str) -> str:
    return f"http://{host}:{site.port}{path}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    directory = tmp_path / "site"
    (directory / "feed").mkdir(parents=True)
    (directory / "index.html").write_text("<title>home</title><p>HOME OK</p>\n")
    (directory / "feed" / "index.html").write_text("<p>FEED CONTENT</p>\n")
    (directory / "allowed.html").write_text("<title>allowed</title><p>ALLOWED OK</p>\n")
    served = Site(directory)  # test_browser_paths' (``seen``: name and path)
    yield served
    served.close()


@pytest.fixture
def detox(detoxd_env: DetoxdEnv) -> Iterator[DetoxdEnv]:
    """A daemon with a detox running, its browser files under ``detoxd_env.root / "policy-root"``."""
    detoxd_env.write_blocklist(BLOCKLIST)
    detoxd_env.write_main("detox:\n  days: 14\n  lock: false\n")  # `detoxd end` may end it
    root = detoxd_env.root / "policy-root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/chromium").touch()  # what detoxd looks for
    detoxd_env.extra_env["DETOXD_POLICY_ROOT"] = str(root)
    detoxd_env.start_daemon()
    started = detoxd_env.cli("start")
    assert started.returncode == 0, started.stderr
    yield detoxd_env
    detoxd_env.stop_daemon()


def policy_root(env: DetoxdEnv) -> Path:
    return env.root / "policy-root"


def extension_id(env: DetoxdEnv) -> str:
    ext_id = ChromiumExtension(env.state_dir, policy_root(env)).extension_id(create=False)
    assert ext_id is not None, "the daemon made no key"
    return ext_id


def test_the_extension_is_force_installed_cannot_be_disabled_and_incognito_and_guest_are_refused(
        tmp_path: Path, detox: DetoxdEnv) -> None:
    ext_id = extension_id(detox)
    root = policy_root(detox)
    # Asked for an incognito window, on the command line: the policy makes it a normal one.
    browser = launch(tmp_path, root, "profile", "--incognito", "about:blank",
                     env=environment_for_host(detox.socket))
    try:
        wait_for_extension(browser, ext_id)
        contexts = browser.send("Target.getBrowserContexts")
        pages = [info for event in list(browser.events) if (info := target_event(event, "page"))]
        blank = [info for info in pages if info.get("url") == "about:blank"]
        assert blank, pages
        # Without the policy the same command line opens it in an off-the-record context.
        assert {info["browserContextId"] for info in blank} == {contexts["defaultBrowserContextId"]}
        page = f"chrome-extension://{ext_id}/blocked.html"
        session = attach(browser, str(browser.send("Target.createTarget", {"url": page})["targetId"]))
        rendered(browser, session, page)
        me = json.loads(browser.evaluate(session, "chrome.management.getSelf().then(JSON.stringify)"))
        assert (me["installType"], me["mayDisable"], me["enabled"]) == ("admin", False, True)
        assert me["version"] and "nativeMessaging" in me["permissions"]
        windows = json.loads(browser.evaluate(
            session, "chrome.windows.getAll({populate: true}).then(w => JSON.stringify(w))"))
        assert not any(window["incognito"] for window in windows)
    except Exception:
        print(stderr_tail(tmp_path, "profile"))
        raise
    finally:
        browser.close()
    # A guest window, the same way (without the policy: a context of its own, the extension elsewhere).
    guest = launch(tmp_path, root, "profile-guest", "--guest", "about:blank",
                   env=environment_for_host(detox.socket))
    try:
        wait_for_extension(guest, ext_id)
        contexts = guest.send("Target.getBrowserContexts")
        pages = [info for event in list(guest.events) if (info := target_event(event, "page"))]
        assert {info["browserContextId"] for info in pages if info.get("url") == "about:blank"} == {
            contexts["defaultBrowserContextId"]}, pages
    finally:
        guest.close()

    # The detox ends: the policies go, and chromium takes the extension out of the profile.
    ended = detox.cli("end")
    assert ended.returncode == 0, ended.stderr
    assert not (root / "etc/chromium/policies/managed/detoxd.json").exists()
    installed = tmp_path / "profile" / "Default" / "Extensions" / ext_id
    assert installed.is_dir()
    after = launch(tmp_path, root, "profile", "about:blank")
    try:
        wait_for(lambda: not installed.exists(), timeout=30, what=f"chromium to remove {installed}")
        page = f"chrome-extension://{ext_id}/blocked.html"
        tab = attach(after, str(after.send("Target.createTarget", {"url": page})["targetId"]))
        gone = rendered(after, tab, "chrome-error://", LOADED)
        assert "ERR_BLOCKED_BY_CLIENT" in gone["text"], gone
    finally:
        after.close()


def test_blocked_names_and_paths_show_the_block_page_and_an_allowance_opens_from_it(
        tmp_path: Path, detox: DetoxdEnv, site: Site) -> None:
    ext_id = extension_id(detox)
    block_page = f"chrome-extension://{ext_id}/blocked.html"
    days_left = detox.status()["days_left"]
    assert isinstance(days_left, int) and days_left > 1
    browser = launch(tmp_path, policy_root(detox), "profile", RESOLVER_RULES, "about:blank",
                     env=environment_for_host(detox.socket))
    try:
        wait_for_extension(browser, ext_id)
        tab = attach(browser, str(browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]))

        def visit(url: str, prefix: str = block_page, done: str = BLOCK_PAGE_DONE) -> dict[str, Any]:
            browser.send("Page.navigate", {"url": url}, session=tab)
            return rendered(browser, tab, prefix, done)

        name = visit(url(site, BLOCKED_NAME, "/"))
        assert name["state"] == "ready", name
        assert name["url"] == f"{block_page}?url={quote(url(site, BLOCKED_NAME, '/'), safe='')}"
        assert f"{BLOCKED_NAME} is a blocked name in your blocklist." in name["text"]
        assert f"Day 1 of 14 · {days_left} days left" in name["text"]
        assert "The detox ends" in name["text"]
        assert "social: 30 minutes left today" in name["text"]

        path = visit(url(site, SITE, "/feed/x"))
        assert f"The path {SITE}/feed is in your blocklist (paths:)" in path["text"], path
        assert f"{days_left} days left" in path["text"]

        home = visit(url(site, SITE, "/"), prefix=url(site, SITE, "/"), done=LOADED)
        assert "HOME OK" in home["text"]
        assert f"{SITE}/" in site.seen
        assert not any(seen.startswith(f"{SITE}/feed") for seen in site.seen)
        assert not any(seen.startswith(BLOCKED_NAME) for seen in site.seen)

        # The allowance's button on the block page: opened as `detoxd open` would, then the page loads.
        allowed_url = url(site, ALLOWED, "/allowed.html")
        blocked = visit(allowed_url)
        assert 'The allowance “social” can open it.' in blocked["text"], blocked
        browser.evaluate(tab, 'document.querySelector(\'li[data-allowance="social"] button\').click()')
        opened = rendered(browser, tab, allowed_url, LOADED)
        assert "ALLOWED OK" in opened["text"]
        assert [allowance["open"] for allowance in detox.status()["allowances"]] == [True]

        def attempts() -> dict[str, int]:
            events, _ = journal.read_events(journal.directory_for(detox.state_dir))
            counts: Counter[str] = Counter()
            for event in events:
                if event["kind"] == "browser_attempts" and event["source"] == "browser":
                    counts.update(event["counts"])
            return dict(counts)
        wait_for(lambda: attempts() == {BLOCKED_NAME: 1, f"{SITE}/feed": 1, ALLOWED: 1},
                 what=f"the three attempts in the journal (so far {attempts()})")

        # Leaving the allowance's site sends the focused tab's time on it, and on nothing else.
        visit(url(site, SITE, "/"), prefix=url(site, SITE, "/"), done=LOADED)

        def browser_days() -> list[dict[str, int]]:
            events, _ = journal.read_events(journal.directory_for(detox.state_dir))
            return [event["seconds"] for event in events if event["kind"] == "browser_day"]
        wait_for(lambda: any("social" in seconds for seconds in browser_days()),
                 what=f"the allowance's time in the journal (so far {browser_days()})")
        assert [seconds for seconds in browser_days() if "social" in seconds][-1]["social"] >= 1
        counted = {name for seconds in browser_days() for name in seconds}
        assert counted == {"social"}, browser_days()  # not the block pages, not the front page
    except Exception:
        print(stderr_tail(tmp_path, "profile"))
        raise
    finally:
        browser.close()


def test_a_tab_left_open_on_a_site_shows_the_block_page_once_the_site_is_blocked(
        tmp_path: Path, detox: DetoxdEnv, site: Site) -> None:
    """The hosts file stops new connections only: a page loaded while its site was open would stay.
    The extension checks every open tab whenever what is blocked changes: here an allowance closes
    (the same sweep covers the tabs open when a detox starts and brings the extension in)."""
    ext_id = extension_id(detox)
    allowed_url = url(site, ALLOWED, "/allowed.html")
    browser = launch(tmp_path, policy_root(detox), "profile", RESOLVER_RULES, "about:blank",
                     env=environment_for_host(detox.socket))
    try:
        wait_for_extension(browser, ext_id)
        opened = detox.cli("open", "social")
        assert opened.returncode == 0, opened.stderr
        tab = attach(browser, str(browser.send("Target.createTarget", {"url": allowed_url})["targetId"]))
        assert "ALLOWED OK" in rendered(browser, tab, allowed_url, LOADED)["text"]
        closed = detox.cli("close", "social")
        assert closed.returncode == 0, closed.stderr
        block_page = f"chrome-extension://{ext_id}/blocked.html"
        shown = rendered(browser, tab, block_page)  # nobody navigated: the extension moved the tab
        assert shown["url"] == f"{block_page}?url={quote(allowed_url, safe='')}", shown
        assert 'The allowance “social” can open it.' in shown["text"], shown

        def attempts() -> list[dict[str, int]]:
            events, _ = journal.read_events(journal.directory_for(detox.state_dir))
            return [event["counts"] for event in events if event["kind"] == "browser_attempts"]
        wait_for(lambda: attempts() == [{ALLOWED: 1}],  # a block page shown: one attempt
                 what=lambda: f"one attempt in the journal (so far {attempts()})")
    except Exception:
        print(stderr_tail(tmp_path, "profile"))
        raise
    finally:
        browser.close()

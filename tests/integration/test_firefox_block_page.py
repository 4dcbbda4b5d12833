"""detoxd's block page in Debian's firefox-esr, end to end (issue 23, item 6).

A real daemon (its browser files under a scratch policy root: ``DETOXD_POLICY_ROOT``) starts a
detox; it writes the unsigned XPI, the Firefox policies that force-install it and the native
host manifest. firefox-esr (headless, own mount namespace: see :mod:`tests.integration.firefoxkit`)
then reads exactly those; its extension asks the daemon through the real `detoxd browser-host`
(the launcher detoxd wrote), on the daemon's socket. A local HTTP server stands in for the sites:
every test name resolves to 127.0.0.1 in the profile only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from detoxd.core import firefoxext
from detoxd.service import journal
from tests.integration.conftest import DetoxdEnv, wait_for
from tests.integration.firefoxkit import Firefox, Site

NAME = "blocked-fx.example"  # a blocked name, opened by the allowance "social"
SITE = "site-fx.example"  # a site whose /feed is blocked
BLOCKLIST = f"""domains: [{NAME}]
paths: [{SITE}/feed]
allowances:
  - name: social
    sites: [{NAME}]
    minutes_per_day: 20
"""


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.close()


def start_detox(env: DetoxdEnv, tmp_path: Path, main: str | None = None) -> Path:
    root = tmp_path / "policy-root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/firefox-esr").touch()  # what detoxd looks for
    env.extra_env["DETOXD_POLICY_ROOT"] = str(root)
    env.write_blocklist(BLOCKLIST)
    if main is not None:
        env.write_main(main)
    env.start_daemon()
    started = env.cli("start")
    assert started.returncode == 0, started.stderr
    return root


def attempts(env: DetoxdEnv) -> dict[str, int]:
    events, _ = journal.read_events(journal.directory_for(env.state_dir))
    counts: dict[str, int] = {}
    for event in events:
        if event["kind"] == "browser_attempts" and event["source"] == "browser":
            for rule, count in event["counts"].items():
                counts[rule] = counts.get(rule, 0) + count
    return counts


def test_firefox_shows_the_block_page_and_opens_an_allowance(detoxd_env: DetoxdEnv, tmp_path: Path,
                                                             site: Site) -> None:
    root = start_detox(detoxd_env, tmp_path)
    policies = json.loads((root / "etc/firefox/policies/policies.json").read_text())
    assert firefoxext.firefox_forced(policies)
    assert (root / firefoxext.FIREFOX_DIR / firefoxext.XPI_NAME).is_file()
    doctor = detoxd_env.cli("doctor", "--json", "--root", str(root))
    found = [check for check in json.loads(doctor.stdout)["checks"]
             if check["name"] == "browser extension: firefox"]
    assert [check["level"] for check in found] == ["ok"], found
    status = detoxd_env.status()
    day_line = f"Day 1 of {round(status['days_total'])} · {status['days_left']} days left"

    firefox = Firefox(tmp_path, root, [NAME, SITE], env={"DETOXD_SOCKET": str(detoxd_env.socket)})
    try:
        addon = firefox.addon(firefoxext.FIREFOX_ID)
        assert addon["active"] and not addon["canDisable"] and not addon["canUninstall"], addon
        assert "disallowed by enterprise policy" in firefox.try_to_disable(firefoxext.FIREFOX_ID)["disable"]

        page = firefox.open(site.url(NAME, "/home"), "Blocked: ")  # a blocked name
        assert page["url"].startswith("moz-extension://") and page["title"].startswith(f"Blocked: {NAME}")
        assert firefox.text("#day") == day_line
        assert f"{NAME} is a blocked name" in firefox.text("#why")
        assert "social: 20 minutes left today" in firefox.text("#allowances")

        page = firefox.open(site.url(SITE, "/feed/today"), "Blocked: ")  # a blocked path
        assert page["title"].startswith(f"Blocked: {SITE}:{site.port}/feed/today"), page
        assert f"The path {SITE}/feed is in your blocklist" in firefox.text("#why")
        assert firefox.text("#day") == day_line

        page = firefox.open(site.url(SITE, "/jobs"), f"PAGE {SITE}/jobs")  # the rest of the site
        assert page["url"] == site.url(SITE, "/jobs") and f"{SITE}/jobs" in site.requested

        firefox.new_window(private=True)  # private windows too
        page = firefox.open(site.url(NAME, "/private"), "Blocked: ")
        assert page["private"] and page["url"].startswith("moz-extension://"), page
        assert firefox.text("#day") == day_line

        # The allowance's button: opened through the daemon's rules, then the page itself loads.
        firefox.arm(f"PAGE {NAME}/private")
        firefox.click('li[data-allowance="social"] button')
        page = firefox.collect()
        assert page["url"] == site.url(NAME, "/private") and f"{NAME}/private" in site.requested
        assert detoxd_env.status()["allowances"][0]["open"] is True
    finally:
        firefox.close()

    # Each attempt is in the journal, per rule (the two blocked-name pages and the path).
    wait_for(lambda: attempts(detoxd_env) == {NAME: 2, f"{SITE}/feed": 1}, timeout=20,
             what=lambda: f"the attempts in the journal: {attempts(detoxd_env)}")


def test_after_the_detox_the_extension_leaves_firefox(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    """Firefox keeps an extension whose policy is gone (installed, active, now removable): detoxd's
    removes itself when it finds the native host gone."""
    root = start_detox(detoxd_env, tmp_path, main="detox:\n  days: 14\n  lock: false\n")
    environment = {"DETOXD_SOCKET": str(detoxd_env.socket)}
    firefox = Firefox(tmp_path, root, [NAME], env=environment)
    try:
        assert firefox.addon(firefoxext.FIREFOX_ID)["active"]
    finally:
        firefox.close()
    ended = detoxd_env.cli("end")
    assert ended.returncode == 0, ended.stderr
    assert not (root / "etc/firefox/policies/policies.json").exists()
    assert not (root / firefoxext.HOST_FILE).exists()
    firefox = Firefox(tmp_path, root, [NAME], env=environment)  # the same profile, after the detox
    try:
        assert firefox.wait_uninstalled(firefoxext.FIREFOX_ID)
        assert firefox.addon(firefoxext.FIREFOX_ID) is None
    finally:
        firefox.close()

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
from collections.abc import Iterator
from pathlib import Path

import pytest

from detoxd.service.targets.browser.chromium_extension import ChromiumExtension
from tests.integration.chromium import (
    attach,
    environment_for_host,
    launch,
    rendered,
    stderr_tail,
    target_event,
    wait_for_extension,
)
from tests.integration.conftest import DetoxdEnv


@pytest.fixture
def detox(detoxd_env: DetoxdEnv) -> Iterator[DetoxdEnv]:
    """A daemon with a detox running, its browser files under ``detoxd_env.root / "policy-root"``."""
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


def test_the_extension_is_force_installed_cannot_be_disabled_and_incognito_is_refused(
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

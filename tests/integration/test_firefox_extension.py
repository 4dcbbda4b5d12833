"""detoxd's Firefox plumbing against Debian's firefox-esr: the unsigned XPI force-installed by
policy, its native-messaging host manifest, private windows, and everything gone at the end.

The extension here is a small stand-in made by the test (its block page asks the native host and
shows the answer); the host is a test-made echo program at the launcher's place. What is under
test is detoxd's part: :class:`FirefoxExtension`'s XPI and the policies and host manifest
:class:`BrowserPolicies` writes under a scratch policy root, as Firefox reads them.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from detoxd.core import firefoxext
from detoxd.service.targets.browser.firefox_extension import FirefoxExtension
from detoxd.service.targets.browser.policyfiles import BrowserPolicies
from tests.integration.firefoxkit import Firefox, Site

BLOCKED, OPEN = "blocked.detoxd-test.example", "open.detoxd-test.example"

MANIFEST = {
    "manifest_version": 3, "name": "detoxd stand-in", "version": "1.0",
    "browser_specific_settings": {"gecko": {"id": firefoxext.FIREFOX_ID}},
    "background": {"scripts": ["background.js"]},
    "permissions": ["nativeMessaging", "webNavigation", "tabs"],
}
BACKGROUND = f"""
browser.webNavigation.onBeforeNavigate.addListener(details => {{
  if (details.frameId === 0 && new URL(details.url).hostname === {BLOCKED!r})
    browser.tabs.update(details.tabId, {{url: browser.runtime.getURL("blocked.html") + "?url=" +
                                         encodeURIComponent(details.url)}});
}});
"""
BLOCK_PAGE = '<!DOCTYPE html><html><head><title>wait</title><script src="blocked.js"></script></head>' \
             '<body><h1>Blocked</h1><p id="host"></p></body></html>'
BLOCK_SCRIPT = f"""
const url = new URL(new URLSearchParams(location.search).get("url"));
browser.runtime.sendNativeMessage({firefoxext.HOST_NAME!r}, {{id: 1, cmd: "status"}}).then(reply => {{
  document.getElementById("host").textContent = JSON.stringify(reply);
  document.title = "Blocked: " + url.hostname + " (" + reply.echo + ")";
}}, error => {{ document.title = "Blocked: " + url.hostname + " (no host: " + error + ")"; }});
"""
ECHO_HOST = """
import json, os, struct, sys
size = struct.unpack("=I", sys.stdin.buffer.read(4))[0]
message = json.loads(sys.stdin.buffer.read(size))
reply = json.dumps({"id": message["id"], "ok": True, "echo": message["cmd"], "uid": os.getuid()}).encode()
sys.stdout.buffer.write(struct.pack("=I", len(reply)) + reply)
sys.stdout.buffer.flush()
"""


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.close()


def stand_in_xpi() -> bytes:
    files = {"manifest.json": json.dumps(MANIFEST), "background.js": BACKGROUND,
             "blocked.html": BLOCK_PAGE, "blocked.js": BLOCK_SCRIPT}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_firefox_esr_force_installs_the_unsigned_extension_in_private_windows_too(
        tmp_path: Path, site: Site) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/firefox-esr").touch()  # what detoxd looks for
    launcher = root / "var/lib/detoxd/browser/detoxd-browser-host"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(f"#!{sys.executable}\n{ECHO_HOST}")
    launcher.chmod(0o755)
    extension = FirefoxExtension(root, launcher)
    assert extension.write(stand_in_xpi()) and not extension.write(stand_in_xpi())  # only when it changed
    state = tmp_path / "state"
    state.mkdir()
    policies = BrowserPolicies(state, root, specs=extension.specs())
    policies.apply()
    document = json.loads((root / "etc/firefox/policies/policies.json").read_text())
    assert firefoxext.firefox_forced(document)
    host = json.loads((root / firefoxext.HOST_FILE).read_text())
    assert host["path"] == str(launcher) and host["allowed_extensions"] == [firefoxext.FIREFOX_ID]

    firefox = Firefox(tmp_path, root, [BLOCKED, OPEN])
    try:
        addon = firefox.addon(firefoxext.FIREFOX_ID)
        assert addon["active"] and not addon["canDisable"] and not addon["canUninstall"], addon
        tried = firefox.try_to_disable(firefoxext.FIREFOX_ID)
        assert "disallowed by enterprise policy" in tried["disable"] and tried["activeAfter"], tried

        page = firefox.open(site.url(BLOCKED, "/feed"), "Blocked: ")
        assert page["title"] == f"Blocked: {BLOCKED} (status)", page  # the native host answered
        assert page["url"].startswith("moz-extension://") and not page["private"]
        assert json.loads(firefox.text("#host"))["uid"] == 0  # the host ran as the browser's user

        page = firefox.open(site.url(OPEN, "/"), f"PAGE {OPEN}/")
        assert page["url"] == site.url(OPEN, "/")

        firefox.new_window(private=True)
        page = firefox.open(site.url(BLOCKED, "/x"), "Blocked: ")
        assert page["private"] and page["title"] == f"Blocked: {BLOCKED} (status)", page
        firefox.first_window()  # (the private window's block page closes with the extension)
        assert firefox.uninstall(firefoxext.FIREFOX_ID) is False  # a privileged script can, this session
    finally:
        firefox.close()
    firefox = Firefox(tmp_path, root, [BLOCKED, OPEN])  # the same profile, started again
    try:
        assert firefox.addon(firefoxext.FIREFOX_ID)["active"]  # the policy installed it again
    finally:
        firefox.close()
    # (The stand-in redirects on webNavigation, after the request went out: in a detox the hosts
    # file and the WebsiteFilter policy keep blocked names and paths from the server.)
    assert f"{OPEN}/" in site.requested

    policies.lift()
    assert not (root / "etc/firefox/policies/policies.json").exists()
    assert not (root / firefoxext.HOST_FILE).exists()

"""Debian's firefox-esr, headless, in a mount namespace of its own, driven through Marionette.

/etc and /usr/lib/mozilla are overlays in the namespace (the machine's are never written); the
scratch policy root's ``etc/firefox/policies`` and ``usr/lib/mozilla/native-messaging-hosts`` are
bound over the real directories, so Firefox reads exactly what detoxd wrote under the root. Test
names resolve to 127.0.0.1 through the profile's ``network.dns.localDomains``. Every wait is for
an event: the port file (inotify), a page title (the browser's ``pagetitlechanged``), a process exit.
"""

from __future__ import annotations

import base64
import contextlib
import shlex
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.marionette import Marionette, MarionetteError, profile_prefs, wait_for_port

FIREFOX = shutil.which("firefox-esr")
POLICY_DIRS = ("etc/firefox/policies", "usr/lib/mozilla/native-messaging-hosts")

# Chrome-context scripts (``resolve`` is the last argument).
ADDON_STATE = """
const [id, resolve] = arguments;
const {AddonManager} = ChromeUtils.importESModule("resource://gre/modules/AddonManager.sys.mjs");
AddonManager.getAddonByID(id).then(addon => resolve(addon && {
  active: addon.isActive, userDisabled: addon.userDisabled, signedState: addon.signedState,
  canDisable: Boolean(addon.permissions & AddonManager.PERM_CAN_DISABLE),
  canUninstall: Boolean(addon.permissions & AddonManager.PERM_CAN_UNINSTALL),
  privateAllowed: Boolean(addon.permissions & AddonManager.PERM_CAN_CHANGE_PRIVATEBROWSING_ACCESS) === false,
}), error => resolve({error: String(error)}));
"""
# What about:addons does for "Disable" (its "Remove" is not offered without PERM_CAN_UNINSTALL; a
# privileged script's addon.uninstall() is not checked, and the policy installs it again at start).
TRY_TO_DISABLE = """
const [id, resolve] = arguments;
const {AddonManager} = ChromeUtils.importESModule("resource://gre/modules/AddonManager.sys.mjs");
(async () => {
  const addon = await AddonManager.getAddonByID(id);
  const tried = {};
  try { await addon.disable(); tried.disable = "done"; } catch (error) { tried.disable = String(error); }
  const after = await AddonManager.getAddonByID(id);
  tried.activeAfter = Boolean(after && after.isActive);
  resolve(tried);
})();
"""
# What only a privileged script can do (the Browser Console): the policy installs it again at start.
UNINSTALL = """
const [id, resolve] = arguments;
const {AddonManager} = ChromeUtils.importESModule("resource://gre/modules/AddonManager.sys.mjs");
AddonManager.getAddonByID(id).then(addon => addon.uninstall())
  .then(() => AddonManager.getAddonByID(id))
  .then(addon => resolve(addon !== null), error => resolve(String(error)));
"""
# Resolves once the add-on is not installed (now, or when AddonManager says it was uninstalled).
UNINSTALLED = """
const [id, resolve] = arguments;
const {AddonManager} = ChromeUtils.importESModule("resource://gre/modules/AddonManager.sys.mjs");
const listener = {onUninstalled(addon) {
  if (addon.id === id) { AddonManager.removeAddonListener(listener); resolve(true); }
}};
AddonManager.addAddonListener(listener);
AddonManager.getAddonByID(id).then(addon => {
  if (addon === null) { AddonManager.removeAddonListener(listener); resolve(true); }
});
"""
# Arm a wait in the current window for its selected tab's page titled with a prefix: the promise
# lives on the chrome window until AWAIT_TITLE collects it. The listener is on the window (capture:
# every browser element of it), so a browser element replaced meanwhile is followed too.
ARM_TITLE = """
const [prefix, resolve] = arguments;
window.__detoxdTitle = new Promise(done => {
  const look = () => {
    const browser = window.gBrowser.selectedBrowser;
    if (browser.contentTitle.startsWith(prefix)) {
      window.removeEventListener("pagetitlechanged", look, true);
      done({title: browser.contentTitle, url: browser.currentURI.spec, at: Date.now(),
            private: PrivateBrowsingUtils.isBrowserPrivate(browser)});
    }
  };
  window.addEventListener("pagetitlechanged", look, true);
});
resolve(true);
"""
WINDOW_READY = "const [resolve] = arguments; window.delayedStartupPromise.then(() => resolve(true));"
AWAIT_TITLE = "const [resolve] = arguments; window.__detoxdTitle.then(resolve);"
# What every tab of every window shows (for a wait that timed out).
TABS = """
const [resolve] = arguments;
const tabs = [];
for (const each of Services.wm.getEnumerator("navigator:browser")) {
  for (const browser of each.gBrowser.browsers) {
    tabs.push({current: each === window, selected: browser === each.gBrowser.selectedBrowser,
               url: browser.currentURI.spec, title: browser.contentTitle});
  }
}
resolve(tabs);
"""
FIRST_PAINT = """
const [resolve] = arguments;
const found = () => performance.getEntriesByName("first-contentful-paint")[0];
const give = entry => resolve(performance.timeOrigin + entry.startTime);
if (found()) give(found());
else new PerformanceObserver((list, observer) => { observer.disconnect(); give(list.getEntries()[0]); })
  .observe({type: "paint"});
"""
EXTENSION_MEMORY = """
const [id, resolve] = arguments;
(async () => {
  const policy = WebExtensionPolicy.getByID(id);
  const info = await ChromeUtils.requestProcInfo();
  const processes = [info, ...info.children];
  const extension = info.children.filter(child => child.type === "extension");
  resolve({uuid: policy && policy.mozExtensionHostname,
           extensionProcesses: extension.map(child => ({pid: child.pid, memory: child.memory})),
           all: processes.map(child => ({pid: child.pid, type: child.type, memory: child.memory}))});
})();
"""


class Site:
    """Every test name served from one local server (127.0.0.1, a port the kernel picks); each
    page is titled ``PAGE <host><path>``; ``requested`` is what it was asked for."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                where = f"{self.headers['Host'].split(':')[0]}{self.path}"
                site.requested.append(where)
                body = f"<!DOCTYPE html><title>PAGE {where}</title><p>content of {where}</p>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)  # (a navigation the extension took elsewhere: gone)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Firefox:
    """One firefox-esr reading the policies under ``root``; ``hosts`` resolve to 127.0.0.1."""

    def __init__(self, tmp_path: Path, root: Path, hosts: list[str], name: str = "firefox",
                 env: dict[str, str] | None = None) -> None:
        assert FIREFOX is not None, "needs Debian's firefox-esr (scripts/setup --test installs it)"
        base = tmp_path / name
        self.profile = base / "profile"
        self.profile.mkdir(parents=True, exist_ok=True)  # (an existing one: the same profile again)
        (self.profile / "user.js").write_text(profile_prefs(**{
            "network.dns.localDomains": ",".join(hosts),
            "devtools.console.stdout.chrome": True,  # the extension's console in firefox.log
            "devtools.console.stdout.content": True,
        }))
        upper, work = base / "overlay-upper", base / "overlay-work"
        for directory in (upper / "etc", work / "etc", upper / "mozilla", work / "mozilla"):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in POLICY_DIRS:
            (root / directory).mkdir(parents=True, exist_ok=True)
        mozilla = "/usr/lib/mozilla"
        script = "\n".join([
            "set -e",
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper}/etc,workdir={work}/etc /etc",
            f"mkdir -p {mozilla}",  # (an existing directory: Debian's firefox-esr ships it)
            f"mount -t overlay overlay -o lowerdir={mozilla},upperdir={upper}/mozilla,workdir={work}/mozilla "
            f"{mozilla}",
            "mkdir -p /etc/firefox/policies /usr/lib/mozilla/native-messaging-hosts",
            f"mount --bind {root}/etc/firefox/policies /etc/firefox/policies",
            f"mount --bind {root}/{POLICY_DIRS[1]} /{POLICY_DIRS[1]}",
            "exec " + shlex.join([FIREFOX, "--headless", "--marionette", "-remote-allow-system-access",
                                  "--no-remote", "-profile", str(self.profile)]),
        ])
        self.log = base / "firefox.log"
        self.started = time.monotonic()
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                ["unshare", "-m", "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(base), **(env or {})})
        try:
            self.marionette = Marionette(wait_for_port(self.profile, self.process))
            self.marionette.call("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {
                "pageLoadStrategy": "none", "acceptInsecureCerts": True}}})
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise

    def chrome(self, script: str, *args: Any) -> Any:
        return self.marionette.chrome(script, *args)

    def addon(self, addon_id: str) -> Any:
        return self.chrome(ADDON_STATE, addon_id)

    def try_to_disable(self, addon_id: str) -> Any:
        return self.chrome(TRY_TO_DISABLE, addon_id)

    def open(self, url: str, title_prefix: str) -> dict[str, Any]:
        """Go to ``url`` in the current tab and wait for a page titled ``title_prefix...``;
        returns that page's title, URL, when its title came (epoch ms) and when it started (``sent``)."""
        self.chrome(ARM_TITLE, title_prefix)
        sent = time.time() * 1000
        try:
            self.marionette.navigate(url)
        except MarionetteError as error:
            # A path blocked by WebsiteFilter may reach Firefox's own error page before the
            # extension's block page replaces it: what counts is the page that comes.
            if "Reached error page" not in str(error):
                raise
        page = self.collect()
        page["sent"] = sent
        return page

    def first_paint(self) -> float:
        """The current page's first contentful paint (epoch ms)."""
        return float(self.marionette.async_script(FIRST_PAINT))

    def wait_uninstalled(self, addon_id: str) -> bool:
        return bool(self.chrome(UNINSTALLED, addon_id))

    def uninstall(self, addon_id: str) -> Any:
        """A privileged uninstall; whether the add-on is still there after it."""
        return self.chrome(UNINSTALL, addon_id)

    def click(self, selector: str) -> None:
        self.marionette.script(f"document.querySelector({selector!r}).click();")

    def arm(self, title_prefix: str) -> None:
        """Wait (see :meth:`collect`) for a page of the current tab titled ``title_prefix...``."""
        self.chrome(ARM_TITLE, title_prefix)

    def collect(self) -> dict[str, Any]:
        """The page :meth:`arm` waits for; on a timeout, what every tab shows, and the log."""
        try:
            return dict(self.chrome(AWAIT_TITLE))
        except MarionetteError as error:
            if error.error != "script timeout":
                raise
            tabs = self.chrome(TABS)
            raise AssertionError(f"no such page: tabs {tabs}\n{self.log.read_text()[-3000:]}") from error

    def text(self, selector: str = "body") -> str:
        return str(self.marionette.script(f"return document.querySelector({selector!r}).innerText;"))

    def first_window(self) -> None:
        handles = self.marionette.call("WebDriver:GetWindowHandles")
        self.marionette.call("WebDriver:SwitchToWindow", {"handle": handles[0], "focus": True})

    def new_window(self, *, private: bool = False) -> None:
        handle = self.marionette.call("WebDriver:NewWindow", {"type": "window", "private": private})
        self.marionette.call("WebDriver:SwitchToWindow", {"handle": handle["handle"], "focus": True})
        self.chrome(WINDOW_READY)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.marionette.call("WebDriver:TakeScreenshot", {"full": False}))

    def extension_memory(self, addon_id: str) -> Any:
        return self.chrome(EXTENSION_MEMORY, addon_id)

    def close(self) -> None:
        self.marionette.quit()
        self.process.wait(timeout=60)

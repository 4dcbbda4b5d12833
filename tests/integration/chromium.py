"""Debian's chromium, headless, in a mount namespace of its own, driven over CDP (``cdp.Browser``).

/etc is an overlay there (the machine's /etc is never written: the script stops at the first
command that fails, before anything is bound) and the scratch root's policy and native-messaging
directories are bound over /etc/chromium's. The scratch root also gets a policy file of the
test's own that lets DevTools attach to extension pages (``DeveloperToolsAvailability: 1``; by
default Chromium refuses it for a force-installed extension): what the test reads, nothing detoxd
does.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.integration.cdp import Browser, CdpError, Event

CHROMIUM = shutil.which("chromium")
# Not --disable-background-networking: it stops the extension downloader that force-installs.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe",
         "--disable-component-update", "--disable-sync", "--window-size=1000,900"]
BOUND = ("etc/chromium/policies", "etc/chromium/native-messaging-hosts")
TEST_POLICY = "etc/chromium/policies/managed/zz-test-devtools.json"


def launch(tmp_path: Path, root: Path, profile: str, *arguments: str,
           env: dict[str, str] | None = None) -> Browser:
    """Chromium with ``arguments`` (URLs among them) and its own ``profile`` directory."""
    assert CHROMIUM is not None, "needs Debian's chromium (scripts/setup --test installs it)"
    upper, work = tmp_path / "overlay-upper", tmp_path / "overlay-work"
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    for directory in BOUND:
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / TEST_POLICY).parent.mkdir(parents=True, exist_ok=True)
    (root / TEST_POLICY).write_text('{"DeveloperToolsAvailability": 1}\n')
    binds = [f"mount --bind {shlex.quote(str(root / directory))} /{directory}" for directory in BOUND]
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / profile}", *arguments]
    stderr = (tmp_path / f"{profile}.stderr").open("ab")

    def start(redirections: str, fds: tuple[int, int]) -> subprocess.Popen[bytes]:
        script = "\n".join([
            "set -e",
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc",
            "mkdir -p " + " ".join(f"/{directory}" for directory in BOUND),
            *binds,
            "exec " + shlex.join(command) + " " + redirections,
        ])
        # bash: dash takes no descriptor above 9 in a redirection.
        return subprocess.Popen(["unshare", "-m", "bash", "-c", script], pass_fds=fds, stderr=stderr,
                                stdout=subprocess.DEVNULL, env={
                                    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
                                    **(env or {})})

    try:
        browser = Browser(start)
    finally:
        stderr.close()
    browser.send("Target.setDiscoverTargets", {"discover": True})
    return browser


def target_event(event: Event, kind: str | None = None) -> dict[str, object] | None:
    """The target info of a targetCreated/targetInfoChanged event (of ``kind``), else None."""
    if event.get("method") not in ("Target.targetCreated", "Target.targetInfoChanged"):
        return None
    info: dict[str, object] = event["params"]["targetInfo"]
    return info if kind is None or info.get("type") == kind else None


def wait_for_extension(browser: Browser, ext_id: str, timeout: float = 60.0) -> str:
    """The extension's service worker running: its target id."""
    worker = f"chrome-extension://{ext_id}/background.js"
    def running(event: Event) -> bool:
        return (target_event(event, "service_worker") or {}).get("url") == worker
    event = browser.wait_event(running, timeout, what=f"the service worker {worker}")
    return str(event["params"]["targetInfo"]["targetId"])


def attach(browser: Browser, target: str) -> str:
    """A session on ``target``, its runtime's events on (execution contexts made and destroyed)."""
    session = str(browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"])
    browser.send("Runtime.enable", session=session)
    return session


# Resolves once the document at a URL starting with PREFIX is rendered (DONE): the block page marks
# itself data-state="ready" (or, without an answer from detoxd, titles itself "... — detoxd"), another
# page has loaded. A MutationObserver and readystatechange wait for it: the page's own events.
BLOCK_PAGE_DONE = 'document.documentElement.dataset.state === "ready" || document.title.endsWith("— detoxd")'
LOADED = 'document.readyState === "complete"'
RENDERED = """new Promise((resolve, reject) => {
  if (!location.href.startsWith(PREFIX)) { reject(new Error("still at " + location.href)); return; }
  const done = () => DONE;
  const answer = () => resolve({title: document.title, text: document.body ? document.body.innerText : "",
                                url: location.href, state: document.documentElement.dataset.state || null});
  if (done()) { answer(); return; }
  new MutationObserver(() => { if (done()) answer(); }).observe(document, {subtree: true, childList: true,
    attributes: true, characterData: true});
  document.addEventListener("readystatechange", () => { if (done()) answer(); });
})"""


def rendered(browser: Browser, session: str, prefix: str, done: str = BLOCK_PAGE_DONE,
             timeout: float = 30.0) -> dict[str, Any]:
    """What the page of ``session`` shows once a document at ``prefix...`` has rendered; each try
    that finds another document waits for the next execution context before the next try."""
    deadline = time.monotonic() + timeout
    while True:
        mark = browser.mark()
        try:
            script = RENDERED.replace("PREFIX", json.dumps(prefix)).replace("DONE", done)
            value = browser.evaluate(session, script,
                                     timeout=max(0.1, deadline - time.monotonic()))
            return dict(value)
        except CdpError as error:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"{prefix} never rendered: {error}") from None

            def new_context(event: Event) -> bool:
                return (event.get("sessionId") == session
                        and event.get("method") == "Runtime.executionContextCreated")
            browser.wait_event(new_context, left, what=f"a new document after {error}", since=mark)


def stderr_tail(tmp_path: Path, profile: str) -> str:
    path = tmp_path / f"{profile}.stderr"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def environment_for_host(socket: Path) -> dict[str, str]:
    """What the native host needs from the browser's environment: the daemon's socket."""
    return {"DETOXD_SOCKET": str(socket), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}

"""`paths:` against the real browsers: Debian's chromium and firefox-esr, headless.

blocklist.yaml's `paths:` go through the daemon's engine (in-process: a detox started and ended
on a fake clock), which writes its policy files under a scratch root (``DETOXD_POLICY_ROOT``'s way: every file
under it); each browser then runs in a mount namespace of its own (``unshare -m``) where /etc is
an overlay (the machine's /etc is never written) and the scratch policy directories are bound over
/etc/chromium/policies and /etc/firefox/policies. A local HTTP server on 127.0.0.1 (a port the
kernel picks) serves the test site under a test-made name, mapped to 127.0.0.1 by each browser's
own switch (chromium ``--host-resolver-rules``, firefox ``network.dns.localDomains``). What the
server was asked for is the evidence: a blocked path never reaches it, the site's front page does.
Every wait is for a process to exit.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from detoxd.clock import FakeClock
from detoxd.service.engine import Engine
from tests.service.enginekit import DAY, ROOT, scratch_paths

HOST = "paths-test.example"
BLOCKLIST = f"paths:\n  - {HOST}/feed\n"
CHROMIUM = shutil.which("chromium")
FIREFOX = shutil.which("firefox-esr")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Site:
    """The test site and every path it was asked for (``seen``: with the name asked for)."""

    def __init__(self, directory: Path) -> None:
        self.requested: list[str] = []
        self.seen: list[str] = []
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(directory), **kwargs)

            def do_GET(self) -> None:
                site.requested.append(self.path)
                site.seen.append(f"{self.headers.get('Host', '').split(':')[0]}{self.path}")
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    directory = tmp_path / "site"
    (directory / "feed").mkdir(parents=True)
    (directory / "index.html").write_text("<p>HOME OK</p>\n")
    (directory / "feed" / "index.html").write_text("<p>FEED CONTENT</p>\n")
    (directory / "probe.html").write_text('<p>PROBE</p><iframe src="/feed/"></iframe>\n')
    served = Site(directory)
    yield served
    served.close()


class Detox:
    """blocklist.yaml's `paths:` in force through the daemon's engine (in-process, fake clock),
    its browser policy files under a scratch root as ``DETOXD_POLICY_ROOT`` puts them."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "policy-root"
        for browser in ("usr/bin/chromium", "usr/bin/firefox-esr"):  # what detoxd looks for
            (self.root / browser).parent.mkdir(parents=True, exist_ok=True)
            (self.root / browser).touch()
        self.clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        (tmp_path / "detoxd").mkdir()
        paths = scratch_paths(tmp_path / "detoxd", blocklist=BLOCKLIST)
        self.engine = Engine(paths, self.clock, policy_root=self.root)
        self.engine.boot()
        assert self.engine.handle({"cmd": "start"}, ROOT)["ok"]
        assert self.engine.status()["paths_blocked"] == [f"{HOST}/feed"]

    def end(self) -> None:
        self.clock.advance(15 * DAY)
        self.engine.tick()
        assert self.engine.status()["state"] == "idle"
        self.engine.shutdown()


def in_namespace(tmp_path: Path, root: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` in a mount namespace whose /etc is an overlay with detoxd's scratch policy
    directories bound over the browsers' own."""
    upper, work = tmp_path / "overlay-upper", tmp_path / "overlay-work"
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    for directory in ("etc/chromium/policies", "etc/firefox/policies"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    script = "\n".join([
        "set -e",
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc",
        "mkdir -p /etc/chromium/policies /etc/firefox/policies",
        f"mount --bind {root}/etc/chromium/policies /etc/chromium/policies",
        f"mount --bind {root}/etc/firefox/policies /etc/firefox/policies",
        "exec " + shlex.join(command),
    ])
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=120, check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                         "HOME": str(tmp_path)})


def chromium_dom(tmp_path: Path, root: Path, url: str, profile: str, *extra: str) -> str:
    assert CHROMIUM is not None, "needs Debian's chromium (scripts/setup --test installs it)"
    done = in_namespace(tmp_path, root, [
        CHROMIUM, *CHROMIUM_FLAGS, *extra, f"--user-data-dir={tmp_path / profile}",
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1", "--dump-dom", url])
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def firefox_screenshot(tmp_path: Path, root: Path, url: str, profile: str) -> Path:
    assert FIREFOX is not None, "needs Debian's firefox-esr (scripts/setup --test installs it)"
    directory = tmp_path / profile
    directory.mkdir()
    (directory / "user.js").write_text(f'user_pref("network.dns.localDomains", "{HOST}");\n')
    shot = tmp_path / f"{profile}.png"
    done = in_namespace(tmp_path, root, [FIREFOX, "--headless", "--no-remote", "-profile", str(directory),
                                         "--screenshot", str(shot), url])
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 0
    return shot


def test_chromium_blocks_the_path_and_loads_the_rest_of_the_site(tmp_path: Path, site: Site) -> None:
    detox = Detox(tmp_path)
    root = detox.root
    assert "HOME OK" in chromium_dom(tmp_path, root, site.url("/"), "profile-home")
    assert "FEED CONTENT" not in chromium_dom(tmp_path, root, site.url("/feed/"), "profile-feed")
    assert "FEED CONTENT" not in chromium_dom(tmp_path, root, site.url("/feed/x"), "profile-private",
                                              "--incognito")  # private windows too, and deeper pages
    assert "/" in site.requested and not any(path.startswith("/feed") for path in site.requested)
    detox.end()  # the detox ended: the same browser reaches the path again
    assert not (root / "etc/chromium/policies/managed/detoxd.json").exists()
    assert "FEED CONTENT" in chromium_dom(tmp_path, root, site.url("/feed/"), "profile-after")
    assert "/feed/" in site.requested


def test_firefox_esr_blocks_the_path_and_loads_the_rest_of_the_site(tmp_path: Path, site: Site) -> None:
    detox = Detox(tmp_path)
    root = detox.root
    # A blocked top-level page never finishes loading for --screenshot (it waits on); a page of
    # the site that frames the blocked path shows both at once and lets firefox exit.
    firefox_screenshot(tmp_path, root, site.url("/probe.html"), "profile-during")
    assert "/probe.html" in site.requested and "/feed/" not in site.requested  # the frame never reached it
    detox.end()
    assert not (root / "etc/firefox/policies/policies.json").exists()
    firefox_screenshot(tmp_path, root, site.url("/probe.html"), "profile-after")
    assert "/feed/" in site.requested

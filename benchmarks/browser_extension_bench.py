#!/usr/bin/env python3
"""detoxd's extension in Debian's chromium: `.venv/bin/python benchmarks/browser_extension_bench.py`
(as root: chromium runs in a mount namespace of its own, as in the tests; about a minute).

A real daemon in temporary directories runs a detox (a blocked name, a blocked path, an allowance,
peer sessions), with its browser files under a scratch ``DETOXD_POLICY_ROOT``; chromium (headless,
CDP over --remote-debugging-pipe: tests/integration/chromium.py) force-installs the extension from
there and talks to a real `detoxd browser-host`.

- navigation -> block page rendered (its DOM holds the daemon's answer) and painted (two
  animation frames later: on screen): ``Page.navigate`` to a blocked URL (a new query string each
  time, so the extension's short verdict cache never answers), median and p95, for
  a blocked name (failing as the hosts file makes it fail) and a blocked path (URLBlocklist); the
  same for a page that is not blocked (navigation -> load) for comparison;
- memory: the extension's renderer process (its service worker and the block page) after those
  navigations, PSS and RSS, and the whole browser's PSS;
- ``--screenshot PATH``: the block page of a blocked name (docs/images/block-page-chromium.png).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

from harness import REPO, DaemonEnv, daemon_env, machine_description, machine_line, median, ms, percentile

sys.path.insert(0, str(REPO))
from detoxd.service.targets.browser.chromium_extension import ChromiumExtension
from tests.integration.cdp import Browser
from tests.integration.chromium import (
    BLOCK_PAGE_DONE,
    LOADED,
    attach,
    environment_for_host,
    launch,
    rendered,
    wait_for_extension,
)

BLOCKED_NAME = "facebook.example"
SITE = "linkedin.example"
BLOCKLIST = f"""domains: [{BLOCKED_NAME}, youtube.example]
paths: [{SITE}/feed]
allowances:
  - name: video
    sites: [youtube.example]
    minutes_per_day: 20
    max_opens_per_day: 2
"""
MAIN = """detox:
  days: 14
  lock: true
me:
  name: Sam Rivera
peers:
  - {name: Ada Lovelace}
  - {name: Grace Hopper}
  - {name: Alan Turing}
  - {name: Katherine Johnson}
  - {name: Tim Berners-Lee}
sessions:
  first: day 3 18:00
  repeat_after_days: 7
  minutes_per_business: 30
  location: "Ada's office"
"""
RULES = f"--host-resolver-rules=MAP {BLOCKED_NAME} ~NOTFOUND, MAP *.example 127.0.0.1"
PAINTED = "new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => resolve(true))))"


class PolicyRootDaemon(DaemonEnv):
    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "DETOXD_POLICY_ROOT": str(self.root / "policy-root")}


@contextmanager
def local_site(directory: Path) -> Iterator[int]:
    (directory / "feed").mkdir(parents=True)
    (directory / "index.html").write_text("<title>home</title><p>HOME</p>\n")
    (directory / "feed" / "index.html").write_text("<p>FEED</p>\n")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def memory_kib(profile: Path) -> dict[str, int]:
    """PSS/RSS of the extension's renderer and the whole browser (every process of ``profile``)."""
    found = {"extension_pss": 0, "extension_rss": 0, "browser_pss": 0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()  # chromium rewrites it: one string, spaces
            rollup = (entry / "smaps_rollup").read_text()
        except OSError:
            continue
        if not _of(entry, profile):
            continue
        values = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:]}
        found["browser_pss"] += values.get("Pss", 0)
        if b" --extension-process" in command.replace(b"\0", b" "):
            found["extension_pss"] += values.get("Pss", 0)
            found["extension_rss"] += values.get("Rss", 0)
    return found


def _of(process: Path, profile: Path) -> bool:
    """Whether ``process`` belongs to the chromium of ``profile`` (itself or a descendant)."""
    pid = process.name
    while pid not in ("0", "1"):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            pid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            return False
        if f"--user-data-dir={profile}".encode() in command:
            return True
    return False


def navigate(browser: Browser, tab: str, port: int, block_page: str,
             runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds from ``Page.navigate`` to rendered, and to painted, per kind of URL."""
    kinds = {
        "blocked name": (f"http://{BLOCKED_NAME}:{port}/?n=", block_page, BLOCK_PAGE_DONE),
        "blocked path": (f"http://{SITE}:{port}/feed/?n=", block_page, BLOCK_PAGE_DONE),
        "not blocked": (f"http://{SITE}:{port}/?n=", f"http://{SITE}:{port}/", LOADED),
    }
    shown_at: dict[str, list[float]] = {label: [] for label in kinds}
    painted: dict[str, list[float]] = {label: [] for label in kinds}
    for run in range(runs + 1):
        for label, (url, prefix, done) in kinds.items():
            began = time.perf_counter()
            browser.send("Page.navigate", {"url": f"{url}{run}"}, session=tab)
            shown = rendered(browser, tab, prefix, done)
            rendered_after = time.perf_counter() - began
            browser.evaluate(tab, PAINTED)
            if run:  # the first of each warms up
                painted[label].append(time.perf_counter() - began)
                shown_at[label].append(rendered_after)
            if label != "not blocked":
                assert shown["state"] == "ready", shown
    return shown_at, painted


def spread(values: list[float]) -> dict[str, float]:
    return {"median": ms(median(values)), "p95": ms(percentile(values, 0.95)), "runs": len(values)}


def arguments(argv: list[str] | None, doc: str | None, browser: str) -> argparse.Namespace:
    """--runs and --screenshot; as root only (the browser runs in a mount namespace)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="navigations per kind")
    parser.add_argument("--screenshot", type=Path, help="write the block page's PNG here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error(f"run as root: {browser} runs in a mount namespace (unshare -m)")
    return args


@contextmanager
def detox_for(browser: str, prefix: str) -> Iterator[tuple[PolicyRootDaemon, Path]]:
    """A real daemon in a detox (BLOCKLIST, MAIN) whose browser files go under a policy root where
    ``browser`` (e.g. "usr/bin/chromium") stands for the installed browser; stopped at the end."""
    with daemon_env(prefix) as base:
        env = PolicyRootDaemon(base.root)
        env.prepare(BLOCKLIST)
        (env.config_dir / "detoxd.yaml").write_text(MAIN)
        root = env.root / "policy-root"
        (root / browser).parent.mkdir(parents=True)
        (root / browser).touch()
        try:
            env.start()
            env.start_detox()
            yield env, root
        finally:
            env.stop()


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "chromium")
    with detox_for("usr/bin/chromium", "detoxd-bench-ext-") as (env, root):
        ext_id = ChromiumExtension(env.state_dir, root).extension_id(create=False)
        assert ext_id is not None
        block_page = f"chrome-extension://{ext_id}/blocked.html"
        with local_site(env.root / "site") as port:
            started = time.perf_counter()
            browser = launch(env.root, root, "profile", RULES, "about:blank",
                             env=environment_for_host(env.socket))
            try:
                wait_for_extension(browser, ext_id)
                worker_running = time.perf_counter() - started
                tab = attach(browser, str(browser.send("Target.createTarget",
                                                       {"url": "about:blank"})["targetId"]))
                shown_at, timings = navigate(browser, tab, port, block_page, args.runs)
                memory = memory_kib(env.root / "profile")
                if args.screenshot is not None:
                    browser.send("Page.navigate", {"url": f"http://{BLOCKED_NAME}/"}, session=tab)
                    rendered(browser, tab, block_page)
                    browser.evaluate(tab, PAINTED)
                    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=tab)
                    args.screenshot.write_bytes(base64.b64decode(shot["data"]))
            finally:
                browser.close()
        results = {
            "machine": machine_line(machine_description(env.root)),
            "chromium_start_to_extension_running_ms": round(ms(worker_running), 1),
            "navigation_to_page_rendered_ms": {label: spread(values) for label, values in shown_at.items()},
            "navigation_to_page_painted_ms": {label: spread(values) for label, values in timings.items()},
            "memory_kib": memory,
        }
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""detoxd's extension in Debian's firefox-esr: `.venv/bin/python benchmarks/firefox_extension_bench.py`
(as root: firefox runs in a mount namespace of its own, as in the tests; about a minute).

The same detox as benchmarks/browser_extension_bench.py (a blocked name, a blocked path, an
allowance, peer sessions): a real daemon in temporary directories with its browser files under a
scratch ``DETOXD_POLICY_ROOT``; firefox-esr (headless, Marionette: tests/integration/firefoxkit.py)
force-installs the unsigned XPI from there and talks to a real `detoxd browser-host`.

- navigation -> block page rendered (its title says the daemon answered: the browser's
  ``pagetitlechanged``, in chrome) and painted (two animation frames later, timed in the page):
  ``WebDriver:Navigate`` (page load strategy "none") to a blocked URL with a new query string each
  time (the extension's verdict cache never answers), median and p95, for a blocked name and a
  blocked path (WebsiteFilter); a page that is not blocked (navigation -> its title) for comparison.
  Every test name resolves to the local server (the profile's ``network.dns.localDomains``): the
  blocked name's request is answered, the extension's redirect races it (as with a hosts file that
  is bypassed; with detoxd's hosts file the request fails at once);
- memory: Firefox's extension process (its background page and the block pages; ``type
  "extension"`` in ``ChromeUtils.requestProcInfo``), PSS and RSS from /proc, and the whole
  browser's PSS;
- ``--screenshot PATH``: the block page of a blocked name (docs/images/block-page-firefox.png).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from browser_extension_bench import BLOCKED_NAME, SITE, arguments, detox_for, spread
from harness import REPO, machine_description, machine_line

sys.path.insert(0, str(REPO))
from detoxd.core import firefoxext
from tests.integration.firefoxkit import Firefox, Site

PAINTED = """
const [resolve] = arguments;
requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.timeOrigin + performance.now())));
"""
PROCESSES = """
const [resolve] = arguments;
ChromeUtils.requestProcInfo().then(info => resolve(
  [{pid: info.pid, type: "parent"}, ...info.children.map(child => ({pid: child.pid, type: child.type}))]));
"""


def memory_kib(firefox: Firefox) -> dict[str, int]:
    found = {"extension_pss": 0, "extension_rss": 0, "browser_pss": 0}
    for process in firefox.chrome(PROCESSES):
        try:
            rollup = Path(f"/proc/{process['pid']}/smaps_rollup").read_text()
        except OSError:
            continue
        values = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:]}
        found["browser_pss"] += values.get("Pss", 0)
        if process["type"] == "extension":
            found["extension_pss"] += values.get("Pss", 0)
            found["extension_rss"] += values.get("Rss", 0)
    return found


def navigate(firefox: Firefox, site: Site,
             runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds from the navigation to rendered, and to painted, per kind of URL."""
    kinds = {
        "blocked name": (site.url(BLOCKED_NAME, "/?n="), "Blocked: "),
        "blocked path": (site.url(SITE, "/feed/?n="), "Blocked: "),
        "not blocked": (site.url(SITE, "/?n="), f"PAGE {SITE}/"),
    }
    rendered: dict[str, list[float]] = {label: [] for label in kinds}
    painted: dict[str, list[float]] = {label: [] for label in kinds}
    for run in range(runs + 1):
        for label, (url, title) in kinds.items():
            page = firefox.open(f"{url}{run}", title)
            painted_at = float(firefox.marionette.async_script(PAINTED))
            if run:  # the first of each warms up
                rendered[label].append((page["at"] - page["sent"]) / 1000)
                painted[label].append((painted_at - page["sent"]) / 1000)
    return rendered, painted


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "firefox")
    with detox_for("usr/bin/firefox-esr", "detoxd-bench-fx-") as (env, root):
        site = Site()
        started = time.perf_counter()
        try:
            firefox = Firefox(env.root, root, [BLOCKED_NAME, SITE, "youtube.example"],
                              env={"DETOXD_SOCKET": str(env.socket)})
            try:
                addon: dict[str, Any] = firefox.addon(firefoxext.FIREFOX_ID)
                assert addon["active"], addon
                extension_active = time.perf_counter() - started
                firefox.marionette.call("WebDriver:SetWindowRect", {"width": 1000, "height": 813})
                rendered, painted = navigate(firefox, site, args.runs)
                memory = memory_kib(firefox)
                if args.screenshot is not None:
                    firefox.open(f"http://{BLOCKED_NAME}/", "Blocked: ")  # as the chromium shot
                    firefox.marionette.async_script(PAINTED)
                    args.screenshot.write_bytes(firefox.screenshot())
            finally:
                firefox.close()
        finally:
            site.close()
        results = {
            "machine": machine_line(machine_description(env.root)),
            "firefox_started_to_extension_active_ms": round(extension_active * 1000, 1),
            "navigation_to_page_rendered_ms": {label: spread(values) for label, values in rendered.items()},
            "navigation_to_page_painted_ms": {label: spread(values) for label, values in painted.items()},
            "memory_kib": memory,
        }
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

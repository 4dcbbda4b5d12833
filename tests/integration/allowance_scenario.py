"""Runs inside ``unshare --mount --net`` (see test_allowances_daemon.py); prints one JSON line.

The namespace has its own loopback with the "sites" 10.200.0.1 (social.example), 10.200.0.2
(added.example) and 10.200.0.3 (gapped.example), a real dnsmasq on 127.0.0.1:53 that answers
for them, and scratch files bind-mounted over /etc/hosts, /etc/nsswitch.conf ("files dns"),
/etc/resolv.conf and /run/systemd/users (logind's record of who sits at the seat: uid 1000).
Names are looked up with the real resolver, ``getent ahostsv4``.

The one stand-in: systemd itself. detoxd-cutter.path starts ``detoxd cut`` while
``/run/detoxd/cutter/requests`` is not empty (``DirectoryNotEmpty=``); a thread here does the
same, polling every 50 ms.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SITE, ADDED, GAPPED = "10.200.0.1", "10.200.0.2", "10.200.0.3"
ALICE, NOBODY = 1000, 65534


def detoxd(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    if user is None:
        return subprocess.run([sys.executable, "-m", "detoxd", *args], capture_output=True, text=True,
                              timeout=60)
    # Another user runs the world-readable copy the test made (tests/otheruser.py).
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([os.environ["DETOXD_TEST_USER_PYTHON"], "-m", "detoxd", *args],
                          capture_output=True, text=True, timeout=60, user=user, cwd="/", env=environment)


def lookup(name: str) -> str:
    result = subprocess.run(["getent", "ahostsv4", name], capture_output=True, text=True, timeout=30)
    return result.stdout.split()[0] if result.stdout.strip() else f"failed ({result.returncode})"


def wait(predicate: Callable[[], Any], timeout: float) -> float | None:
    """Seconds until ``predicate`` held, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return round(time.monotonic() - started, 2)
        time.sleep(0.05)
    return None


def connect(address: str) -> tuple[socket.socket, socket.socket, socket.socket]:
    """A "browser tab": an established connection to a server on ``address``."""
    server = socket.create_server((address, 0))
    client = socket.create_connection(server.getsockname(), timeout=5)
    peer, _ = server.accept()
    return server, client, peer


def is_cut(client: socket.socket) -> bool:
    client.settimeout(0.05)
    try:
        return client.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset or aborted: cut
        return True


def cutter_stand_in(requests: Path, stop: threading.Event, runs: list[str]) -> None:
    while not stop.is_set():
        if requests.is_dir() and any(requests.iterdir()):
            result = detoxd("cut")
            runs.append((result.stdout + result.stderr).strip())
        time.sleep(0.05)


def main(state_root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    blocklist = Path(os.environ["DETOXD_CONFIG_DIR"]) / "blocklist.yaml"
    requests = Path(os.environ["DETOXD_SOCKET"]).parent / "cutter" / "requests"
    daemon = subprocess.Popen([sys.executable, "-m", "detoxd", "run", "-v"],
                              stdout=subprocess.DEVNULL, stderr=(state_root / "daemon.log").open("wb"))
    stop = threading.Event()
    runs: list[str] = []
    stand_in = threading.Thread(target=cutter_stand_in, args=(requests, stop, runs), daemon=True)
    try:
        wait(lambda: detoxd("status").returncode == 0, 60)
        out["unblocked_before_start"] = lookup("social.example")
        out["start"] = detoxd("start").returncode
        stand_in.start()
        out["blocked"] = lookup("social.example")

        nobody = detoxd("open", "social", user=NOBODY)
        out["nobody_open"] = [nobody.returncode, nobody.stderr.strip()]
        stranger = detoxd("open", "social", user=1001)
        out["stranger_open"] = [stranger.returncode, stranger.stderr.strip()]
        out["blocked_after_refusals"] = lookup("social.example")

        before_open = datetime.now(UTC)
        alice = detoxd("open", "social", user=ALICE)  # all that is left today: 3 seconds
        out["open_between"] = [before_open.isoformat(), datetime.now(UTC).isoformat()]
        out["alice_open"] = [alice.returncode, alice.stdout.strip(), alice.stderr.strip()]
        out["resolves_after"] = wait(lambda: lookup("social.example") == SITE, 60)
        _server, tab, _peer = connect(lookup("social.example"))
        out["status_open"] = json.loads(detoxd("status", "--json").stdout)["allowances"]
        out["blocked_again_after"] = wait(lambda: lookup("social.example") == "0.0.0.0", 60)
        out["blocked_again_at"] = datetime.now(UTC).isoformat()
        out["tab_cut_after"] = wait(lambda: is_cut(tab), 60)

        spent = detoxd("open", "social", user=ALICE)
        out["spent_open"] = [spent.returncode, spent.stderr.strip()]

        gapped = detoxd("open", "gapped", "0.02", user=ALICE)
        out["gapped_first"] = gapped.returncode
        wait(lambda: lookup("gapped.example") == "0.0.0.0" and not detoxd(
            "status", "--json").stdout.count('"open": true'), 60)
        again = detoxd("open", "gapped", user=ALICE)
        out["gapped_again"] = [again.returncode, again.stderr.strip()]

        text = blocklist.read_text()
        blocklist.write_text(text.replace("minutes_per_day: 0.05", "minutes_per_day: 30"))
        reload = detoxd("reload")
        out["raise_reload"] = reload.returncode
        status = json.loads(detoxd("status", "--json").stdout)
        out["raise_warnings"] = [w for w in status["warnings"] if "allowances" in w]
        out["raise_minutes_left"] = status["allowances"][0]["minutes_left_today"]
        raised = detoxd("open", "social", "10", user=ALICE)
        out["raised_open"] = [raised.returncode, raised.stderr.strip()]

        # A config edit (saved the way editors do, without `detoxd reload`) adds a name while a
        # connection to it is open: the cutter closes it too.
        _server2, other_tab, _peer2 = connect(lookup("added.example"))
        temp = blocklist.with_name(".blocklist.tmp")
        temp.write_text(blocklist.read_text().replace("domains: [", "domains: [added.example, "))
        temp.replace(blocklist)
        out["added_blocked_after"] = wait(lambda: lookup("added.example") == "0.0.0.0", 60)
        out["added_tab_cut_after"] = wait(lambda: is_cut(other_tab), 60)
        out["cutter_runs"] = runs
    finally:
        stop.set()
        daemon.terminate()
        daemon.wait(timeout=20)
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))

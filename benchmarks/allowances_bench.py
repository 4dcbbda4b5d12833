"""Allowances: how fast an open takes effect, how late an expiry blocks again, how soon the
connection cutter closes an open connection, and what the allowance planning costs per tick.

As root: ``.venv/bin/python benchmarks/allowances_bench.py [--trials N]`` (about a minute).
The daemon runs inside ``unshare --mount --net --pid`` with a scratch /etc/hosts, nsswitch.conf
("files dns"), resolv.conf and a real dnsmasq answering for the test site, as in
tests/integration/test_allowances_daemon.py. ``detoxd cut`` is started for each request as
detoxd-cutter.path would (a 10 ms poll stands in for systemd's inotify watch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
SITE = "10.200.0.1"
SETUP = """set -e
ip link set lo up
ip addr add 10.200.0.1/32 dev lo
mount --bind "$1/hosts" /etc/hosts
mount --bind "$1/nsswitch.conf" /etc/nsswitch.conf
mount --bind "$1/resolv.conf" /etc/resolv.conf
dnsmasq --port=53 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --addn-hosts="$1/dns-hosts" --pid-file="$1/dnsmasq.pid" --user=root
shift
exec "$@"
"""
OPEN_MINUTES = 0.02  # 1.2 s


def detoxd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detoxd", *args], capture_output=True, text=True, timeout=60)


def lookup(name: str) -> str:
    out = subprocess.run(["getent", "ahostsv4", name], capture_output=True, text=True, timeout=30).stdout
    return out.split()[0] if out.strip() else ""


def until(predicate: object, timeout: float = 15.0, step: float = 0.005) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(step)
    raise TimeoutError("condition not reached")


def cut(client: socket.socket) -> bool:
    client.settimeout(0.005)
    try:
        return client.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def inner(root: Path, trials: int) -> dict[str, list[float]]:
    requests = Path(os.environ["DETOXD_SOCKET"]).parent / "cutter" / "requests"
    daemon = subprocess.Popen([sys.executable, "-m", "detoxd", "run"], stdout=subprocess.DEVNULL,
                              stderr=(root / "daemon.log").open("wb"))
    stop = threading.Event()

    def cutter() -> None:
        while not stop.is_set():
            if requests.is_dir() and any(requests.iterdir()):
                detoxd("cut")
            time.sleep(0.01)

    results: dict[str, list[float]] = {"open_command": [], "resolves": [], "expiry_lag": [], "cut": [],
                                       "cut_after_due": []}
    try:
        until(lambda: detoxd("status").returncode == 0, 30, 0.05)
        assert detoxd("start").returncode == 0
        threading.Thread(target=cutter, daemon=True).start()
        for _ in range(trials):
            until(lambda: lookup("social.example") == "0.0.0.0")
            time.sleep(0.3)  # let the previous cut finish
            started = time.monotonic()
            assert detoxd("open", "social", str(OPEN_MINUTES)).returncode == 0
            answered = time.monotonic()
            resolved = until(lambda: lookup("social.example") == SITE)
            server = socket.create_server((SITE, 0))
            client = socket.create_connection(server.getsockname(), timeout=5)
            peer, _ = server.accept()  # kept: a collected socket would close the connection itself
            blocked = until(lambda: lookup("social.example") == "0.0.0.0")
            closed = until(lambda sock=client: cut(sock))
            results["open_command"].append(answered - started)
            results["resolves"].append(resolved - answered)
            results["expiry_lag"].append(blocked - (answered + OPEN_MINUTES * 60))
            results["cut"].append(closed - blocked)
            results["cut_after_due"].append(closed - (answered + OPEN_MINUTES * 60))
            for sock in (client, peer, server):
                sock.close()
    finally:
        stop.set()
        daemon.terminate()
        daemon.wait(timeout=20)
    return results


def outer(trials: int) -> dict[str, list[float]]:
    root = Path(tempfile.mkdtemp(prefix=f"detoxd-allow-bench-{os.getpid()}-"))
    root.chmod(0o755)
    (root / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "nsswitch.conf").write_text("hosts: files dns\n")
    (root / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    (root / "dns-hosts").write_text(f"{SITE} social.example\n")
    config = root / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text(
        "domains: [social.example]\nallowances:\n  - name: social\n    sites: [social.example]\n"
        "    minutes_per_day: 1440\n")
    (config / "detoxd.yaml").write_text("detox:\n  days: 1\n  lock: true\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DETOXD_CONFIG_DIR": str(config),
           "DETOXD_STATE_DIR": str(root / "state"), "DETOXD_SOCKET": str(root / "run" / "control.sock"),
           "DETOXD_POLICY_ROOT": str(root / "policies")}
    env.pop("DETOXD_HOSTS_FILE", None)
    try:
        # Its own pid namespace: dnsmasq and the daemon end with it.
        result = subprocess.run(
            ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", SETUP,
             "sh", str(root), sys.executable, __file__, "--inner", str(root), "--trials", str(trials)],
            capture_output=True, text=True, env=env, timeout=600, check=False)
        if result.returncode != 0:
            raise SystemExit(result.stderr + (root / "daemon.log").read_text(errors="replace")[-3000:])
        return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def planning_cost(allowances: int = 10, windows_each: int = 5, ticks: int = 2000) -> float:
    """Microseconds per daemon tick for the allowance planning (clock, settle, what is open)."""
    sys.path.insert(0, str(REPO))
    from detoxd.clock import FakeClock
    from detoxd.core import allowances as al
    from detoxd.core.detox import BootReading

    rules = [al.Allowance(f"a{i}", frozenset({f"site{i}.example"}), 20.0, 3, 30.0,
                          tuple(al.Window(day, 600 + 60 * w, 620 + 60 * w)
                                for day in range(5) for w in range(windows_each)))
             for i in range(allowances)]
    tz = ZoneInfo("Europe/Berlin")
    clock = FakeClock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    state = al.started(al.AllowancesState(), rules, locked=True)
    blocked = frozenset(f"site{i}.example" for i in range(allowances)) | frozenset(
        f"n{i}.example" for i in range(1000))
    started = time.perf_counter()
    for _ in range(ticks):
        clock.advance(1)
        state = al.settle(al.tick(state, clock.now(), BootReading("b", clock.boot)), rules, tz)
        al.unblocked(blocked, al.open_rules(state, rules, tz))
    return (time.perf_counter() - started) / ticks * 1e6


def summary(values: list[float], unit: float = 1000.0) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    median = statistics.median(values)
    return f"median {median * unit:.0f} ms, p95 {p95 * unit:.0f} ms, max {max(values) * unit:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--inner", type=Path)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner, args.trials)))
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root (unshare, bind mounts, ss -K)")
    results = outer(args.trials)
    print(f"{args.trials} trials")
    print(f"`detoxd open` command (fresh CLI process): {summary(results['open_command'])}")
    print(f"open answered → the name resolves (getent): {summary(results['resolves'])}")
    print(f"allowance due → blocked again: {summary(results['expiry_lag'])}")
    print(f"blocked again → open connection cut (detoxd cut process): {summary(results['cut'])}")
    print(f"allowance due → open connection cut: {summary(results['cut_after_due'])}")
    print(f"planning per tick, 10 allowances × 25 windows, 1000 blocked names: {planning_cost():.0f} µs")


if __name__ == "__main__":
    main()

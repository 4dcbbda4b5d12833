#!/usr/bin/env python3
"""Household DNS engines: `.venv/bin/python benchmarks/network_bench.py [--names N]` (as root).

1. Apply N (default 100k) names to a real dnsmasq and a real Unbound, each in a network namespace
   made for the run (tests/integration/dnsnet.py), and time until a phone namespace's `dig` sees
   the last name blocked (dnsmasq: file + restart, as `systemctl restart` would; Unbound:
   unbound-control local_zones + include file).
2. The polling cost: CPU seconds of one tamper check of each engine with N names held (what the
   agent does every 15 s), and of the daemon answering one network_sync (every 2 s), scaled to
   an hour. Everything runs in temporary directories and namespaces that are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from dnsnet import ENGINE_IP, UNBOUND_IP, household
from harness import machine_description, machine_line

from detoxd.core.network import DnsEngineConfig, engine_names
from detoxd.netagent.agent import CHECK_SECONDS, SYNC_SECONDS
from detoxd.netagent.dnsmasq import DnsmasqEngine
from detoxd.netagent.unbound import UnboundEngine

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_seconds() -> float:
    """This process and its finished children (unbound-control runs as a child)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def until_blocked(dig: object, server: str, name: str, timeout: float = 120.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if dig(server, name) == ["0.0.0.0"]:  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError(f"{name} never blocked at {server}")


def process_cpu(pid: int) -> float:
    """CPU seconds of another process (the engine), from /proc/PID/stat."""
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_checks(target: object, repeats: int, engine_pid: int) -> tuple[float, float]:
    """(our CPU, the engine's CPU) per check."""
    before, engine_before = cpu_seconds(), process_cpu(engine_pid)
    for _ in range(repeats):
        assert target.check() == []  # type: ignore[attr-defined]
    return ((cpu_seconds() - before) / repeats, (process_cpu(engine_pid) - engine_before) / repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    names = engine_names(f"site{i}.example.com" for i in range(args.names))
    last = max(name for name in names if name.endswith(".example.com"))
    results: dict[str, object] = {"names": len(names),
                                  "date": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="detoxd-netbench-") as scratch, household(Path(scratch)) as net:
        results["machine"] = machine_description(Path(scratch))
        net.start_dnsmasq()
        net.start_unbound()
        assert net.dig(ENGINE_IP, last) == ["203.0.113.7"] and net.dig(UNBOUND_IP, last) == ["203.0.113.7"]

        dnsmasq = DnsmasqEngine(DnsEngineConfig("dnsmasq", 0, 1, conf_dir=str(net.dnsmasq_conf_dir),
                                             service="dnsmasq.service"), restart=net.restart_dnsmasq)
        start = time.monotonic()
        dnsmasq.apply(names, ())
        results["dnsmasq_apply_s"] = round(until_blocked(net.dig, ENGINE_IP, last) - start, 3)
        assert net.dnsmasq is not None
        results["dnsmasq_check_cpu_s"], results["dnsmasq_engine_cpu_s"] = measure_checks(
            dnsmasq, args.repeats, net.dnsmasq.pid)

        unbound = UnboundEngine(DnsEngineConfig("unbound", 1, 1, conf_dir=str(net.unbound_conf_dir),
                                             control_config=str(net.unbound_conf)))
        start = time.monotonic()
        unbound.apply(names, ())
        results["unbound_apply_s"] = round(until_blocked(net.dig, UNBOUND_IP, last) - start, 3)
        results["unbound_check_cpu_s"], results["unbound_engine_cpu_s"] = measure_checks(
            unbound, args.repeats, net.unbound.pid)
        start = time.monotonic()
        unbound.remove()
        results["unbound_remove_s"] = round(time.monotonic() - start, 3)
        start = time.monotonic()
        dnsmasq.remove()
        results["dnsmasq_remove_s"] = round(time.monotonic() - start, 3)
    results["daemon_sync_cpu_s"] = sync_cost(names, args.repeats * 20)
    per_hour = 3600 / CHECK_SECONDS
    results["agent_cpu_s_per_hour_dnsmasq"] = round(float(results["dnsmasq_check_cpu_s"]) * per_hour, 2)  # type: ignore[arg-type]
    results["agent_cpu_s_per_hour_unbound"] = round(float(results["unbound_check_cpu_s"]) * per_hour, 2)  # type: ignore[arg-type]
    results["unbound_engine_cpu_s_per_hour"] = round(float(results["unbound_engine_cpu_s"]) * per_hour, 2)  # type: ignore[arg-type]
    results["daemon_cpu_s_per_hour"] = round(float(results["daemon_sync_cpu_s"]) * 3600 / SYNC_SECONDS, 2)  # type: ignore[arg-type]
    print(machine_line(results["machine"]))  # type: ignore[arg-type]
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "network.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def sync_cost(names: tuple[str, ...], repeats: int) -> float:
    """CPU of the daemon's side of one network_sync once the agent holds the names (digest)."""
    from detoxd.clock import FakeClock
    from detoxd.paths import Paths
    from detoxd.protocol import Peer
    from detoxd.service.engine import Engine

    with tempfile.TemporaryDirectory(prefix="detoxd-netbench-") as scratch:
        root = Path(scratch)
        (root / "config").mkdir()
        (root / "config" / "big.txt").write_text("\n".join(names) + "\n")
        (root / "config" / "blocklist.yaml").write_text("lists: [big.txt]\n")
        (root / "config" / "detoxd.yaml").write_text(
            "network:\n  - engine: unbound\n  - engine: dnsmasq\n")
        (root / "hosts").write_text("127.0.0.1 localhost\n")
        engine = Engine(Paths(root / "config", root / "state", root / "hosts", root / "sock"),
                        FakeClock(datetime(2026, 3, 2, tzinfo=UTC)))
        engine.boot()
        peer = Peer(1, 0, 0)
        engine.handle({"cmd": "start"}, peer)
        digest = engine.handle({"cmd": "network_sync", "agent": "local"}, peer)["digest"]
        report = [{"key": "unbound /etc/unbound/unbound.conf.d", "state": "in_sync", "names": len(names)}]
        before = cpu_seconds()
        for _ in range(repeats):
            reply = engine.handle({"cmd": "network_sync", "agent": "local", "have": digest,
                                   "report": report, "drift": []}, peer)
            assert "names" not in reply
            json.dumps(reply)  # what the socket would encode
        cost = (cpu_seconds() - before) / repeats
        engine.shutdown()
        return cost


if __name__ == "__main__":
    sys.exit(main())

"""Real dnsmasq and Unbound from Debian, in a network namespace, asked by a "phone" namespace.

The household's engines run inside a namespace this test creates (unique names with the pid),
the phone in a second one joined by a veth pair; ``dig`` from the phone shows the names blocked
during the detox, a tamper undone, and everything answered normally again after the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from dnsnet import ENGINE_IP, UNBOUND_IP, HouseholdNet, household, missing_tools

from detoxd.core.network import CANARY, DnsEngineConfig, engine_names, exceptions, unbound_include_zones
from detoxd.netagent.dnsmasq import DnsmasqEngine
from detoxd.netagent.unbound import UnboundEngine

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(missing_tools()),
    reason=f"needs root (network namespaces) and {', '.join(missing_tools()) or 'nothing else'}")

BLOCK = ("twitter.com", "www.twitter.com", "facebook.com")
ALLOW = ("business.facebook.com",)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HouseholdNet]:
    with household(tmp_path_factory.mktemp("household")) as network:
        network.start_dnsmasq()
        network.start_unbound()
        yield network


def names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    return engine_names(BLOCK), exceptions(BLOCK, ALLOW)


def test_dnsmasq_blocks_for_the_phone_undoes_tampering_and_ends_cleanly(net: HouseholdNet) -> None:
    config = DnsEngineConfig("dnsmasq", 0, 1, conf_dir=str(net.dnsmasq_conf_dir), service="dnsmasq.service")
    target = DnsmasqEngine(config, restart=net.restart_dnsmasq)
    assert net.dig(ENGINE_IP, "twitter.com") == ["203.0.113.7"]  # before the detox

    target.apply(*names())
    assert net.dig(ENGINE_IP, "twitter.com") == ["0.0.0.0"]
    assert net.dig(ENGINE_IP, "twitter.com", rtype="AAAA") == ["::"]
    assert net.dig(ENGINE_IP, "m.facebook.com") == ["0.0.0.0"]  # subdomains too
    assert net.dig(ENGINE_IP, "business.facebook.com") == ["203.0.113.7"]  # allow: wins
    assert net.dig(ENGINE_IP, CANARY) == ["NXDOMAIN"]  # Firefox keeps DoH off
    assert net.dig(ENGINE_IP, "example.com") == ["203.0.113.7"]  # the rest untouched
    assert target.check() == []  # nothing changed: nothing restored

    own_file = net.dnsmasq_conf_dir / "detoxd.conf"
    own_file.write_text(own_file.read_text().replace("address=/twitter.com/#\n", ""))
    net.restart_dnsmasq()  # the tamperer restarts dnsmasq too
    assert net.dig(ENGINE_IP, "twitter.com") == ["203.0.113.7"]
    drift = target.check()
    assert len(drift) == 1 and "edited" in drift[0]
    assert net.dig(ENGINE_IP, "twitter.com") == ["0.0.0.0"]

    # A user's own file in the same directory is never touched.
    (net.dnsmasq_conf_dir / "mine.conf").write_text("address=/mine.net/192.0.2.1\n")
    net.restart_dnsmasq()
    target.remove()
    assert not own_file.exists()
    assert (net.dnsmasq_conf_dir / "mine.conf").exists()
    assert net.dig(ENGINE_IP, "twitter.com") == ["203.0.113.7"]
    assert net.dig(ENGINE_IP, CANARY) == ["203.0.113.8"]
    assert net.dig(ENGINE_IP, "mine.net") == ["192.0.2.1"]


def unbound_config(net: HouseholdNet) -> DnsEngineConfig:
    return DnsEngineConfig("unbound", 1, 1, conf_dir=str(net.unbound_conf_dir),
                        control_config=str(net.unbound_conf))


def test_unbound_blocks_survives_a_restart_undoes_tampering_and_ends_cleanly(net: HouseholdNet) -> None:
    target = UnboundEngine(unbound_config(net))
    assert net.dig(UNBOUND_IP, "twitter.com") == ["203.0.113.7"]

    target.apply(*names())
    assert net.dig(UNBOUND_IP, "twitter.com") == ["0.0.0.0"]
    assert net.dig(UNBOUND_IP, "www.twitter.com", rtype="AAAA") == ["::"]
    assert net.dig(UNBOUND_IP, "m.facebook.com") == ["0.0.0.0"]
    assert net.dig(UNBOUND_IP, "business.facebook.com") == ["203.0.113.7"]
    assert net.dig(UNBOUND_IP, CANARY) == ["NXDOMAIN"]
    assert target.check() == []

    net.restart_unbound()  # the include file keeps the block across a restart
    assert net.dig(UNBOUND_IP, "twitter.com") == ["0.0.0.0"]
    assert target.check() == []

    net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "local_zone_remove", "twitter.com"])
    assert net.dig(UNBOUND_IP, "twitter.com") == ["203.0.113.7"]
    drift = target.check()
    assert len(drift) == 1 and "twitter.com" in drift[0]
    assert net.dig(UNBOUND_IP, "twitter.com") == ["0.0.0.0"]

    # A local zone of the user's is left alone at the end.
    net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "local_zone", "mine.net", "always_refuse"])
    target.remove()
    assert not (net.unbound_conf_dir / "detoxd.conf").exists()
    assert net.dig(UNBOUND_IP, "twitter.com") == ["203.0.113.7"]
    assert net.dig(UNBOUND_IP, CANARY) == ["203.0.113.8"]
    assert net.dig(UNBOUND_IP, "mine.net") == ["REFUSED"]
    net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "local_zone_remove", "mine.net"])


def test_unbound_after_a_crash_a_new_agent_removes_everything_without_duplicates(net: HouseholdNet) -> None:
    """kill -9 between engine calls: the include file was written first, so a fresh agent (no
    memory) knows every zone that may have been added; applying twice adds nothing twice."""
    first = UnboundEngine(unbound_config(net))
    first.apply(*names())
    del first  # the agent died here
    again = UnboundEngine(unbound_config(net))
    again.apply(*names())
    listed = net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "list_local_zones"]).stdout
    assert listed.splitlines().count("twitter.com. always_null") == 1
    include = unbound_include_zones((net.unbound_conf_dir / "detoxd.conf").read_text())
    assert set(include) == {*BLOCK, CANARY, *ALLOW}

    fresh = UnboundEngine(unbound_config(net))  # restarted after the end: nothing in memory
    fresh.remove()
    listed = net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "list_local_zones"]).stdout
    assert not any(name in listed for name in (*BLOCK, CANARY))
    assert net.dig(UNBOUND_IP, "twitter.com") == ["203.0.113.7"]


def test_dnsmasq_after_a_crash_a_fresh_target_removes_the_file(net: HouseholdNet, tmp_path: Path) -> None:
    config = DnsEngineConfig("dnsmasq", 0, 1, conf_dir=str(net.dnsmasq_conf_dir), service="dnsmasq.service")
    DnsmasqEngine(config, restart=net.restart_dnsmasq).apply(*names())
    assert net.dig(ENGINE_IP, "twitter.com") == ["0.0.0.0"]
    DnsmasqEngine(config, restart=net.restart_dnsmasq).remove()  # no memory of the apply
    assert net.dig(ENGINE_IP, "twitter.com") == ["203.0.113.7"]


def test_doctors_dns_question_gets_the_engines_real_answer(net: HouseholdNet) -> None:
    """doctor asks an engine over DNS as a phone would: run its `ask` inside the phone namespace."""
    import json
    import sys
    target = UnboundEngine(unbound_config(net))
    target.apply(*names())
    script = ("import json, sys; from detoxd.doctor import ask; "
              "print(json.dumps([ask(sys.argv[1], n).__dict__ for n in sys.argv[2:]]))")
    asked = ["twitter.com", CANARY, "example.com"]
    out = net.in_phone([sys.executable, "-c", script, UNBOUND_IP, *asked]).stdout
    twitter, canary, other = json.loads(out)
    assert twitter == {"rcode": "NOERROR", "addresses": ["0.0.0.0"]}
    assert canary["rcode"] == "NXDOMAIN"
    assert other == {"rcode": "NOERROR", "addresses": ["203.0.113.7"]}
    target.remove()


KILLED_CHILD = """
import sys
from detoxd.core.network import DnsEngineConfig, engine_names
from detoxd.netagent.unbound import UnboundEngine
config = DnsEngineConfig("unbound", 1, 1, conf_dir=sys.argv[1], control_config=sys.argv[2])
target = UnboundEngine(config, control=sys.argv[3])
target.apply(engine_names(f"n{i}.example.com" for i in range(60000)), ())
"""
# unbound-control itself, except that `local_zones` gets the first 20000 lines of the agent's
# zones and then an input that stays open: the agent is killed while unbound-control is adding,
# at a known point instead of a moment chosen by a sleep.
PAUSING_CONTROL = """#!/bin/sh
if [ "$3" = local_zones ]; then
    { head -n 20000; : > "$0.paused"; exec sleep 3600; } | unbound-control "$@"
else
    exec unbound-control "$@"
fi
"""


def waits_on_stdin(agent: int) -> bool:
    """Whether the agent's `unbound-control local_zones` sleeps reading its (empty) stdin pipe."""
    for pid in descendants(agent):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[0] == b"unbound-control" and b"local_zones" in argv:
                return "pipe_read" in Path(f"/proc/{pid}/wchan").read_text()
    return False


def descendants(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def test_unbound_kill_9_in_the_middle_of_local_zones(net: HouseholdNet) -> None:
    """A real kill -9 of an agent while unbound-control is adding 60k zones: a fresh agent's end
    removes every zone that was added (the include file was written first), duplicates none."""
    import signal
    import subprocess
    import sys
    include = net.unbound_conf_dir / "detoxd.conf"
    control = net.root / "pausing-unbound-control"
    control.write_text(PAUSING_CONTROL)
    control.chmod(0o755)
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(net.unbound_conf_dir),
                              str(net.unbound_conf), str(control)], start_new_session=True)
    try:
        wait_for(Path(f"{control}.paused").exists, timeout=120, what="20000 zones for unbound-control")
        # ...and unbound-control has sent them all: it waits for more on its empty stdin.
        wait_for(lambda: waits_on_stdin(child.pid), timeout=120, what="unbound-control to send them")
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the agent, unbound-control and the pause
        child.wait()
    assert include.exists()  # written before any zone was added
    listed = net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "list_local_zones"]).stdout
    added = sum(1 for line in listed.splitlines() if line.endswith(".example.com. always_null"))
    assert 0 < added <= 20000, f"{added} zones"
    print(f"killed after {added} of 60000 zones")
    UnboundEngine(unbound_config(net)).remove()  # the end, by an agent that remembers nothing
    listed = net.in_engine(["unbound-control", "-c", str(net.unbound_conf), "list_local_zones"]).stdout
    assert ".example.com. always_null" not in listed
    assert not include.exists()

"""A household network in two network namespaces: the DNS engines' machine and a phone.

``HouseholdNet`` creates, with names unique to this test process, a namespace for the engines
(dnsmasq on 10.77.0.1, Unbound on 10.77.0.3, and an "internet": a dnsmasq on 127.0.0.2:5353
that answers 203.0.113.7 for every .com name and 203.0.113.8 for every .net name, so that names
resolve before and after the detox without any traffic leaving the namespaces) and a namespace
for the phone, joined by a veth pair. ``dig`` runs inside the phone namespace, as the phone's
resolver would ask. Everything is removed in ``close()``: processes first, then the namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from conftest import wait_for

ENGINE_IP = "10.77.0.1"
UNBOUND_IP = "10.77.0.3"
PHONE_IP = "10.77.0.2"
INTERNET = "127.0.0.2"
INTERNET_PORT = 5353

TOOLS = ("ip", "dnsmasq", "unbound", "unbound-control", "dig")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30, **kwargs)  # type: ignore[call-overload]


class HouseholdNet:
    def __init__(self, root: Path) -> None:
        tag = f"{os.getpid()}{os.urandom(2).hex()}"
        self.root = root
        self.engine_ns = f"dx-eng-{tag}"
        self.phone_ns = f"dx-ph-{tag}"
        self.veth_engine = f"dxe{tag[-8:]}"
        self.veth_phone = f"dxp{tag[-8:]}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.dnsmasq: subprocess.Popen[bytes] | None = None
        self.dnsmasq_conf_dir = root / "dnsmasq.d"
        self.dnsmasq_conf_dir.mkdir()
        self.unbound_conf_dir = root / "unbound.conf.d"
        self.unbound_conf_dir.mkdir()
        self.unbound_conf = root / "unbound.conf"
        self._created: list[str] = []

    # ---- set-up and tear-down ----

    def start(self) -> None:
        for ns in (self.engine_ns, self.phone_ns):
            run(["ip", "netns", "add", ns])
            self._created.append(ns)
        run(["ip", "link", "add", self.veth_engine, "netns", self.engine_ns, "type", "veth",
             "peer", "name", self.veth_phone, "netns", self.phone_ns])
        self.in_engine(["ip", "link", "set", "lo", "up"])
        self.in_engine(["ip", "addr", "add", f"{ENGINE_IP}/24", "dev", self.veth_engine])
        self.in_engine(["ip", "addr", "add", f"{UNBOUND_IP}/24", "dev", self.veth_engine])
        self.in_engine(["ip", "link", "set", self.veth_engine, "up"])
        self.in_phone(["ip", "link", "set", "lo", "up"])
        self.in_phone(["ip", "addr", "add", f"{PHONE_IP}/24", "dev", self.veth_phone])
        self.in_phone(["ip", "link", "set", self.veth_phone, "up"])
        self._spawn(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                     "--no-hosts", f"--listen-address={INTERNET}", "--bind-interfaces",
                     f"--port={INTERNET_PORT}", "--address=/com/203.0.113.7",
                     "--address=/net/203.0.113.8", "--user=root", "--pid-file="])
        wait_for(lambda: self.dig(INTERNET, "example.com", port=INTERNET_PORT) == ["203.0.113.7"],
                 what="the stand-in internet's dnsmasq")

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)

    def in_engine(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.engine_ns, *argv])

    def in_phone(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.phone_ns, *argv])

    def _spawn(self, argv: list[str], log_name: str = "internet.log") -> subprocess.Popen[bytes]:
        log = (self.root / log_name).open("ab")
        process = subprocess.Popen(["ip", "netns", "exec", self.engine_ns, *argv],
                                   stdout=log, stderr=log)
        self.processes.append(process)
        return process

    # ---- the engines ----

    def start_dnsmasq(self) -> None:
        """The household's dnsmasq, as Debian runs it: a conf-dir, upstream = the internet."""
        self.dnsmasq = self._spawn(
            ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
             f"--server={INTERNET}#{INTERNET_PORT}", f"--listen-address={ENGINE_IP}",
             "--bind-interfaces", f"--conf-dir={self.dnsmasq_conf_dir}", "--user=root",
             "--pid-file="], "dnsmasq.log")
        wait_for(lambda: self._alive(self.dnsmasq) and self.dig(ENGINE_IP, "probe.net") == ["203.0.113.8"],
                 what="the household dnsmasq")

    def restart_dnsmasq(self) -> None:
        """What `systemctl restart dnsmasq` does for the packaged unit: stop, start, wait."""
        assert self.dnsmasq is not None
        self.dnsmasq.send_signal(signal.SIGTERM)
        self.dnsmasq.wait(timeout=10)
        self.processes.remove(self.dnsmasq)
        self.start_dnsmasq()

    def start_unbound(self) -> None:
        self.unbound_conf.write_text(f"""\
server:
    interface: {UNBOUND_IP}
    port: 53
    access-control: 10.77.0.0/24 allow
    username: ""
    chroot: ""
    directory: "{self.root}"
    pidfile: ""
    use-syslog: no
    logfile: "{self.root}/unbound.log"
    do-not-query-localhost: no
    module-config: "iterator"
    num-threads: 1
    cache-max-ttl: 0
    include: "{self.unbound_conf_dir}/*.conf"
remote-control:
    control-enable: yes
    control-interface: "{self.root}/unbound.ctl"
    control-use-cert: no
forward-zone:
    name: "."
    forward-addr: {INTERNET}@{INTERNET_PORT}
""")
        self.unbound = self._spawn(["unbound", "-d", "-c", str(self.unbound_conf)], "unbound.stderr")
        wait_for(lambda: self._alive(self.unbound) and self.dig(UNBOUND_IP, "probe.net") == ["203.0.113.8"],
                 timeout=20, what="the household Unbound")

    def restart_unbound(self) -> None:
        self.unbound.send_signal(signal.SIGTERM)
        self.unbound.wait(timeout=10)
        self.processes.remove(self.unbound)
        self.start_unbound()

    @staticmethod
    def _alive(process: subprocess.Popen[bytes] | None) -> bool:
        if process is None or process.poll() is not None:
            raise AssertionError("the engine exited; see its log in the test's directory")
        return True

    # ---- the phone ----

    def dig(self, server: str, name: str, *, port: int = 53, rtype: str = "A") -> list[str]:
        """Answers as the phone sees them; ["NXDOMAIN"] etc. for an error status."""
        ns = self.engine_ns if server == INTERNET else self.phone_ns
        result = subprocess.run(
            ["ip", "netns", "exec", ns, "dig", f"@{server}", "-p", str(port), "+time=1", "+tries=2",
             "+noall", "+answer", "+comments", name, rtype],
            capture_output=True, text=True, timeout=15, check=False)
        status = next((line.split("status: ")[1].split(",")[0] for line in result.stdout.splitlines()
                       if "status: " in line), "NO-ANSWER")
        if status != "NOERROR":
            return [status]
        return [line.split()[-1] for line in result.stdout.splitlines()
                if line and not line.startswith(";") and line.split()[3:4] == [rtype]]


@contextlib.contextmanager
def household(root: Path):  # type: ignore[no-untyped-def]
    net = HouseholdNet(root)
    try:
        net.start()
        yield net
    finally:
        net.close()


def settle(seconds: float = 0.05) -> None:
    time.sleep(seconds)

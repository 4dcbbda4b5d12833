"""Resolver caches and the system resolver, for real.

- a real dnsmasq (loopback, high port) is reloaded by :func:`resolvers.flush_dnsmasq` and then
  answers from the new hosts file;
- getaddrinfo inside ``unshare -m`` with a temporary hosts file and nsswitch.conf bind-mounted
  over /etc: the order in nsswitch.conf decides whether the block is seen.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import find_program, wait_for

from detoxd.service import resolvers
from detoxd.service.resolvers import Environment, Outcome

ROOT_AND_UNSHARE = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                      reason="needs root and unshare")


def dns_query(port: int, name: str, timeout: float = 2.0) -> list[str]:
    """The A records for ``name`` from the server on 127.0.0.1:``port`` (a minimal DNS client)."""
    ident = random.randrange(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        reply = sock.recv(4096)
    reply_id, _flags, _questions, answers, _, _ = struct.unpack_from(">HHHHHH", reply)
    assert reply_id == ident
    offset = _skip_name(reply, 12) + 4
    addresses = []
    for _ in range(answers):
        offset = _skip_name(reply, offset)
        kind, _klass, _ttl, length = struct.unpack_from(">HHIH", reply, offset)
        offset += 10
        if kind == 1:
            addresses.append(socket.inet_ntoa(reply[offset:offset + length]))
        offset += length
    return addresses


def _skip_name(packet: bytes, offset: int) -> int:
    while packet[offset]:
        if packet[offset] & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += packet[offset] + 1
    return offset + 1


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    dnsmasq_program = find_program("dnsmasq")
    if dnsmasq_program is None:
        pytest.skip("dnsmasq (dnsmasq-base) is not installed")
    hosts = tmp_path / "dnsmasq-hosts"
    hosts.write_text("203.0.113.7 social.example\n")
    port = free_udp_port()
    process = subprocess.Popen(
        [dnsmasq_program, "--no-daemon", f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
         "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
         "--cache-size=1000", "--user=root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: _answers(port), what="dnsmasq to answer")
    yield process, port, hosts
    process.terminate()
    process.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        return bool(dns_query(port, "social.example", timeout=0.2))
    except OSError:
        return False


def proc_view(tmp_path: Path, *pids: int) -> Path:
    """A /proc that shows only ``pids`` (links to the real entries): SIGHUP must not reach the
    dnsmasq instances of other programs on this machine."""
    view = tmp_path / "proc"
    view.mkdir()
    for pid in pids:
        (view / str(pid)).symlink_to(f"/proc/{pid}")
    return view


def test_dnsmasq_is_reloaded_and_answers_from_the_new_hosts_file(
        dnsmasq: tuple[subprocess.Popen[bytes], int, Path], tmp_path: Path) -> None:
    process, port, hosts = dnsmasq
    assert dns_query(port, "social.example") == ["203.0.113.7"]
    hosts.write_text("0.0.0.0 social.example\n:: social.example\n")  # the block is applied
    assert dns_query(port, "social.example") == ["203.0.113.7"]  # cached: still the old answer
    result = resolvers.flush_dnsmasq(Environment(proc=proc_view(tmp_path, process.pid)))
    assert result.outcome is Outcome.FLUSHED and str(process.pid) in result.detail
    wait_for(lambda: dns_query(port, "social.example") == ["0.0.0.0"], what="dnsmasq's new answer")
    assert process.poll() is None  # SIGHUP reloads; it does not end dnsmasq


def test_absent_caches_are_left_alone_and_nothing_raises(tmp_path: Path) -> None:
    environment = Environment(resolved_runtime_dir=tmp_path / "no-resolved",
                              nscd_socket=tmp_path / "no-nscd", proc=proc_view(tmp_path),
                              search_path=str(tmp_path))
    results = resolvers.flush_all(environment)
    assert [(result.cache, result.outcome) for result in results] == [
        ("systemd-resolved", Outcome.ABSENT), ("nscd", Outcome.ABSENT), ("dnsmasq", Outcome.ABSENT)]


def test_a_resolved_that_cannot_be_reached_is_reported_not_raised(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd-resolved seems to run (its runtime directory exists) but no system bus answers:
    the D-Bus call fails, resolvectl is absent, and the result says both."""
    runtime = tmp_path / "resolve"
    runtime.mkdir()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    result = resolvers.flush_systemd_resolved(Environment(resolved_runtime_dir=runtime,
                                                          search_path=str(tmp_path)))
    assert result.outcome is Outcome.FAILED
    assert "D-Bus" in result.detail and "no resolvectl" in result.detail


LOOKUP = ("import json, socket, sys\n"
          "def look(name):\n"
          "    try:\n"
          "        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)\n"
          "        return sorted({info[4][0] for info in infos})\n"
          "    except OSError as error:\n"
          "        return str(error)\n"
          "print(json.dumps({name: look(name) for name in sys.argv[1:]}))\n")
# Fixed shell text; the files travel as positional arguments.
BIND_AND_RUN = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf && shift 2 && exec "$@"'


def look_up_in_namespace(hosts: Path, nsswitch: Path, *names: str) -> dict[str, object]:
    result = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", BIND_AND_RUN, "sh", str(hosts), str(nsswitch),
         sys.executable, "-c", LOOKUP, *names],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@ROOT_AND_UNSHARE
def test_getaddrinfo_sees_the_block_when_files_come_first(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# BEGIN detoxd block\n0.0.0.0 social.example\n"
                     ":: social.example\n# END detoxd block\n")
    nsswitch = tmp_path / "nsswitch.conf"
    nsswitch.write_text("hosts: files dns\n")
    started = time.monotonic()
    assert look_up_in_namespace(hosts, nsswitch, "social.example") == {"social.example": ["0.0.0.0", "::"]}
    assert time.monotonic() - started < 30
    # Not consulted at all: the block is invisible (dns alone cannot answer this made-up name).
    nsswitch.write_text("hosts: dns\n")
    answer = look_up_in_namespace(hosts, nsswitch, "social.example")["social.example"]
    assert answer != ["0.0.0.0", "::"]

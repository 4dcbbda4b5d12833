"""Closing connections to blocked sites: real sockets in a private network namespace.

``unshare -m -n`` gives a network namespace of our own (so ``ss -K`` cannot touch the host's
connections) and a mount namespace in which a temporary hosts file is bind-mounted over
/etc/hosts, so getaddrinfo answers as it would on a real machine.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from detoxd.service import connections

SITE_ADDRESS = "10.200.0.1"
OTHER_ADDRESS = "10.200.0.2"


def test_only_real_remote_addresses_are_worth_closing() -> None:
    assert connections.worth_closing("142.250.74.14")
    assert connections.worth_closing("2a03:2880:f12f:83:face:b00c:0:25de")
    for address in ("0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.1", "not-an-address"):
        assert not connections.worth_closing(address), address


def test_ss_filter_names_every_address_and_brackets_ipv6() -> None:
    assert connections._filter(["10.0.0.1", "2001:db8::1"]) == [
        "-t", "-n", "-H", "state", "established", "dst", "10.0.0.1", "or", "dst", "[2001:db8::1]"]


def test_kernel_support_is_read_from_its_build_config(tmp_path: Path) -> None:
    plain = tmp_path / "config-6.1"
    plain.write_bytes(b"CONFIG_INET_DIAG=y\nCONFIG_INET_DIAG_DESTROY=y\n")
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress(b"CONFIG_INET_DIAG=y\n# CONFIG_INET_DIAG_DESTROY is not set\n"))
    assert connections.kernel_supports_destroy([plain]) is True
    assert connections.kernel_supports_destroy([packed, plain]) is False
    assert connections.kernel_supports_destroy([tmp_path / "missing"]) is None


def test_resolution_leaves_out_names_past_the_limit_and_loopback_answers() -> None:
    result = connections.resolve(["localhost", "a-name-that-does-not-exist.invalid"], max_names=1)
    assert result.looked_up == 1 and result.left_out == 1
    assert result.addresses == frozenset() and result.answered == 0  # localhost is loopback


def test_nothing_to_close_is_not_an_error() -> None:
    report = connections.close(["0.0.0.0", "127.0.0.1"])
    assert report.ok and report.closed == 0


SCENARIO = textwrap.dedent("""
    import json, socket, sys
    from pathlib import Path
    from detoxd.service import connections

    hosts = Path(sys.argv[1])
    def listener(address):
        server = socket.create_server((address, 0))
        # From 127.0.0.1: the server's end then has a destination that is not being closed.
        client = socket.create_connection(server.getsockname(), source_address=("127.0.0.1", 0))
        peer, _ = server.accept()
        return client, peer

    before = connections.resolve(["social.example", "www.social.example"])
    site_client, site_peer = listener("{site}")
    other_client, other_peer = listener("{other}")
    hosts.write_text("0.0.0.0 social.example\\n:: social.example\\n")  # the block is applied
    report = connections.close(before.addresses)
    site_client.settimeout(2)
    try:
        data = site_client.recv(1)
        site_state = "eof" if data == b"" else "data"
    except OSError as error:
        site_state = type(error).__name__
    other_client.sendall(b"x")
    other_state = "open" if other_peer.recv(1) == b"x" else "closed"
    after = socket.getaddrinfo("social.example", None, type=socket.SOCK_STREAM)
    print(json.dumps({{"resolved": sorted(before.addresses), "answered": before.answered,
                       "closed": report.closed, "remaining": report.remaining, "error": report.error,
                       "site": site_state, "other": other_state,
                       "after": sorted({{info[4][0] for info in after}})}}))
""").format(site=SITE_ADDRESS, other=OTHER_ADDRESS)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ss") is None,
                    reason="needs root, unshare and ss")
def test_connections_to_the_blocked_names_addresses_are_closed_and_others_kept(tmp_path: Path) -> None:
    if connections.kernel_supports_destroy() is False:
        pytest.skip("this kernel lacks CONFIG_INET_DIAG_DESTROY")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{SITE_ADDRESS} social.example www.social.example\n{OTHER_ADDRESS} unrelated.example\n")
    setup = (f"ip link set lo up && ip addr add {SITE_ADDRESS}/32 dev lo && "
             f"ip addr add {OTHER_ADDRESS}/32 dev lo && "
             'mount --bind "$1" /etc/hosts && shift && exec "$@"')
    # Fixed text for the shell; the paths travel as positional arguments, never interpolated.
    result = subprocess.run(
        ["unshare", "--mount", "--net", "--", "sh", "-c", setup, "sh", str(hosts),
         sys.executable, "-c", SCENARIO, str(hosts)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["resolved"] == [SITE_ADDRESS] and outcome["answered"] == 2
    assert outcome["other"] == "open"  # unrelated.example was not blocked
    assert outcome["closed"] == 1 and outcome["remaining"] == 0 and outcome["error"] == ""
    assert outcome["site"] in ("ConnectionAbortedError", "ConnectionResetError", "eof")
    assert outcome["after"] == ["0.0.0.0", "::"]


def test_names_come_from_the_config_else_from_the_last_good_blocklist(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text("domains: [social.example]\n")
    applied = tmp_path / "applied.json"
    applied.write_text(json.dumps({"version": 1, "names": ["old.example"], "days": 14, "lock": True}))
    assert connections.names_about_to_be_blocked(config, applied) == {"social.example", "www.social.example"}
    (config / "blocklist.yaml").write_text("domains: [not a domain]\n")
    assert connections.names_about_to_be_blocked(config, applied) == {"old.example"}
    assert connections.names_about_to_be_blocked(config, tmp_path / "missing") == frozenset()

"""`detoxd start` cuts open connections to the sites it starts blocking (the CLI's part of #7).

Everything runs in a private mount and network namespace (``unshare -m -n``): a scratch hosts file
is bind-mounted on /etc/hosts, so the daemon guards "the real" hosts file, and ``ss -K`` can only
touch the namespace's own connections. Browser policies go to a scratch root. (Guarding
/etc/hosts, the daemon also flushes the resolver caches it finds: harmless on any machine.)
"""

from __future__ import annotations

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

SCENARIO = textwrap.dedent("""
    import json, os, socket, subprocess, sys, time

    def connect(address):
        server = socket.create_server((address, 0))
        client = socket.create_connection(server.getsockname(), source_address=("127.0.0.1", 0))
        peer, _ = server.accept()
        return client, peer

    site_client, _site_peer = connect("{site}")
    other_client, other_peer = connect("{other}")
    daemon = subprocess.Popen([sys.executable, "-m", "detoxd", "run"],
                              stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "wb"))
    try:
        status = [sys.executable, "-m", "detoxd", "status"]
        for _ in range(200):
            if subprocess.run(status, capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        start = subprocess.run([sys.executable, "-m", "detoxd", "start"], capture_output=True, text=True)
        site_client.settimeout(2)
        try:
            site = "eof" if site_client.recv(1) == b"" else "data"
        except OSError as error:
            site = type(error).__name__
        other_client.sendall(b"x")
        other = "open" if other_peer.recv(1) == b"x" else "closed"
        print(json.dumps({{"start": start.returncode, "out": start.stdout, "err": start.stderr,
                           "site": site, "other": other}}))
    finally:
        daemon.terminate()
        daemon.wait()
""").format(site=SITE_ADDRESS, other=OTHER_ADDRESS)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ss") is None,
                    reason="needs root, unshare and ss")
def test_start_closes_connections_to_newly_blocked_sites(tmp_path: Path) -> None:
    if connections.kernel_supports_destroy() is False:
        pytest.skip("this kernel lacks CONFIG_INET_DIAG_DESTROY")
    hosts = tmp_path / "hosts"
    hosts.write_text(
        f"127.0.0.1 localhost\n{SITE_ADDRESS} social.example\n{OTHER_ADDRESS} unrelated.example\n")
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text("domains: [social.example]\n")
    (config / "detoxd.yaml").write_text("detox:\n  days: 1\n  lock: true\n")
    setup = (f"ip link set lo up && ip addr add {SITE_ADDRESS}/32 dev lo && "
             f"ip addr add {OTHER_ADDRESS}/32 dev lo && "
             'mount --bind "$1" /etc/hosts && shift && exec "$@"')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "DETOXD_CONFIG_DIR": str(config), "DETOXD_STATE_DIR": str(tmp_path / "state"),
           "DETOXD_SOCKET": str(tmp_path / "control.sock"), "DETOXD_POLICY_ROOT": str(tmp_path / "root")}
    env.pop("DETOXD_HOSTS_FILE", None)  # the default, /etc/hosts: the bind-mounted scratch file
    # Fixed text for the shell; the paths travel as positional arguments, never interpolated.
    result = subprocess.run(
        ["unshare", "--mount", "--net", "--", "sh", "-c", setup, "sh", str(hosts),
         sys.executable, "-c", SCENARIO, str(tmp_path / "daemon.log")],
        capture_output=True, text=True, timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["start"] == 0, outcome["err"]
    assert "closed 1 open connection" in outcome["out"], outcome["out"]
    assert outcome["site"] in ("eof", "ConnectionAbortedError", "ConnectionResetError"), outcome
    assert outcome["other"] == "open"
    assert b"0.0.0.0 social.example" in hosts.read_bytes()

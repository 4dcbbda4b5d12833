"""What the in-process engine tests share: scratch files for one Engine, and reading its block."""

from __future__ import annotations

from pathlib import Path

from detoxd.paths import Paths
from detoxd.protocol import Peer

ROOT = Peer(pid=1, uid=0, gid=0)
DAY = 86400.0
LOCKED_14_DAYS = "detox:\n  days: 14\n  lock: true\n"


def scratch_paths(tmp_path: Path, *, blocklist: str, main: str = LOCKED_14_DAYS,
                  hosts: bytes = b"127.0.0.1\tlocalhost\n") -> Paths:
    """A config directory with both files, a hosts file, and a state directory and socket to be."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text(blocklist)
    (config / "detoxd.yaml").write_text(main)
    hosts_file = tmp_path / "hosts"
    hosts_file.write_bytes(hosts)
    run = tmp_path / "run"
    run.mkdir()
    return Paths(config, tmp_path / "state", hosts_file, run / "control.sock")


def blocked(paths: Paths) -> set[str]:
    """The names the hosts file blocks now."""
    text = paths.hosts_file.read_text()
    return {line.split()[1] for line in text.splitlines() if line.startswith("0.0.0.0")}

"""A hosts file replaced by rename, written from inside a sandbox like systemd's.

ProtectSystem=strict shows /etc read-only; after `sed -i /etc/hosts` the service sees the new file
through that read-only view (EROFS). The restore then writes the same inode as PID 1 sees it. Here
the sandbox is a real mount namespace (`unshare -m`) with the test's directory bind-mounted
read-only on itself; the hosts file is a scratch file in it, never the machine's /etc/hosts; the
"outside" view is the test process's (the daemon uses PID 1's, which a test machine may hide).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import have

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not have("unshare"),
                                reason="needs root and unshare (util-linux) for a mount namespace")

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from detoxd.service.targets.hosts.hostsfile import HostsFile
    hosts = HostsFile(Path(sys.argv[1]), Path(sys.argv[2]), mode="inplace", outside_pid=int(sys.argv[3]))
    try:
        hosts.write(b"restored\\n")
    except OSError as error:
        print(f"refused: {error.strerror}")
    else:
        print("written")
""")


def in_read_only_namespace(directory: Path, state: Path, setup: str = "") -> str:
    script = (f"mount --bind {directory} {directory} && "
              f"mount -o remount,bind,ro {directory} {directory} && {setup} "
              f"exec {sys.executable} -c '{WRITER}' {directory}/hosts {state} {os.getpid()}")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_file_read_only_in_the_sandbox_is_written_as_pid_1_sees_it(tmp_path: Path) -> None:
    directory = tmp_path / "etc"
    directory.mkdir()
    hosts = directory / "hosts"
    hosts.write_bytes(b"replaced by rename\n")
    inode = hosts.stat().st_ino
    assert in_read_only_namespace(directory, tmp_path / "state") == "written"
    assert hosts.read_bytes() == b"restored\n"
    assert hosts.stat().st_ino == inode  # in place: the same file, not a new one


def test_another_inode_outside_is_never_written(tmp_path: Path) -> None:
    """The sandbox shows a different file at the path than PID 1 does: refuse, write nothing."""
    directory = tmp_path / "etc"
    directory.mkdir()
    (directory / "hosts").write_bytes(b"the real one\n")
    (directory / "decoy").write_bytes(b"what the sandbox sees\n")
    setup = f"mount --bind {directory}/decoy {directory}/hosts &&"
    answer = in_read_only_namespace(directory, tmp_path / "state", setup)
    assert answer == f"refused: {directory}/hosts is on a read-only file system (or a read-only bind mount)"
    assert (directory / "hosts").read_bytes() == b"the real one\n"
    assert (directory / "decoy").read_bytes() == b"what the sandbox sees\n"

"""Real crashes and real bind mounts for detoxd.service.targets.hosts.hostsfile

- A writer process rewrites a multi-megabyte hosts file in place, over and over, and is killed
  with SIGKILL at a random moment; after ``recover()`` the file is exactly one of the two
  versions, every time.
- Inside a private mount namespace (``unshare -m``, root only), a bind-mounted hosts file refuses
  rename with EBUSY, and a read-only directory with a writable bind-mounted file (systemd's
  ``ProtectSystem=strict`` + ``ReadWritePaths=/etc/hosts``) refuses the temporary file with
  EROFS; detoxd writes in place through both.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from detoxd.service.targets.hosts.hostsfile import JOURNAL_NAME, HostsFile, Recovery

REPO = Path(__file__).resolve().parents[2]
TRIALS = 30  # at least; more (up to MAX_TRIALS) until a kill tore the file and recovery finished it
MAX_TRIALS = 300

WRITER = r"""
import sys
from pathlib import Path
from detoxd.service.targets.hosts.hostsfile import HostsFile

target, state, *versions = (Path(argument) for argument in sys.argv[1:])
contents = [version.read_bytes() for version in versions]
hosts_file = HostsFile(target, state, mode="inplace")
print("writing", flush=True)
turn = 0
while True:
    turn = 1 - turn
    hosts_file.write(contents[turn])
"""


def hosts_text(tag: str, lines: int) -> bytes:
    """Distinct line by line, so that any mix of the two versions shows."""
    return b"".join(b"10.%d.%d.%d %s-%d.example\n" % (n >> 16 & 255, n >> 8 & 255, n & 255,
                                                      tag.encode(), n) for n in range(lines))


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def wait_for_overwrite(target: Path, extra_polls: int) -> None:
    """Return just after the writer starts overwriting the target: the window a kill can tear.

    The writer journals first (tens of milliseconds with fsync), then overwrites (about a
    millisecond into the page cache); random kills rarely land there, so half aim at it.
    """
    before = os.stat(target).st_mtime_ns
    deadline = time.monotonic() + 10
    while os.stat(target).st_mtime_ns == before:
        assert time.monotonic() < deadline, "the writer never started overwriting"
    for _ in range(extra_polls):
        os.stat(target)


def test_sigkill_during_in_place_writes_leaves_old_or_new(tmp_path: Path) -> None:
    first, second = hosts_text("a", 160_000), hosts_text("b", 110_000)  # 4.7 MB, 3.3 MB
    versions = (first, second)
    target, state = tmp_path / "hosts", tmp_path / "state"
    (tmp_path / "first").write_bytes(first)
    (tmp_path / "second").write_bytes(second)
    target.write_bytes(first)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    torn_files = 0  # killed mid-overwrite: neither version before recovery
    outcomes: Counter[Recovery] = Counter()
    trial = 0
    # A loaded machine can let 30 kills all miss the overwrite: kill on until one tore the file.
    while trial < TRIALS or (trial < MAX_TRIALS and not (torn_files and outcomes[Recovery.FINISHED])):
        trial += 1
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(state),
             str(tmp_path / "first"), str(tmp_path / "second")],
            stdout=subprocess.PIPE, env=child_env())
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"writing\n"
        if trial % 2:
            time.sleep(rng.uniform(0.0, 0.25))  # anywhere: reading, journaling, overwriting
        else:
            wait_for_overwrite(target, extra_polls=rng.randrange(200))
        writer.kill()
        writer.wait()
        writer.stdout.close()
        torn_files += target.read_bytes() not in versions
        outcomes[HostsFile(target, state).recover()] += 1
        content = target.read_bytes()
        assert content in versions, f"trial {trial} (seed {seed}): a mix of both versions"
        assert not (state / JOURNAL_NAME).exists()
    report = (f"seed {seed}: {torn_files} of {trial} kills tore the file; "
              f"recover(): {', '.join(f'{k.name} {v}' for k, v in outcomes.items())}")
    print(report)
    # Meaningful only if kills tore the file and recovery had to finish writes.
    assert torn_files > 0, report
    assert outcomes[Recovery.FINISHED] > 0, report


NAMESPACE_SCRIPT = r"""
import errno, json, os, subprocess, sys
from pathlib import Path
from detoxd.service.targets.hosts.hostsfile import HostsFile

root = Path(sys.argv[1])
result = {}

def mount(*arguments):
    subprocess.run(["mount", *arguments], check=True)

def error_name(action):
    try:
        action()
    except OSError as error:
        return errno.errorcode[error.errno]
    return None

# 1. A file bind-mounted over another, as containers provide /etc/hosts. (New content of
# another length: the journalled in-place write, not the one-page patch.)
etc = root / "etc"
etc.mkdir()
target = etc / "hosts"
target.write_bytes(b"old\n")
source = root / "outside-hosts"
source.write_bytes(b"old\n")
mount("--bind", str(source), str(target))
(etc / "probe").write_bytes(b"probe\n")
result["plain_rename"] = error_name(lambda: os.replace(etc / "probe", target))
result["rename_mode"] = error_name(lambda: HostsFile(target, root / "state", "rename").write(b"x\n"))
result["bind_written"] = HostsFile(target, root / "state").write(b"new, longer\n")
result["bind_source"] = source.read_text()

# 2. A read-only /etc with a writable /etc/hosts (ProtectSystem=strict, ReadWritePaths=).
strict = root / "strict-etc"
strict.mkdir()
(strict / "hosts").write_bytes(b"old\n")
writable = root / "writable-hosts"
writable.write_bytes(b"old\n")
mount("--bind", str(strict), str(strict))
mount("-o", "remount,bind,ro", str(strict))
mount("--bind", str(writable), str(strict / "hosts"))
result["temporary_file"] = error_name(lambda: (strict / "probe").write_bytes(b"probe\n"))
result["strict_written"] = HostsFile(strict / "hosts", root / "state").write(b"new, longer\n")
result["strict_source"] = writable.read_text()
# The reserve stays on purpose: room for the next restore's journal on a full disk.
result["journals_left"] = sorted(path.name for path in (root / "state").iterdir()
                                 if path.name != "hosts-write.reserve")
result["reserve_kept"] = (root / "state" / "hosts-write.reserve").stat().st_size > 0
print(json.dumps(result))
"""


def test_bind_mounted_hosts_file_is_written_in_place(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("bind mounts in a private mount namespace need root")
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("unshare(1) and mount(8) are needed for a private mount namespace")
    completed = subprocess.run(
        ["unshare", "--mount", "--propagation", "private",
         sys.executable, "-c", NAMESPACE_SCRIPT, str(tmp_path)],
        capture_output=True, text=True, env=child_env(), timeout=60)
    if completed.returncode != 0 and "unshare failed" in completed.stderr:
        pytest.skip(f"no private mount namespace here: {completed.stderr.strip()}")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result == {
        "plain_rename": "EBUSY",  # the real refusal detoxd meets
        "rename_mode": "EBUSY",  # mode="rename" reports it instead of falling back
        "bind_written": True,
        "bind_source": "new, longer\n",  # written through the mount into the real file
        "temporary_file": "EROFS",
        "strict_written": True,
        "strict_source": "new, longer\n",
        "journals_left": [],
        "reserve_kept": True,
    }

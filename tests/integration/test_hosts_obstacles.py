"""Issue 21, bullet 3 on the real daemon: no file can hang, crash or bloat it.

Each test starts `detoxd run` as a subprocess (conftest's DetoxdEnv) and puts an obstacle where
the hosts file, its write-ahead journal or the state directory should be: a FIFO, a link to a
device, a directory, a huge file, a read-only bind mount, an immutable file. The daemon must stay
up and answer, keep the other targets enforced (a browser policy under a scratch root), say what
is wrong in status (``problems``, ``hosts_in_sync: false``, ``hosts_file_problem`` with a fix), in
the journal and in doctor, and put the block back — as getaddrinfo sees it — once the obstacle is
gone. The read-only bind mount runs the daemon in its own mount and PID namespaces (then its
PID 1 shares its view of the file: no way around the mount through /proc/1/root); everything
the tests mount, signal or change was made by them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import USER_HOSTS, DetoxdEnv, wait_for
from guardkit import NEEDS_ROOT_AND_UNSHARE, blocked, doctor_check, journal_events, vm_peak_kib

from detoxd.service.targets.hosts.hostsbytes import Journal, encode_journal
from detoxd.service.targets.hosts.hostsfile import JOURNAL_NAME

pytestmark = NEEDS_ROOT_AND_UNSHARE

USER_POLICY = {"policies": {"DisableTelemetry": True}}


def with_browser_policy(env: DetoxdEnv) -> Path:
    """A scratch root with a Firefox "installed": the browser-policy target, a second target."""
    root = env.root / "machine"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/firefox").write_text("#!/bin/sh\n")
    policies = root / "etc/firefox/policies"
    policies.mkdir(parents=True)
    (policies / "policies.json").write_text(json.dumps(USER_POLICY))
    env.extra_env["DETOXD_POLICY_ROOT"] = str(root)
    return policies / "policies.json"


def policy_enforced(policy_file: Path) -> bool:
    return "DNSOverHTTPS" in policy_file.read_text()


def hosts_problem(env: DetoxdEnv) -> dict[str, object] | None:
    status = env.status()
    problem = status.get("hosts_file_problem")
    if problem and status["hosts_in_sync"] is False and any("hosts file" in p for p in status["problems"]):
        return status
    return None


def place_obstacle(env: DetoxdEnv, kind: str) -> None:
    """Replace the hosts file with something that is not a regular file (or too large), while
    the daemon is stopped (SIGSTOP): else it may recreate the file between unlink and mkfifo."""
    assert env.process is not None
    env.process.send_signal(signal.SIGSTOP)
    try:
        _replace_with(env.hosts, kind)
    finally:
        env.process.send_signal(signal.SIGCONT)


def _replace_with(hosts: Path, kind: str) -> None:
    hosts.unlink()
    if kind == "fifo":
        os.mkfifo(hosts)
    elif kind == "link to a fifo":
        fifo = hosts.with_name("a-fifo")
        os.mkfifo(fifo)
        hosts.symlink_to(fifo)
    elif kind == "directory":
        hosts.mkdir()
    elif kind == "huge":  # sparse: 600 MB that cost no disk; read whole, it would cost 600 MB+
        with hosts.open("wb") as handle:
            handle.write(USER_HOSTS)
            handle.truncate(600 << 20)
    else:
        hosts.symlink_to(f"/dev/{kind}")


def remove_obstacle(hosts: Path) -> None:
    if hosts.is_dir() and not hosts.is_symlink():
        hosts.rmdir()
    else:
        hosts.unlink()
    hosts.write_bytes(USER_HOSTS)


def assert_loud(env: DetoxdEnv, words: str) -> None:
    """The problem in status (with a fix), the journal and doctor."""
    status = wait_for(lambda: hosts_problem(env), what="the problem in status")
    problem = status["hosts_file_problem"]
    assert words in problem["reason"] and problem["fix"], problem
    failed = wait_for(lambda: journal_events(env, "enforcement_failed"), what="a journal event")
    assert words in failed[-1]["reason"] and failed[-1]["target"] == "hosts file"
    check = doctor_check(env, "hosts block")
    assert check["level"] == "FAIL" and words in check["message"] and check["fix"] == problem["fix"]
    assert words in env.cli("status").stdout  # what the CLI (and the tray) show


@pytest.mark.parametrize("kind", ["fifo", "link to a fifo", "zero", "null", "directory", "huge"])
def test_an_odd_hosts_file_is_loud_never_fatal_and_the_block_returns_when_it_goes(
        detoxd_env: DetoxdEnv, kind: str) -> None:
    policy_file = with_browser_policy(detoxd_env)
    detoxd_env.start_daemon()
    assert detoxd_env.process is not None
    assert detoxd_env.cli("start").returncode == 0
    assert blocked(detoxd_env.hosts, "twitter.com")
    peak_before = vm_peak_kib(detoxd_env.process.pid)

    place_obstacle(detoxd_env, kind)
    words = "too large" if kind == "huge" else "not a regular file"
    assert_loud(detoxd_env, words)
    # Meanwhile the other targets hold: a tampered browser policy is put back.
    policy_file.write_text(json.dumps(USER_POLICY))
    wait_for(lambda: policy_enforced(policy_file), what="the browser policy restored")
    assert detoxd_env.process.poll() is None
    # Never read whole (600 MB), never filled from /dev/zero: the memory did not grow with it.
    assert vm_peak_kib(detoxd_env.process.pid) - peak_before < 64 << 10

    remove_obstacle(detoxd_env.hosts)
    wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="the block, through NSS")
    wait_for(lambda: detoxd_env.status()["problems"] == [], what="the problem to clear")
    assert detoxd_env.status()["hosts_in_sync"] is True
    assert detoxd_env.hosts.read_bytes().startswith(USER_HOSTS)
    assert journal_events(detoxd_env, "enforced_again")


def test_a_large_hosts_file_costs_at_most_twice_its_size_plus_64_mib(detoxd_env: DetoxdEnv) -> None:
    """20 MB of the user's own lines (an ad-block list): read, kept, the block restored after a
    tamper, and the daemon's peak memory grows by less than twice the file plus 64 MiB."""
    lines = b"".join(b"0.0.0.0 ads%d.example.net\n" % number for number in range(800_000))
    detoxd_env.start_daemon()
    assert detoxd_env.process is not None
    assert detoxd_env.cli("start").returncode == 0
    peak_before = vm_peak_kib(detoxd_env.process.pid)
    detoxd_env.hosts.write_bytes(USER_HOSTS + lines)  # a tamper: the block is gone
    # The block may be back over part of the user's write first (restored under the writer):
    # wait for the end state, every line of theirs and the block.
    wait_for(lambda: detoxd_env.hosts.read_bytes().startswith(USER_HOSTS + lines)
             and blocked(detoxd_env.hosts, "twitter.com"), timeout=60, what="the block restored")
    size_kib = len(USER_HOSTS + lines) >> 10
    assert vm_peak_kib(detoxd_env.process.pid) - peak_before < 2 * size_kib + (64 << 10)


@pytest.mark.parametrize("kind", ["fifo", "directory", "zero"])
def test_anything_odd_at_the_journal_path_is_set_aside_at_start(detoxd_env: DetoxdEnv, kind: str) -> None:
    detoxd_env.state_dir.mkdir(mode=0o700)
    journal = detoxd_env.state_dir / JOURNAL_NAME
    if kind == "fifo":
        os.mkfifo(journal)
    elif kind == "directory":
        journal.mkdir()
    else:
        journal.symlink_to("/dev/zero")
    detoxd_env.start_daemon()  # before: a hang (FIFO) or a crash (directory, device)
    assert detoxd_env.cli("start").returncode == 0
    assert blocked(detoxd_env.hosts, "twitter.com")
    assert os.path.lexists(journal.with_name(JOURNAL_NAME + ".unusable"))
    recovered = journal_events(detoxd_env, "hosts_write_recovered")
    assert recovered and recovered[0]["outcome"] == "set_aside"


def test_a_file_in_place_of_the_state_directory_is_loud_and_the_block_holds(
        detoxd_env: DetoxdEnv) -> None:
    detoxd_env.state_dir.write_text("not a directory\n")
    detoxd_env.start_daemon()  # before: FileExistsError from Engine.__init__
    assert detoxd_env.cli("start").returncode == 0
    status = detoxd_env.status()
    assert status["state"] == "active"
    assert any(str(detoxd_env.state_dir) in problem for problem in status["problems"])
    assert blocked(detoxd_env.hosts, "twitter.com")
    detoxd_env.state_dir.unlink()  # the obstacle goes: the state is saved again
    wait_for(lambda: (detoxd_env.state_dir / "state.json").exists(), timeout=60, what="the state saved")
    wait_for(lambda: detoxd_env.status()["problems"] == [], timeout=60, what="the problem to clear")


# ---- immutable files ----

def _chattr(path: Path, flag: str) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


def _immutable_supported(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.write_text("x")
    ok = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False).returncode == 0
    if ok:
        _chattr(probe, "-i")
    return ok


def _tamper_and_freeze(env: DetoxdEnv) -> None:
    """Remove the block and make the file immutable while the daemon is stopped (SIGSTOP), so that
    it meets both at once, as after `chattr +i` landing between two of its looks."""
    assert env.process is not None
    env.process.send_signal(signal.SIGSTOP)
    try:
        env.hosts.write_bytes(USER_HOSTS)
        _chattr(env.hosts, "+i")
    finally:
        env.process.send_signal(signal.SIGCONT)


@pytest.mark.skipif(shutil.which("chattr") is None or shutil.which("setpriv") is None,
                    reason="needs chattr and setpriv")
@pytest.mark.parametrize("capability", [True, False], ids=["with CAP_LINUX_IMMUTABLE", "without"])
def test_an_immutable_hosts_file(detoxd_env: DetoxdEnv, capability: bool) -> None:
    """With CAP_LINUX_IMMUTABLE (the unit grants it) the block is restored and the user's flag
    set again; without it the problem is loud with the fix, and `chattr -i` lets the block back."""
    if not _immutable_supported(detoxd_env.root):
        pytest.skip("this file system has no immutable flag")
    if not capability:
        detoxd_env.wrapper = ["setpriv", "--bounding-set=-linux_immutable", "--inh-caps=-linux_immutable"]
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    try:
        _tamper_and_freeze(detoxd_env)
        if capability:
            wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="the block restored")
            wait_for(lambda: detoxd_env.status()["tamper_events"] >= 1, what="the tamper counted")
            lsattr = subprocess.run(["lsattr", str(detoxd_env.hosts)], capture_output=True, text=True)
            assert "i" in lsattr.stdout.split()[0]  # the user's flag is back
            return
        assert_loud(detoxd_env, "immutable")
        assert "chattr -i" in detoxd_env.status()["hosts_file_problem"]["fix"]
        assert not blocked(detoxd_env.hosts, "twitter.com")
        _chattr(detoxd_env.hosts, "-i")  # the fix
        wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="the block back")
        wait_for(lambda: detoxd_env.status()["problems"] == [], what="the problem to clear")
    finally:
        subprocess.run(["chattr", "-i", str(detoxd_env.hosts)], capture_output=True, check=False)


# ---- a read-only bind mount, in the daemon's own mount and PID namespaces ----

_NAMESPACE_SETUP = '[ -n "$RO_BIND" ] && mount --bind -o ro "$HOSTS" "$HOSTS"; exec "$@"'


def _start_in_namespace(env: DetoxdEnv, *, read_only: bool) -> int:
    """`detoxd run` as PID 1 of a new PID namespace with a mount namespace of its own; with
    ``read_only`` the hosts file is bind-mounted read-only over itself there. Returns the
    daemon's PID as this test sees it."""
    env.wrapper = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc",
                   "--kill-child", "sh", "-c", _NAMESPACE_SETUP, "sh"]
    env.extra_env.update({"HOSTS": str(env.hosts), "RO_BIND": "1" if read_only else ""})
    env.start_daemon()
    assert env.process is not None
    children = Path(f"/proc/{env.process.pid}/task/{env.process.pid}/children").read_text().split()
    return int(children[0])


def _in_namespace(pid: int, *command: str) -> None:
    # --pid: umount reads /proc/self/mountinfo of the namespace's /proc; --root: the daemon's root
    # (a chroot's, when the tests run in one)
    subprocess.run(["nsenter", "--target", str(pid), "--mount", "--pid", "--root", *command],
                   check=True, capture_output=True, timeout=30)


def _kill(env: DetoxdEnv) -> None:
    assert env.process is not None
    env.process.kill()  # unshare: --kill-child takes the daemon (and the namespace) with it
    env.process.wait(timeout=30)
    env.process = None


@pytest.mark.skipif(shutil.which("nsenter") is None, reason="needs nsenter")
def test_a_read_only_bind_mount_and_a_journal_that_cannot_be_replayed_are_never_fatal(
        detoxd_env: DetoxdEnv) -> None:
    """The issue's crash loop: a write-ahead journal left for a file that is now read-only made
    every start exit. Now the daemon starts, keeps the journal, says why; once the mount is
    gone the interrupted write is finished and the block is back."""
    pid = _start_in_namespace(detoxd_env, read_only=True)
    assert detoxd_env.cli("start").returncode == 0
    assert_loud(detoxd_env, "read-only")
    assert not blocked(detoxd_env.hosts, "twitter.com")
    _kill(detoxd_env)
    # As a crash mid-write leaves it: a complete journal, the file still holding the old text.
    new = USER_HOSTS + b"# the write a crash interrupted\n"
    journal = detoxd_env.state_dir / JOURNAL_NAME
    journal.write_bytes(b"".join(encode_journal(Journal(os.fsencode(detoxd_env.hosts), USER_HOSTS, new))))

    pid = _start_in_namespace(detoxd_env, read_only=True)  # before: PermissionError/EROFS, exit
    assert_loud(detoxd_env, "read-only")
    assert journal.exists()  # kept: it is the only record of the interrupted write
    assert detoxd_env.process is not None and detoxd_env.process.poll() is None

    _in_namespace(pid, "umount", str(detoxd_env.hosts))  # the obstacle goes
    detoxd_env.hosts.touch()  # an event; the next tick would find it as well
    wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="the block back")
    wait_for(lambda: not journal.exists(), what="the journal replayed")
    assert detoxd_env.hosts.read_bytes().startswith(new)  # the interrupted write was finished
    wait_for(lambda: detoxd_env.status()["problems"] == [], what="the problem to clear")
    _kill(detoxd_env)

"""`detoxd run` as a real subprocess, driven through the CLI like a user would."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import USER_HOSTS, DetoxdEnv, have, wait_for

# Debian puts it under the multiarch directory: x86_64-linux-gnu, aarch64-linux-gnu, ...
FAKETIME_LIBRARY = next(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"), Path("/nonexistent"))
BLOCK_LINES = (b"0.0.0.0 twitter.com", b":: twitter.com", b"0.0.0.0 www.facebook.com")


def blocked(hosts: Path, name: str) -> bool:
    lines = hosts.read_bytes().splitlines()
    return f"0.0.0.0 {name}".encode() in lines and f":: {name}".encode() in lines


def test_idle_daemon_leaves_hosts_alone(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["state"] == "idle"
    assert status["ends_at"] is None and status["started_at"] is None
    assert status["domains_blocked"] == 0
    assert status["hosts_in_sync"] is True
    assert detoxd_env.hosts.read_bytes() == USER_HOSTS


def test_start_blocks_and_status_reports_it(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    result = detoxd_env.cli("start")
    assert result.returncode == 0, result.stderr
    assert "until" in result.stdout
    content = detoxd_env.hosts.read_bytes()
    assert content.startswith(USER_HOSTS)
    for line in BLOCK_LINES:
        assert line in content.splitlines()
    status = detoxd_env.status()
    assert status["state"] == "active"
    assert status["days_left"] == 14
    assert status["domains_blocked"] == 5  # two domains, their www. variants, Firefox's DoH canary
    assert status["ends_at"].endswith("+00:00")
    assert status["config_error"] is None
    assert "Detox active (locked): 14 days left" in detoxd_env.cli("status").stdout


def test_locked_detox_cannot_be_ended(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    result = detoxd_env.cli("end")
    assert result.returncode == 3
    assert "locked" in result.stderr
    assert detoxd_env.status()["state"] == "active"
    assert blocked(detoxd_env.hosts, "twitter.com")


def test_unlocked_detox_ends_and_restores_user_edits(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.write_main("detox:\n  lock: false\n")
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    # The user edits a line outside detoxd's block during the detox: kept, not "tampering".
    content = detoxd_env.hosts.read_bytes()
    edited = content.replace(b"192.168.1.10 nas.home nas", b"192.168.1.11 nas.home nas")
    detoxd_env.hosts.write_bytes(edited)
    # Then a name is added: the daemon rewrites the file from what it holds after the user's edit,
    # so once the name is there the daemon has seen the edit (no sleep in the hope that it has).
    detoxd_env.write_blocklist("domains:\n  - twitter.com\n  - facebook.com\n  - late.example\n")
    wait_for(lambda: b"0.0.0.0 late.example" in detoxd_env.hosts.read_bytes(), what="the added name")
    assert b"192.168.1.11 nas.home nas" in detoxd_env.hosts.read_bytes()
    assert b"192.168.1.10" not in detoxd_env.hosts.read_bytes()
    assert detoxd_env.cli("end").returncode == 0
    assert detoxd_env.hosts.read_bytes() == USER_HOSTS.replace(b"1.10", b"1.11")
    assert detoxd_env.status()["tamper_events"] == 0


def test_in_place_tamper_is_restored_and_counted(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.cli("start")
    with detoxd_env.hosts.open("r+b") as handle:  # truncate, then write: what `echo >` does
        handle.truncate(0)
        handle.write(USER_HOSTS)
    wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="restore")
    assert detoxd_env.hosts.read_bytes().startswith(USER_HOSTS)
    status = wait_for(lambda: (s := detoxd_env.status())["tamper_events"] == 1 and s)
    assert status["hosts_in_sync"] is True
    assert "tampered" in detoxd_env.log()


def test_rename_replace_tamper_is_restored(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.cli("start")
    replacement = detoxd_env.root / "hosts.new"
    replacement.write_bytes(USER_HOSTS + b"# sneaky\n")
    replacement.replace(detoxd_env.hosts)  # what sed -i and most editors do
    wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="restore after rename")
    assert b"# sneaky\n" in detoxd_env.hosts.read_bytes()
    # The new inode is watched too: a second tamper is restored as well.
    content = detoxd_env.hosts.read_bytes().replace(b"0.0.0.0 twitter.com\n", b"")
    detoxd_env.hosts.write_bytes(content)
    wait_for(lambda: blocked(detoxd_env.hosts, "twitter.com"), what="second restore")
    assert wait_for(lambda: detoxd_env.status()["tamper_events"] == 2)


def test_yaml_edits_apply_live_and_broken_edits_keep_the_block(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.cli("start")
    detoxd_env.write_blocklist("domains:\n  - twitter.com\n  - facebook.com\n  - reddit.com\n")
    wait_for(lambda: blocked(detoxd_env.hosts, "reddit.com"), timeout=5, what="added domain")

    detoxd_env.write_blocklist("domains:\n  - twitter.com\n  - 'face..book'\n")
    status = wait_for(lambda: (s := detoxd_env.status())["config_error"] and s, what="error")
    assert status["config_error"].startswith("blocklist.yaml:3: domains[1]: 'face..book'")
    assert blocked(detoxd_env.hosts, "reddit.com") and blocked(detoxd_env.hosts, "facebook.com")
    reload = detoxd_env.cli("reload")
    assert reload.returncode == 1
    assert "blocklist.yaml:3" in reload.stderr

    # Still broken across a restart: the last good blocklist (from the state dir) is enforced.
    detoxd_env.stop_daemon()
    detoxd_env.start_daemon()
    assert blocked(detoxd_env.hosts, "reddit.com")
    assert detoxd_env.status()["config_error"]


def test_removing_a_domain_does_not_unblock_during_a_locked_detox(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.cli("start")
    detoxd_env.write_blocklist("domains:\n  - twitter.com\n")
    assert detoxd_env.cli("reload").returncode == 0
    assert blocked(detoxd_env.hosts, "facebook.com")
    assert detoxd_env.status()["domains_blocked"] == 5  # with use-application-dns.net


def test_stop_and_kill_keep_the_block_and_restart_resumes(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.cli("start")
    started = detoxd_env.status()["started_at"]
    assert detoxd_env.stop_daemon(signal.SIGTERM) == 0
    assert blocked(detoxd_env.hosts, "twitter.com")
    detoxd_env.hosts.write_bytes(USER_HOSTS)  # cheat while the daemon is down
    detoxd_env.start_daemon()
    assert blocked(detoxd_env.hosts, "twitter.com")
    detoxd_env.stop_daemon(signal.SIGKILL)
    detoxd_env.start_daemon()
    status = detoxd_env.status()
    assert status["state"] == "active" and status["started_at"] == started
    assert blocked(detoxd_env.hosts, "twitter.com")


def test_short_detox_ends_by_itself(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start", "--days", "0.00003").returncode == 0  # about 2.6 s
    assert blocked(detoxd_env.hosts, "twitter.com")
    wait_for(lambda: detoxd_env.status()["state"] == "idle", timeout=15, what="the end")
    assert detoxd_env.hosts.read_bytes() == USER_HOSTS


def test_unprivileged_user_may_read_but_not_change(detoxd_env: DetoxdEnv) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as a real unprivileged uid")
    detoxd_env.start_daemon()
    nobody = 65534
    status = detoxd_env.cli("status", "--json", user=nobody)
    assert status.returncode == 0, status.stderr
    for command in ("start", "reload", "end"):
        result = detoxd_env.cli(command, user=nobody)
        assert result.returncode == 3, (command, result.stderr)
    assert detoxd_env.status()["state"] == "idle"


def test_unreachable_daemon_exit_code(detoxd_env: DetoxdEnv) -> None:
    result = detoxd_env.cli("status")
    assert result.returncode == 4
    assert "not reachable" in result.stderr


def fake_wall_clock(env: DetoxdEnv) -> Path:
    """libfaketime moves the daemon's wall clock only (DONT_FAKE_MONOTONIC keeps CLOCK_BOOTTIME
    real); the returned file sets the offset, e.g. "+15d"."""
    stamp = env.root / "faketime"
    stamp.write_text("+0d\n")
    env.extra_env.update({
        "LD_PRELOAD": str(FAKETIME_LIBRARY),
        "FAKETIME_TIMESTAMP_FILE": str(stamp), "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1",
    })
    return stamp


@pytest.mark.skipif(not FAKETIME_LIBRARY.exists(), reason="libfaketime (Debian package faketime) is missing")
def test_clock_jump_forward_does_not_end_the_detox(detoxd_env: DetoxdEnv) -> None:
    stamp = fake_wall_clock(detoxd_env)
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    stamp.write_text("+15d\n")
    # Noticed at the next tick: idle, the loop ticks every QUIET_SECONDS (15 s), not every second.
    status = wait_for(lambda: (s := detoxd_env.status())["clock_jumps"] >= 1 and s, timeout=45,
                      what="the jump to be noticed")
    assert status["state"] == "active"
    assert status["days_left"] == 14
    assert blocked(detoxd_env.hosts, "twitter.com")


@pytest.mark.skipif(not FAKETIME_LIBRARY.exists(), reason="libfaketime (Debian package faketime) is missing")
def test_detox_that_ended_while_the_daemon_was_down_ends_on_start(detoxd_env: DetoxdEnv) -> None:
    stamp = fake_wall_clock(detoxd_env)
    # The kernel's word on the clock: synchronised (NTP confirms the downtime; a stand-in for
    # adjtimex, see test_time_trust.py for a clock nobody confirms).
    sync = detoxd_env.root / "adjtimex.json"
    sync.write_text('{"maxerror_us": 12000, "status": 0}')
    detoxd_env.extra_env["DETOXD_TIME_SYNC_FILE"] = str(sync)
    detoxd_env.start_daemon()
    detoxd_env.cli("start")
    detoxd_env.stop_daemon()
    # 15 days of downtime and a reboot in between: the state file's checkpoint is rewritten
    # to another boot, as a real reboot would leave it.
    stamp.write_text("+15d\n")
    state_file = detoxd_env.state_dir / "state.json"
    state = json.loads(state_file.read_text())
    state["checkpoint"]["boot_id"] = "an-earlier-boot"
    state_file.write_text(json.dumps(state))
    detoxd_env.start_daemon()
    assert detoxd_env.status()["state"] == "idle"
    assert detoxd_env.hosts.read_bytes() == USER_HOSTS


@pytest.mark.skipif(os.geteuid() != 0 or not have("unshare"), reason="needs root and unshare")
def test_system_resolver_sees_the_block(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.cli("start")

    def resolve(name: str) -> str:
        script = 'mount --bind "$1" /etc/hosts && exec getent ahosts "$2"'
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, "sh", str(detoxd_env.hosts), name],
            capture_output=True, text=True, timeout=30)
        return result.stdout

    answer = resolve("twitter.com")
    assert "0.0.0.0" in answer and "::" in answer
    assert "192.168.1.10" in resolve("nas.home")  # the user's own lines still resolve


def test_kill_9_mid_write_never_loses_user_lines(detoxd_env: DetoxdEnv) -> None:
    from detoxd.core import hosts
    from detoxd.service.loader import load_config

    names = "".join(f"site{i}.example.com\n" for i in range(100_000))
    (detoxd_env.config_dir / "big.txt").write_text(names)
    detoxd_env.write_blocklist("domains: [twitter.com]\nlists: [big.txt]\n")
    # The block lists names in the config's order, then Firefox's canary (detoxd.core.network).
    order = (*load_config(detoxd_env.config_dir).order, "use-application-dns.net")
    expected = hosts.merge(USER_HOSTS, hosts.render_block_in_order(order))
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    rng = random.Random(7)
    for trial in range(6):
        detoxd_env.hosts.write_bytes(USER_HOSTS)  # tamper: the daemon starts rewriting ~4 MB
        time.sleep(rng.uniform(0, 0.06))
        detoxd_env.stop_daemon(signal.SIGKILL)
        content = detoxd_env.hosts.read_bytes()
        assert content.startswith(USER_HOSTS), f"trial {trial}: user lines damaged"
        detoxd_env.start_daemon()
        after = detoxd_env.hosts.read_bytes()
        if after != expected:
            first = next(i for i, (a, b) in enumerate(zip(after, expected, strict=False)) if a != b)
            context = (after[first - 80:first + 80], expected[first - 80:first + 80])
            log_tail = detoxd_env.log()[-3000:]
            raise AssertionError(f"trial {trial}: differs at byte {first}: {context}\n{log_tail}")


def test_list_file_errors_are_shown_to_root_only(detoxd_env: DetoxdEnv) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as a real unprivileged uid")
    (detoxd_env.config_dir / "private.txt").write_text("ok.example\nsecret-word here\n")
    detoxd_env.write_blocklist("domains: [twitter.com]\nlists: [private.txt]\n")
    detoxd_env.start_daemon()
    as_root = detoxd_env.status()["config_error"]
    assert as_root.startswith("private.txt:2: lists[0]:") and "secret-word" in as_root
    result = detoxd_env.cli("status", "--json", user=65534)
    assert result.returncode == 0
    as_user = json.loads(result.stdout)["config_error"]
    assert as_user.startswith("private.txt:2: lists[0]:") and "secret-word" not in as_user


def test_a_second_daemon_refuses_to_start(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.cli("start")
    before = detoxd_env.hosts.read_bytes()
    second = detoxd_env.cli("run")
    assert second.returncode == 3
    assert "already" in second.stderr
    assert detoxd_env.hosts.read_bytes() == before
    assert detoxd_env.status()["state"] == "active"

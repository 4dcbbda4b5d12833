"""Issue 21, bullet 7: `detoxd doctor` tells the truth, against a real daemon.

It reads nsswitch.conf as glibc does (the last ``hosts:`` line), looks every blocked name up
through getaddrinfo, as applications resolve, tells "does not resolve" from "escapes", and finds
a line of one's own that gives a blocked name another address (before, it missed such a line for
any name outside its fixed 50-name sample). Lookups run inside ``unshare -m`` with the test's
hosts file and nsswitch.conf; those that would reach DNS run in a network namespace of their own.
"""

from __future__ import annotations

import os

import pytest
from conftest import DetoxdEnv
from fourplaces import can_run_doctor, doctor_check, machine_root, run_doctor
from threadstop import daemon_answers, main_thread_stopped

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not can_run_doctor(),
                                reason="the doctor's mounts need root and unshare")

NAMES = [f"site{number}.example" for number in range(300)]


@pytest.fixture
def detox(detoxd_env: DetoxdEnv) -> DetoxdEnv:
    detoxd_env.write_blocklist("domains:\n" + "".join(f"  - {name}\n" for name in NAMES))
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start", "--days", "1").returncode == 0
    return detoxd_env


def test_every_blocked_name_is_looked_up_and_a_line_of_ones_own_is_found(detox: DetoxdEnv) -> None:
    root = machine_root(detox)
    report = run_doctor(detox, root)[1]
    total = detox.status()["domains_blocked"]  # the names, their www. variants, the DoH canary
    lookups = doctor_check(report, "resolution")
    assert lookups["level"] == "ok"
    assert f"all {total} blocked names resolve to 0.0.0.0/::" in lookups["message"]
    assert doctor_check(report, "hosts overrides")["level"] == "ok"

    # The attack: a line above the block. The daemon's main thread is held meanwhile, so that
    # the doctor is seen to find it by itself, whatever the daemon does with such lines.
    assert detox.process is not None
    with main_thread_stopped(detox.process.pid, daemon_answers(detox.socket)):
        detox.hosts.write_bytes(b"104.244.42.1 www.site123.example\n" + detox.hosts.read_bytes())
        code, report = run_doctor(detox, root)
    assert code == 1
    overrides = doctor_check(report, "hosts overrides")
    assert overrides["level"] == "FAIL"
    assert "line 1: 104.244.42.1 www.site123.example" in overrides["message"] and overrides["fix"]
    lookups = doctor_check(report, "resolution")
    assert lookups["level"] == "FAIL"
    assert f"1 of all {total} blocked names escape the block: www.site123.example -> " in lookups["message"]
    assert "104.244.42.1" in lookups["message"]


def test_the_last_hosts_line_counts_and_no_answer_is_no_escape(detox: DetoxdEnv) -> None:
    root = machine_root(detox)
    nsswitch = root / "etc/nsswitch.conf"
    nsswitch.write_text("hosts: dns\nhosts: files dns\n")  # glibc uses the last line
    report = run_doctor(detox, root)[1]
    assert doctor_check(report, "nsswitch")["level"] == "ok"
    assert doctor_check(report, "resolution")["level"] == "ok"

    nsswitch.write_text("hosts: files dns\nhosts: dns\n")  # the block is never read
    code, report = run_doctor(detox, root, offline=True)  # DNS reaches nothing here
    assert code == 1
    check = doctor_check(report, "nsswitch")
    assert check["level"] == "FAIL" and "hosts: dns never consults /etc/hosts" in check["message"]
    lookups = doctor_check(report, "resolution")
    assert lookups["level"] == "warn", lookups  # nothing resolved, so nothing escaped
    assert "did not resolve at all (nothing escapes" in lookups["message"]

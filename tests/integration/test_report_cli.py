"""`detoxd report` against a real `detoxd run`: what root and an ordinary user see, the HTML
file, the journal read directly when the daemon is down, and enforcement with a full journal disk."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import USER_HOSTS, DetoxdEnv, wait_for

from detoxd.service import journal

USER = 4242


def blocked(hosts: Path) -> bool:
    return b"0.0.0.0 twitter.com" in hosts.read_bytes().splitlines()


def tamper(env: DetoxdEnv, expected: int) -> None:
    with env.hosts.open("r+b") as handle:
        handle.truncate(0)
        handle.write(USER_HOSTS)
    wait_for(lambda: blocked(env.hosts), what="restore")
    wait_for(lambda: env.status()["tamper_events"] == expected, what="tamper counted")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the CLI as another user")
def test_report_for_root_and_for_a_user(detoxd_env: DetoxdEnv, tmp_path: Path) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    tamper(detoxd_env, 1)
    tamper(detoxd_env, 2)
    result = detoxd_env.cli("report", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["version"] == 1 and document["scope"] == "all"
    assert document["detox"]["state"] == "active"
    assert document["totals"]["during"]["tamper_attempts"] == 2
    assert [tamper["target"] for tamper in document["tampers"]] == ["hosts file", "hosts file"]
    assert document["summary"].startswith("Day 1 of 14 so far: 2 tamper attempts")
    assert document["activitywatch"]["available"] is False

    as_user = detoxd_env.cli("report", "--json", user=USER)
    assert as_user.returncode == 0, as_user.stderr
    seen = json.loads(as_user.stdout)
    assert seen["scope"] == f"uid {USER}" and seen["totals"]["during"]["tamper_attempts"] == 2
    # The journal itself is root's: the user got the report from the daemon, not from the file.
    directory = journal.directory_for(detoxd_env.state_dir)
    assert directory.stat().st_mode & 0o077 == 0

    page = Path(tempfile.gettempdir()) / f"detoxd-report-{os.getpid()}.html"  # the user can write there
    try:
        html = detoxd_env.cli("report", "--html", str(page), user=USER)
        assert html.returncode == 0, html.stderr
        text = page.read_text()
        assert "<svg" in text and "2 tamper attempts" in text
        assert "Day 1 of 14 so far" in html.stdout  # and the text report on stdout
    finally:
        page.unlink(missing_ok=True)


def test_root_reads_the_journal_while_the_daemon_is_down(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    tamper(detoxd_env, 1)
    assert detoxd_env.stop_daemon() == 0
    result = detoxd_env.cli("report", "--json")
    assert result.returncode == 0, result.stderr
    assert "built from the journal" in result.stderr
    document = json.loads(result.stdout)
    assert document["totals"]["during"]["tamper_attempts"] == 1
    assert document["detox"]["started_at"] is not None


def test_report_without_daemon_or_journal_exits_4(detoxd_env: DetoxdEnv) -> None:
    result = detoxd_env.cli("report")
    assert result.returncode == 4
    assert "not reachable" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_a_full_journal_disk_never_stops_enforcement(detoxd_env: DetoxdEnv) -> None:
    """The daemon runs in its own mount namespace where the journal is a full 16 KiB tmpfs."""
    directory = journal.directory_for(detoxd_env.state_dir)
    directory.mkdir(parents=True)
    mount = ('mount -t tmpfs -o size=16k,mode=0700 tmpfs "$0" && head -c 1M /dev/zero > "$0/filler" ; '
             'exec "$@"')
    detoxd_env.wrapper = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, str(directory)]
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    assert blocked(detoxd_env.hosts)
    for count in (1, 2, 3):
        tamper(detoxd_env, count)
    assert "journal: cannot write" in detoxd_env.log()
    assert detoxd_env.log().count("journal: cannot write") == 1  # once a minute, not per event
    report = detoxd_env.cli("report", "--json")
    assert report.returncode == 0, report.stderr
    # The daemon's journal (on the full tmpfs) holds nothing: every event was dropped, none broke it.
    assert json.loads(report.stdout)["journal"]["events"] == 0

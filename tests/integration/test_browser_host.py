"""`detoxd browser-host` as a browser drives it: the real host process, started as the browser's
user, spoken to in native-messaging frames on its stdin and stdout, against a real daemon (issue 23).

The daemon runs in its own mount namespace where logind's record of who sits at the seat
(/run/systemd/users) is a scratch directory saying uid 1000 is active at seat0; the host runs
as uid 1000 (at the seat), as nobody (a system user) and as uid 1001 (no session at the seat), so
the daemon's SO_PEERCRED rules are what the replies show. Nothing here touches the machine's /run or /etc.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from detoxd.service import journal
from tests.integration.conftest import DetoxdEnv
from tests.otheruser import NOBODY, python_for
from tests.service.test_browser_commands import BLOCKLIST

PERSON = 1000
# logind's record, in the daemon's namespace only (a tmpfs over /run/systemd where there is none).
SEAT = """set -e
# logind's record where there is none to mount over: a private /run/systemd, or a private /run
# on a machine without /run/systemd (a fresh root; no mount point to take).
if [ -d /run/systemd/users ]; then :
elif [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; mkdir /run/systemd/users
else mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/users; fi
mount --bind "$0" /run/systemd/users
exec "$@"
"""
LENGTH = struct.Struct("=I")
WAIT = 20.0


class Host:
    """One `detoxd browser-host` process and the frames it wrote, read on a thread."""

    def __init__(self, env: DetoxdEnv, user: int) -> None:
        self.process = subprocess.Popen(
            [python_for(user), "-m", "detoxd", "browser-host", "chrome-extension://abcdefghijklmnop/"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env.env,
            user=user, cwd="/")
        self.frames: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.taken = 0  # events before this index were looked at by event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while header := stdout.read(LENGTH.size):
            (length,) = LENGTH.unpack(header)
            self.frames.put(json.loads(stdout.read(length)))
        self.frames.put(None)

    def send_raw(self, data: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(LENGTH.pack(len(data)) + data)
        stdin.flush()

    def ask(self, ident: int, cmd: str, **args: Any) -> dict[str, Any]:
        self.send_raw(json.dumps({"id": ident, "cmd": cmd, **args}).encode())
        return self.reply(ident)

    def reply(self, ident: int | None) -> dict[str, Any]:
        """The reply with ``ident`` (events before it are kept in ``events``)."""
        while True:
            frame = self.next_frame()
            if "event" in frame and "id" not in frame:
                self.events.append(frame)
                continue
            assert frame.get("id") == ident, frame
            return frame

    def event(self, name: str) -> dict[str, Any]:
        """The first event called ``name`` not taken yet, also one that came before a reply (the
        daemon publishes an open's event before it answers, on the host's other connection)."""
        while True:
            for index in range(self.taken, len(self.events)):
                if self.events[index]["event"] == name:
                    self.taken = index + 1
                    return self.events[index]
            frame = self.next_frame()
            assert "id" not in frame, frame
            self.events.append(frame)

    def next_frame(self) -> dict[str, Any]:
        try:
            frame = self.frames.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no frame from the host within {WAIT} s") from None
        assert frame is not None, f"the host closed its stdout: {self.stderr()}"
        return frame

    def close(self) -> int:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.close()
        return self.process.wait(timeout=WAIT)

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")


def seated_daemon(env: DetoxdEnv, tmp_path: Path) -> None:
    users = tmp_path / "logind-users"
    users.mkdir()
    (users / str(PERSON)).write_text("NAME=person\nSTATE=active\nSESSIONS=2\nSEATS=seat0\nACTIVE_SESSIONS=2\n"
                                     "ONLINE_SESSIONS=2\nACTIVE_SEATS=seat0\nONLINE_SEATS=seat0\n")
    users.chmod(0o755)
    env.wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", SEAT, str(users)]
    env.write_blocklist(BLOCKLIST)
    env.start_daemon()


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root (other users, a mount namespace) and unshare")


@needs_root
def test_the_host_relays_a_persons_commands_and_the_daemons_events(detoxd_env: DetoxdEnv,
                                                                     tmp_path: Path) -> None:
    seated_daemon(detoxd_env, tmp_path)
    assert detoxd_env.cli("start").returncode == 0
    host = Host(detoxd_env, PERSON)
    try:
        assert host.event("status")["status"]["state"] == "active"  # subscribed at once

        status = host.ask(1, "status")
        assert status["id"] == 1 and status["ok"] is True and status["status"]["days_left"] == 14
        assert host.ask(2, "browser_check", url="https://twitter.com/home") == {
            "id": 2, "ok": True, "blocked": True, "kind": "domain", "rule": "twitter.com", "allowance": None}
        path = host.ask(3, "browser_check", url="https://www.linkedin.com/feed/")
        assert (path["kind"], path["rule"]) == ("path", "linkedin.com/feed")
        assert host.ask(4, "browser_check", url="https://www.linkedin.com/in/me")["blocked"] is False
        assert host.ask(5, "browser_check", url="https://facebook.com/")["allowance"] == "social"

        assert host.ask(6, "browser_attempt", url="https://twitter.com/home")["attempts_today"] == 1
        assert host.ask(7, "browser_attempt", url="https://twitter.com/x")["attempts_today"] == 2
        today = host.ask(8, "browser_attempt", url="https://linkedin.com/feed")["date"]
        seconds = {"twitter.com": 42, "elsewhere.example": 9}
        assert host.ask(9, "browser_time", day=today, seconds=seconds) == {
            "id": 9, "ok": True, "journalled": 1, "ignored": 1}

        # What the host does not pass on, and frames that are not requests.
        refused = host.ask(10, "start")
        assert refused["ok"] is False and refused["code"] == "not_authorized" and refused["id"] == 10
        assert "does not pass on 'start'" in refused["error"]
        host.send_raw(b"{not json")
        assert host.reply(None)["code"] == "bad_request"
        host.send_raw(b"x" * (64 * 1024 + 1))
        assert host.reply(None)["code"] == "too_large"
        assert host.ask(11, "browser_check", url="javascript:alert(1)")["blocked"] is False
        assert host.ask(12, "browser_check", url="https://exa mple.com/")["code"] == "bad_request"

        # The block page's button: the same rules as `detoxd open`; the event comes at once.
        opened = host.ask(13, "open", name="social", minutes=5)
        assert opened["ok"] is True, opened
        assert host.event("allowance")["status"]["allowances"][0]["open"] is True
        assert host.ask(14, "browser_check", url="https://facebook.com/") == {
            "id": 14, "ok": True, "blocked": False, "kind": None, "rule": None, "allowance": "social"}
        assert host.close() == 0
    finally:
        if host.process.poll() is None:
            host.process.kill()
            host.process.wait()

    events, _ = journal.read_events(journal.directory_for(detoxd_env.state_dir))
    attempts = [(event["uid"], event["counts"], event["source"]) for event in events
                if event["kind"] == "browser_attempts"]
    assert attempts == [(PERSON, {"twitter.com": 1}, "browser"), (PERSON, {"twitter.com": 1}, "browser"),
                        (PERSON, {"linkedin.com/feed": 1}, "browser")]
    assert [(event["uid"], event["date"], event["seconds"]) for event in events
            if event["kind"] == "browser_day"] == [(PERSON, today, {"twitter.com": 42})]

    # `detoxd report` as that person: the browser's time, since ActivityWatch never reported, and
    # the block pages shown; it says where the time came from.
    result = detoxd_env.cli("report", "--json", user=PERSON)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    [row] = [row for row in document["days"] if row["date"] == today]
    assert (row["blocked_site_seconds"], row["site_time_source"]) == (42, "browser")
    assert row["browser_attempts"] == 3
    assert row["attempts_by_site"] == {"twitter.com": 2, "linkedin.com/feed": 1}
    assert document["site_time"]["source"] == "browser"
    assert "from the browser extension" in document["summary"]
    assert document["site_time"]["message"] in detoxd_env.cli("report", user=PERSON).stdout


@needs_root
@pytest.mark.parametrize(("user", "reason"), [
    (NOBODY, "uid 65534 is a system user"),
    (PERSON + 1, f"uid {PERSON + 1} has no active session at this machine's seat"),
], ids=["system-user", "not-at-the-seat"])
def test_who_is_not_at_the_seat_may_check_but_not_record_or_open(detoxd_env: DetoxdEnv, tmp_path: Path,
                                                                 user: int, reason: str) -> None:
    seated_daemon(detoxd_env, tmp_path)
    assert detoxd_env.cli("start").returncode == 0
    host = Host(detoxd_env, user)
    try:
        assert host.ask(1, "browser_check", url="https://twitter.com/")["blocked"] is True
        for ident, (cmd, args) in enumerate((("browser_attempt", {"url": "https://twitter.com/"}),
                                             ("browser_time", {"day": "2026-01-01", "seconds": {}}),
                                             ("open", {"name": "social"})), start=2):
            reply = host.ask(ident, cmd, **args)
            assert reply["ok"] is False and reply["code"] == "not_authorized", reply
            assert reply["error"].startswith(reason), reply
        assert host.close() == 0
    finally:
        if host.process.poll() is None:
            host.process.kill()
            host.process.wait()
    assert detoxd_env.status()["allowances"][0]["open"] is False
    events, _ = journal.read_events(journal.directory_for(detoxd_env.state_dir))
    assert not [event for event in events if event["kind"] in ("browser_attempts", "browser_day")]


@needs_root
def test_the_host_says_when_the_daemon_is_gone_and_subscribes_again(detoxd_env: DetoxdEnv,
                                                                     tmp_path: Path) -> None:
    seated_daemon(detoxd_env, tmp_path)
    host = Host(detoxd_env, PERSON)
    try:
        assert host.event("status")["status"]["state"] == "idle"
        assert detoxd_env.stop_daemon() == 0
        assert host.event("daemon_unreachable")["error"]  # (closed, or reset: either way it says so)
        reply = host.ask(1, "browser_check", url="https://twitter.com/")
        assert reply["ok"] is False and reply["code"] == "daemon_unreachable" and reply["id"] == 1
        detoxd_env.start_daemon()
        assert detoxd_env.cli("start").returncode == 0
        assert host.event("status")["status"]["state"] in ("idle", "active")
        assert host.ask(2, "browser_check", url="https://twitter.com/")["blocked"] is True
        assert host.close() == 0
    finally:
        if host.process.poll() is None:
            host.process.kill()
            host.process.wait()

"""The daemon's decisions, in-process: a real Engine on scratch files, time from a FakeClock.

No thread, socket or sleep: a 14-day detox ends in milliseconds. Tampering is real (the test
edits the scratch hosts file); the guard's inotify events are drained by hand, as the daemon's
select() loop would.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from detoxd.clock import FakeClock
from detoxd.core.hosts import BEGIN_MARKER
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import journal
from detoxd.service.engine import EXIT_RESTART, Engine
from detoxd.service.targets.hosts.fsops import ReadOnlyInSandbox
from detoxd.service.targets.hosts.hostsfile import HostsFile
from tests.service.enginekit import ROOT, blocked, scratch_paths

USER_LINES = b"127.0.0.1\tlocalhost\n# mine, keep me\n192.168.1.10 nas.home nas\n"
DAY = 86400.0


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist="domains: [twitter.com, linkedin.com]\n", hosts=USER_LINES)


def settle(engine: Engine, clock: FakeClock) -> None:
    """What the daemon's loop does after inotify woke it: drain events, wait out the settle time."""
    engine.hosts.handle_events()
    clock.advance(1.0)
    engine.check(clock.monotonic(), full=True)
    clock.advance(1.0)
    engine.settle(clock.monotonic())


def test_idle_engine_leaves_the_hosts_file_alone(engine: Engine, paths: Paths) -> None:
    assert paths.hosts_file.read_bytes() == USER_LINES
    assert engine.status()["state"] == "idle"


def test_start_blocks_and_the_detox_ends_by_itself_after_its_days(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    reply = engine.handle({"cmd": "start"}, ROOT)
    assert reply["ok"] and reply["status"]["locked"] is True
    assert {"twitter.com", "www.twitter.com", "linkedin.com"} <= blocked(paths)
    clock.advance(13 * DAY)
    engine.tick()
    assert engine.status()["days_left"] == 1
    clock.advance(DAY + 1)
    engine.tick()
    assert engine.status()["state"] == "idle"
    assert paths.hosts_file.read_bytes() == USER_LINES


def test_a_locked_detox_refuses_to_end_and_setting_the_clock_forward_does_not_end_it(
        engine: Engine, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    assert engine.handle({"cmd": "end"}, ROOT)["code"] == "refused"
    clock.jump(30 * DAY)
    engine.tick()
    status = engine.status()
    assert status["state"] == "active" and status["clock_jumps"] == 1


def test_tamper_is_restored_counted_and_the_users_lines_kept(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    paths.hosts_file.write_bytes(USER_LINES + b"1.2.3.4 extra.example\n")  # the block is gone
    settle(engine, clock)
    assert "twitter.com" in blocked(paths)
    assert b"1.2.3.4 extra.example\n" in paths.hosts_file.read_bytes()
    assert engine.status()["tamper_events"] == 1


def test_a_broken_edit_keeps_the_last_good_blocklist(engine: Engine, paths: Paths) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    (paths.config_dir / "blocklist.yaml").write_text("domains: [twiter..com]\n")
    error = engine.reload()
    assert error is not None and "blocklist.yaml:1: domains[0]" in str(error)
    assert "twitter.com" in blocked(paths)
    assert "blocklist.yaml:1" in engine.status(private=True)["config_error"]


def test_the_ratchet_keeps_names_removed_during_a_locked_detox(engine: Engine, paths: Paths) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    (paths.config_dir / "blocklist.yaml").write_text("domains: [twitter.com]\n")
    assert engine.reload() is None
    assert "linkedin.com" in blocked(paths)


def test_an_unlocked_detox_ends_on_request(paths: Paths, clock: FakeClock) -> None:
    (paths.config_dir / "detoxd.yaml").write_text("detox:\n  lock: false\n")
    engine = Engine(paths, clock)
    engine.boot()
    engine.handle({"cmd": "start", "days": 2}, ROOT)
    assert engine.handle({"cmd": "end"}, ROOT)["ok"]
    assert paths.hosts_file.read_bytes() == USER_LINES


def test_a_restart_resumes_the_detox_from_the_state_directory(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    clock.advance(3 * DAY)
    engine.tick()
    engine.shutdown()
    clock.reboot(DAY, "boot-2")
    clock.synchronise()  # NTP confirms the day it was off
    again = Engine(paths, clock)
    again.boot()
    assert again.status()["days_left"] == 10
    assert "twitter.com" in blocked(paths)


def test_downtime_the_clock_cannot_confirm_is_held_and_said(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    engine.checkpoint()  # stopped (the fixture shuts it down at the end)
    clock.reboot(60, "boot-2")
    clock.jump(15 * DAY)  # set forward while stopped
    again = Engine(paths, clock)
    again.boot()
    status = again.status()
    assert status["state"] == "active" and status["days_left"] == 14
    assert status["time_held"]["seconds"] == 15 * DAY + 50
    assert "no trustworthy source confirms the clock" in status["time_held"]["reason"]
    assert any(warning.startswith("15.0 days held, not credited yet") for warning in status["warnings"])
    clock.jump(-15 * DAY)  # NTP puts it right
    clock.synchronise()
    clock.advance(1)
    again.tick()
    assert again.status()["time_held"] is None
    kinds = [event["kind"] for event in journal.read_events(again.journal.directory)[0]]
    assert kinds.count("time_held") == 1 and kinds.count("time_released") == 1
    again.shutdown()


def test_a_corrupt_state_file_is_moved_aside(paths: Paths, clock: FakeClock) -> None:
    paths.state_dir.mkdir(mode=0o700)
    paths.state_file.write_text("{not json")
    engine = Engine(paths, clock)
    assert engine.status()["state"] == "idle"
    assert paths.state_file.with_suffix(".corrupt").read_text() == "{not json"


def test_an_unreadable_applied_file_is_ignored_and_the_config_wins(paths: Paths, clock: FakeClock) -> None:
    paths.state_dir.mkdir(mode=0o700)
    paths.applied_file.write_text(json.dumps({"names": 5}))
    engine = Engine(paths, clock)
    engine.boot()
    engine.handle({"cmd": "start"}, ROOT)
    assert "twitter.com" in blocked(paths)


def test_the_last_good_blocklist_is_enforced_after_a_restart_with_a_broken_file(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    engine.handle({"cmd": "start"}, ROOT)
    engine.shutdown()
    (paths.config_dir / "blocklist.yaml").write_text("domains: [\n")
    again = Engine(paths, clock)
    again.boot()
    assert again.config_error is not None
    assert "linkedin.com" in blocked(paths)


def test_a_read_only_hosts_file_in_the_sandbox_asks_for_a_restart(
        engine: Engine, paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ProtectSystem=strict a renamed-in /etc/hosts is read-only: EROFS on write, and
    PID 1's view of it could not be opened: a restart mounts the new file writable."""
    def read_only(self: HostsFile, data: bytes, current: bytes | None = None, *,
                  in_place: bool = False) -> bool:
        raise ReadOnlyInSandbox(errno.EROFS, "read-only in the sandbox", "restart", self.path)

    monkeypatch.setattr(HostsFile, "write", read_only)
    engine.handle({"cmd": "start"}, ROOT)
    assert engine.exit_code == EXIT_RESTART
    assert BEGIN_MARKER not in paths.hosts_file.read_bytes()


def test_any_other_read_only_hosts_file_is_reported_never_a_restart_loop(
        engine: Engine, paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only bind mount over the file: a restart would meet it again (a crash loop)."""
    def read_only(self: HostsFile, data: bytes, current: bytes | None = None, *,
                  in_place: bool = False) -> bool:
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(HostsFile, "write", read_only)
    engine.handle({"cmd": "start"}, ROOT)
    assert engine.exit_code is None
    status = engine.status()
    assert status["hosts_in_sync"] is False
    assert "read-only" in status["problems"][0]
    assert "findmnt" in status["hosts_file_problem"]["fix"]


def test_agent_reports_expire_on_the_injected_clock(engine: Engine, clock: FakeClock) -> None:
    user = Peer(pid=2, uid=1000, gid=1000)
    assert engine.handle({"cmd": "agent_report", "notifications_silenced": True, "backend": "dunst"},
                         user)["ok"]
    assert engine.status()["agents"] == [{"uid": 1000, "notifications_silenced": True, "backend": "dunst"}]
    clock.advance(61)
    assert engine.status()["agents"] == []


def test_agent_reports_carry_the_reason_and_fix_bounded(engine: Engine) -> None:
    user = Peer(pid=2, uid=1000, gid=1000)
    assert engine.handle({"cmd": "agent_report", "notifications_silenced": False, "backend": "mako",
                          "reason": "x" * 5000, "fix": "makoctl reload", "extra": "ignored"}, user)["ok"]
    (report,) = engine.status()["agents"]
    assert len(report["reason"]) == 400 and report["fix"] == "makoctl reload" and "extra" not in report


def test_unknown_commands_are_refused(engine: Engine) -> None:
    assert engine.handle({"cmd": "explode"}, ROOT)["code"] == "bad_request"


def test_a_large_last_good_blocklist_survives_a_restart_with_a_broken_file(
        paths: Paths, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """applied.json holds the whole blocklist: 200k names are over 4 MiB, the state file's bound."""
    names = [f"host{number}.example.org" for number in range(200_000)]
    (paths.config_dir / "big.txt").write_text("\n".join(names) + "\n")
    (paths.config_dir / "blocklist.yaml").write_text("lists: [big.txt]\n")
    first = Engine(paths, clock)
    first.boot()
    first.shutdown()
    assert paths.applied_file.stat().st_size > 4 << 20
    (paths.config_dir / "blocklist.yaml").write_text("lists: [\n")
    again = Engine(paths, clock)
    again.boot()
    assert again.config_error is not None
    assert len(again.applied.names) == 200_000
    assert "ignoring unusable" not in caplog.text
    again.shutdown()


def _cut_requests(paths: Paths) -> list[dict[str, object]]:
    directory = paths.cutter_dir / "requests"
    found = [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]
    for path in directory.glob("*.json"):
        path.unlink()
    return found


@pytest.mark.parametrize("changed_meanwhile", [False, True])
def test_a_start_asks_to_cut_every_blocked_name_once_status_answers(
        paths: Paths, clock: FakeClock, changed_meanwhile: bool) -> None:
    """The daemon boots with cut_later: the request to cut connections to every name blocked
    (all new to this process) comes from request_start_cut, after the socket opens; with the
    names in force then (a config edit or a command in between)."""
    engine = Engine(paths, clock)
    engine.boot()
    engine.handle({"cmd": "start"}, ROOT)
    engine.shutdown()
    _cut_requests(paths)
    again = Engine(paths, clock)
    again.boot(cut_later=True)
    assert _cut_requests(paths) == []  # not yet: status answers first
    if changed_meanwhile:
        (paths.config_dir / "blocklist.yaml").write_text("domains: [twitter.com, linkedin.com, x.com]\n")
        again.reload()
        assert [request["block"] for request in _cut_requests(paths)] == [["x.com", "www.x.com"]]
    again.request_start_cut()
    (request,) = _cut_requests(paths)
    assert set(request["block"]) == again.hosts.names >= {"twitter.com", "linkedin.com"}  # type: ignore[arg-type]
    again.request_start_cut()  # once
    assert _cut_requests(paths) == []
    again.shutdown()

"""Issue 12, in-process: nothing a user or a disk can do stops the guard.

A real Engine on scratch files with a FakeClock (see test_engine.py). Each class of the issue
has its tests here: hostile config bytes, work done outside the lock, damaged state, a full
disk (ENOSPC raised by the real write path: the tmpfs versions are in
tests/integration/test_full_disk.py), stale temporaries, and the log's count of names in force.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from detoxd import durable
from detoxd.clock import FakeClock
from detoxd.core.hosts import BEGIN_MARKER, END_MARKER
from detoxd.paths import Paths
from detoxd.service import engine as engine_module
from detoxd.service import journal, ledger, state_store
from detoxd.service.engine import Engine
from detoxd.service.status import STALE_SECONDS
from tests.service.enginekit import ROOT, blocked, scratch_paths

USER_LINES = b"127.0.0.1\tlocalhost\n# mine, keep me\n"
DAY = 86400.0
NAMES = {"twitter.com", "www.twitter.com", "linkedin.com", "www.linkedin.com"}


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist="domains: [twitter.com, linkedin.com]\n", hosts=USER_LINES)


def started(engine: Engine, clock: FakeClock) -> str:
    """Start a detox, let a day pass, checkpoint; return its end time."""
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    clock.advance(DAY)
    engine.tick()
    engine.checkpoint()
    ends_at = engine.status()["ends_at"]
    assert isinstance(ends_at, str)
    return ends_at


def restarted(engine: Engine, paths: Paths, clock: FakeClock) -> Engine:
    """kill -9: nothing saved on the way out; a new engine boots from what is on disk."""
    engine.hosts.close()
    again = Engine(paths, clock)
    again.boot()
    return again


# ---- 1. bad bytes in the YAML ----

@pytest.mark.parametrize("text", [
    b"domains: [a.example.com]\n\x01\n", b"domains: [a.example.com]\x00\n", b"domains: [\x1b]\n",
    b"domains: [x\x7f]\n", "domains: ['\ufffe']\n".encode(), b"domains: &a [*a]\n", b"[" * 5000,
    b"domains:\n" + b"  - [" * 3000, b"domains: [2026-13-45]\n", b"\xff\xfe\x00",
    b"a: &a [" + b"*a, " * 10 + b"]\n", b"detox: {days: " + b"9" * 10000 + b"}\n",
])
def test_any_bytes_are_a_config_error_and_the_block_stays(
        engine: Engine, paths: Paths, clock: FakeClock, text: bytes) -> None:
    started(engine, clock)
    (paths.config_dir / "blocklist.yaml").write_bytes(text)
    error = engine.reload()
    assert error is not None
    assert all(issue.file and issue.line >= 0 for issue in error.issues)
    assert error.issues[0].line >= 1 or "not valid" in error.issues[0].message
    assert blocked(paths) >= NAMES
    assert engine.status()["config_error"]


# ---- 2. bounded work, and none of it under the lock ----

def test_a_fifo_as_config_file_is_refused_without_blocking(engine: Engine, paths: Paths) -> None:
    (paths.config_dir / "detoxd.yaml").unlink()
    os.mkfifo(paths.config_dir / "detoxd.yaml")
    before = time.monotonic()
    error = engine.reload()
    assert time.monotonic() - before < 2
    assert error is not None and "not a regular file" in str(error)


def test_status_answers_and_tampers_are_restored_while_a_config_is_read(
        engine: Engine, paths: Paths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config read that takes long (a huge list, a slow disk) holds no lock enforcement needs."""
    started(engine, clock)
    reading, release = threading.Event(), threading.Event()
    real_load = engine_module.load_config

    def slow_load(config_dir: Path) -> object:
        reading.set()
        assert release.wait(10)
        return real_load(config_dir)

    monkeypatch.setattr(engine_module, "load_config", slow_load)
    reader = threading.Thread(target=engine.reload)
    reader.start()
    try:
        assert reading.wait(5)
        before = time.monotonic()
        reply = engine.handle({"cmd": "status"}, ROOT)  # takes the lock, as the socket's threads do
        assert reply["ok"] and time.monotonic() - before < 5  # blocked, it would wait for release (10 s)
        paths.hosts_file.write_bytes(USER_LINES)  # the block is gone
        with engine.lock:  # what the daemon's loop does after inotify woke it
            engine.hosts.handle_events()
            clock.advance(1.0)
            engine.check(clock.monotonic(), full=True)
            clock.advance(1.0)
            engine.settle(clock.monotonic())
        assert blocked(paths) >= NAMES
        assert reader.is_alive()  # the read was still under way all along
    finally:
        release.set()
        reader.join(10)


def test_error_counts_are_bounded_with_how_many_more(engine: Engine, paths: Paths) -> None:
    entries = "".join(f"  - 'bad..{number}.example'\n" for number in range(5000))
    (paths.config_dir / "blocklist.yaml").write_text("domains:\n" + entries)
    error = engine.reload()
    assert error is not None and error.total == 5000
    assert len(error.issues) == 101
    assert str(error.issues[-1]) == "blocklist.yaml: and 4900 more errors"


# ---- 5. damaged state ----

def test_truncated_state_file_resumes_from_the_backup(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    ends_at = started(engine, clock)
    data = paths.state_file.read_bytes()
    paths.state_file.write_bytes(data[: len(data) // 2])
    again = restarted(engine, paths, clock)
    status = again.status()
    assert (status["state"], status["locked"], status["ends_at"]) == ("active", True, ends_at)
    assert status["state_error"] and "state.json" in status["state_error"]
    assert blocked(paths) >= NAMES


@pytest.mark.parametrize("damage", ["garbage", "directory", "newer", "dev-zero", "fifo", "empty"])
def test_every_damaged_state_file_keeps_the_detox(
        engine: Engine, paths: Paths, clock: FakeClock, damage: str) -> None:
    ends_at = started(engine, clock)
    for path in (paths.state_file, paths.state_backup_file):
        path.unlink()
        if damage == "garbage":
            path.write_bytes(os.urandom(4096))
        elif damage == "directory":
            path.mkdir()
        elif damage == "newer":
            path.write_text(json.dumps({"version": 99}))
        elif damage == "dev-zero":
            path.symlink_to("/dev/zero")
        elif damage == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(b"")
    again = restarted(engine, paths, clock)  # from the runtime copy
    status = again.status()
    assert (status["state"], status["ends_at"]) == ("active", ends_at)
    assert blocked(paths) >= NAMES
    again.checkpoint()  # and the next save works again
    assert state_store.load(paths.state_file).active


def test_every_copy_lost_with_the_block_still_in_the_hosts_file_fails_closed(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    """The state directory deleted and kill -9 before the next checkpoint, runtime copy gone
    too (a reboot): the end cannot be known, so a locked detox starts again, never ends early."""
    started(engine, clock)
    engine.hosts.close()
    for path in (paths.state_file, paths.state_backup_file, paths.runtime_state_file,
                 paths.evidence_state_file):
        path.unlink()
    again = Engine(paths, clock)
    again.boot()
    status = again.status()
    assert status["state"] == "active" and status["locked"] is True
    assert status["days_left"] == 14
    assert "state was lost" in status["state_error"]
    assert any("state was lost" in warning for warning in status["warnings"])
    assert blocked(paths) >= NAMES
    assert again.handle({"cmd": "end"}, ROOT)["code"] == "refused"


def wiped_while_stopped(engine: Engine, paths: Paths, clock: FakeClock, *, evidence_copy: bool) -> Engine:
    """kill -9, `rm -rf` of the state directory, a reboot (the /run copy), the block removed;
    with ``evidence_copy`` the copy in the evidence directory too. The engine that starts then."""
    engine.hosts.close()
    shutil.rmtree(paths.state_dir)
    paths.runtime_state_file.unlink()
    if evidence_copy:
        paths.evidence_state_file.unlink()
    paths.hosts_file.write_bytes(USER_LINES)
    again = Engine(paths, clock)
    again.boot()
    return again


def test_the_copy_in_the_evidence_directory_outlives_the_state_directory(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    ends_at = started(engine, clock)
    status = wiped_while_stopped(engine, paths, clock, evidence_copy=False).status()
    assert (status["state"], status["ends_at"]) == ("active", ends_at)
    assert "state.json was gone; resumed from a copy" in status["state_error"]
    assert blocked(paths) >= NAMES
    kinds = [event["kind"] for event in ledger.read(paths.ledger_file)]
    assert kinds[-2:] == ["daemon_started", "state_lost"]


def test_the_ledger_is_evidence_enough_to_fail_closed(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    started(engine, clock)
    status = wiped_while_stopped(engine, paths, clock, evidence_copy=True).status()
    assert status["state"] == "active" and status["days_left"] == 14
    assert "a detox started at" in status["state_error"] and "ledger" in status["state_error"]
    kinds = [event["kind"] for event in ledger.read(paths.ledger_file)]
    assert kinds[-3:] == ["daemon_started", "state_lost", "detox_started"]


def test_traces_without_a_word_on_the_detox_are_loud(engine: Engine, paths: Paths, clock: FakeClock) -> None:
    started(engine, clock)
    kept = [line for line in paths.ledger_file.read_text().splitlines() if '"detox_' not in line]
    paths.ledger_file.write_text("".join(line + "\n" for line in kept))  # its detox lines erased
    status = wiped_while_stopped(engine, paths, clock, evidence_copy=True).status()
    assert status["state"] == "idle"
    assert "its traces vanished" in status["state_error"]
    assert any("its traces vanished" in problem for problem in status["problems"])


def test_lost_state_without_a_block_means_no_detox_was_running(paths: Paths, clock: FakeClock) -> None:
    paths.state_dir.mkdir(mode=0o700)
    paths.state_file.write_bytes(b"\x00garbage")
    engine = Engine(paths, clock)
    engine.boot()
    assert engine.status()["state"] == "idle"
    assert paths.hosts_file.read_bytes() == USER_LINES


def test_a_missing_ratchet_side_file_keeps_the_detox_and_the_names_in_the_block(
        paths: Paths, clock: FakeClock) -> None:
    many = "".join(f"host{number}.example.com\n" for number in range(state_store.INLINE_RATCHET_MAX + 5))
    (paths.config_dir / "many.txt").write_text(many)
    (paths.config_dir / "blocklist.yaml").write_text("lists: [many.txt]\n")
    engine = Engine(paths, clock)
    engine.boot()
    ends_at = started(engine, clock)
    for side_file in paths.state_dir.glob("state.ratchet-*.json"):
        side_file.unlink()
    (paths.config_dir / "blocklist.yaml").write_text("domains: [other.example]\n")  # removed
    again = restarted(engine, paths, clock)
    status = again.status()
    assert (status["state"], status["ends_at"]) == ("active", ends_at)
    assert "ratchet" in status["state_error"]
    assert {"host0.example.com", "other.example"} <= blocked(paths)  # the ratchet held


def _large_list(paths: Paths, count: int) -> set[str]:
    names = {f"host{number}.example.com" for number in range(count)}
    (paths.config_dir / "many.txt").write_text("".join(f"{name}\n" for name in sorted(names)))
    (paths.config_dir / "blocklist.yaml").write_text("lists: [many.txt]\n")
    return names


@pytest.mark.parametrize("config", [b"lists: [\n", b"domains: [other.example]\n", None])
def test_a_start_with_a_large_applied_state_keeps_every_enforced_name(
        paths: Paths, clock: FakeClock, config: bytes | None) -> None:
    """#12's fail-safe at a restart with a ratchet in its side file and applied.json holding the
    same names (read without validating them twice): a broken, shrunk or unreadable config
    loses none of them, in the block, the ratchet and applied.json."""
    names = _large_list(paths, state_store.INLINE_RATCHET_MAX + 500)
    engine = Engine(paths, clock)
    engine.boot()
    started(engine, clock)
    enforced = blocked(paths)
    assert names <= enforced
    blocklist = paths.config_dir / "blocklist.yaml"
    if config is None:
        blocklist.chmod(0)  # cannot be read (root reads it anyway: then it is simply unchanged)
    else:
        blocklist.write_bytes(config)
    again = restarted(engine, paths, clock)
    assert blocked(paths) >= enforced
    assert again.state.ratchet >= enforced
    assert again.status()["domains_blocked"] >= len(enforced)
    again.shutdown()
    once_more = Engine(paths, clock)  # and again, now from what that start saved
    once_more.boot()
    assert blocked(paths) >= enforced and once_more.state.ratchet >= enforced
    once_more.shutdown()


def test_applied_names_beyond_the_ratchet_are_still_validated(
        paths: Paths, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Only names the ratchet holds (validated as the state was read) skip the check."""
    names = _large_list(paths, state_store.INLINE_RATCHET_MAX + 5)
    engine = Engine(paths, clock)
    engine.boot()
    started(engine, clock)
    engine.shutdown()
    applied = json.loads(paths.applied_file.read_text())
    applied["names"].append("a\n0.0.0.0 evil")
    paths.applied_file.write_text(json.dumps(applied))
    (paths.config_dir / "blocklist.yaml").write_text("lists: [\n")
    again = Engine(paths, clock)
    again.boot()
    assert "ignoring unusable" in caplog.text
    assert names <= blocked(paths)  # the ratchet held them
    assert not any("evil" in name for name in again.applied.names | blocked(paths))
    again.shutdown()


def _large_detox_stopped(paths: Paths, clock: FakeClock) -> tuple[Engine, set[str]]:
    """A locked detox of a list big enough for the ratchet's side file, its block in the file."""
    _large_list(paths, state_store.INLINE_RATCHET_MAX + 5)
    engine = Engine(paths, clock)
    engine.boot()
    started(engine, clock)
    enforced = blocked(paths)
    assert paths.hosts_block_file.exists()
    return engine, enforced


def test_a_restart_knows_the_unchanged_block_from_its_digest(paths: Paths, clock: FakeClock) -> None:
    engine, enforced = _large_detox_stopped(paths, clock)
    before = paths.hosts_file.read_bytes()
    again = restarted(engine, paths, clock)
    assert again.recovery.block_record is not None  # the block was not read name by name
    assert again.state.ratchet >= enforced and blocked(paths) == enforced
    assert paths.hosts_file.read_bytes() == before and again.status()["hosts_in_sync"]
    again.shutdown()


def test_a_restart_takes_the_very_file_it_left_without_rendering_the_block(
        paths: Paths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, enforced = _large_detox_stopped(paths, clock)
    engine.shutdown()  # the last checkpoint records the whole file too
    before = paths.hosts_file.read_bytes()
    from detoxd.core import hosts as hosts_module

    renders: list[int] = []
    original = hosts_module.render_block_in_order
    monkeypatch.setattr(hosts_module, "render_block_in_order",
                        lambda order, newline=b"\n": renders.append(len(order)) or original(order, newline))
    again = Engine(paths, clock)
    again.boot()
    assert renders == [] and again.recovery.block_record is not None
    assert paths.hosts_file.read_bytes() == before and again.status()["hosts_in_sync"]
    assert again.state.ratchet >= enforced
    paths.hosts_file.write_bytes(before.replace(b"0.0.0.0 host3.example.com\n", b""))  # a tamper now
    again.hosts.handle_events()
    clock.advance(1.0)
    again.settle(clock.monotonic())
    assert paths.hosts_file.read_bytes() == before and renders  # rendered for the restore
    again.shutdown()
    # The same file, but the list's order changed while stopped: rendered, the block rewritten.
    many = paths.config_dir / "many.txt"
    many.write_text("".join(reversed(many.read_text().splitlines(keepends=True))))
    renders.clear()
    once_more = Engine(paths, clock)
    once_more.boot()
    assert renders and paths.hosts_file.read_bytes() != before
    assert blocked(paths) == enforced and once_more.status()["hosts_in_sync"]
    once_more.shutdown()


def test_the_hosts_blocks_record_is_written_again_with_a_removed_state_directory(
        paths: Paths, clock: FakeClock) -> None:
    # The state directory away from the hosts file's (as /var/lib/detoxd and /etc): its removal
    # is no event where the hosts file is watched.
    paths = Paths(paths.config_dir, paths.state_dir.parent / "var" / "state", paths.hosts_file,
                  paths.socket)
    engine, _enforced = _large_detox_stopped(paths, clock)
    recorded = paths.hosts_block_file.read_bytes()
    assert json.loads(recorded)["file"] is not None
    shutil.rmtree(paths.state_dir)
    engine.recovery.watch_state_dir()
    assert paths.hosts_block_file.read_bytes() == recorded
    engine.shutdown()


def _edit_block(paths: Paths, edit: str) -> None:
    text = paths.hosts_file.read_bytes()
    if edit == "name added":
        text = text.replace(END_MARKER, b"0.0.0.0 added-while-down.example\n" + END_MARKER)
    elif edit == "names removed":
        text = text.replace(b"0.0.0.0 host1.example.com\n", b"").replace(b":: host1.example.com\n", b"")
    elif edit == "one byte":
        text = text.replace(b"0.0.0.0 host2.example.com\n", b"0.0.0.0 host2.example.con\n")
    else:  # the record itself names another block
        record = json.loads(paths.hosts_block_file.read_text())
        record["digest"], record["file"] = "0" * 64, "1" * 64
        paths.hosts_block_file.write_text(json.dumps(record))
        return
    paths.hosts_file.write_bytes(text)


@pytest.mark.parametrize("edit", ["name added", "names removed", "one byte", "record's digest"])
def test_a_block_changed_while_detoxd_was_stopped_is_read_name_by_name_and_restored(
        paths: Paths, clock: FakeClock, edit: str, caplog: pytest.LogCaptureFixture) -> None:
    """#12's fail-safe past the digest: a block that is not byte for byte the recorded one is
    parsed, every name in it is kept, and the block is put back whole."""
    engine, enforced = _large_detox_stopped(paths, clock)
    engine.shutdown()
    _edit_block(paths, edit)
    caplog.set_level(logging.INFO)
    again = Engine(paths, clock)
    again.boot()
    assert again.recovery.block_record is None
    if edit != "record's digest":
        assert "changed since detoxd last saw it" in caplog.text
    kept = enforced | ({"added-while-down.example"} if edit == "name added" else set())
    kept |= {"host2.example.con"} if edit == "one byte" else set()  # was in the block: kept
    assert again.state.ratchet >= kept
    assert blocked(paths) == kept and again.status()["hosts_in_sync"]
    again.shutdown()
    once_more = Engine(paths, clock)  # the new record is of the block as it is now
    once_more.boot()
    assert once_more.recovery.block_record is not None and blocked(paths) == kept
    once_more.shutdown()


def test_a_record_anyone_else_could_write_is_ignored_loudly(
        paths: Paths, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    engine, enforced = _large_detox_stopped(paths, clock)
    paths.hosts_block_file.chmod(0o666)
    again = restarted(engine, paths, clock)
    assert again.recovery.block_record is None
    assert "another user than detoxd's may write it" in caplog.text
    assert again.state.ratchet >= enforced and blocked(paths) == enforced
    again.shutdown()


def test_applied_json_is_read_only_when_the_config_cannot_be(
        paths: Paths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the config loads, applied.json is only compared with it (and written again when
    it differs: the config changed while detoxd was stopped); read when the config is broken."""
    engine = Engine(paths, clock)
    engine.boot()
    started(engine, clock)
    engine.shutdown()
    reads: list[Path] = []
    original = state_store.load_applied
    monkeypatch.setattr(state_store, "load_applied",
                        lambda path, known=frozenset(): reads.append(path) or original(path, known))
    written = paths.applied_file.stat().st_mtime_ns
    again = Engine(paths, clock)
    again.boot()
    assert reads == [] and paths.applied_file.stat().st_mtime_ns == written  # the same: not written
    assert blocked(paths) >= NAMES
    again.shutdown()
    (paths.config_dir / "blocklist.yaml").write_text("domains: [twitter.com, linkedin.com, x.com]\n")
    again = Engine(paths, clock)
    again.boot()
    assert reads == [] and "x.com" in json.loads(paths.applied_file.read_text())["names"]
    again.shutdown()
    (paths.config_dir / "blocklist.yaml").write_text("domains: [\n")
    again = Engine(paths, clock)
    again.boot()
    assert reads == [paths.applied_file] and "x.com" in again.applied.names
    assert blocked(paths) >= NAMES | {"x.com"}
    again.shutdown()


def test_an_unlocked_detox_keeps_the_configs_names_from_the_start(
        paths: Paths, clock: FakeClock) -> None:
    """The names in force before the config is applied are the config's: an allowance closing
    at the first tick enforces them, not an empty blocklist."""
    (paths.config_dir / "detoxd.yaml").write_text("detox:\n  lock: false\n")
    engine = Engine(paths, clock)
    engine.boot()
    started(engine, clock)
    engine.shutdown()
    again = Engine(paths, clock)
    enforced: list[frozenset[str]] = []
    original = again.enforce

    def watching() -> None:
        enforced.append(again.applied.names)
        original()

    again.enforce = watching  # type: ignore[method-assign]
    again.tick = lambda: (again.enforce(), Engine.tick(again))  # type: ignore[method-assign,func-returns-value]
    again.boot()
    assert enforced and all(names >= NAMES for names in enforced)
    assert blocked(paths) >= NAMES
    again.shutdown()


def test_removed_state_file_is_written_again_within_a_tick(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    started(engine, clock)
    for path in paths.state_dir.iterdir():
        if path.is_file():
            path.unlink()
    clock.advance(1)
    engine.tick()
    assert state_store.load(paths.state_file).active
    assert state_store.load(paths.state_backup_file).active


@pytest.mark.parametrize("applied", [
    {"version": 1, "names": "abc", "days": 14, "lock": True},
    {"version": 1, "names": ["bad name.com"], "days": 14, "lock": True},
    {"version": 1, "names": ["ok.example", "a\n0.0.0.0 evil"], "days": 14, "lock": True},
    {"version": 1, "names": ["ok.example"], "days": "14", "lock": True},
    {"version": 1, "names": ["ok.example"], "days": 14, "lock": "yes"},
    [1, 2, 3],
])
def test_a_damaged_applied_file_is_ignored_never_half_used(
        paths: Paths, clock: FakeClock, applied: object) -> None:
    (paths.config_dir / "blocklist.yaml").write_text("domains: [\n")  # the YAML is broken too
    paths.state_dir.mkdir(mode=0o700)
    paths.applied_file.write_text(json.dumps(applied))
    engine = Engine(paths, clock)
    engine.boot()
    assert engine.applied.names == frozenset()
    # Never a detox on the last good config while the YAML is in error (issue 21, bullet 8).
    assert engine.handle({"cmd": "start"}, ROOT)["code"] == "invalid_config"
    (paths.config_dir / "blocklist.yaml").write_text("domains: [ok.example]\n")
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    text = paths.hosts_file.read_bytes()
    assert b"0.0.0.0 a\n" not in text and b"evil" not in text


# ---- 4. a full disk: the main loop goes on, status is loud, and it recovers ----

def test_a_full_state_directory_is_reported_and_enforcement_goes_on(
        engine: Engine, paths: Paths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    started(engine, clock)
    real_replace = durable.replace_file

    def full(path: Path, data: bytes, **options: object) -> None:
        if path.parent == paths.state_dir:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(path, data, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(state_store, "replace_file", full)
    engine.checkpoint()  # the 30 s checkpoint: reported, not raised
    (paths.config_dir / "blocklist.yaml").write_text("domains: [twitter.com, linkedin.com, x.com]\n")
    assert engine.reload() is None  # _save_applied fails: reported, the new name still applies
    assert "x.com" in blocked(paths)
    status = engine.status()
    assert any("No space left on device" in problem for problem in status["problems"])
    assert any("No space left on device" in warning for warning in status["warnings"])
    paths.hosts_file.write_bytes(USER_LINES)  # a tamper while the disk is full
    engine.hosts.handle_events()
    clock.advance(1.0)
    engine.check(clock.monotonic(), full=True)
    clock.advance(1.0)
    engine.settle(clock.monotonic())
    assert blocked(paths) >= NAMES
    monkeypatch.setattr(state_store, "replace_file", real_replace)
    engine.checkpoint()  # room again: the applied file left unsaved is written too
    assert engine.status()["problems"] == []
    assert "x.com" in json.loads(paths.applied_file.read_text())["names"]


def test_a_failed_hosts_write_is_retried_at_the_next_tick(
        engine: Engine, paths: Paths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    started(engine, clock)
    writes: list[int] = []
    real_write = engine.hosts.file.write

    def failing(content: bytes, current: bytes | None = None, *, in_place: bool = False) -> bool:
        writes.append(len(content))
        if len(writes) <= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(content, current, in_place=in_place)

    monkeypatch.setattr(engine.hosts.file, "write", failing)
    paths.hosts_file.write_bytes(USER_LINES)
    with caplog.at_level(logging.ERROR, logger="detoxd"):
        engine.hosts.handle_events()
        clock.advance(1.0)
        engine.settle(clock.monotonic())  # fails: ENOSPC
    assert "retrying every 1s" in caplog.text
    assert engine.status()["hosts_in_sync"] is False and engine.status()["problems"]
    for _ in range(2):  # the file does not change meanwhile: the retry must come anyway
        clock.advance(1.0)
        engine.settle(clock.monotonic())
    assert len(writes) == 3
    assert blocked(paths) >= NAMES
    assert engine.status()["problems"] == [] and engine.status()["hosts_in_sync"] is True


# ---- 6. smaller ones ----

def test_stale_temporaries_are_removed_at_start_up(paths: Paths, clock: FakeClock) -> None:
    paths.state_dir.mkdir(mode=0o700)
    stale = [paths.hosts_file.parent / f".{paths.hosts_file.name}.abc123{durable.TEMP_SUFFIX}",
             paths.state_dir / f".state.json.xyz{durable.TEMP_SUFFIX}",
             paths.state_dir / ".state.json.old.tmp"]
    for path in stale:
        path.write_bytes(b"x" * 100)
    others = paths.hosts_file.parent / ".someone-elses.detoxd-new"
    others.write_bytes(b"theirs")
    Engine(paths, clock).hosts.close()
    assert not any(path.exists() for path in stale)
    assert others.exists()


def test_the_log_counts_the_names_the_ratchet_keeps(
        engine: Engine, paths: Paths, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    started(engine, clock)
    paths.applied_file.unlink()
    (paths.config_dir / "blocklist.yaml").write_text("domains: [\n")
    with caplog.at_level(logging.ERROR, logger="detoxd"):
        again = restarted(engine, paths, clock)
    assert again.applied.names == frozenset()
    assert again.hosts.names >= NAMES
    assert f"keeping the block in force ({len(again.hosts.names)} names)" in caplog.text
    assert "(0 names)" not in caplog.text


def test_the_log_never_quotes_a_lists_file(
        engine: Engine, paths: Paths, caplog: pytest.LogCaptureFixture) -> None:
    (paths.config_dir / "secret.txt").write_text("root:$6$secrethash:19000\n")
    (paths.config_dir / "secret.txt").chmod(0o600)
    (paths.config_dir / "blocklist.yaml").write_text("lists: [secret.txt]\n")
    with caplog.at_level(logging.ERROR, logger="detoxd"):
        assert engine.reload() is not None
    assert "secret.txt:1: lists[0]: invalid entry (details visible to root only)" in caplog.text
    assert "secrethash" not in caplog.text
    assert "secrethash" not in str(engine.status()["config_error"])
    assert "secrethash" in str(engine.status(private=True)["config_error"])


def test_the_block_is_never_left_torn_by_a_failed_write(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    started(engine, clock)
    text = paths.hosts_file.read_bytes()
    assert text.count(BEGIN_MARKER) == 1 and text.count(END_MARKER) == 1


def test_status_answers_from_the_last_tick_while_the_lock_is_held_long(
        engine: Engine, clock: FakeClock) -> None:
    """Writing a large valid block holds the lock for a while; status does not wait for it."""
    started(engine, clock)
    clock.advance(1)
    engine.tick()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        before = time.monotonic()
        reply = engine.handle({"cmd": "status"}, ROOT)
        assert time.monotonic() - before < 1.0
        assert reply["ok"] and reply["status"]["state"] == "active"
        assert "snapshot_age_seconds" in reply["status"]
        assert reply["status"]["stale"] is False and reply["status"]["hosts_in_sync"] is True
        clock.advance(STALE_SECONDS + 1)  # the loop is stuck that long: the snapshot is stale
        status = engine.handle({"cmd": "status"}, ROOT)["status"]
        assert status["stale"] is True and status["hosts_in_sync"] is False
        assert "main loop has not gone round for 3 s" in status["problems"][0]
        assert status["warnings"][0] == status["problems"][0]  # `detoxd status` prints warnings
    finally:
        release.set()
        holder.join(10)
    status = engine.handle({"cmd": "status"}, ROOT)["status"]
    assert "snapshot_age_seconds" not in status and status["stale"] is False


def test_a_main_loop_stuck_outside_the_lock_makes_the_status_stale(
        engine: Engine, clock: FakeClock) -> None:
    started(engine, clock)
    engine.loop_seen = clock.monotonic()
    clock.advance(STALE_SECONDS / 2)
    assert engine.handle({"cmd": "status"}, ROOT)["status"]["stale"] is False
    clock.advance(STALE_SECONDS)
    status = engine.status_event()["status"]  # what the tray is sent
    assert status["stale"] is True and status["hosts_in_sync"] is False and status["problems"]


def test_stale_temporaries_beside_browser_policies_are_removed(
        paths: Paths, clock: FakeClock, tmp_path: Path) -> None:
    from detoxd.core import policies

    policy_root = tmp_path / "policy-root"
    spec = policies.SPECS[0]
    target = policy_root / spec.file
    target.parent.mkdir(parents=True)
    stale = target.parent / f".{target.name}.q1w2e3{durable.TEMP_SUFFIX}"
    stale.write_text("{}")
    theirs = target.parent / "other.json"
    theirs.write_text("{}")
    Engine(paths, clock, policy_root=policy_root).hosts.close()
    assert not stale.exists() and theirs.exists()


def test_the_state_directory_removed_while_running_is_written_again_and_said(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    ends_at = started(engine, clock)
    shutil.rmtree(paths.state_dir)  # rm -rf /var/lib/detoxd
    clock.advance(1)
    engine.tick()
    assert state_store.load(paths.state_file).active and paths.applied_file.exists()
    events, _ = journal.read_events(journal.directory_for(paths.state_dir))
    assert [event["kind"] for event in events] == ["journal_lost", "state_lost"]
    assert [event["kind"] for event in ledger.read(paths.ledger_file)][-1] == "state_lost"
    status = engine.status()
    assert status["ends_at"] == ends_at
    assert "was removed while detoxd ran" in status["state_error"]

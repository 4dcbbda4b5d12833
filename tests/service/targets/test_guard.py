"""The hosts guard against real files and real inotify events (in-process, no daemon)."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from detoxd.core import hosts
from detoxd.service.targets.guard import HostsGuard, Outcome
from detoxd.service.targets.hostsfile import HostsFile

USER = b"127.0.0.1 localhost\n# keep me\n10.0.0.5 printer.lan\n"
NAMES = frozenset({"twitter.com", "www.twitter.com", "facebook.com"})


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[HostsGuard]:
    path = tmp_path / "etc" / "hosts"
    path.parent.mkdir()
    path.write_bytes(USER)
    guard = HostsGuard(HostsFile(path, tmp_path / "state"), time.monotonic)
    yield guard
    guard.close()


def expected(user: bytes = USER) -> bytes:
    return hosts.merge(user, hosts.render_block(NAMES))


def drive(guard: HostsGuard, seconds: float) -> list[Outcome]:
    """What the daemon's loop does with the guard, for a while."""
    outcomes: list[Outcome] = []
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        deadline = guard.deadline()
        timeout = min(end, deadline if deadline is not None else end) - now
        readable, _, _ = select.select([guard.fileno()], [], [], max(0.0, timeout))
        if readable:
            guard.handle_events()
        outcome = guard.settle(time.monotonic())
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def test_applies_once_and_never_rewrites_a_correct_file(guard: HostsGuard) -> None:
    first = guard.set_names(NAMES)
    assert first.written and not first.tampered
    assert guard.path.read_bytes() == expected()
    inode = guard.path.stat().st_ino
    outcomes = drive(guard, 0.2)  # the events of our own write are checked, then nothing
    assert all(not outcome.written for outcome in outcomes)
    assert guard.enforce() == Outcome(written=False, tampered=False)
    assert guard.path.stat().st_ino == inode


def test_user_edit_outside_the_block_is_kept_and_not_tampering(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    edited = b"# added by the user\n" + guard.path.read_bytes()
    guard.path.write_bytes(edited)
    outcomes = drive(guard, 0.2)
    assert not any(outcome.tampered for outcome in outcomes)
    assert guard.path.read_bytes() == edited


def test_removed_block_is_restored_and_counted(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    guard.path.write_bytes(USER)
    outcomes = drive(guard, 0.3)
    assert [outcome.tampered for outcome in outcomes if outcome.written] == [True]
    assert guard.path.read_bytes() == expected()


@pytest.mark.parametrize("pause", [0.015, 0.1])
def test_slow_writer_after_truncate_leaves_no_torn_lines(guard: HostsGuard, pause: float) -> None:
    """A peer truncates, pauses, then writes: restoring on the truncate alone would let its
    write land on top of the restore and leave a torn file."""
    guard.set_names(NAMES)
    tampered_user = USER + b"# the tamperer's version\n"

    def tamper() -> None:
        with guard.path.open("r+b") as handle:
            handle.truncate(0)
            handle.flush()
            time.sleep(pause)
            handle.write(tampered_user)

    writer = threading.Thread(target=tamper)
    writer.start()
    drive(guard, 0.5)
    writer.join()
    drive(guard, 0.2)
    assert guard.path.read_bytes() == expected(tampered_user)


def test_tamper_right_after_a_restore_is_restored_too(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    guard.path.write_bytes(USER)
    drive(guard, 0.1)
    assert guard.path.read_bytes() == expected()
    guard.path.write_bytes(USER)  # no cool-down may hide this one
    drive(guard, 0.2)
    assert guard.path.read_bytes() == expected()


def test_replaced_file_is_watched_again(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    for round_ in range(3):
        temp = guard.path.with_name(f"hosts.{round_}")
        temp.write_bytes(USER)
        temp.replace(guard.path)
        drive(guard, 0.2)
        assert guard.path.read_bytes() == expected(), f"round {round_}"


def test_deleted_file_is_recreated_with_the_block(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    guard.path.unlink()
    drive(guard, 0.2)
    assert guard.path.read_bytes() == hosts.render_block(NAMES)


def test_clearing_the_names_restores_the_user_text_exactly(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    guard.set_names(frozenset())
    assert guard.path.read_bytes() == USER


def test_unseen_change_is_caught_by_verify(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    drive(guard, 0.05)
    guard.path.write_bytes(USER)
    guard.handle_events()  # pretend the events were lost (queue overflow): drop them
    guard._pending_since = None
    guard.verify()
    outcomes = drive(guard, 0.3)
    assert [outcome.tampered for outcome in outcomes if outcome.written] == [True]
    assert guard.path.read_bytes() == expected()


def test_verify_never_restores_on_top_of_a_writer_that_truncated(guard: HostsGuard) -> None:
    """The periodic check may fire between a writer's truncate and its write."""
    guard.set_names(NAMES)
    drive(guard, 0.05)
    with guard.path.open("r+b") as handle:
        handle.truncate(0)
        handle.flush()
        guard.handle_events()
        guard._pending_since = None  # as if the tick came before the event was read
        guard.verify()
        assert guard.settle(time.monotonic()) is None  # not yet: the file is empty and open
        time.sleep(0.05)
        handle.write(USER + b"# writer's line\n")
    drive(guard, 0.4)
    assert guard.path.read_bytes() == expected(USER + b"# writer's line\n")


def test_a_writer_right_after_a_restore_is_not_lost(guard: HostsGuard) -> None:
    """A peer truncates the file detoxd has just renamed in, before the guard has read the
    rename's event: the restore must wait for the peer's write instead of replacing the file
    under it (which would send the write into the replaced inode)."""
    guard.set_names(NAMES)
    tampered_user = USER + b"# written right after the restore\n"
    with guard.path.open("r+b") as handle:
        handle.truncate(0)
        handle.flush()
        drive(guard, 0.02)
        handle.write(tampered_user)
    drive(guard, 0.7)
    assert guard.path.read_bytes() == expected(tampered_user)

"""The hosts guard against real files and real inotify events (in-process, no daemon)."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from detoxd.core import hosts
from detoxd.service.targets.hosts.guard import HostsGuard, Outcome, _writer_bytes_over
from detoxd.service.targets.hosts.hostsfile import HostsFile

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


def test_the_same_names_again_are_not_read_again_while_the_file_is_untouched(
        guard: HostsGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    order = tuple(sorted(NAMES))
    guard.set_names(NAMES, order)
    drive(guard, 0.05)  # our own write's events, drained
    reads: list[int] = []
    original = guard.file.read
    monkeypatch.setattr(guard.file, "read", lambda: reads.append(1) or original())
    assert guard.set_names(NAMES, order) == Outcome(written=False, tampered=False)
    assert reads == []  # a start applies the names twice: the second costs no read


def test_the_same_names_again_restore_a_change_not_handled_yet(guard: HostsGuard) -> None:
    """The shortcut above never skips a change the loop has not handled yet (its event still
    queued, or stat() showing it): the file is read and restored."""
    order = tuple(sorted(NAMES))
    guard.set_names(NAMES, order)
    drive(guard, 0.05)
    content = guard.path.read_bytes()
    with guard.path.open("r+b") as file:  # in place, the way a tamper keeps the inode
        file.write(content.replace(b"0.0.0.0 twitter.com", b"1.2.3.4 twitter.com"))
    outcome = guard.set_names(NAMES, order)
    assert outcome.written and outcome.tampered
    assert guard.path.read_bytes() == content


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


# ---- bounded settling (issue 21, bullet 2) ----

def test_a_writer_that_never_goes_quiet_cannot_keep_the_block_out(guard: HostsGuard) -> None:
    """A peer holds the file open and cuts the block off every 10 ms, never closing it: the
    settle wait used to start over at each event, so the block stayed out. Now each burst is
    settled within SETTLE_CAP of its first event and every restore is counted."""
    guard.set_names(NAMES)
    stop = threading.Event()

    def cut_in_a_loop() -> None:
        with guard.path.open("r+b", buffering=0) as handle:
            while not stop.is_set():
                os.ftruncate(handle.fileno(), len(USER))
                os.pwrite(handle.fileno(), USER, 0)
                time.sleep(0.01)

    writer = threading.Thread(target=cut_in_a_loop)
    writer.start()
    try:
        outcomes = drive(guard, 1.0)
    finally:
        stop.set()
        writer.join()
    # Before: none at all while the loop ran. (How many depends on fsync times: benchmarks.)
    assert sum(outcome.tampered for outcome in outcomes) >= 2, outcomes
    drive(guard, 0.2)
    assert guard.path.read_bytes() == expected()


def test_a_byte_written_into_the_block_in_a_loop_is_undone_each_time_and_never_kept(
        guard: HostsGuard) -> None:
    """A peer holds the file open and writes one byte over the block's first entry whenever the
    block is back (a pwrite loop): every write is undone and counted, and the edited line is
    never kept as the user's text (it used to be, one more line each time)."""
    guard.set_names(NAMES)
    writes = 8
    done = threading.Event()
    entry = BLOCK.index(b"\n") + 1

    def write_in_a_loop() -> None:
        with guard.path.open("r+b", buffering=0) as handle:
            for _ in range(writes):
                deadline = time.monotonic() + 30
                while (at := guard.path.read_bytes().find(BLOCK)) == -1:  # wait for the restore
                    assert time.monotonic() < deadline, "the block did not come back"
                    time.sleep(0.002)
                os.pwrite(handle.fileno(), b"#", at + entry)
        done.set()

    writer = threading.Thread(target=write_in_a_loop)
    writer.start()
    outcomes: list[Outcome] = []
    try:
        while not done.is_set() and writer.is_alive():
            outcomes += drive(guard, 0.05)
    finally:
        writer.join()
    outcomes += drive(guard, 0.2)
    assert sum(outcome.tampered for outcome in outcomes) == writes, outcomes
    assert guard.path.read_bytes() == expected()


def test_in_sync_is_read_from_the_file_not_remembered(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    assert guard.in_sync
    guard.path.write_bytes(USER)  # no event read yet: stat tells
    assert not guard.in_sync
    drive(guard, 0.2)
    assert guard.in_sync and guard.path.read_bytes() == expected()


BLOCK = hosts.render_block(NAMES)


@pytest.mark.parametrize(("current", "meant"), [
    # the writer's text overwrote the start of the block restored on its empty file
    (b"1.2.3.4 mine\n" + BLOCK[13:], b"1.2.3.4 mine\n"),
    # ... also when it starts like the block
    (b"# BEGIN mine\n" + BLOCK[13:], b"# BEGIN mine\n"),
    # after user text the restore kept (the writer had written part of it before pausing)
    (b"a\nb\n" + BLOCK[:0] + b"c\n" + BLOCK[2:], b"a\nb\nc\n"),
])
def test_the_writers_bytes_over_a_restore_are_the_users_text(current: bytes, meant: bytes) -> None:
    restored = (b"a\nb\n" + BLOCK) if current.startswith(b"a\nb\n") else BLOCK
    assert len(current) == len(restored)
    assert _writer_bytes_over(current, restored) == meant


@pytest.mark.parametrize("current", [
    BLOCK,  # nothing written since
    # a byte written into the block, its marker line as restored: an edit of the block
    BLOCK.replace(b"\n0.0.0.0 ", b"\n#.0.0.0 ", 1),
    BLOCK + b"more\n",  # written past the block: no torn tail
    b"x" * 10,  # truncated again
])
def test_anything_else_is_taken_as_it_is(current: bytes) -> None:
    assert _writer_bytes_over(current, BLOCK) == current


def test_an_edit_before_the_block_is_never_cut(guard: HostsGuard) -> None:
    """Same length as the restore, but the change is in the user's text: not a writer going on."""
    restored = USER + BLOCK
    edited = USER.replace(b"keep me", b"KEEP ME") + BLOCK[:-4] + b"xxx\n"
    assert _writer_bytes_over(edited, restored) == edited


# ---- issue 21, bullet 1: lines that override a blocked name ----


def test_a_line_overriding_a_blocked_name_is_neutralised_and_counted(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    attack = b"104.244.42.1 twitter.com\n" + guard.path.read_bytes()
    guard.path.write_bytes(attack)
    outcomes = [outcome for outcome in drive(guard, 0.3) if outcome.written]
    assert [(outcome.tampered, [str(line) for line in outcome.neutralised]) for outcome in outcomes] == [
        (True, ["104.244.42.1 twitter.com"])]
    assert guard.path.read_bytes() == hosts.NEUTRALISED_MARKER + attack
    assert guard.in_sync and guard.overrides_in_file() == ()
    guard.set_names(frozenset())  # the end of the detox: the user's line as it was
    assert guard.path.read_bytes() == b"104.244.42.1 twitter.com\n" + USER


def test_a_line_there_before_the_detox_is_neutralised_but_no_tamper(guard: HostsGuard) -> None:
    guard.path.write_bytes(USER + b"31.13.72.36 foo.lan facebook.com\n")
    outcome = guard.set_names(NAMES)
    assert outcome.written and not outcome.tampered
    assert [line.names for line in outcome.neutralised] == [("facebook.com",)]


def test_overrides_in_file_reads_the_file_as_it_is_now(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    guard.path.write_bytes(guard.path.read_bytes() + b"10.1.1.1 www.twitter.com\n")
    assert not guard.in_sync
    assert [str(line) for line in guard.overrides_in_file()] == ["10.1.1.1 www.twitter.com"]


# ---- issue 21, bullet 9: a tamper that lands as new names are applied (a config change) ----


def test_a_tamper_not_yet_settled_when_new_names_are_applied_is_counted(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    drive(guard, 0.1)  # our own write's events are read
    guard.path.write_bytes(USER)  # the block removed ...
    readable, _, _ = select.select([guard.fileno()], [], [], 10)
    assert readable
    guard.handle_events()  # ... seen, still settling, when the config change applies new names
    assert guard.deadline() is not None
    outcome = guard.set_names(NAMES | {"x.com"})
    assert outcome.written and outcome.tampered
    assert guard.path.read_bytes() == hosts.merge(USER, hosts.render_block(NAMES | {"x.com"}))


def test_a_tamper_no_event_told_of_when_new_names_are_applied_is_counted(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    with_block = guard.path.read_bytes()
    guard.path.write_bytes(b"104.244.42.1 twitter.com\n" + with_block)  # its event not yet read
    outcome = guard.set_names(NAMES | {"x.com"})
    assert outcome.tampered and [line.names for line in outcome.neutralised] == [("twitter.com",)]


def test_new_names_over_an_untouched_file_or_the_users_own_edit_are_no_tamper(guard: HostsGuard) -> None:
    guard.set_names(NAMES)
    drive(guard, 0.1)
    outcome = guard.set_names(NAMES | {"x.com"})
    assert outcome.written and not outcome.tampered
    guard.path.write_bytes(b"10.0.0.9 nas.lan\n" + guard.path.read_bytes())  # the user's own line
    outcome = guard.set_names(NAMES | {"y.com"})
    assert outcome.written and not outcome.tampered
    assert guard.path.read_bytes().startswith(b"10.0.0.9 nas.lan\n")

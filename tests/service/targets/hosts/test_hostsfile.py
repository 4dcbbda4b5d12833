"""detoxd.service.targets.hosts.hostsfile on real files: both write paths, recovery from every crash point.

A crash point is set up on disk exactly as a killed writer leaves it (a journal cut at some byte,
a target overwritten up to some byte); tests/integration/test_hostsfile_crash.py kills real
writers.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from detoxd.service.targets.hosts import hostsfile as hostsfile_module
from detoxd.service.targets.hosts.fsops import HostsFileError
from detoxd.service.targets.hosts.hostsbytes import Journal, encode_journal, is_torn_between
from detoxd.service.targets.hosts.hostsfile import JOURNAL_NAME, ChangedSinceRead, HostsFile, Recovery

OLD = b"127.0.0.1 localhost\n# mine\n" * 400  # 10.8 kB: several pages
NEW = b"127.0.0.1 localhost\n0.0.0.0 facebook.com\n:: facebook.com\n" * 150  # 8.7 kB


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "hosts"
    path.parent.mkdir()
    path.write_bytes(OLD)
    return path


def journal_bytes(path: Path, old: bytes, new: bytes) -> bytes:
    return b"".join(encode_journal(Journal(os.fsencode(path), old, new)))


def torn(old: bytes, new: bytes, written: int) -> bytes:
    """The target after an in-place writer stopped ``written`` bytes into the new content."""
    return new[:written] + old[written:]


# ---- reading and writing ----


def test_read_gives_bytes_and_a_missing_file_reads_empty(hosts: Path, tmp_path: Path) -> None:
    assert HostsFile(hosts, tmp_path / "state").read() == OLD
    assert HostsFile(tmp_path / "absent", tmp_path / "state").read() == b""


@pytest.mark.parametrize("mode", ["auto", "rename", "inplace"])
def test_identical_content_is_never_rewritten(hosts: Path, tmp_path: Path, mode: str) -> None:
    before = os.stat(hosts)
    assert HostsFile(hosts, tmp_path / "state", mode).write(OLD) is False  # type: ignore[arg-type]
    after = os.stat(hosts)
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_ino, before.st_mtime_ns, before.st_ctime_ns)


def test_no_write_creates_an_empty_file(tmp_path: Path) -> None:
    assert HostsFile(tmp_path / "hosts", tmp_path / "state").write(b"") is False
    assert not (tmp_path / "hosts").exists()


def test_rename_write_replaces_the_file_keeping_mode_and_owner(hosts: Path, tmp_path: Path) -> None:
    hosts.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(hosts, 1234, 5678)
    before = os.stat(hosts)
    assert HostsFile(hosts, tmp_path / "state", "rename").write(NEW) is True
    after = os.stat(hosts)
    assert hosts.read_bytes() == NEW
    assert after.st_ino != before.st_ino  # really renamed over
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert sorted(p.name for p in hosts.parent.iterdir()) == ["hosts"]  # no temporary left


def test_rename_write_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    assert HostsFile(path, tmp_path / "state").write(NEW) is True
    assert path.read_bytes() == NEW
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_in_place_write_keeps_the_inode_and_leaves_no_journal(hosts: Path, tmp_path: Path) -> None:
    hosts.chmod(0o604)
    inode = os.stat(hosts).st_ino
    hosts_file = HostsFile(hosts, tmp_path / "state", "inplace")
    assert hosts_file.write(NEW) is True  # shorter: truncated
    assert hosts.read_bytes() == NEW
    assert hosts_file.write(OLD) is True  # longer: extended
    assert hosts.read_bytes() == OLD
    assert os.stat(hosts).st_ino == inode
    assert stat.S_IMODE(os.stat(hosts).st_mode) == 0o604
    assert not hosts_file.journal_path.exists()
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700


def written_once(hosts: Path, tmp_path: Path) -> HostsFile:
    """A HostsFile past its first write (which goes the usual way), the file holding OLD."""
    hosts_file = HostsFile(hosts, tmp_path / "state")
    assert hosts_file.write(b"first\n") is True
    hosts.write_bytes(OLD)
    return hosts_file


def test_the_first_write_goes_the_usual_way(hosts: Path, tmp_path: Path) -> None:
    """So that it finds out whether rename works (in place, it makes the journal's reserve)."""
    inode = os.stat(hosts).st_ino
    assert HostsFile(hosts, tmp_path / "state").write(OLD + NEW) is True
    assert os.stat(hosts).st_ino != inode


def test_an_append_keeps_the_inode_writes_no_journal_and_is_fsynced_at_the_next_sync(
        hosts: Path, tmp_path: Path) -> None:
    """What a truncating loop leaves (the user's text, or nothing) gets the block appended: in the
    file at once, durable at the guard's next look (HostsFile.sync)."""
    hosts_file = written_once(hosts, tmp_path)
    inode = os.stat(hosts).st_ino
    assert hosts_file.write(OLD + NEW) is True
    assert hosts.read_bytes() == OLD + NEW and os.stat(hosts).st_ino == inode
    assert not hosts_file.journal_path.exists() and hosts_file.unsynced
    hosts_file.sync()
    assert not hosts_file.unsynced
    hosts.write_bytes(b"")  # truncated: the whole content is the tail
    assert hosts_file.write(NEW, hosts_file.read()) is True
    assert hosts.read_bytes() == NEW and os.stat(hosts).st_ino == inode


def test_a_change_within_one_page_is_patched_in_place_and_anything_wider_is_not(
        hosts: Path, tmp_path: Path) -> None:
    hosts_file = written_once(hosts, tmp_path)
    inode = os.stat(hosts).st_ino
    one_byte = OLD[:5000] + b"#" + OLD[5001:]
    assert hosts_file.write(one_byte) is True
    assert hosts.read_bytes() == one_byte and os.stat(hosts).st_ino == inode
    assert not hosts_file.journal_path.exists() and hosts_file.unsynced
    two_pages = b"#" + OLD[1:-2] + b"#\n"  # same length, changes 10 kB apart: the usual way
    assert hosts_file.write(two_pages) is True
    assert hosts.read_bytes() == two_pages and os.stat(hosts).st_ino != inode


@pytest.mark.parametrize("mode", ["auto", "rename", "inplace"])
def test_a_write_computed_from_a_read_the_file_has_moved_on_from_writes_nothing(
        hosts: Path, tmp_path: Path, mode: str) -> None:
    """Someone wrote after the read (a writer mid-write): writing would put the block over the
    rest of their bytes (before: written the usual way, their later lines lost)."""
    hosts_file = written_once(hosts, tmp_path)
    hosts_file.mode = mode
    seen = hosts_file.read()
    with hosts.open("ab") as writer:
        writer.write(b"# theirs, after the read\n")
    with pytest.raises(ChangedSinceRead):
        hosts_file.write(seen + NEW, seen)
    assert hosts.read_bytes() == OLD + b"# theirs, after the read\n"
    assert hosts_file.write(hosts_file.read() + NEW) is True  # a fresh look: written
    assert hosts.read_bytes() == OLD + b"# theirs, after the read\n" + NEW


def test_a_read_that_saw_a_write_half_done_is_read_again(
        hosts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads are not ordered with writes: one can return the first part of a big write in
    progress (here the first read is made to return what such a read returns: a prefix of the
    file, shorter than its size). It is read again; if it never settles, a write is refused."""
    real_read = hostsfile_module.read_regular
    halves = iter([OLD[: len(OLD) // 2]])
    monkeypatch.setattr(hostsfile_module, "read_regular",
                        lambda *args, **kwargs: next(halves, None) or real_read(*args, **kwargs))
    hosts_file = HostsFile(hosts, tmp_path / "state")
    assert hosts_file.read() == OLD
    monkeypatch.setattr(hostsfile_module, "read_regular", lambda *args, **kwargs: OLD[:100])
    seen = hosts_file.read()
    assert seen == OLD[:100]
    with pytest.raises(ChangedSinceRead):
        hosts_file.write(seen + NEW, seen)
    assert hosts.read_bytes() == OLD


def test_the_rename_mode_never_appends(hosts: Path, tmp_path: Path) -> None:
    inode = os.stat(hosts).st_ino
    assert HostsFile(hosts, tmp_path / "state", "rename").write(OLD + NEW) is True
    assert hosts.read_bytes() == OLD + NEW and os.stat(hosts).st_ino != inode


def test_a_symlinked_hosts_file_stays_a_symlink(hosts: Path, tmp_path: Path) -> None:
    link = tmp_path / "hosts-link"
    link.symlink_to(hosts)
    assert HostsFile(link, tmp_path / "state").write(NEW) is True
    assert link.is_symlink()
    assert hosts.read_bytes() == NEW


# ---- recovery ----


def test_recover_without_journal_does_nothing(hosts: Path, tmp_path: Path) -> None:
    assert HostsFile(hosts, tmp_path / "state").recover() is Recovery.NOTHING
    assert hosts.read_bytes() == OLD


def test_a_torn_journal_is_discarded_at_every_cut(hosts: Path, tmp_path: Path) -> None:
    hosts_file = HostsFile(hosts, tmp_path / "state", "inplace")
    complete = journal_bytes(hosts, OLD, NEW)
    hosts_file.state_dir.mkdir()
    for cut in [*range(0, 200), *range(200, len(complete), 997), len(complete) - 1]:
        hosts_file.journal_path.write_bytes(complete[:cut])
        assert hosts_file.recover() is Recovery.TORN_JOURNAL, cut
        assert hosts.read_bytes() == OLD
        assert not hosts_file.journal_path.exists()


def test_a_corrupted_journal_is_discarded(hosts: Path, tmp_path: Path) -> None:
    hosts_file = HostsFile(hosts, tmp_path / "state")
    damaged = bytearray(journal_bytes(hosts, OLD, NEW))
    damaged[len(damaged) // 2] ^= 0x01
    hosts_file.state_dir.mkdir()
    hosts_file.journal_path.write_bytes(bytes(damaged))
    assert hosts_file.recover() is Recovery.TORN_JOURNAL
    assert hosts.read_bytes() == OLD


@pytest.mark.parametrize(("old", "new"), [(OLD, NEW), (NEW, OLD)], ids=["shrinks", "grows"])
def test_a_torn_file_is_finished_at_every_page_boundary_and_between(
    hosts: Path, tmp_path: Path, old: bytes, new: bytes
) -> None:
    hosts_file = HostsFile(hosts, tmp_path / "state")
    hosts_file.state_dir.mkdir()
    cuts = {0, 1, 4095, 4096, 4097, 8191, 8192, len(new) - 1, len(new), *range(0, len(new), 613)}
    for written in sorted(cuts):
        hosts.write_bytes(torn(old, new, written))
        hosts_file.journal_path.write_bytes(journal_bytes(hosts, old, new))
        expected = Recovery.ALREADY_WRITTEN if torn(old, new, written) == new else Recovery.FINISHED
        assert hosts_file.recover() is expected, written
        assert hosts.read_bytes() == new, written
        assert not hosts_file.journal_path.exists()


def test_a_file_torn_in_several_pages_is_finished(hosts: Path, tmp_path: Path) -> None:
    # A power cut may write back some pages and not others.
    mixed = NEW[:4096] + OLD[4096:8192] + NEW[8192:8300] + OLD[8300:]
    assert is_torn_between(mixed, OLD, NEW)
    hosts.write_bytes(mixed)
    hosts_file = HostsFile(hosts, tmp_path / "state")
    hosts_file.state_dir.mkdir()
    hosts_file.journal_path.write_bytes(journal_bytes(hosts, OLD, NEW))
    assert hosts_file.recover() is Recovery.FINISHED
    assert hosts.read_bytes() == NEW


def test_a_complete_journal_with_an_untouched_file_is_redone(hosts: Path, tmp_path: Path) -> None:
    hosts_file = HostsFile(hosts, tmp_path / "state")
    hosts_file.state_dir.mkdir()
    hosts_file.journal_path.write_bytes(journal_bytes(hosts, OLD, NEW))
    assert hosts_file.recover() is Recovery.FINISHED
    assert hosts.read_bytes() == NEW


def test_a_file_edited_after_the_crash_is_left_alone(hosts: Path, tmp_path: Path) -> None:
    edited = b"10.0.0.1 added.after.crash\n" + torn(OLD, NEW, 5000)
    assert not is_torn_between(edited, OLD, NEW)
    hosts.write_bytes(edited)
    hosts_file = HostsFile(hosts, tmp_path / "state")
    hosts_file.state_dir.mkdir()
    hosts_file.journal_path.write_bytes(journal_bytes(hosts, OLD, NEW))
    assert hosts_file.recover() is Recovery.FILE_CHANGED
    assert hosts.read_bytes() == edited
    assert not hosts_file.journal_path.exists()


def test_a_journal_for_another_file_is_not_applied(hosts: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-hosts"
    hosts_file = HostsFile(hosts, tmp_path / "state")
    hosts_file.state_dir.mkdir()
    hosts_file.journal_path.write_bytes(journal_bytes(other, OLD, NEW))
    assert hosts_file.recover() is Recovery.OTHER_FILE
    assert hosts.read_bytes() == OLD
    assert not other.exists()


def test_write_settles_a_pending_journal_first(hosts: Path, tmp_path: Path) -> None:
    hosts.write_bytes(torn(OLD, NEW, 6000))
    hosts_file = HostsFile(hosts, tmp_path / "state", "inplace")
    hosts_file.state_dir.mkdir()
    (hosts_file.state_dir / JOURNAL_NAME).write_bytes(journal_bytes(hosts, OLD, NEW))
    assert hosts_file.write(NEW) is False  # recovery already wrote it
    assert hosts.read_bytes() == NEW
    assert not hosts_file.journal_path.exists()


@pytest.mark.parametrize(("current", "expected"), [
    (OLD, True),
    (NEW, True),
    (torn(OLD, NEW, 1234), True),
    (torn(OLD, NEW, 4096), True),
    (OLD + b"x", False),  # longer than both
    (b"x" + OLD[1:], False),  # a byte from neither
    (OLD[:100] + NEW[100:200] + OLD[200:], False),  # new bytes after old ones in one page
])
def test_is_torn_between(current: bytes, expected: bool) -> None:
    assert is_torn_between(current, OLD, NEW) is expected


def test_a_full_state_directory_uses_the_reserve_for_the_journal(tmp_path: Path) -> None:
    """ENOSPC from the journal write (a full state directory): the reserve is given up for it,
    the in-place write goes through, and the reserve is made again once there is room."""
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"old\n")
    file = HostsFile(hosts, tmp_path / "state", mode="inplace")
    file.keep_reserve(len(b"old\n"))
    assert file.reserve_path.stat().st_size >= 64 << 10
    real_write_journal = file._write_journal
    calls: list[bool] = []

    def journal_on_a_full_disk(journal: object) -> None:
        calls.append(file.reserve_path.exists())
        if file.reserve_path.exists():  # room only once the reserve is gone
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_journal(journal)  # type: ignore[arg-type]

    file._write_journal = journal_on_a_full_disk  # type: ignore[method-assign]
    assert file.write(b"new content\n")
    assert hosts.read_bytes() == b"new content\n"
    assert calls == [True, False]
    assert not file.journal_path.exists()
    assert file.reserve_path.stat().st_size >= 4 * len(b"new content\n")


# ---- odd files: never a hang, a crash or a memory blow-up (issue 21) ----

def _odd(path: Path, kind: str) -> None:
    """Put something that is no regular file at ``path``."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:  # a link to a device
        path.symlink_to(f"/dev/{kind}")


@pytest.mark.parametrize("kind", ["fifo", "directory", "zero", "null"])
def test_an_odd_hosts_file_is_refused_with_a_reason_and_a_fix(tmp_path: Path, kind: str) -> None:
    hosts = tmp_path / "hosts"
    _odd(hosts, kind)
    hosts_file = HostsFile(hosts, tmp_path / "state", "inplace")
    for attempt in (hosts_file.read, lambda: hosts_file.write(NEW)):
        with pytest.raises(HostsFileError) as raised:
            attempt()  # a FIFO would block here, /dev/zero fill the memory
        assert "not a regular file" in raised.value.strerror
        assert "regular file again" in raised.value.fix
    assert not hosts_file.journal_path.exists()


def test_a_file_over_the_limit_is_refused_before_it_is_read(hosts: Path, tmp_path: Path) -> None:
    hosts_file = HostsFile(hosts, tmp_path / "state")
    hosts_file.limit = len(OLD) - 1
    with pytest.raises(HostsFileError) as raised:
        hosts_file.read()
    assert "too large" in raised.value.strerror and "lists:" in raised.value.fix
    hosts_file.limit = len(OLD)
    assert hosts_file.read() == OLD


@pytest.mark.parametrize("kind", ["fifo", "directory", "zero"])
def test_an_odd_journal_is_set_aside_and_the_write_goes_on(hosts: Path, tmp_path: Path, kind: str) -> None:
    hosts_file = HostsFile(hosts, tmp_path / "state", "inplace")
    hosts_file.state_dir.mkdir()
    _odd(hosts_file.journal_path, kind)
    assert hosts_file.recover() is Recovery.SET_ASIDE
    assert os.path.lexists(hosts_file.journal_path.with_name(JOURNAL_NAME + ".unusable"))
    _odd(hosts_file.journal_path, kind)  # again, over the one set aside before
    assert hosts_file.write(NEW) is True
    assert hosts.read_bytes() == NEW
    assert not os.path.lexists(hosts_file.journal_path)


def test_a_journal_that_cannot_be_replayed_yet_is_kept_and_blocks_writes_until_it_can(
        tmp_path: Path) -> None:
    """The file cannot be written (here: it became a FIFO): the interrupted write waits, and no
    new journal replaces the one that holds the user's old content."""
    hosts = tmp_path / "hosts"
    hosts.write_bytes(torn(OLD, NEW, 5000))
    hosts_file = HostsFile(hosts, tmp_path / "state", "inplace")
    hosts_file.state_dir.mkdir()
    journal = journal_bytes(hosts, OLD, NEW)
    hosts_file.journal_path.write_bytes(journal)
    torn_text = hosts.read_bytes()
    hosts.rename(tmp_path / "moved")
    _odd(hosts, "fifo")
    assert hosts_file.recover() is Recovery.NOT_YET
    assert hosts_file.recovery_error is not None
    with pytest.raises(HostsFileError):
        hosts_file.write(b"something else\n")
    assert hosts_file.journal_path.read_bytes() == journal
    hosts.unlink()
    hosts.write_bytes(torn_text)  # the obstacle is gone
    assert hosts_file.write(NEW) is False  # replayed first
    assert hosts.read_bytes() == NEW and not hosts_file.journal_path.exists()


def test_a_write_refused_before_its_first_byte_leaves_no_journal(hosts: Path, tmp_path: Path) -> None:
    """A read-only file (here: mode 0444 for a process without CAP_DAC_OVERRIDE would do; a
    directory in its place does it for root as well): nothing to finish after a crash."""
    hosts_file = HostsFile(hosts, tmp_path / "state", "inplace")
    hosts_file.state_dir.mkdir()

    def refuse(*_args: object, **_kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(hosts))

    original = hostsfile_module.open_regular
    hostsfile_module.open_regular = refuse  # type: ignore[assignment]
    try:
        with pytest.raises(HostsFileError) as raised:
            hosts_file.write(NEW)
    finally:
        hostsfile_module.open_regular = original
    assert "lsattr" in raised.value.fix
    assert not hosts_file.journal_path.exists()
    assert hosts.read_bytes() == OLD
    assert hosts_file.recover() is Recovery.NOTHING


def _immutable(path: Path, on: bool) -> bool:
    result = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True, check=False)
    return result.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="needs root and chattr")
@pytest.mark.parametrize("mode", ["auto", "inplace"])
def test_an_immutable_file_is_written_and_stays_immutable(hosts: Path, tmp_path: Path, mode: str) -> None:
    if not _immutable(hosts, True):
        pytest.skip("this file system has no immutable flag")
    try:
        hosts_file = HostsFile(hosts, tmp_path / "state", mode)  # type: ignore[arg-type]
        assert hosts_file.write(NEW) is True
        assert hosts.read_bytes() == NEW
        with pytest.raises(PermissionError):
            hosts.write_bytes(OLD)  # the user's flag is back
    finally:
        _immutable(hosts, False)

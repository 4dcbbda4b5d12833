from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detoxd.core import detox
from detoxd.core.detox import BootReading, Checkpoint, DetoxState, Phase
from detoxd.service import state_store
from detoxd.service.state_store import CorruptStateError, NewerStateVersionError, StateFileError

START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def active_state(names: frozenset[str] = frozenset({"b.com", "a.com"})) -> DetoxState:
    state = detox.start(
        DetoxState(), now=START, boot=BootReading("boot-1", 1000.5), days=14, locked=True
    )
    assert isinstance(state, DetoxState)
    state = detox.update_ratchet(state, names)
    state = detox.tick(state, now=START + timedelta(hours=3), boot=BootReading("boot-1", 11800.5))
    return detox.record_tamper(state)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "lib" / "detoxd" / "state.json"


def write_document(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def test_a_missing_file_is_a_fresh_idle_state(path: Path) -> None:
    assert state_store.load(path) == DetoxState()
    assert not path.exists()


def test_an_active_state_round_trips(path: Path) -> None:
    state = active_state()
    state_store.save(path, state)
    assert state_store.load(path) == state


def test_an_idle_state_round_trips(path: Path) -> None:
    state = replace(DetoxState(), tamper_events=3, clock_jumps=1, locked=False)
    state_store.save(path, state)
    assert state_store.load(path) == state


def test_the_file_is_versioned_json_with_a_sorted_ratchet_and_offset_times(path: Path) -> None:
    state_store.save(path, active_state(frozenset({"z.com", "a.com", "m.com"})))
    document = json.loads(path.read_text())
    assert document["version"] == state_store.FORMAT_VERSION
    assert document["phase"] == "active"
    assert document["ratchet"] == ["a.com", "m.com", "z.com"]
    assert document["started_at"] == "2024-03-01T09:00:00+00:00"
    assert document["checkpoint"]["wall"] == "2024-03-01T12:00:00+00:00"


def test_a_non_utc_offset_survives(path: Path) -> None:
    paris = timezone(timedelta(hours=1))
    state = replace(active_state(), started_at=datetime(2024, 3, 1, 10, tzinfo=paris))
    state_store.save(path, state)
    loaded = state_store.load(path)
    assert loaded.started_at == state.started_at
    assert loaded.started_at is not None
    assert loaded.started_at.utcoffset() == timedelta(hours=1)


def test_the_file_is_0600_in_a_new_0700_directory(path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        state_store.save(path, active_state())
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_existing_directory_keeps_its_mode(path: Path) -> None:
    path.parent.mkdir(parents=True, mode=0o755)
    os.chmod(path.parent, 0o755)
    state_store.save(path, active_state())
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_write_atomic_writes_other_files_privately(path: Path) -> None:
    target = path.with_name("applied.json")
    state_store.write_atomic(target, b'{"names": []}')
    assert target.read_bytes() == b'{"names": []}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_decode_inverts_encode_without_json(path: Path) -> None:
    state = active_state()
    assert state_store.decode(state_store.encode(state)) == state


def test_saving_a_changed_ratchet_writes_the_new_names(path: Path) -> None:
    state = active_state(frozenset({"a.com"}))
    state_store.save(path, state)
    state = detox.update_ratchet(state, {"b.com"})
    state_store.save(path, state)
    assert json.loads(path.read_text())["ratchet"] == ["a.com", "b.com"]


def test_saving_again_replaces_and_leaves_no_temporary_files(path: Path) -> None:
    state_store.save(path, active_state())
    state_store.save(path, DetoxState())
    assert state_store.load(path) == DetoxState()
    assert os.listdir(path.parent) == [path.name]


def test_a_failed_serialisation_keeps_the_old_file(path: Path) -> None:
    state_store.save(path, active_state())
    before = path.read_bytes()
    unserialisable = replace(active_state(), credited_seconds=float("nan"))
    with pytest.raises(ValueError):
        state_store.save(path, unserialisable)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_a_failed_write_keeps_the_old_file_and_cleans_up(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_store.save(path, active_state())
    before = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        state_store.save(path, DetoxState())
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_a_failed_rename_keeps_the_old_file(path: Path) -> None:
    state_store.save(path, active_state())
    before = path.read_bytes()
    path.with_name("blocker").mkdir()
    # Renaming a file over a directory fails; the target is the only thing that differs.
    with pytest.raises(OSError):
        state_store.save(path.with_name("blocker"), DetoxState())
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["blocker", path.name]


@pytest.mark.parametrize(
    "text",
    ["", "{", "not json", "[1, 2]", '"text"', "\xff\xfe"],
    ids=["empty", "truncated", "garbage", "list", "string", "binary"],
)
def test_unreadable_content_is_corrupt(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(CorruptStateError) as caught:
        state_store.load(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == text.encode("latin-1")  # the daemon decides, not load


@pytest.mark.parametrize(
    "change",
    [
        {"version": None},
        {"version": "1"},
        {"version": 0},
        {"version": True},
        {"phase": "paused"},
        {"locked": "yes"},
        {"locked": 1},
        {"started_at": "yesterday"},
        {"started_at": "2024-03-01T09:00:00"},
        {"duration_seconds": -1},
        {"duration_seconds": "14d"},
        {"credited_seconds": None},
        {"tamper_events": 1.5},
        {"tamper_events": -1},
        {"clock_jumps": True},
        {"checkpoint": None},
        {"checkpoint": []},
        {"checkpoint": {"wall": None, "boot_id": "b", "boot_seconds": 1}},
        {"checkpoint": {"wall": "2024-03-01T09:00:00+00:00", "boot_id": 7, "boot_seconds": 1}},
        {"ratchet": "a.com"},
        {"ratchet": ["a.com", 7]},
        {"ratchet": [["a.com"]]},
    ],
)
def test_a_wrong_shape_is_corrupt(path: Path, change: dict[str, Any]) -> None:
    document = state_store.encode(active_state())
    document.update(change)
    write_document(path, document)
    with pytest.raises(CorruptStateError):
        state_store.load(path)


@pytest.mark.parametrize("key", ["phase", "ratchet", "checkpoint", "started_at"])
def test_a_missing_key_is_corrupt(path: Path, key: str) -> None:
    document = state_store.encode(active_state())
    del document[key]
    write_document(path, document)
    with pytest.raises(CorruptStateError, match=key):
        state_store.load(path)


def test_nan_in_the_file_is_corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True)
    text = json.dumps(state_store.encode(active_state()))
    path.write_text(text.replace('"credited_seconds":', '"credited_seconds": NaN, "x":'))
    with pytest.raises(CorruptStateError):
        state_store.load(path)


def test_a_newer_version_is_refused_with_its_own_error(path: Path) -> None:
    document = state_store.encode(active_state())
    document["version"] = state_store.FORMAT_VERSION + 1
    write_document(path, document)
    with pytest.raises(NewerStateVersionError, match="newer") as caught:
        state_store.load(path)
    assert isinstance(caught.value, StateFileError)


def test_a_large_ratchet_round_trips(path: Path) -> None:
    names = frozenset(f"host{i}.example.com" for i in range(50_000))
    state = active_state(names)
    state_store.save(path, state)
    assert state_store.load(path).ratchet == names


@given(
    phase_is_active=st.booleans(),
    locked=st.booleans(),
    credited=st.floats(min_value=0, max_value=1e7),
    boot_seconds=st.floats(min_value=0, max_value=1e9),
    boot_id=st.text(),
    # detoxd writes only valid names
    names=st.frozensets(st.from_regex(r"[a-z0-9]{1,12}\.[a-z]{2,6}", fullmatch=True)),
    counters=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    offset_minutes=st.integers(-14 * 60 + 1, 14 * 60 - 1),
)
def test_encode_then_decode_is_the_identity(
    phase_is_active: bool,
    locked: bool,
    credited: float,
    boot_seconds: float,
    boot_id: str,
    names: frozenset[str],
    counters: tuple[int, int],
    offset_minutes: int,
) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    moment = datetime(2024, 3, 1, 9, 0, 0, 123456, tzinfo=zone)
    state = DetoxState(
        phase=Phase.ACTIVE if phase_is_active else Phase.IDLE,
        locked=locked,
        started_at=moment if phase_is_active else None,
        duration_seconds=14 * 86_400.0,
        credited_seconds=credited,
        checkpoint=Checkpoint(moment, BootReading(boot_id, boot_seconds))
        if phase_is_active
        else None,
        ratchet=names,
        tamper_events=counters[0],
        clock_jumps=counters[1],
    )
    document = json.loads(json.dumps(state_store.encode(state)))
    assert state_store.decode(document) == state


def test_a_large_ratchet_lives_in_a_side_file_written_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    boot = detox.BootReading("b", 10.0)
    started = detox.start(detox.DetoxState(), now=datetime(2026, 1, 1, tzinfo=UTC), boot=boot,
                          days=14, locked=True)
    assert isinstance(started, detox.DetoxState)
    names = frozenset(f"n{i}.example" for i in range(state_store.INLINE_RATCHET_MAX + 1))
    state = detox.update_ratchet(started, names)
    state_store.save(path, state)
    side_files = list(tmp_path.glob("state.ratchet-*.json"))
    assert len(side_files) == 1
    assert len(path.read_bytes()) < 2000  # the checkpoint itself stays small
    mtime = side_files[0].stat().st_mtime_ns
    state_store.save(path, detox.record_tamper(state))  # same ratchet: the side file is not rewritten
    assert side_files[0].stat().st_mtime_ns == mtime
    assert state_store.load(path).ratchet == names and state_store.load(path).tamper_events == 1
    bigger = detox.update_ratchet(state, {"extra.example"})
    state_store.save(path, bigger)
    assert [p.name for p in tmp_path.glob("state.ratchet-*.json")] != [side_files[0].name]
    assert len(list(tmp_path.glob("state.ratchet-*.json"))) == 1  # the stale one is gone
    assert state_store.load(path).ratchet == names | {"extra.example"}


def test_a_missing_side_file_is_a_corrupt_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "ratchet": {"file": "state.ratchet-" + "0" * 32 + ".json"}}))
    with pytest.raises(CorruptStateError):
        state_store.load(path)


def test_a_peer_lock_round_trips_and_holds_no_secret(path: Path) -> None:
    from detoxd.core import peerkey

    secret = b"S" * 16
    kdf = peerkey.KdfParams(n=2**14)
    shares = peerkey.split(secret, ["Ada", "Grace", "Alan"], 2, identifier=4321, salt=b"x" * 16, kdf=kdf)
    state = detox.start(DetoxState(), now=START, boot=BootReading("boot-1", 1.0), days=14, locked=True,
                        peer_lock=shares.verifier)
    assert isinstance(state, DetoxState) and state.peer_lock is not None
    state = replace(state, peer_lock=replace(state.peer_lock, failed_attempts=4, retry_at=120.0),
                    past_share_sets=(peerkey.KnownSet(99, START - timedelta(days=30)),))
    state_store.save(path, state)
    assert state_store.load(path) == state
    text = path.read_text()
    for value in (secret.hex(), peerkey.proof(secret, b"x" * 16, kdf).hex(), *shares.shares):
        assert value not in text


def test_a_state_without_peer_keys_still_loads(path: Path) -> None:
    document = state_store.encode(active_state())
    del document["peer_lock"], document["past_share_sets"]
    write_document(path, document)
    state = state_store.load(path)
    assert state.peer_lock is None and state.past_share_sets == ()


def _large_saved_state(tmp_path: Path) -> tuple[Path, Path, frozenset[str]]:
    path = tmp_path / "state.json"
    names = frozenset(f"n{i}.example" for i in range(state_store.INLINE_RATCHET_MAX + 1))
    state_store.save(path, active_state(names))
    state_store._written_ratchets.clear()  # as a new process: nothing known about the file
    (side_file,) = tmp_path.glob("state.ratchet-*.json")
    return path, side_file, names


def _count_validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from detoxd.core import domains

    calls: list[int] = []
    original = domains.parse_list_text

    def counting(text: str, **kwargs: Any) -> Any:
        calls.append(text.count("\n") + 1)
        return original(text, **kwargs)

    monkeypatch.setattr(domains, "parse_list_text", counting)
    return calls


def test_a_side_file_detoxd_wrote_is_not_validated_again(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path, _side_file, names = _large_saved_state(tmp_path)
    calls = _count_validations(monkeypatch)
    assert state_store.load(path).ratchet == names
    assert calls == []  # its digest matches: every name passed validation before it was written


def test_a_side_file_changed_since_detoxd_wrote_it_is_validated_name_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    path, side_file, names = _large_saved_state(tmp_path)
    edited = sorted(names | {"added-by-hand.example"})
    side_file.write_text(json.dumps(edited, separators=(",", ":")))  # same name, other bytes
    calls = _count_validations(monkeypatch)
    assert state_store.load(path).ratchet == frozenset(edited)  # valid names: kept, all of them
    assert calls == [len(edited)]
    assert "does not match the digest" in caplog.text


def test_a_side_file_with_a_wrong_digest_and_a_bad_name_is_refused(tmp_path: Path) -> None:
    path, side_file, names = _large_saved_state(tmp_path)
    side_file.write_text(json.dumps([*sorted(names), "evil.example\n1.2.3.4 bank.example"]))
    with pytest.raises(CorruptStateError, match="never writes"):
        state_store.load(path)


def test_a_side_file_someone_else_could_write_is_validated_even_with_its_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, side_file, names = _large_saved_state(tmp_path)
    for make_unsafe, undo in (
            (lambda: side_file.chmod(0o622), lambda: side_file.chmod(0o600)),
            (lambda: tmp_path.chmod(0o777), lambda: tmp_path.chmod(0o700)),
            (lambda: os.chown(side_file, 4242, -1), lambda: os.chown(side_file, os.geteuid(), -1))):
        make_unsafe()
        calls = _count_validations(monkeypatch)
        assert state_store.load(path).ratchet == names
        assert calls == [len(names)]
        undo()
        state_store._written_ratchets.clear()


def test_the_paths_ratchet_and_the_applied_paths_round_trip_and_are_checked(path: Path) -> None:
    state = replace(active_state(), paths_ratchet=frozenset({"linkedin.com/feed", "youtube.com/shorts"}))
    state_store.save(path, state)
    assert state_store.load(path) == state
    assert "paths_ratchet" not in state_store.encode(active_state())  # absent: older files read alike
    applied = state_store.Applied(frozenset({"a.example.com"}), ("a.example.com",), 14.0, True,
                                  paths=("linkedin.com/feed",))
    assert state_store.decode_applied(json.loads(state_store.encode_applied(applied))) == applied
    bad = dict(json.loads(state_store.encode_applied(applied)), paths=["linkedin.com/feed\n0.0.0.0 x.com"])
    with pytest.raises(ValueError, match="never writes"):
        state_store.decode_applied(bad)

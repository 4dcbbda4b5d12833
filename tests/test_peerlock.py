"""The CLI side of the peer lock: where the cards may be written, and how shares are read."""

from __future__ import annotations

import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detoxd import peerlock
from detoxd.core import peerkey
from detoxd.core.config import parse_main
from detoxd.paths import Paths
from detoxd.peerlock import PeerLockError

HOLDERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]
CONFIG = "detox:\n  lock: peers\n  peers_needed: 2\npeers: [Ada Lovelace, Grace Hopper, Alan Turing]\n"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "config", tmp_path / "state", tmp_path / "hosts", tmp_path / "sock")


def prepare(tmp_path: Path, paths: Paths, directory: Path) -> tuple[dict[str, Any], list[Path]]:
    main, source = parse_main(CONFIG)
    assert main is not None and not source.errors
    return peerlock.prepare_start(main, directory, paths, 14, NOW)


def test_cards_are_written_private_and_the_verifier_matches_them(tmp_path: Path, paths: Paths) -> None:
    verifier_json, written = prepare(tmp_path, paths, tmp_path / "cards")
    assert [path.name for path in written] == [
        "1-ada-lovelace.txt", "2-grace-hopper.txt", "3-alan-turing.txt"]
    assert stat.S_IMODE((tmp_path / "cards").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in written)
    verifier = peerkey.verifier_from_json(verifier_json)
    assert verifier.kdf == peerkey.DEFAULT_KDF and verifier.holders == tuple(HOLDERS)
    assert "Dear Grace," in written[1].read_text()


@pytest.mark.parametrize("setup, message", [
    (lambda d: (d.mkdir(), d.chmod(0o777)), "writable by other users"),
    (lambda d: (d.parent.joinpath("real").mkdir(), d.symlink_to(d.parent / "real")), "not a symlink"),
    (lambda d: (d.mkdir(), (d / "2-grace-hopper.txt").write_text("old")), "exists already"),
    (lambda d: (d.mkdir(), (d / "1-ada-lovelace.txt").symlink_to("/etc/passwd")), "exists already"),
])
def test_unsafe_directories_are_refused_and_nothing_is_left(
        tmp_path: Path, paths: Paths, setup: Any, message: str) -> None:
    directory = tmp_path / "cards"
    setup(directory)
    before = sorted(os.listdir(directory))
    with pytest.raises(PeerLockError, match=message):
        prepare(tmp_path, paths, directory)
    assert sorted(os.listdir(directory)) == before


def test_the_state_directory_is_refused(tmp_path: Path, paths: Paths) -> None:
    with pytest.raises(PeerLockError, match="must not go into the state directory"):
        prepare(tmp_path, paths, paths.state_dir / "cards")


def test_other_locks_refuse_shares_out(tmp_path: Path, paths: Paths) -> None:
    main, _ = parse_main("detox:\n  lock: true\n")
    assert main is not None
    with pytest.raises(PeerLockError, match="--shares-out is for `lock: peers`") as error:
        peerlock.prepare_start(main, tmp_path / "cards", paths, 14, NOW)
    assert error.value.code == peerlock.EXIT_USAGE and not (tmp_path / "cards").exists()


def test_sudo_user_owns_the_cards(tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    _, written = prepare(tmp_path, paths, tmp_path / "cards")
    for path in [tmp_path / "cards", *written]:
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)


class FakeDaemon:
    """Answers like the engine would; records what was sent."""

    def __init__(self, share_set: peerkey.ShareSet) -> None:
        self.verifier = share_set.verifier
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, command: str, **args: Any) -> dict[str, Any]:
        self.sent.append((command, args))
        if command == "peer_lock":
            v = self.verifier
            return {"ok": True, "needed": v.needed, "holders": list(v.holders), "share_set": v.share_set,
                    "salt": v.salt.hex(), "kdf": {"n": v.kdf.n, "r": v.kdf.r, "p": v.kdf.p},
                    "failed_attempts": 0, "retry_in_seconds": 0, "earlier_share_sets": []}
        ok = peerkey.accepts(self.verifier, bytes.fromhex(args["peers_proof"]))
        return {"ok": True} if ok else {"ok": False, "error": "the shares do not open this detox"}


def test_piped_shares_end_it_and_all_problems_are_named_together() -> None:
    share_set = peerkey.split(bytes(16), HOLDERS, 2, identifier=7, salt=b"s" * 16,
                              kdf=peerkey.KdfParams(n=2**14))
    daemon = FakeDaemon(share_set)
    bad_first = share_set.shares[0].replace(share_set.shares[0].split()[5], "zzzz", 1)
    err = io.StringIO()
    code = peerlock.end_with_peers(daemon, io.StringIO(f"{bad_first}\n{share_set.shares[0]}\n"), err)
    assert code == 3 and "share 1: word" in err.getvalue() and "zzzz" in err.getvalue()
    assert [command for command, _ in daemon.sent] == ["peer_lock"]  # nothing sent to end
    err = io.StringIO()
    piped = io.StringIO(f"\n{share_set.shares[2]}\n\n{share_set.shares[1]}\n")  # blank lines skipped
    code = peerlock.end_with_peers(daemon, piped, err)
    assert code == 0, err.getvalue()
    command, args = daemon.sent[-1]
    assert command == "end" and set(args) == {"peers_proof"}
    assert all(word not in args["peers_proof"] for word in share_set.shares[2].split())


def test_a_new_share_set_never_reuses_an_earlier_identifier() -> None:
    free = 12345
    taken = set(range(peerkey.IDENTIFIER_LIMIT)) - {free}
    assert peerlock._new_identifier(taken) == free

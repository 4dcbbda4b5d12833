"""`lock: peers` in the Engine, in-process: real SLIP-39 shares, real scrypt (at N=2**14, the
smallest the daemon accepts, to keep this fast), a real state directory, a FakeClock."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detoxd.clock import FakeClock
from detoxd.core import peerkey
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service.engine import Engine
from tests.service.enginekit import ROOT, scratch_paths

FAST = peerkey.KdfParams(n=2**14)
HOLDERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Tim Berners-Lee"]
PEERS_CONFIG = ("detox:\n  days: 14\n  lock: peers\n  peers_needed: 3\npeers:\n"
                + "".join(f"  - {name}\n" for name in HOLDERS))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return scratch_paths(tmp_path, blocklist="domains: [twitter.com]\n", main=PEERS_CONFIG,
                         hosts=b"127.0.0.1 localhost\n")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


def start(engine: Engine, identifier: int = 4242) -> tuple[peerkey.ShareSet, bytes]:
    secret = bytes([identifier % 256]) * 16
    share_set = peerkey.split(secret, HOLDERS, 3, identifier=identifier, salt=b"s" * 16, kdf=FAST)
    reply = engine.handle({"cmd": "start", "peer_lock": peerkey.verifier_to_json(share_set.verifier)}, ROOT)
    assert reply["ok"], reply
    return share_set, secret


def proof_from(share_set: peerkey.ShareSet, chosen: tuple[int, ...]) -> str:
    shares = [peerkey.read_share(share_set.shares[i], number=n, verifier_set=share_set.verifier.share_set,
                                 needed=3, holders=HOLDERS) for n, i in enumerate(chosen, 1)]
    return peerkey.proof(peerkey.combine(shares, HOLDERS), b"s" * 16, FAST).hex()


def end(engine: Engine, proof: str) -> dict[str, Any]:
    return engine.handle({"cmd": "end", "peers_proof": proof}, ROOT)


def test_status_shows_lock_peers_and_how_many_are_needed(engine: Engine) -> None:
    start(engine)
    status = engine.status()
    assert status["lock"] == "peers" and status["peers_needed"] == 3 and status["locked"] is True
    assert status["peer_lock"]["holders"] == HOLDERS
    assert status["peer_lock"]["share_set"] == peerkey.set_words(4242)
    assert engine.handle({"cmd": "peer_lock"}, Peer(2, 1000, 1000))["needed"] == 3  # public values


def test_any_three_of_five_end_it_all_ten_combinations(engine: Engine) -> None:
    for number, chosen in enumerate(itertools.combinations(range(5), 3)):
        share_set, _ = start(engine, identifier=100 + number)
        assert engine.handle({"cmd": "end"}, ROOT)["code"] == "refused"  # plain end never works
        reply = end(engine, proof_from(share_set, chosen))
        assert reply["ok"], (chosen, reply)
        assert reply["status"]["state"] == "idle" and reply["status"]["domains_blocked"] == 0


def test_a_wrong_proof_is_refused_counted_and_persisted(
        engine: Engine, paths: Paths, clock: FakeClock) -> None:
    share_set, _ = start(engine)
    for _ in range(3):
        reply = end(engine, "00" * 32)
        assert reply["code"] == "refused" and "do not open this detox" in reply["error"]
    assert reply["failed_attempts"] == 3 and reply["retry_in_seconds"] == 60
    # A restart does not reset the count or the wait: each failure was saved before the reply
    # (this engine is not shut down: like after kill -9, only what it saved counts).
    again = Engine(paths, clock)
    again.boot()
    waiting = end(again, proof_from(share_set, (0, 1, 2)))
    assert not waiting["ok"] and "checked in 1 minute" in waiting["error"]
    clock.advance(61)
    again.tick()
    assert end(again, proof_from(share_set, (0, 1, 2)))["ok"]
    again.shutdown()


def test_plain_start_is_refused_when_the_config_says_peers(engine: Engine) -> None:
    reply = engine.handle({"cmd": "start"}, ROOT)
    assert reply["code"] == "refused" and "--shares-out DIR" in reply["error"]
    assert engine.status()["state"] == "idle"


def test_a_verifier_for_another_lock_or_threshold_is_refused(engine: Engine, paths: Paths) -> None:
    other = peerkey.split(bytes(16), HOLDERS, 2, identifier=1, salt=b"s" * 16, kdf=FAST)
    reply = engine.handle({"cmd": "start", "peer_lock": peerkey.verifier_to_json(other.verifier)}, ROOT)
    assert reply["code"] == "refused" and "peers_needed: 3" in reply["error"]
    weak = {**peerkey.verifier_to_json(other.verifier), "n": 2}
    assert engine.handle({"cmd": "start", "peer_lock": weak}, ROOT)["code"] == "bad_request"
    (paths.config_dir / "detoxd.yaml").write_text("detox:\n  lock: true\n")
    engine.reload()
    reply = engine.handle({"cmd": "start", "peer_lock": peerkey.verifier_to_json(other.verifier)}, ROOT)
    assert reply["code"] == "refused" and "`lock: true`" in reply["error"]


def test_malformed_proofs_are_bad_requests_not_attempts(engine: Engine) -> None:
    start(engine)
    for proof in ("zz", "00" * 31, 42, None):
        assert end(engine, proof)["code"] == "bad_request"  # type: ignore[arg-type]
    assert engine.status()["peer_lock"]["failed_attempts"] == 0


def test_the_state_directory_holds_the_verifier_but_no_secret_or_share(engine: Engine, paths: Paths) -> None:
    share_set, secret = start(engine)
    engine.checkpoint()
    proof = proof_from(share_set, (1, 3, 4))
    assert not end(engine, "11" * 32)["ok"]
    everything = b"".join(path.read_bytes() for path in paths.state_dir.rglob("*") if path.is_file())
    document = json.loads((paths.state_dir / "state.json").read_text())
    assert document["peer_lock"]["verifier"]["share_set"] == 4242
    for value in (secret.hex(), secret.hex().upper(), proof, *share_set.shares,
                  *(" ".join(share.split()[3:6]) for share in share_set.shares)):
        assert value.encode() not in everything
    assert secret not in everything


def test_a_planned_peer_locked_detox_begins_with_the_cards_written_when_planned(
        paths: Paths, clock: FakeClock) -> None:
    from zoneinfo import ZoneInfo

    from detoxd.service import state_store

    share_set = peerkey.split(b"p" * 16, HOLDERS, 3, identifier=77, salt=b"s" * 16, kdf=FAST)
    verifier = peerkey.verifier_to_json(share_set.verifier)
    engine = Engine(paths, clock)
    engine.detox.local_zone = lambda: ZoneInfo("UTC")
    engine.boot()
    try:
        missing = engine.handle({"cmd": "start", "at": "2026-12-03 09:00"}, ROOT)
        assert missing["code"] == "refused" and "--shares-out" in missing["error"]
        reply = engine.handle({"cmd": "start", "at": "2026-12-03 09:00", "peer_lock": verifier}, ROOT)
        assert reply["ok"] and reply["status"]["state"] == "scheduled"
        saved = state_store.load(paths.state_file).planned
        assert saved is not None and saved.peer_lock == share_set.verifier and saved.locked
        clock.advance(2 * 86400)
        engine.tick()
        status = engine.status()
        assert status["state"] == "active" and status["lock"] == "peers"
        assert status["peer_lock"]["share_set"] == peerkey.set_words(77)
    finally:
        engine.shutdown()

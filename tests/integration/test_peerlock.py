"""`detox.lock: peers` end to end: the real daemon, the real CLI (through a pipe and a real
pseudo-terminal), real SLIP-39 shares read off the peers' card files, and a recording relay in
front of the control socket so that the test can grep every byte the CLI and the daemon
exchanged for the secret and the shares."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import shamir_mnemonic
from conftest import DetoxdEnv, wait_for
from test_status_schema import schema_errors

from detoxd.core import peerkey

HOLDERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Tim Berners-Lee"]
PEERS_CONFIG = ("detox:\n  days: 14\n  lock: peers\n  peers_needed: 3\n"
                "me: {name: Robert Craven}\npeers:\n" + "".join(f"  - {name}\n" for name in HOLDERS))
CARD_WORD = re.compile(r"(\d+) ([a-z]+)")
GRID_ROW = re.compile(r"(\s*\d{1,2} [a-z]+)+")
NOBODY = 65534


class RecordingRelay:
    """A Unix socket that forwards to the daemon's and keeps a copy of every byte both ways."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path, self.target = path, target
        self.traffic = bytearray()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(str(self.target))
        peers = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 30)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    with self._lock:
                        self.traffic += data
                    peers[sock].sendall(data)
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()


@pytest.fixture
def peer_env(detoxd_env: DetoxdEnv) -> Iterator[tuple[DetoxdEnv, RecordingRelay]]:
    detoxd_env.write_main(PEERS_CONFIG)
    detoxd_env.start_daemon()
    relay = RecordingRelay(detoxd_env.socket.parent / "relay.sock", detoxd_env.socket)
    yield detoxd_env, relay
    relay.close()


def run(env: DetoxdEnv, relay: RecordingRelay, *args: str, stdin: str = "",
        extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**env.env, "DETOXD_SOCKET": str(relay.path), **(extra or {})}
    return subprocess.run([sys.executable, "-m", "detoxd", *args], env=environment, input=stdin,
                          capture_output=True, text=True, timeout=60)


def read_card(path: Path) -> str:
    return read_card_text(path.read_text())


def read_card_text(text: str) -> str:
    """The 20 words as a person reads them off the printed card (numbered, in columns)."""
    rows = [line.strip("| ") for line in text.splitlines() if line.startswith("|")]
    grid = [row for row in rows if GRID_ROW.fullmatch(row)]
    words = {int(number): word for row in grid for number, word in CARD_WORD.findall(row)}
    assert sorted(words) == list(range(1, 21)), words
    return " ".join(words[number] for number in range(1, 21))


def start_with_cards(env: DetoxdEnv, relay: RecordingRelay, cards: Path) -> list[str]:
    result = run(env, relay, "start", "--shares-out", str(cards),
                 extra={"SUDO_UID": str(NOBODY), "SUDO_GID": str(NOBODY)})
    assert result.returncode == 0, result.stderr
    assert "3 of them end the detox early" in result.stdout
    files = sorted(cards.glob("*.txt"))
    assert [path.name for path in files] == ["1-ada-lovelace.txt", "2-grace-hopper.txt", "3-alan-turing.txt",
                                             "4-katherine-johnson.txt", "5-tim-berners-lee.txt"]
    for path in [*files, cards]:
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)  # the user behind sudo prints them
        assert stat.S_IMODE(info.st_mode) == (0o700 if path == cards else 0o600)
    assert "Dear Ada," in files[0].read_text() and "Robert Craven" in files[0].read_text()
    return [read_card(path) for path in files]


def lines(*shares: str) -> str:
    return "".join(f"{share}\n" for share in shares)


def test_three_of_five_end_it_two_do_not_and_nothing_secret_is_kept(
        peer_env: tuple[DetoxdEnv, RecordingRelay], tmp_path: Path) -> None:
    env, relay = peer_env
    refused = run(env, relay, "start")
    assert refused.returncode == 3 and "--shares-out DIR" in refused.stderr
    shares = start_with_cards(env, relay, tmp_path / "cards")
    status = env.status()
    assert status["lock"] == "peers" and status["peers_needed"] == 3 and status["state"] == "active"
    assert len(status["peer_lock"]["holders"]) == 5 and schema_errors(status) == [[]]  # the contract
    assert "lock: peers, 3 peers' cards end it early" in env.cli("status").stdout

    plain = run(env, relay, "end")
    assert plain.returncode == 3 and "end --with-peers" in plain.stderr
    not_root = env.cli("end", "--with-peers", user=NOBODY)
    assert not_root.returncode == 3 and "needs root" in not_root.stderr  # before asking for shares
    two = run(env, relay, "end", "--with-peers", stdin=lines(shares[0], shares[3]))
    assert two.returncode == 3 and "3 shares are needed, one per line; got 2" in two.stderr
    words = shares[1].split()
    words[11] = "acid" if words[11] != "acid" else "acne"
    typo = run(env, relay, "end", "--with-peers", stdin=lines(shares[0], " ".join(words), shares[4]))
    assert typo.returncode == 3
    assert f"share 2: word 12 ('{words[11]}') is wrong" in typo.stderr
    assert env.status()["state"] == "active"

    # A restart, then a reboot (the state's checkpoint moved to another boot): still peer-locked.
    env.stop_daemon()
    env.start_daemon()
    env.stop_daemon()
    state = json.loads((env.state_dir / "state.json").read_text())
    state["checkpoint"]["boot_id"] = "an-earlier-boot"
    (env.state_dir / "state.json").write_text(json.dumps(state))
    env.start_daemon()
    assert env.status()["lock"] == "peers"
    assert run(env, relay, "end").returncode == 3

    ended = run(env, relay, "end", "--with-peers", stdin=lines(shares[4], shares[2], shares[0]))
    assert ended.returncode == 0, ended.stderr
    assert "Tim Berners-Lee, Alan Turing and Ada Lovelace" in ended.stdout
    assert env.status()["state"] == "idle"
    assert b"twitter.com" not in env.hosts.read_bytes()

    secret = shamir_mnemonic.combine_mnemonics(shares[:3])
    verifier = peerkey.verifier_from_json(state["peer_lock"]["verifier"])
    proof = peerkey.proof(secret, verifier.salt, verifier.kdf)
    assert peerkey.accepts(verifier, proof)  # the shares on the cards are this detox's
    forbidden = [secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret),
                 *(share.encode() for share in shares),
                 *(" ".join(share.split()[i:i + 3]).encode() for share in shares for i in range(3, 18))]
    stored = b"".join(path.read_bytes() for path in env.state_dir.rglob("*") if path.is_file())
    logs = env.log().encode()
    statuses = env.cli("status", "--json").stdout.encode()
    assert relay.traffic  # the CLI really talked through the relay
    for where, data in (("state dir", stored), ("daemon log", logs), ("status", statuses),
                        ("socket traffic", bytes(relay.traffic))):
        for value in forbidden:
            assert value not in data, f"{value[:12]!r}… found in the {where}"
    for where, data in (("state dir", stored), ("daemon log", logs)):
        assert proof.hex().encode() not in data, f"the proof is kept in the {where}"
    assert "detox ended early by uid 0 with the peers' shares" in env.log()
    from detoxd.service import journal

    events, _ = journal.read_events(journal.directory_for(env.state_dir))
    attempts = [event for event in events if event["kind"] == "peer_end_attempt"]
    assert [event["ended"] for event in attempts] == [True]  # typos never reached the daemon
    assert [event["reason"] for event in events if event["kind"] == "detox_ended"] == [
        "ended early with the peers' shares by uid 0"]


def test_a_share_of_an_earlier_detox_is_named_and_refused(
        peer_env: tuple[DetoxdEnv, RecordingRelay], tmp_path: Path) -> None:
    env, relay = peer_env
    first = start_with_cards(env, relay, tmp_path / "first")
    first_started = env.status()["started_at"][:10]
    assert run(env, relay, "end", "--with-peers", stdin=lines(*first[:3])).returncode == 0
    second = start_with_cards(env, relay, tmp_path / "second")
    mixed = run(env, relay, "end", "--with-peers", stdin=lines(second[0], first[1], second[2]))
    assert mixed.returncode == 3
    first_set = " ".join(first[1].split()[:2])
    assert f"share 2 (beginning '{first_set}') is from an earlier detox, started {first_started}" \
        in mixed.stderr
    assert env.status()["state"] == "active"
    assert run(env, relay, "end", "--with-peers", stdin=lines(*second[2:])).returncode == 0


def test_failed_proofs_are_rate_limited_across_restarts(
        peer_env: tuple[DetoxdEnv, RecordingRelay], tmp_path: Path) -> None:
    """A client of our own sends proofs that are wrong, as someone guessing would."""
    env, relay = peer_env
    shares = start_with_cards(env, relay, tmp_path / "cards")
    from detoxd.client import ControlClient

    client = ControlClient(env.socket)
    for _ in range(3):
        reply = client.request("end", peers_proof="ab" * 32)
        assert reply["code"] == "refused"
    assert reply["retry_in_seconds"] == 60
    env.stop_daemon(signal.SIGKILL)
    env.start_daemon()
    waiting = run(env, relay, "end", "--with-peers", stdin=lines(*shares[:3]))
    assert waiting.returncode == 3 and "3 failed attempts: the next one is checked in 1 min" in waiting.stderr
    assert env.status()["peer_lock"]["failed_attempts"] == 3
    # The CLI said so without sending anything; a client that sends anyway is refused unchecked.
    forced = ControlClient(env.socket).request("end", peers_proof="ab" * 32)
    assert forced["code"] == "refused" and "checked in 1 minute" in forced["error"]
    assert env.log().count("refused end with peers from uid 0") == 4
    from detoxd.service import journal

    events, _ = journal.read_events(journal.directory_for(env.state_dir))
    failed = [event for event in events if event["kind"] == "peer_end_attempt" and not event["ended"]]
    assert [event["failed_attempts"] for event in failed] == [1, 2, 3, 3]  # the last one was not checked


def test_the_cards_become_each_peers_own_invitation(
        peer_env: tuple[DetoxdEnv, RecordingRelay], tmp_path: Path) -> None:
    env, relay = peer_env
    env.write_main(PEERS_CONFIG + "sessions:\n  first: 2026-12-03 09:00\n  timezone: Europe/London\n")
    assert env.cli("reload").returncode == 0
    cards = tmp_path / "cards"
    shares = start_with_cards(env, relay, cards)
    result = run(env, relay, "sessions", "--ics", str(tmp_path / "invite.ics"), "--cards", str(cards),
                 "--notes", str(tmp_path / "notes.md"))
    assert result.returncode == 0, result.stderr
    own = (cards / "1-ada-lovelace.ics").read_bytes()
    assert stat.S_IMODE((cards / "1-ada-lovelace.ics").stat().st_mode) == 0o600
    assert b"ATTACH;ENCODING=BASE64;FMTTYPE=text/plain;VALUE=BINARY" in own
    unfolded = own.replace(b"\r\n ", b"")
    encoded = re.search(rb"ATTACH;[^:]*:([A-Za-z0-9+/=]+)", unfolded)
    assert encoded is not None and shares[0].encode() not in unfolded
    assert read_card_text(base64.b64decode(encoded.group(1)).decode()) == shares[0]
    assert b"ATTACH" not in (tmp_path / "invite.ics").read_bytes()  # the shared one has no card
    assert "**The early-end key.**" in (tmp_path / "notes.md").read_text()


def reap(pid: int, timeout: float = 60.0) -> int:
    """Wait for our child; kill it (only it) if it is still waiting for input after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            return code
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def test_shares_typed_at_a_terminal_are_not_echoed_and_a_typo_is_asked_again(
        peer_env: tuple[DetoxdEnv, RecordingRelay], tmp_path: Path) -> None:
    """A real pseudo-terminal as the CLI's controlling terminal: getpass turns echo off."""
    env, relay = peer_env
    shares = start_with_cards(env, relay, tmp_path / "cards")
    environment = {**env.env, "DETOXD_SOCKET": str(relay.path)}
    pid, master = pty.fork()
    if pid == 0:  # the child: its own session with the pty as controlling terminal
        os.execve(sys.executable, [sys.executable, "-m", "detoxd", "end", "--with-peers"], environment)
    output = bytearray()
    consumed = 0  # what expect() matched so far: a prompt seen before is not the next one

    def expect(text: bytes, timeout: float = 30.0) -> None:
        nonlocal consumed

        def seen() -> bool:
            readable, _, _ = select.select([master], [], [], 0.05)
            if readable:
                with contextlib.suppress(OSError):  # EIO once the child has exited
                    output.extend(os.read(master, 4096))
            return output.find(text, consumed) >= 0
        wait_for(seen, timeout=timeout, what=f"{text!r} in {bytes(output[consumed:])[-300:]!r}")
        consumed = output.find(text, consumed) + len(text)

    try:
        expect(b"Share 1 of 3: ")
        wrong = shares[3].split()
        wrong[0], wrong[1] = wrong[1], wrong[0]
        os.write(master, " ".join(wrong).encode() + b"\n")
        expect(b"words 1 and 2 are swapped")
        expect(b"Share 1 of 3: ")
        for number, share in enumerate((shares[3], shares[1], shares[0]), start=1):
            os.write(master, share.encode() + b"\n")
            expect(b"'s share: ok")
            if number < 3:
                expect(f"Share {number + 1} of 3: ".encode())
        expect(b"Detox ended early")
    finally:
        code = reap(pid)
        os.close(master)
    assert os.waitstatus_to_exitcode(code) == 0, bytes(output)
    shown = bytes(output).replace(b"\r\n", b" ")
    for share in shares:
        words = share.split()
        for pair in itertools.pairwise(words[2:]):  # any two typed words in a row
            assert " ".join(pair).encode() not in shown, "a share was echoed"
    assert env.status()["state"] == "idle"

"""The CLI side of `detox.lock: peers`: `start --shares-out DIR` and `end --with-peers`.

Everything secret happens here, in the CLI process run by root: the random secret is made,
split into the peers' shares and written to their files; later the typed shares are combined
and only a proof derived from the secret goes to the daemon (see :mod:`detoxd.core.peerkey`).
The daemon, its state directory and the socket never see the secret or a share.

Files in DIR are mode 0600 and, when run through sudo, owned by the invoking user (SUDO_UID and
SUDO_GID): that user prints or sends them, and no other local user can read them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import secrets
import stat
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from detoxd.core import ics, peercards, peerkey
from detoxd.core.config import MainConfig
from detoxd.core.plan import Plan
from detoxd.paths import Paths

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3

Ask = Callable[..., "dict[str, Any] | None"]


class PeerLockError(Exception):
    """A problem to tell the user, with the exit code to leave with."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


# ---- start ----

def prepare_start(main: MainConfig, directory: Path, paths: Paths, days: float,
                  now: datetime, taken: Iterable[int] = ()) -> tuple[dict[str, Any], list[Path]]:
    """Make the secret, write one file per peer into ``directory``; return the verifier to send
    with the start request and the files written (to remove if the daemon refuses).

    ``taken``: identifiers of earlier detoxes' share sets, not to be reused, so that a card of
    an earlier detox is always recognised as one."""
    settings = main.detox
    if not settings.peer_lock:
        raise PeerLockError(f"--shares-out is for `lock: peers`; {paths.config_dir}/detoxd.yaml "
                            f"has `lock: {settings.lock_mode.value}`", EXIT_USAGE)
    holders = [peer.name for peer in main.peers]
    owner = invoking_user()
    target = _cards_directory(directory, paths, owner)
    names = [peercards.file_name(number, holder) for number, holder in enumerate(holders, start=1)]
    write_private_files(target, [(name, "") for name in names], owner, dry_run=True)  # fail early
    secret = secrets.token_bytes(peerkey.SECRET_BYTES)
    share_set = peerkey.split(secret, holders, settings.peers_needed,
                              identifier=_new_identifier(set(taken)),
                              salt=secrets.token_bytes(peerkey.SALT_BYTES))
    del secret  # only the shares can bring it back
    ends_at = (now + timedelta(days=days)).astimezone()
    files = []
    for number, (holder, share) in enumerate(zip(holders, share_set.shares, strict=True), start=1):
        info = peercards.CardInfo(holder, number, len(holders), settings.peers_needed,
                                  main.me.name if main.me else None, days, ends_at,
                                  peerkey.set_words(share_set.verifier.share_set))
        files.append((names[number - 1], peercards.peer_file(info, share)))
    written = write_private_files(target, files, owner)
    return peerkey.verifier_to_json(share_set.verifier), written


def _new_identifier(taken: set[int]) -> int:
    while True:
        identifier = secrets.randbelow(peerkey.IDENTIFIER_LIMIT)
        if identifier not in taken:  # at most 20 of 32768 are
            return identifier


def invoking_user() -> tuple[int, int] | None:
    """The user behind sudo, who should own the cards; None when not run as root through sudo."""
    if os.geteuid() != 0:
        return None
    try:
        uid, gid = int(os.environ["SUDO_UID"]), int(os.environ["SUDO_GID"])
    except (KeyError, ValueError):
        return None
    return (uid, gid) if uid != 0 else None


def _cards_directory(directory: Path, paths: Paths, owner: tuple[int, int] | None) -> Path:
    target = Path(os.path.abspath(directory))
    state = Path(os.path.abspath(paths.state_dir))
    if target == state or state in target.parents:
        raise PeerLockError(f"{directory}: the shares must not go into the state directory {state}",
                            EXIT_USAGE)
    if not os.path.lexists(target):
        try:
            target.mkdir(mode=0o700)
        except OSError as error:
            raise PeerLockError(f"cannot create {directory}: {error.strerror}", EXIT_USAGE) from error
        if owner is not None:
            os.chown(target, *owner)
    return target


def write_private_files(directory: Path, files: Sequence[tuple[str, str]],
                        owner: tuple[int, int] | None, *, dry_run: bool = False) -> list[Path]:
    """Create each file in ``directory`` mode 0600, owned by ``owner``; all or none
    (``dry_run``: only check that they could be).

    The directory is opened without following a symlink and checked on the open descriptor,
    and each file is created relative to it, exclusively and without following a symlink:
    nothing another user placed there can redirect a share (the CLI runs as root)."""
    written: list[Path] = []
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise PeerLockError(f"cannot use {directory}: {error.strerror} (a directory of your own, "
                            "not a symlink)", EXIT_USAGE) from error
    try:
        _check_private_directory(directory, os.fstat(dir_fd), owner)
        for name, _ in files:
            with contextlib.suppress(FileNotFoundError):
                os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                raise PeerLockError(f"{directory / name} exists already (cards of an earlier detox?): "
                                    "use an empty directory", EXIT_USAGE)
        for name, text in [] if dry_run else files:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
            written.append(directory / name)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                if owner is not None:
                    os.fchown(handle.fileno(), *owner)
                os.fchmod(handle.fileno(), 0o600)
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        os.fsync(dir_fd)
    except BaseException:
        remove_files(written)
        raise
    finally:
        os.close(dir_fd)
    return written


def _check_private_directory(directory: Path, info: os.stat_result, owner: tuple[int, int] | None) -> None:
    allowed_owners = {0, os.geteuid()} | ({owner[0]} if owner else set())
    if info.st_uid not in allowed_owners or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Someone else could remove or replace a card there before it is printed.
        raise PeerLockError(f"{directory} is writable by other users or owned by someone else: "
                            "choose a directory of your own", EXIT_USAGE)


def remove_files(files: Iterable[Path]) -> None:
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()


def started_message(written: Sequence[Path], needed: int) -> str:
    names = "\n".join(f"  {path}" for path in written)
    return (f"The early-end key is split among {len(written)} peers; {needed} of them end the detox "
            f"early with `sudo detoxd end --with-peers`. One file per peer (mode 0600):\n{names}\n"
            "Print or send each file only to the person it names: detoxd keeps no copy.")


# ---- each peer's copy of the invitation ----

def write_invitations(directory: Path, plan: Plan, now: datetime) -> list[str]:
    """For each peer file in ``directory``, that peer's calendar invitation with the card
    attached, next to it (same owner, mode 0600). Returns what was written, for the user."""
    by_name = {peer.name.casefold(): peer for peer in plan.peers}
    lines: list[str] = []
    try:
        candidates = sorted(path for path in directory.iterdir() if path.suffix == ".txt")
    except OSError as error:
        raise PeerLockError(f"cannot read {directory}: {error.strerror}", EXIT_USAGE) from error
    for path in candidates:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            continue  # a symlink would let a user have root read a file that is not a card
        parsed = peercards.parse_card_file(path.read_text(encoding="utf-8", errors="replace"))
        if parsed is None:
            continue
        peer = by_name.get(parsed.holder.casefold())
        if peer is None:
            lines.append(f"{path}: {parsed.holder} is not among the peers in detoxd.yaml: skipped")
            continue
        target = path.with_suffix(".ics")
        info = os.lstat(path)
        owner = (info.st_uid, info.st_gid) if os.geteuid() == 0 else None
        target.unlink(missing_ok=True)  # an earlier export; the card may have changed since
        # Only this peer as attendee: a calendar that sends the invitation on import must not
        # mail one peer's card to the others.
        own_copy = dataclasses.replace(plan, peers=(peer,))
        calendar = ics.calendar(own_copy, now, attachment=(path.name, parsed.text)).decode()
        write_private_files(directory, [(target.name, calendar)], owner)
        lines.append(f"wrote {target}: {peer.name}'s invitation with their card (send it only to them)")
    if not lines:
        raise PeerLockError(f"no peer cards in {directory} (written by `sudo detoxd start "
                            "--shares-out DIR`)", EXIT_USAGE)
    return lines


# ---- end ----

def end_with_peers(ask: Ask, stdin: TextIO = sys.stdin, out: TextIO = sys.stderr) -> int:
    info = ask("peer_lock")
    if info is None:
        return 4
    if not info.get("ok"):
        print(f"detoxd: {info.get('error', 'refused')}", file=out)
        return EXIT_REFUSED
    if info["retry_in_seconds"] > 0:
        minutes = max(1, round(info["retry_in_seconds"] / 60))
        print(f"detoxd: {info['failed_attempts']} failed attempts: the next one is checked in "
              f"{minutes} min", file=out)
        return EXIT_REFUSED
    holders: list[str] = info["holders"]
    needed: int = info["needed"]
    earlier = [peerkey.KnownSet(item["share_set"], _parse_time(item["started_at"]))
               for item in info["earlier_share_sets"]]

    def read(text: str, number: int) -> peerkey.Share:
        return peerkey.read_share(text, number=number, verifier_set=info["share_set"], needed=needed,
                                  holders=holders, earlier=earlier)

    try:
        shares = (_ask_shares if stdin.isatty() else _read_share_lines)(read, needed, holders, stdin, out)
        secret = peerkey.combine(shares, holders)
    except peerkey.ShareProblem as problem:
        print(f"detoxd: {problem}", file=out)
        return EXIT_REFUSED
    kdf = peerkey.KdfParams(info["kdf"]["n"], info["kdf"]["r"], info["kdf"]["p"])
    print("Checking the shares …", file=out)
    proof = peerkey.proof(secret, bytes.fromhex(info["salt"]), kdf).hex()
    del secret
    response = ask("end", peers_proof=proof)
    if response is None:
        return 4
    if not response.get("ok"):
        print(f"detoxd: {response.get('error', 'refused')}", file=out)
        return EXIT_REFUSED
    names = [peerkey.holder_of(share, holders) for share in shares]
    print(f"Detox ended early with the shares of {_and(names)}; the block is gone.")
    return EXIT_OK


def _ask_shares(read: Callable[[str, int], peerkey.Share], needed: int, holders: Sequence[str],
                _stdin: TextIO, out: TextIO) -> list[peerkey.Share]:
    """One peer at a time, without echo; a wrong share is named at once and asked for again."""
    print(f"Ending early needs {needed} of the {len(holders)} peers' cards. Type each card's 20 "
          "words (not shown); the first four letters of each word are enough.", file=out)
    shares: list[peerkey.Share] = []
    while len(shares) < needed:
        number = len(shares) + 1
        try:
            with warnings.catch_warnings():
                # getpass falls back to an echoing read when it cannot switch echo off: refuse that.
                warnings.simplefilter("error", getpass.GetPassWarning)
                text = getpass.getpass(f"Share {number} of {needed}: ", stream=out)
        except EOFError:
            raise peerkey.ShareProblem(f"stopped at share {number}: the detox goes on") from None
        except getpass.GetPassWarning:
            raise peerkey.ShareProblem("cannot switch the terminal's echo off: pipe the shares in "
                                       "instead, one per line") from None
        try:
            share = read(text, number)
            _check_new(share, shares, number, holders)
        except peerkey.ShareProblem as problem:
            print(f"  {problem}", file=out)
            continue
        shares.append(share)
        print(f"  {peerkey.holder_of(share, holders)}'s share: ok", file=out)
    return shares


def _read_share_lines(read: Callable[[str, int], peerkey.Share], needed: int, holders: Sequence[str],
                      stdin: TextIO, _out: TextIO) -> list[peerkey.Share]:
    """One share per line from a pipe; every problem of every share is named together."""
    lines = [line for line in stdin.read().splitlines() if line.strip()]
    if len(lines) != needed:
        raise peerkey.ShareProblem(f"{needed} shares are needed, one per line; got {len(lines)}")
    shares: list[peerkey.Share] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        try:
            share = read(line, number)
            _check_new(share, shares, number, holders)
            shares.append(share)
        except peerkey.ShareProblem as problem:
            problems.append(str(problem))
    if problems:
        raise peerkey.ShareProblem("\n".join(problems))
    return shares


def _check_new(share: peerkey.Share, shares: Sequence[peerkey.Share], number: int,
               holders: Sequence[str]) -> None:
    for earlier_number, earlier in enumerate(shares, start=1):
        if earlier.holder_index == share.holder_index:
            raise peerkey.ShareProblem(f"share {number} is {peerkey.holder_of(share, holders)}'s "
                                       f"again (already share {earlier_number}); ask another peer")


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

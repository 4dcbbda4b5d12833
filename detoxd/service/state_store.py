"""Atomic, versioned JSON persistence of :class:`~detoxd.core.detox.DetoxState`.

A save either leaves the old file or puts the complete new one in place: the JSON
goes to a temporary file in the same directory (mode 0600), is fsynced, renamed
over the state file with ``os.replace`` and the directory is fsynced so the rename
survives a power cut. Loading never modifies or removes a file: a corrupt file or
one written by a newer detoxd raises :class:`StateFileError` and the daemon decides.

What fixes a detox's end time is kept in more than one place (``save(..., copies=)``: a
backup beside the state file and a copy in the runtime directory, which survives the state
directory's removal until a reboot); :func:`load_first` reads the first usable one. Every read
is bounded (:data:`MAX_STATE_BYTES`, :data:`MAX_RATCHET_BYTES`), refuses anything but a regular
file (a directory, a FIFO, a symlink to ``/dev/zero``) and validates every value as strictly as
the config: each ratchet name must be one detoxd could have written. The last good blocklist
(``applied.json``) and the app rules a locked detox keeps are read and written here too.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

from detoxd.core import domains, peerkey
from detoxd.core.apps import AppRule, rules_from_json, rules_to_json
from detoxd.core.config import LockMode
from detoxd.core.detox import (
    DAYS_RULE,
    BootReading,
    Checkpoint,
    DetoxState,
    HeldTime,
    PeerLock,
    Phase,
    PlannedStart,
    checked_days,
)
from detoxd.core.paths import normalize_path
from detoxd.durable import replace_file

FORMAT_VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o700
MAX_STATE_BYTES = 4 << 20  # an inline ratchet holds at most INLINE_RATCHET_MAX names
MAX_RATCHET_BYTES = 256 << 20  # a side file of a few million names
MAX_RATCHET_NAMES = 4_000_000

_T = TypeVar("_T")
log = logging.getLogger(__name__)


class StateFileError(Exception):
    """The state file exists but cannot be used; it is left untouched."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CorruptStateError(StateFileError):
    """Not valid JSON, or not the shape detoxd writes."""


class NewerStateVersionError(StateFileError):
    """Written by a newer detoxd: refusing to guess at its meaning."""


class MissingRatchetError(StateFileError):
    """The state is readable but the ratchet side file it names is missing or damaged."""

    def __init__(self, path: Path, reason: str, state: DetoxState) -> None:
        super().__init__(path, reason)
        self.state = state  # with an empty ratchet: the end time is still known


def read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit``; FileNotFoundError when missing, else
    CorruptStateError for a directory, a device, a FIFO, a symlink or a file over ``limit``."""
    return _read_bounded(path, limit)[0]


def _read_bounded(path: Path, limit: int) -> tuple[bytes, os.stat_result]:
    """:func:`read_bounded`, and the file's status as it was read (its owner and mode)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as error:
        reason = "a symbolic link" if error.errno == errno.ELOOP else error.strerror
        raise CorruptStateError(path, f"cannot open: {reason}") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptStateError(path, "not a regular file")
        if info.st_size > limit:
            raise CorruptStateError(path, f"larger than {limit >> 20} MiB")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise CorruptStateError(path, f"larger than {limit >> 20} MiB")
        return b"".join(chunks), info
    except OSError as error:
        raise CorruptStateError(path, f"cannot read: {error.strerror}") from error
    finally:
        os.close(fd)


def set_aside(path: Path, suffix: str = ".corrupt") -> Path | None:
    """Move an unusable file (or a directory, a FIFO...) out of the way of the next save, kept
    as evidence; returns where it went, None when it could not be moved (logged, never raised)."""
    aside = path.with_suffix(suffix)
    try:
        if os.path.isdir(aside) and not os.path.islink(aside):
            return None  # an earlier one stays
        os.replace(path, aside)
    except OSError as exc:
        log.error("cannot move %s aside: %s", path, exc.strerror)
        return None
    return aside


def read_json(path: Path, limit: int = MAX_STATE_BYTES) -> Any:
    """A small JSON file of the state directory, bounded; CorruptStateError when unusable."""
    data = read_bounded(path, limit)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise CorruptStateError(path, f"not valid JSON: {_short(str(error))}") from error


def load_first(paths: Sequence[Path]) -> tuple[DetoxState | None, list[StateFileError]]:
    """The state from the first of ``paths`` that holds a usable one, and the problems met on
    the way. ``None`` when none exists (all missing) or none is usable (then the problems say why).

    A copy whose ratchet side file is gone counts as usable (its end time is known): it comes
    back as a MissingRatchetError in the problems, with the state in it.
    """
    problems: list[StateFileError] = []
    for path in paths:
        try:
            if not os.path.lexists(path):
                continue
            return load(path), problems
        except MissingRatchetError as error:
            problems.append(error)
            return error.state, problems
        except StateFileError as error:
            problems.append(error)
    return None, problems


def load(path: Path) -> DetoxState:
    """Read the state; a missing file is a fresh idle state."""
    try:
        text = read_bounded(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return DetoxState()
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # JSONDecodeError: ValueError
        raise CorruptStateError(path, f"not valid JSON: {_short(str(error))}") from error
    if not isinstance(document, dict):
        raise CorruptStateError(path, "expected a JSON object")
    _check_version(path, document.get("version"))
    reference = document.get("ratchet")
    try:
        document["ratchet"], verified = _load_ratchet(path, reference)
    except (KeyError, TypeError, ValueError, OSError, StateFileError) as error:
        if not isinstance(reference, dict):
            raise CorruptStateError(path, f"invalid state: {_short(str(error))}") from error
        document["ratchet"] = []
        state = _decode_checked(path, document)
        raise MissingRatchetError(path, f"ratchet file unusable: {_short(str(error))}", state) from error
    state = _decode_checked(path, document, verified)
    if isinstance(reference, dict):  # its side file holds this ratchet: the next save needs none
        _written_ratchets[path] = (state.ratchet, reference["file"])
    return state


def _decode_checked(path: Path, document: dict[str, Any],
                    ratchet: frozenset[str] | None = None) -> DetoxState:
    try:
        return decode(document, ratchet)
    except KeyError as error:
        raise CorruptStateError(path, f"missing key {error}") from error
    except (TypeError, ValueError, OverflowError) as error:
        raise CorruptStateError(path, f"invalid state: {_short(str(error))}") from error


def save(path: Path, state: DetoxState, *, copies: Sequence[Path] = ()) -> None:
    """Replace the state file atomically; on any error the previous file is intact.

    The same document then goes to each of ``copies`` (another place that knows the end time);
    a copy that cannot be written is skipped (OSError only when the state file itself failed).

    The daemon checkpoints every few seconds, but the ratchet (up to a million names) rarely
    changes: it goes to a side file named after its content, written only when it changed and
    before the state that names it, so a crash between the two leaves a consistent pair.
    """
    large = len(state.ratchet) > INLINE_RATCHET_MAX
    document = encode(state, with_ratchet=not large)
    side_file = _save_ratchet(path, state.ratchet) if large else None
    if side_file:
        document["ratchet"] = {"file": side_file}
    data = json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
    write_atomic(path, data)
    _remove_stale_ratchets(path, keep=side_file)
    for copy in copies:
        if copy.parent.is_dir():  # never create a directory for a copy (the runtime one is 0755)
            with contextlib.suppress(OSError):
                replace_file(copy, data, mode=FILE_MODE)


INLINE_RATCHET_MAX = 10_000  # presets and a few lists; beyond that, a side file
_RATCHET_FILE = re.compile(r"[A-Za-z0-9_-]+\.ratchet-[0-9a-f]{32}\.json")
# path -> (the ratchet last written for it, its side file): saving the same frozenset is free.
_written_ratchets: dict[Path, tuple[frozenset[str], str]] = {}


def _save_ratchet(path: Path, names: frozenset[str]) -> str:
    cached = _written_ratchets.get(path)
    if cached is not None and cached[0] is names and (path.parent / cached[1]).exists():
        return cached[1]
    data = json.dumps(_sorted_names(names), separators=(",", ":")).encode()
    name = f"{path.stem}.ratchet-{hashlib.sha256(data).hexdigest()[:32]}.json"
    if not (path.parent / name).exists():
        write_atomic(path.parent / name, data)
    _written_ratchets[path] = (names, name)
    return name


def _remove_stale_ratchets(path: Path, keep: str | None) -> None:
    for side_file in path.parent.glob(f"{path.stem}.ratchet-*.json"):
        if side_file.name != keep:
            with contextlib.suppress(OSError):
                side_file.unlink()


def _load_ratchet(path: Path, reference: object) -> tuple[list[str], frozenset[str] | None]:
    """The ratchet's names as stored (validated by :func:`decode`), and the same names as a set
    when they need no validation: a side file that detoxd wrote, unchanged since (see
    :func:`_written_by_us`)."""
    if isinstance(reference, list):  # small or older states keep the names inline
        return reference, None
    if not isinstance(reference, dict) or not isinstance(reference.get("file"), str):
        raise TypeError("ratchet must be a list or {'file': name}")
    name = reference["file"]
    if not _RATCHET_FILE.fullmatch(name):
        raise ValueError(f"invalid ratchet file name {name!r}")
    side_file = path.parent / name
    try:
        data, info = _read_bounded(side_file, MAX_RATCHET_BYTES)
    except FileNotFoundError as error:
        raise ValueError(f"{name} is missing") from error
    ours = _written_by_us(side_file, data, info)
    if ours and data.startswith(b'["') and data.endswith(b'"]') and data.isascii() and b"\\" not in data:
        # The bytes _save_ratchet wrote, no name escaped: json.dumps joined the names with
        # '","', so a split gives them back (three times as fast as json.loads at 1M names).
        names: list[str] = data[2:-2].decode("ascii").split('","')
    else:
        try:
            names = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            raise CorruptStateError(side_file, f"not valid JSON: {_short(str(error))}") from error
        if not isinstance(names, list):
            raise TypeError("ratchet file must hold a list")
    if not ours:
        return names, None
    # Still a list of strings (checked in C): what decode relies on beyond the names' form.
    if len(names) > MAX_RATCHET_NAMES or not all(map(isinstance, names, repeat(str))):
        return names, None
    return names, frozenset(names)


def _written_by_us(side_file: Path, data: bytes, info: os.stat_result) -> bool:
    """Whether ``data`` is a ratchet side file exactly as detoxd wrote it: its name carries the
    SHA-256 of the bytes detoxd wrote (:func:`_save_ratchet`), and only detoxd's own user can have
    written it (the file and the state directory are this process's, writable by no one else).

    Every name in such a file passed validation before detoxd wrote it, so it is not validated
    again (at a million names that was a second of each start). The digest is no secret, so it
    proves nothing against whoever may write the file, but that is root alone here (the state
    directory is 0700 root's): root can change /etc/detoxd or stop the daemon as well, and is
    not what the validation stops. What it stops — a file damaged on disk, cut short, edited by
    hand, or the wrong file under the name — changes the bytes, and so the digest: such a file is
    validated name by name, as before, and said in the log. The hosts file's writer checks every
    name's characters again anyway (:func:`detoxd.core.hosts.render_block_in_order`)."""
    expected = side_file.name.rsplit("-", 1)[1].removesuffix(".json")
    if hashlib.sha256(data).hexdigest()[:32] != expected:
        log.warning("%s does not match the digest in its name (changed since detoxd wrote it): "
                    "validating every name in it", side_file)
        return False
    return _only_ours(side_file, info)


def _only_ours(path: Path, info: os.stat_result) -> bool:
    """Whether only this process's user can have written ``path`` (``info``: its status as read)
    and its directory (which could otherwise put another file in its place)."""
    uid = os.geteuid()
    try:
        directory = os.stat(path.parent)
    except OSError:
        return False
    return all(owner.st_uid == uid and not owner.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
               for owner in (info, directory))


def ratchet_side_file(ratchet: frozenset[str]) -> str | None:
    """The side file that holds exactly ``ratchet`` (this very set, as last read or written)."""
    for names, name in _written_ratchets.values():
        if names is ratchet:
            return name
    return None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): readers see the old or the new file, whole."""
    _ensure_private_dir(path.parent)
    replace_file(path, data, mode=FILE_MODE)


def encode(state: DetoxState, *, with_ratchet: bool = True) -> dict[str, Any]:
    """The JSON document for ``state``; the ratchet is sorted for stable diffs."""
    return {
        "version": FORMAT_VERSION,
        "phase": state.phase.value,
        "locked": state.locked,
        "started_at": _encode_time(state.started_at),
        "duration_seconds": state.duration_seconds,
        "credited_seconds": state.credited_seconds,
        "checkpoint": _encode_checkpoint(state.checkpoint),
        "tamper_events": state.tamper_events,
        "clock_jumps": state.clock_jumps,
        "ratchet": _sorted_names(state.ratchet) if with_ratchet else [],
        **({"paths_ratchet": sorted(state.paths_ratchet)} if state.paths_ratchet else {}),  # optional
        # Optional keys (absent in older files): a verifier and public identifiers, never a secret.
        "peer_lock": _encode_peer_lock(state.peer_lock),
        "past_share_sets": [{"share_set": known.identifier, "started_at": _encode_time(known.started_at)}
                            for known in state.past_share_sets],
        "held": _encode_held(state.held),  # optional too
        "planned": _encode_planned(state.planned),  # optional: `detoxd start --at`
    }


def decode(document: dict[str, Any], ratchet: frozenset[str] | None = None) -> DetoxState:
    """Inverse of :func:`encode`; raises KeyError, TypeError or ValueError on bad input.
    ``ratchet``: the ratchet's names, known valid (a side file detoxd wrote: see
    :func:`_written_by_us`), instead of ``document["ratchet"]`` validated name by name."""
    state = DetoxState(
        phase=Phase(_typed(document, "phase", str)),
        locked=_typed(document, "locked", bool),
        started_at=_decode_time(document["started_at"]),
        duration_seconds=_number(document, "duration_seconds"),
        credited_seconds=_number(document, "credited_seconds"),
        checkpoint=_decode_checkpoint(document["checkpoint"]),
        ratchet=_decode_names(document["ratchet"]) if ratchet is None else ratchet,
        paths_ratchet=frozenset(decode_paths(document.get("paths_ratchet", []), "paths_ratchet")),
        tamper_events=_count(document, "tamper_events"),
        clock_jumps=_count(document, "clock_jumps"),
        peer_lock=_decode_peer_lock(document.get("peer_lock")),
        past_share_sets=_decode_past_sets(document.get("past_share_sets", [])),
        held=_decode_held(document.get("held")),
        planned=_decode_planned(document.get("planned")),
    )
    if state.active and (state.started_at is None or state.checkpoint is None):
        raise ValueError("an active detox needs started_at and checkpoint")
    if state.peer_lock is not None and not state.locked:
        raise ValueError("a detox with a peer lock must be locked")
    if state.active and state.planned is not None:
        raise ValueError("a running detox has no planned start")
    return state


def _encode_planned(planned: PlannedStart | None) -> dict[str, Any] | None:
    if planned is None:
        return None
    return {"starts_at": _encode_time(planned.starts_at), "wait_seconds": planned.wait_seconds,
            "credited_seconds": planned.credited_seconds,
            "checkpoint": _encode_checkpoint(planned.checkpoint), "days": planned.days,
            "locked": planned.locked, "planned_at": _encode_time(planned.planned_at),
            "clock_jumps": planned.clock_jumps, "held": _encode_held(planned.held),
            "peer_lock": None if planned.peer_lock is None else peerkey.verifier_to_json(planned.peer_lock)}


def _decode_planned(value: object) -> PlannedStart | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"planned must be an object, got {type(value).__name__}")
    starts_at, planned_at = _decode_time(value["starts_at"]), _decode_time(value["planned_at"])
    checkpoint = _decode_checkpoint(value["checkpoint"])
    days = checked_days(value["days"])
    if starts_at is None or planned_at is None or checkpoint is None:
        raise ValueError("planned needs starts_at, planned_at and checkpoint")
    if days is None:
        raise ValueError(f"planned days: {DAYS_RULE}")
    verifier = value.get("peer_lock")
    planned = PlannedStart(starts_at, _number(value, "wait_seconds"), _number(value, "credited_seconds"),
                           checkpoint, days, _typed(value, "locked", bool), planned_at,
                           _count(value, "clock_jumps"), _decode_held(value.get("held")),
                           None if verifier is None else peerkey.verifier_from_json(verifier))
    if planned.peer_lock is not None and not planned.locked:
        raise ValueError("a planned detox with a peer lock must be locked")
    return planned


def _encode_held(held: HeldTime | None) -> dict[str, Any] | None:
    if held is None:
        return None
    return {"seconds": held.seconds, "since": _encode_time(held.since),
            "credited_before": held.credited_before, "reason": held.reason}


def _decode_held(value: object) -> HeldTime | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"held must be an object, got {type(value).__name__}")
    since = _decode_time(value["since"])
    if since is None:
        raise ValueError("held needs since")
    return HeldTime(_number(value, "seconds"), since, _number(value, "credited_before"),
                    _typed(value, "reason", str)[:1000])


def _encode_peer_lock(lock: PeerLock | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    return {"verifier": peerkey.verifier_to_json(lock.verifier),
            "failed_attempts": lock.failed_attempts, "retry_at": lock.retry_at}


def _decode_peer_lock(value: object) -> PeerLock | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"peer_lock must be an object, got {type(value).__name__}")
    return PeerLock(peerkey.verifier_from_json(value["verifier"]),
                    _count(value, "failed_attempts"), _number(value, "retry_at"))


def _decode_past_sets(value: object) -> tuple[peerkey.KnownSet, ...]:
    if not isinstance(value, list):
        raise TypeError("past_share_sets must be a list")
    return tuple(peerkey.KnownSet(_typed(item, "share_set", int), _decode_time(item["started_at"]))
                 for item in value)


def _check_version(path: Path, version: object) -> None:
    if type(version) is not int:
        raise CorruptStateError(path, f"missing or invalid version: {version!r}")
    if version > FORMAT_VERSION:
        raise NewerStateVersionError(
            path, f"format version {version} is newer than this detoxd ({FORMAT_VERSION})"
        )
    if version < 1:
        raise CorruptStateError(path, f"invalid version: {version}")


def _typed(document: dict[str, Any], key: str, kind: type[_T]) -> _T:
    value = document[key]
    if type(value) is not kind:  # not isinstance: bool is an int, and must not pass as one
        raise TypeError(f"{key} must be {kind.__name__}, got {value!r}")
    return value


def _number(document: dict[str, Any], key: str) -> float:
    value = document[key]
    if type(value) not in (int, float) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{key} must be a finite non-negative number, got {value!r}")
    return float(value)


def _count(document: dict[str, Any], key: str) -> int:
    value = _typed(document, key, int)
    if value < 0:
        raise ValueError(f"{key} must not be negative, got {value}")
    return value


def _encode_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _decode_time(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 time, got {value!r}")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"time without UTC offset: {value!r}")
    return moment


def _encode_checkpoint(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "wall": _encode_time(checkpoint.wall),
        "boot_id": checkpoint.boot.boot_id,
        "boot_seconds": checkpoint.boot.seconds,
    }


def _decode_checkpoint(value: object) -> Checkpoint | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"checkpoint must be an object, got {value!r}")
    wall = _decode_time(value["wall"])
    if wall is None:
        raise ValueError("checkpoint needs a wall time")
    boot = BootReading(_typed(value, "boot_id", str), _number(value, "boot_seconds"))
    return Checkpoint(wall=wall, boot=boot)


@functools.lru_cache(maxsize=1)
def _sorted_names(names: frozenset[str]) -> tuple[str, ...]:
    """Sorting a million names takes most of a save; the ratchet rarely changes between saves.

    A tuple, so no caller can change the cached value; json writes it as an array. The
    cache hit is by identity first, so it is free while the same frozenset is saved again.
    """
    return tuple(sorted(names))


def decode_paths(value: object, what: str) -> tuple[str, ...]:
    """`paths:` entries as detoxd writes them: each comes back unchanged from the config's check."""
    if not isinstance(value, list):
        raise TypeError(f"{what} must be a list")
    for entry in value:
        if not isinstance(entry, str) or normalize_path(entry).entry != entry:
            raise ValueError(f"{what} holds an entry detoxd never writes: {entry!r:.80}")
    return tuple(dict.fromkeys(value))


def _decode_names(value: object) -> frozenset[str]:
    return _checked_names(value, "ratchet", frozenset())[1]


def checked_names(value: object, what: str, known: frozenset[str] = frozenset()) -> list[str]:
    """``value`` as a list of host names detoxd could have written, or ValueError/TypeError.

    A string is no list (``names: "abc"`` must not block ``a``, ``b`` and ``c``), and every name
    must come back unchanged from the same validation the config's names pass. Names in
    ``known`` passed it already (the ratchet's, at start-up): they are not validated again."""
    return _checked_names(value, what, known)[0]


def _checked_names(value: object, what: str, known: frozenset[str]) -> tuple[list[str], frozenset[str]]:
    """:func:`checked_names`, and the names as a set (made anyway when ``known`` is given)."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"{what} must be a list, got {type(value).__name__}")
    if len(value) > MAX_RATCHET_NAMES:
        raise ValueError(f"{what} holds more than {MAX_RATCHET_NAMES} names")
    if not all(map(isinstance, value, repeat(str))):  # (in C: a million names are read at start)
        raise TypeError(f"{what} must hold only strings")
    names = list(value)
    unique = frozenset(names)
    # A set and one comparison: testing membership name by name costs more than validating.
    if known and unique <= known:
        return names, unique
    valid, issues = domains.parse_list_text("\n".join(names), max_issues=1)
    if issues or valid != names:
        raise ValueError(f"{what} holds a name detoxd never writes")
    return names, unique


def is_valid_name(name: str) -> bool:
    result = domains.normalize_domain(name)
    return result.name == name and result.warning is None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _ensure_private_dir(directory: Path) -> None:
    """Create the state directory 0700; an existing directory is the admin's to set."""
    if directory.is_dir():
        return
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask



# ---- the last good blocklist (applied.json) and the kept app rules ----

@dataclass(frozen=True)
class Applied:
    """The last blocklist that loaded cleanly, kept so a broken edit never unblocks anything."""

    names: frozenset[str]
    order: tuple[str, ...]  # the names in the config's order: the block lists them so
    days: float
    lock: bool
    browser_policies: bool = True
    suppress_notifications: bool = True
    lock_mode: LockMode = LockMode.ON
    peers_needed: int = 3
    paths: tuple[str, ...] = ()  # `paths:` of the blocklist (detoxd.core.paths)

    def block_order(self, names: frozenset[str]) -> tuple[str, ...]:
        """The config's order, then names the ratchet keeps after they left the config, sorted."""
        if not names:
            return ()
        kept = names - self.names
        # One pass over a million names, not two: names holds all the config's names exactly
        # when all but the kept ones are the config's.
        configured = self.order if len(names) - len(kept) == len(self.names) else tuple(
            name for name in self.order if name in names)
        return configured + tuple(sorted(kept)) if kept else configured


def load_applied(path: Path, known: frozenset[str] = frozenset()) -> Applied | None:
    """The last good blocklist, validated as strictly as the config; None when missing or damaged
    (logged): the config on disk then decides alone. ``known``: names validated already (the
    ratchet's), not validated again: at a million names that halves the read."""
    try:
        # It holds the whole blocklist (up to the loader's names limit): bounded like the
        # ratchet's side file, not like state.json, or a large block is dropped at restart.
        return decode_applied(read_json(path, MAX_RATCHET_BYTES), known)
    except FileNotFoundError:
        return None
    except (StateFileError, KeyError, TypeError, ValueError) as exc:
        log.error("ignoring unusable %s: %s", path, exc)
        return None


def decode_applied(data: object, known: frozenset[str] = frozenset()) -> Applied:
    """Raises KeyError, TypeError or ValueError on anything :func:`encode_applied` never writes."""
    if not isinstance(data, dict):
        raise TypeError("expected a JSON object")
    names, unique = _checked_names(data["names"], "names", known)
    order = tuple(names) if len(names) == len(unique) else tuple(dict.fromkeys(names))
    days, lock = checked_days(data["days"]), data["lock"]
    if days is None:
        raise ValueError(f"{DAYS_RULE}, got {data['days']!r}")
    policies = data.get("browser_policies", True)
    suppress = data.get("suppress_notifications", True)
    if not all(isinstance(flag, bool) for flag in (lock, policies, suppress)):
        raise TypeError("lock and the switches must be true or false")
    peers_needed = data.get("peers_needed", 3)
    if type(peers_needed) is not int or not 1 <= peers_needed <= 64:
        raise ValueError(f"peers_needed must be a small whole number, got {peers_needed!r}")
    return Applied(unique, order, days, lock, policies, suppress,
                   LockMode(data.get("lock_mode", "true" if lock else "false")), peers_needed,
                   decode_paths(data.get("paths", []), "paths"))


def encode_applied(applied: Applied) -> bytes:
    document = {"version": 1, "names": [], "days": applied.days, "lock": applied.lock,
                "browser_policies": applied.browser_policies,
                "suppress_notifications": applied.suppress_notifications,
                "lock_mode": applied.lock_mode.value, "peers_needed": applied.peers_needed}
    if applied.paths:
        document["paths"] = list(applied.paths)
    names = _json_strings(applied.order)
    if names is None:
        document["names"] = applied.order
        return json.dumps(document).encode()
    # The same bytes as json.dumps, in a tenth of its time at a million names (each start compares).
    return json.dumps(document).encode().replace(b'"names": []', b'"names": [' + names + b"]", 1)


def _json_strings(strings: Sequence[str]) -> bytes | None:
    """``strings`` as json.dumps writes a list's items (``"a", "b"``), when none needs escaping
    (printable ASCII without quotes or backslashes: every valid host name); else None."""
    if not strings:
        return b""
    joined = '", "'.join(strings)
    plain = joined.isascii() and joined.isprintable() and "\\" not in joined
    if not plain or joined.count('"') != 2 * (len(strings) - 1):
        return None
    return b'"' + joined.encode("ascii") + b'"'


def file_holds(path: Path, data: bytes) -> bool:
    """Whether the state directory's file ``path`` holds exactly ``data`` (False when unreadable)."""
    try:
        return read_bounded(path, len(data)) == data
    except (OSError, StateFileError):
        return False


def load_kept_apps(path: Path) -> tuple[AppRule, ...]:
    """The app rules a locked detox keeps (see :func:`encode_kept_apps`); () when missing or damaged."""
    try:
        return rules_from_json(read_json(path))
    except FileNotFoundError:
        return ()
    except (OSError, StateFileError, ValueError) as exc:
        log.error("ignoring unreadable %s: %s", path, exc)
        return ()


def encode_kept_apps(rules: tuple[AppRule, ...]) -> bytes:
    return json.dumps(rules_to_json(rules)).encode()


# ---- what detoxd's block in the hosts file held (hosts-block.json) ----

MAX_BEYOND_RATCHET = 1000  # a record is kept only while the block holds about the ratchet
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BlockRecord:
    """A fact about two files, each named by its content, true whenever it was written: every
    name of the hosts block whose bytes have ``digest`` is in the ratchet side file
    ``ratchet_file`` or in ``beyond`` (Firefox's canary, blocked in every detox, not ratcheted).

    At start the daemon keeps every name of the block it finds in the hosts file (#12's
    fail-safe); when that block's digest and the state's side file are the record's, the names
    are known without parsing a million lines. Any other block (edited while detoxd was stopped,
    another order, another file) has another digest and is parsed name by name, as before."""

    digest: str  # block_digest() of the block as it is in the file
    ratchet_file: str
    beyond: frozenset[str]
    # And, when known: the whole hosts file's SHA-256 as detoxd verified it (enforced and in
    # sync) for the block order whose order_digest() is ``order``: a start that finds that very
    # file and is to enforce that very order has nothing to render or compare (HostsGuard.expect).
    file: str | None = None
    order: str | None = None


def block_digest(block: bytes) -> str:
    """SHA-256 of a block from the line after its begin marker to its end (both variants of the
    begin marker hold the same names; the newline style is in the bytes)."""
    return hashlib.sha256(memoryview(block)[block.find(b"\n") + 1:]).hexdigest()


def file_digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def order_digest(order: Sequence[str]) -> str:
    """SHA-256 of a block's names in their order (the block's bytes follow from it and the
    newline, which the file's digest holds)."""
    return hashlib.sha256("\n".join(order).encode("utf-8", "surrogatepass")).hexdigest()


def encode_block_record(record: BlockRecord) -> bytes:
    return json.dumps({"version": 1, "digest": record.digest, "ratchet_file": record.ratchet_file,
                       "beyond": sorted(record.beyond), "file": record.file, "order": record.order}).encode()


def load_block_record(path: Path) -> BlockRecord | None:
    """The record as detoxd wrote it; None when missing, damaged or writable by anyone else
    (logged): the start then reads the hosts block name by name."""
    try:
        data, info = _read_bounded(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    except StateFileError as exc:
        log.error("ignoring unusable %s: %s", path, exc)
        return None
    if not _only_ours(path, info):
        log.error("ignoring %s: another user than detoxd's may write it or its directory", path)
        return None
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("version") != 1:
            raise ValueError("not a version 1 record")
        digest, ratchet_file = document["digest"], document["ratchet_file"]
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ValueError(f"invalid digest {digest!r}")
        if not isinstance(ratchet_file, str) or not _RATCHET_FILE.fullmatch(ratchet_file):
            raise ValueError(f"invalid ratchet file name {ratchet_file!r}")
        beyond = checked_names(document["beyond"], "beyond")
        if len(beyond) > MAX_BEYOND_RATCHET:
            raise ValueError(f"more than {MAX_BEYOND_RATCHET} names beyond the ratchet")
        whole, order = document.get("file"), document.get("order")
        if (whole is None) != (order is None) or not all(
                value is None or (isinstance(value, str) and _DIGEST.fullmatch(value))
                for value in (whole, order)):
            raise ValueError("invalid file or order digest")
    except (ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as exc:
        log.error("ignoring unusable %s: %s", path, _short(str(exc)))
        return None
    return BlockRecord(digest, ratchet_file, frozenset(beyond), whole, order)

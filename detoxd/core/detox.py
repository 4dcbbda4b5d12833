"""The detox state machine: pure functions of (state, event, clock readings).

No clock is read here: the shell passes ``now`` (wall clock, timezone-aware) and a
:class:`BootReading` (``CLOCK_BOOTTIME`` and the boot id) into every function that
needs time, and persists the returned state.

States: ``idle`` and ``active``. A *locked* detox (the default) cannot be ended or
shortened; it ends by itself once enough time has been credited. Starting while a
detox is active is refused; :func:`extend` is the one way to change a running
detox, and it only lengthens it.

Time accounting — how a detox resists clock tampering
-----------------------------------------------------
Elapsed time is *credited*, never computed as ``now - started_at``. Each
:func:`tick` credits the time since the previous checkpoint and stores a new
checkpoint ``(wall time, boot id, boottime)``:

* **Same boot** (same boot id, boottime did not go backwards): credit the boottime
  delta. ``CLOCK_BOOTTIME`` cannot be set by users and counts suspend, so suspend
  is credited and a restart of the daemon within one boot loses nothing. If the
  wall clock moved further than boottime (beyond :data:`JUMP_TOLERANCE_SECONDS`
  plus :data:`DRIFT_ALLOWANCE` of the interval, which absorbs NTP slewing), the
  wall clock was set forward: ``clock_jumps`` is incremented and the jump is not
  credited. A wall clock set back is simply ignored.
* **Across a reboot** (different boot id, or boottime went backwards): boottime
  deltas mean nothing, so credit the wall-clock time since the checkpoint — the
  honest downtime — clamped so that a clock set back credits nothing negative.
  When the reboot is certain, the uptime of the new boot is a trustworthy lower
  bound of the real time that passed, so at least that much is credited.
  Known limit: a wall clock set forward while the daemon is stopped *and* the
  machine is rebooted cannot be told apart from real downtime.
* A boot id of :data:`UNKNOWN_BOOT_ID` (``/proc`` unreadable) is compared like any
  other, which errs on the safe side: a reboot whose uptime has already passed the
  last checkpoint's uptime is mistaken for one boot and its downtime is not credited.

Time you cannot set forward (docs/time.md)
------------------------------------------
Across a reboot the wall clock is all there is, and anyone can set it (stop detoxd, set the
clock 15 days forward, reboot). So the wall-clock downtime is credited only as far as a
trustworthy source confirms it: ``tick`` takes a :class:`~detoxd.core.timesync.TimeSync`, what
the kernel says of the clock now (NTP-synchronised: its maximum error under 16 s). Confirmed,
the downtime is credited whole. Not confirmed, only the new boot's uptime is (``CLOCK_BOOTTIME``
cannot be set), and the rest is *held* (:class:`HeldTime`): shown in status, credited on the
first tick at which the clock is confirmed, and then only as much as really passed by the
confirmed clock (``now - since``, less what was credited since). A real 15-day power-off followed
by a synchronised clock ends the detox; a clock set forward is corrected by NTP before it
confirms anything, and stays held while no NTP corrects it.

Within a boot, a wall clock set back no longer drags the checkpoint back: the checkpoint's wall
time only moves forward with boottime (or to a confirmed clock), so setting the clock back
while detoxd runs, then rebooting to a synchronised clock, credits nothing extra.

The detox ends (state ``idle``, ratchet cleared) on the first tick at which the
credited time reaches the duration — also when the daemon was not running at the
end time: it ends on the next start. Call :func:`tick` before answering a request.

The ratchet
-----------
``ratchet`` is the union of every blocklist applied during this detox. While a
locked detox runs, :func:`enforced_names` keeps every ratcheted name blocked, so
removing a domain from the configuration does not unblock it early. ``paths_ratchet`` does
the same for the `paths:` entries (:func:`enforced_paths`).

Counters (``tamper_events``, ``clock_jumps``) belong to the latest detox: they are
reset by :func:`start` and kept after it ends, so the status can report them.

The peer lock
-------------
A detox started with a :class:`~detoxd.core.peerkey.Verifier` (``detox.lock: peers``) is
locked, except that :func:`end_with_peers` ends it for a proof derived from the secret its
peers' shares recover (see :mod:`detoxd.core.peerkey`). Failed proofs are counted in the state
and, past :data:`FREE_PEER_ATTEMPTS`, make the next one wait (in credited time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from detoxd.core.peerkey import KnownSet, Verifier, accepts
from detoxd.core.timesync import TimeSync

SECONDS_PER_DAY = 86_400.0

JUMP_TOLERANCE_SECONDS = 2.0
"""Wall-clock advance beyond the boottime advance that counts as a clock jump."""

DRIFT_ALLOWANCE = 0.001
"""Extra tolerance per second of interval: twice NTP's maximum slew rate (500 ppm)."""

MAX_DAYS = 365
"""Longest detox accepted: a locked detox cannot be undone, so a typo must not lock for years."""

DAYS_RULE = f"days must be more than 0 and at most {MAX_DAYS}"


def checked_days(value: object) -> float | None:
    """``value`` as a detox's length in days (a number, more than 0, at most :data:`MAX_DAYS`),
    else None (then :data:`DAYS_RULE` says why): for the start command, the last good config and
    the command line alike."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # a string is no number on the wire or in a file (the CLI parses its text)
    days = float(value)
    return days if math.isfinite(days) and 0 < days <= MAX_DAYS else None


FREE_PEER_ATTEMPTS = 3
"""Failed `end --with-peers` attempts checked without a wait (the CLI checks every word and the
shares' own digest first, so a failure that reaches the daemon is rarely a typo)."""

MAX_PEER_WAIT_SECONDS = 3600.0
PAST_SHARE_SETS_KEPT = 20

UNKNOWN_BOOT_ID = "unknown"
"""What :class:`detoxd.clock.SystemClock` reports when it cannot read the boot id."""


class Phase(StrEnum):
    IDLE = "idle"
    ACTIVE = "active"


@dataclass(frozen=True)
class BootReading:
    """One reading of ``CLOCK_BOOTTIME``, only comparable with readings of the same boot."""

    boot_id: str
    seconds: float


@dataclass(frozen=True)
class Checkpoint:
    """Both clocks at the moment credited time was last brought up to date."""

    wall: datetime
    boot: BootReading


@dataclass(frozen=True)
class Refusal:
    """A request that the state machine declined; ``reason`` is meant for the user."""

    reason: str


@dataclass(frozen=True)
class PeerLock:
    """A detox started with `lock: peers`: only a proof of the peers' secret ends it early.

    Failed attempts are counted here, in the detox state, so a restart or a reboot does not
    reset the wait; the wait is measured in credited time, which setting the clock cannot speed.
    """

    verifier: Verifier
    failed_attempts: int = 0
    retry_at: float = 0.0  # credited seconds before which no proof is checked


@dataclass(frozen=True)
class HeldTime:
    """Wall-clock time claimed across a reboot that no trustworthy source confirmed: not
    credited until one does (see "Time you cannot set forward" above)."""

    seconds: float  # claimed and not credited
    since: datetime  # the wall time of the last checkpoint before the stop
    credited_before: float  # what was credited at that checkpoint
    reason: str  # why it is held, for the user


@dataclass(frozen=True)
class PlannedStart:
    """A detox planned to begin later (`detoxd start --at`): the wait is credited like a detox's
    time (boot time, held downtime), so a clock set forward does not bring the start nearer. The
    rules are :mod:`detoxd.core.planned`'s."""

    starts_at: datetime  # the moment asked for (aware), as the clock read when it was planned
    wait_seconds: float  # credited seconds from planning to the start
    credited_seconds: float
    checkpoint: Checkpoint
    days: float
    locked: bool
    planned_at: datetime
    clock_jumps: int = 0
    held: HeldTime | None = None
    peer_lock: Verifier | None = None  # `lock: peers`: the detox's verifier, from its cards


@dataclass(frozen=True)
class DetoxState:
    """Everything that survives a restart. The default value is a fresh idle state."""

    phase: Phase = Phase.IDLE
    locked: bool = True
    started_at: datetime | None = None
    duration_seconds: float = 0.0
    credited_seconds: float = 0.0
    checkpoint: Checkpoint | None = None
    ratchet: frozenset[str] = field(default_factory=frozenset)
    paths_ratchet: frozenset[str] = field(default_factory=frozenset)  # `paths:` entries, the same rule
    tamper_events: int = 0
    clock_jumps: int = 0
    peer_lock: PeerLock | None = None
    # Identifiers of earlier detoxes' share sets (public), to name a share of one of them.
    past_share_sets: tuple[KnownSet, ...] = ()
    held: HeldTime | None = None  # downtime the clock claims but nothing confirmed yet
    planned: PlannedStart | None = None  # a detox to begin later (only while idle)

    @property
    def active(self) -> bool:
        return self.phase is Phase.ACTIVE


def start(
    state: DetoxState, *, now: datetime, boot: BootReading, days: float, locked: bool,
    peer_lock: Verifier | None = None,
) -> DetoxState | Refusal:
    """Begin a detox of ``days`` days now. Refused while one is already running.

    With ``peer_lock`` the detox is locked, except to a proof of the peers' secret."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    refusal = refuse_busy(state) or refuse_days(days)
    if refusal is not None:
        return refusal
    return DetoxState(
        phase=Phase.ACTIVE,
        locked=locked or peer_lock is not None,
        started_at=now,
        duration_seconds=days * SECONDS_PER_DAY,
        checkpoint=Checkpoint(wall=now, boot=boot),
        peer_lock=PeerLock(peer_lock) if peer_lock is not None else None,
        past_share_sets=state.past_share_sets,
    )


def tick(state: DetoxState, *, now: datetime, boot: BootReading, sync: TimeSync | None = None) -> DetoxState:
    """Credit the time since the last checkpoint, count clock jumps, hold what the wall clock
    claims across a reboot until ``sync`` confirms it, finish when due."""
    if not state.active:
        return state
    checkpoint = state.checkpoint
    if checkpoint is None:  # not written by start(): credit nothing we cannot measure
        return replace(state, checkpoint=Checkpoint(wall=now, boot=boot))
    confirmed = sync is not None and sync.confirmed
    credit, jumped = _credit_since(checkpoint, now=now, boot=boot)
    held = state.held
    if not _same_boot(checkpoint.boot, boot) and not confirmed:
        trusted = boot.seconds if _certainly_rebooted(checkpoint.boot, boot) else 0.0
        if credit - trusted > JUMP_TOLERANCE_SECONDS:
            held = _hold(held, state, credit - trusted, sync)
            credit = trusted
    credited = state.credited_seconds + credit
    if held is not None and confirmed:
        credited += _release(held, now, credited)
        held = None
    clock_jumps = state.clock_jumps + int(jumped)
    if credited >= state.duration_seconds:
        return _finished(replace(state, credited_seconds=credited, clock_jumps=clock_jumps))
    return replace(
        state,
        credited_seconds=credited,
        clock_jumps=clock_jumps,
        checkpoint=Checkpoint(wall=_checkpoint_wall(checkpoint, now, boot, confirmed), boot=boot),
        held=held,
    )


def _hold(held: HeldTime | None, state: DetoxState, seconds: float, sync: TimeSync | None) -> HeldTime:
    """Add ``seconds`` to the held time; a hold already running keeps its start."""
    assert state.checkpoint is not None
    why = str(sync) if sync is not None else "no source was asked"
    reason = ("the wall clock says this much time passed while detoxd was stopped, across a "
              f"reboot, but no trustworthy source confirms the clock ({why})")
    if held is None:
        return HeldTime(seconds, state.checkpoint.wall, state.credited_seconds, reason)
    return replace(held, seconds=held.seconds + seconds, reason=reason)


def _release(held: HeldTime, now: datetime, credited: float) -> float:
    """Once the clock is confirmed: what really passed since the hold began (by that clock),
    less what was credited since, never more than was held."""
    really = (now - held.since).total_seconds() - (credited - held.credited_before)
    return min(held.seconds, max(0.0, really))


def _checkpoint_wall(before: Checkpoint, now: datetime, boot: BootReading, confirmed: bool) -> datetime:
    """Within a boot an unconfirmed wall clock never moves the checkpoint back: a clock set back
    while detoxd runs must not turn into credit across the next reboot."""
    if confirmed or not _same_boot(before.boot, boot):
        return now
    return max(now, before.wall + timedelta(seconds=boot.seconds - before.boot.seconds))


def needs_time_sync(state: DetoxState, *, now: datetime, boot: BootReading) -> bool:
    """Whether :func:`tick` needs to know if the clock is confirmed (asking may cost a D-Bus
    round trip): across a reboot, while time is held, and when the wall clock went back."""
    checkpoint = state.checkpoint
    if not state.active or checkpoint is None:
        return False
    if state.held is not None or not _same_boot(checkpoint.boot, boot):
        return True
    return now < _checkpoint_wall(checkpoint, now, boot, confirmed=False) - timedelta(
        seconds=JUMP_TOLERANCE_SECONDS)


def held_seconds(state: DetoxState) -> float:
    return state.held.seconds if state.active and state.held is not None else 0.0


def request_end(state: DetoxState) -> DetoxState | Refusal:
    """End the detox early: refused while locked. Tick first, so a due detox ends."""
    if not state.active:
        return Refusal("no detox is running")
    if state.peer_lock is not None:
        verifier = state.peer_lock.verifier
        return Refusal(f"this detox ends early only with {verifier.needed} of your "
                       f"{len(verifier.holders)} peers' shares: sudo detoxd end --with-peers")
    if state.locked:
        return Refusal("this detox is locked: it cannot be ended early")
    return _finished(state)


@dataclass(frozen=True)
class PeerAttempt:
    """The outcome of `end --with-peers`; ``state`` is to be saved whatever the outcome."""

    state: DetoxState
    ended: bool
    reason: str | None = None  # why not, for the user
    retry_in: float = 0.0  # seconds of detox before the next proof is checked


def end_with_peers(state: DetoxState, proof: bytes) -> PeerAttempt:
    """End a `lock: peers` detox with a proof derived from the peers' secret. Tick first."""
    if not state.active:
        return PeerAttempt(state, False, "no detox is running")
    lock = state.peer_lock
    if lock is None:
        return PeerAttempt(state, False, "this detox was not started with `lock: peers`")
    wait = lock.retry_at - state.credited_seconds
    if wait > 0:  # not checked, and not counted: a refused wait must not lengthen itself
        return PeerAttempt(state, False, f"{lock.failed_attempts} failed attempts: the next one "
                           f"is checked in {_minutes(wait)}", wait)
    if accepts(lock.verifier, proof):
        return PeerAttempt(_finished(state), True)
    failures = lock.failed_attempts + 1
    delay = peer_retry_delay(failures)
    locked_again = replace(lock, failed_attempts=failures, retry_at=state.credited_seconds + delay)
    reason = "the shares do not open this detox"
    if delay:
        reason += f"; the next attempt is checked in {_minutes(delay)}"
    return PeerAttempt(replace(state, peer_lock=locked_again), False, reason, delay)


def peer_retry_delay(failures: int) -> float:
    """No wait for the first few failures, then 1, 2, 4 … minutes, at most an hour."""
    if failures < FREE_PEER_ATTEMPTS:
        return 0.0
    doublings = min(failures - FREE_PEER_ATTEMPTS, 16)
    return min(60.0 * (1 << doublings), MAX_PEER_WAIT_SECONDS)


def peer_retry_in(state: DetoxState) -> float:
    """Seconds of detox before the next `end --with-peers` is checked (0: now)."""
    if not state.active or state.peer_lock is None:
        return 0.0
    return max(0.0, state.peer_lock.retry_at - state.credited_seconds)


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def record_tamper(state: DetoxState) -> DetoxState:
    """The daemon restored the hosts block after someone changed it."""
    if not state.active:
        return state
    return replace(state, tamper_events=state.tamper_events + 1)


def update_ratchet(state: DetoxState, names: Iterable[str], paths: Iterable[str] = ()) -> DetoxState:
    """Remember every name (and `paths:` entry) applied during this detox.

    Returns ``state`` itself when nothing is new, so the caller can skip saving.
    """
    if not state.active:
        return state
    new_names = frozenset(names) - state.ratchet
    new_paths = frozenset(paths) - state.paths_ratchet
    if not new_names and not new_paths:
        return state
    return replace(state, ratchet=state.ratchet | new_names if new_names else state.ratchet,
                   paths_ratchet=state.paths_ratchet | new_paths if new_paths else state.paths_ratchet)


def enforced_names(state: DetoxState, configured_names: Iterable[str], *,
                   ratchet_holds_them: bool = False) -> frozenset[str]:
    """The names to block now: a locked detox never lets a ratcheted name go.
    ``ratchet_holds_them``: the caller knows the ratchet holds every configured name
    (update_ratchet made it so), which spares a subset test of up to a million names."""
    return _ratcheted(state, state.ratchet, configured_names, ratchet_holds_them)


def enforced_paths(state: DetoxState, configured_paths: Iterable[str]) -> frozenset[str]:
    """The `paths:` entries to block now: the same rule as :func:`enforced_names`."""
    return _ratcheted(state, state.paths_ratchet, configured_paths, False)


def _ratcheted(state: DetoxState, ratchet: frozenset[str], configured_items: Iterable[str],
               ratchet_holds_them: bool) -> frozenset[str]:
    if not state.active:
        return frozenset()
    configured = frozenset(configured_items)
    if state.locked:
        # The ratchet holds the configured names already when update_ratchet ran first: then it
        # is the answer itself, not a copy of (up to) a million names.
        if ratchet_holds_them or configured <= ratchet:
            return ratchet
        return configured | ratchet
    return configured


def elapsed(state: DetoxState) -> timedelta:
    """Time credited to the running detox (zero when idle)."""
    if not state.active:
        return timedelta(0)
    return timedelta(seconds=state.credited_seconds)


def remaining(state: DetoxState) -> timedelta:
    """Time still to be credited before the detox ends (zero when idle)."""
    if not state.active:
        return timedelta(0)
    return timedelta(seconds=max(0.0, state.duration_seconds - state.credited_seconds))


def ends_at(state: DetoxState, now: datetime) -> datetime | None:
    """For display only: the wall clock can be wrong, the remaining time cannot. Counted from
    the last checkpoint, as of which the remaining time is known: from ``now`` it crept forward
    between two ticks and across a restart (a second more, shown after a kill -9)."""
    if not state.active:
        return None
    since = state.checkpoint.wall if state.checkpoint is not None else now
    return since + remaining(state)


def days_left(state: DetoxState) -> int:
    """Whole days left, rounded up: a detox with an hour to go has 1 day left."""
    return math.ceil(remaining(state).total_seconds() / SECONDS_PER_DAY)


def refuse_busy(state: DetoxState) -> Refusal | None:
    """Why no detox can be started or planned now: one runs, or one is planned (None: neither)."""
    if state.active:
        return Refusal("a detox is already running")
    if state.planned is not None:
        return Refusal(f"a detox is already planned to start at {state.planned.starts_at:%Y-%m-%d %H:%M}: "
                       "`detoxd cancel` it first")
    return None


def refuse_days(days: float) -> Refusal | None:
    if not (math.isfinite(days) and 0 < days <= MAX_DAYS):
        return Refusal(f"a detox lasts more than 0 and at most {MAX_DAYS} days, not {days!r}")
    return None


def _finished(state: DetoxState) -> DetoxState:
    """Back to idle; the counters stay so the status can report the last detox, and a peer
    lock's share set is remembered (its identifier only) to recognise its cards later."""
    past = state.past_share_sets
    if state.peer_lock is not None:
        finished_set = KnownSet(state.peer_lock.verifier.share_set, state.started_at)
        past = (*past, finished_set)[-PAST_SHARE_SETS_KEPT:]
    return DetoxState(
        phase=Phase.IDLE,
        locked=state.locked,
        started_at=state.started_at,  # of the latest detox, kept: sessions on its days stay put
        tamper_events=state.tamper_events,
        clock_jumps=state.clock_jumps,
        past_share_sets=past,
    )


def _same_boot(before: BootReading, after: BootReading) -> bool:
    return before.boot_id == after.boot_id and after.seconds >= before.seconds


def _credit_since(
    checkpoint: Checkpoint, *, now: datetime, boot: BootReading
) -> tuple[float, bool]:
    """Seconds to credit since ``checkpoint`` (across a reboot: as the wall clock claims), and
    whether the wall clock jumped forward."""
    wall_delta = (now - checkpoint.wall).total_seconds()
    before = checkpoint.boot
    if _same_boot(before, boot):
        boot_delta = boot.seconds - before.seconds
        tolerance = JUMP_TOLERANCE_SECONDS + DRIFT_ALLOWANCE * boot_delta
        return boot_delta, wall_delta - boot_delta > tolerance
    lower_bound = boot.seconds if _certainly_rebooted(before, boot) else 0.0
    return max(wall_delta, lower_bound, 0.0), False


def credit_since(checkpoint: Checkpoint, *, now: datetime, boot: BootReading) -> tuple[float, bool]:
    """Seconds to credit since ``checkpoint`` and whether the wall clock jumped (see the module
    docstring); the allowances' trusted clock advances by the same rules."""
    return _credit_since(checkpoint, now=now, boot=boot)


def _certainly_rebooted(before: BootReading, after: BootReading) -> bool:
    """Boottime never goes backwards within a boot; distinct known ids are distinct boots."""
    if before.boot_id == after.boot_id:
        return after.seconds < before.seconds
    return UNKNOWN_BOOT_ID not in (before.boot_id, after.boot_id)

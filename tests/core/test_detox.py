from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detoxd.clock import FakeClock
from detoxd.core import detox
from detoxd.core.detox import BootReading, DetoxState, Phase, Refusal

DAY = 86_400.0
HOUR = 3_600.0
START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def reading(clock: FakeClock) -> BootReading:
    return BootReading(clock.boot_id(), clock.boottime())


def started(clock: FakeClock, *, days: float = 14, locked: bool = True) -> DetoxState:
    state = detox.start(
        DetoxState(), now=clock.now(), boot=reading(clock), days=days, locked=locked
    )
    assert isinstance(state, DetoxState)
    return state


def ticked(state: DetoxState, clock: FakeClock) -> DetoxState:
    return detox.tick(state, now=clock.now(), boot=reading(clock), sync=clock.time_sync())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=START)


# --- start -------------------------------------------------------------------------


def test_start_makes_an_active_detox_of_the_requested_length(clock: FakeClock) -> None:
    state = started(clock, days=7)
    assert state.phase is Phase.ACTIVE
    assert state.started_at == START
    assert detox.remaining(state) == timedelta(days=7)
    assert detox.ends_at(state, clock.now()) == START + timedelta(days=7)
    assert detox.days_left(state) == 7


def test_start_while_active_is_refused_and_cannot_unlock(clock: FakeClock) -> None:
    state = started(clock, days=14, locked=True)
    again = detox.start(state, now=clock.now(), boot=reading(clock), days=1, locked=False)
    assert isinstance(again, Refusal)
    assert "already" in again.reason


@pytest.mark.parametrize("days", [0, -1, float("nan"), float("inf"), detox.MAX_DAYS + 1])
def test_start_refuses_unreasonable_lengths(clock: FakeClock, days: float) -> None:
    result = detox.start(DetoxState(), now=clock.now(), boot=reading(clock), days=days, locked=True)
    assert isinstance(result, Refusal)


def test_a_detox_of_365_days_is_the_longest_and_any_positive_length_below_is_accepted(
    clock: FakeClock,
) -> None:
    assert detox.MAX_DAYS == 365
    for days in (365, 0.0001):
        state = started(clock, days=days)
        assert detox.ends_at(state, clock.now()) == START + timedelta(days=days)
    for days in (365.0001, 366, 0, -0.0001):
        result = detox.start(DetoxState(), now=clock.now(), boot=reading(clock), days=days, locked=True)
        assert result == Refusal(f"a detox lasts more than 0 and at most 365 days, not {days!r}")


def test_start_rejects_a_naive_time(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="timezone"):
        detox.start(
            DetoxState(), now=datetime(2024, 1, 1), boot=reading(clock), days=1, locked=True
        )


def test_start_resets_the_counters_of_the_previous_detox(clock: FakeClock) -> None:
    state = detox.record_tamper(started(clock, days=1))
    clock.advance(DAY)
    finished = ticked(state, clock)
    assert finished.tamper_events == 1
    again = detox.start(finished, now=clock.now(), boot=reading(clock), days=1, locked=True)
    assert isinstance(again, DetoxState)
    assert again.tamper_events == 0


# --- the passing of time -----------------------------------------------------------


@pytest.mark.parametrize("days", [14, 7])
def test_a_detox_ends_after_its_days_of_hourly_ticks(clock: FakeClock, days: int) -> None:
    state = detox.update_ratchet(started(clock, days=days), {"facebook.com"})
    for _ in range(days * 24 - 1):
        clock.advance(HOUR)
        state = ticked(state, clock)
    assert state.active
    assert detox.remaining(state) == timedelta(hours=1)
    assert detox.days_left(state) == 1
    clock.advance(HOUR)
    state = ticked(state, clock)
    assert state.phase is Phase.IDLE
    assert state.ratchet == frozenset()
    assert detox.enforced_names(state, {"facebook.com"}) == frozenset()
    assert detox.ends_at(state, clock.now()) is None


def test_days_left_rounds_up(clock: FakeClock) -> None:
    state = started(clock, days=14)
    clock.advance(1)
    assert detox.days_left(ticked(state, clock)) == 14
    clock.advance(DAY)
    assert detox.days_left(ticked(state, clock)) == 13


def test_a_clock_jump_forward_is_counted_and_not_credited(clock: FakeClock) -> None:
    state = started(clock, days=14)
    clock.advance(HOUR)
    clock.jump(13 * DAY)
    state = ticked(state, clock)
    assert state.active
    assert state.clock_jumps == 1
    assert detox.elapsed(state) == timedelta(hours=1)
    # ends_at is wall-clock based for display: it moves with the jumped clock.
    assert detox.ends_at(state, clock.now()) == clock.now() + timedelta(days=14, hours=-1)


def test_after_a_jump_the_next_ticks_measure_from_the_jumped_clock(clock: FakeClock) -> None:
    state = started(clock, days=14)
    clock.jump(13 * DAY)
    state = ticked(state, clock)
    clock.advance(HOUR)
    state = ticked(state, clock)
    assert state.clock_jumps == 1
    assert detox.elapsed(state) == timedelta(hours=1)


def test_small_wall_drift_is_not_a_jump(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    clock.jump(detox.JUMP_TOLERANCE_SECONDS)
    assert ticked(state, clock).clock_jumps == 0


def test_a_clock_set_back_within_a_boot_changes_nothing(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    clock.jump(-5 * DAY)
    state = ticked(state, clock)
    assert detox.elapsed(state) == timedelta(hours=1)
    assert state.clock_jumps == 0


def test_suspend_is_credited_because_boottime_counts_it(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(3 * DAY)  # lid closed: both clocks moved
    assert detox.elapsed(ticked(state, clock)) == timedelta(days=3)


def test_a_daemon_restart_within_a_boot_credits_boottime(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(2 * DAY)  # daemon down, no ticks
    clock.jump(10 * DAY)  # and someone set the clock forward meanwhile
    state = ticked(state, clock)
    assert detox.elapsed(state) == timedelta(days=2)
    assert state.clock_jumps == 1


def test_reboot_downtime_is_credited_from_a_confirmed_wall_clock(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    state = ticked(state, clock)
    clock.reboot(downtime_seconds=2 * DAY, boot_id="boot-2")
    clock.synchronise()
    state = ticked(state, clock)
    assert detox.elapsed(state) == timedelta(days=2, hours=1)
    clock.advance(HOUR)  # the new boot's readings are now the reference
    assert detox.elapsed(ticked(state, clock)) == timedelta(days=2, hours=2)


def test_a_clock_set_back_across_a_reboot_credits_only_the_new_uptime(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    state = ticked(state, clock)
    clock.reboot(downtime_seconds=0, boot_id="boot-2")
    clock.jump(-3 * DAY)
    state = ticked(state, clock)
    # At least the new boot's uptime really passed; nothing more can be trusted.
    assert detox.elapsed(state) == timedelta(hours=1, seconds=clock.boottime())
    assert state.clock_jumps == 0


def test_a_clock_set_back_with_an_unknown_boot_credits_nothing(clock: FakeClock) -> None:
    state = started(clock)
    clock.reboot(downtime_seconds=0, boot_id=detox.UNKNOWN_BOOT_ID)
    clock.jump(-3 * DAY)
    assert detox.elapsed(ticked(state, clock)) == timedelta(0)


def test_boottime_going_backwards_is_a_reboot_even_with_the_same_id(clock: FakeClock) -> None:
    clock.boot_identity = detox.UNKNOWN_BOOT_ID
    state = started(clock)
    clock.reboot(downtime_seconds=DAY, boot_id=detox.UNKNOWN_BOOT_ID)
    clock.synchronise()
    assert detox.elapsed(ticked(state, clock)) == timedelta(days=1)


def test_a_detox_due_while_the_machine_was_off_ends_on_the_next_start(
    clock: FakeClock,
) -> None:
    state = started(clock, days=7)
    clock.advance(DAY)
    state = ticked(state, clock)
    clock.reboot(downtime_seconds=10 * DAY, boot_id="boot-2")
    clock.synchronise()
    assert ticked(state, clock).phase is Phase.IDLE


# --- time you cannot set forward (docs/time.md) --------------------------------------


def test_a_clock_set_forward_across_a_reboot_is_held_not_credited(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    state = ticked(state, clock)
    clock.reboot(downtime_seconds=60, boot_id="boot-2")  # stopped, rebooted a minute later...
    clock.jump(15 * DAY)  # ...with the clock set 15 days forward: `date -s`, no NTP
    state = ticked(state, clock)
    assert state.phase is Phase.ACTIVE
    assert detox.elapsed(state) == timedelta(hours=1, seconds=10)  # the new boot's uptime only
    assert state.held is not None and state.held.seconds == pytest.approx(15 * DAY + 50)
    assert "no trustworthy source confirms the clock (a fake clock: not synchronised)" in state.held.reason
    clock.advance(HOUR)
    state = ticked(state, clock)  # still held, time goes on by boottime
    assert detox.elapsed(state) == timedelta(hours=2, seconds=10)
    # NTP steps the clock back to the truth and confirms it: only what really passed counts.
    clock.jump(-15 * DAY)
    clock.synchronise()
    state = ticked(state, clock)
    assert state.held is None
    assert detox.elapsed(state) == timedelta(hours=2, seconds=60)


def test_a_real_power_off_ends_the_detox_once_the_clock_is_confirmed(clock: FakeClock) -> None:
    state = started(clock, days=14)
    clock.reboot(downtime_seconds=15 * DAY, boot_id="boot-2")  # really off for 15 days
    state = ticked(state, clock)  # booted before the network: not confirmed yet
    assert state.phase is Phase.ACTIVE and detox.held_seconds(state) == pytest.approx(15 * DAY - 10)
    clock.advance(30)
    clock.synchronise()  # NTP: the clock was right
    assert ticked(state, clock).phase is Phase.IDLE


def test_holds_across_two_reboots_add_up_and_release_what_really_passed(clock: FakeClock) -> None:
    state = started(clock)
    clock.reboot(downtime_seconds=DAY, boot_id="boot-2")
    state = ticked(state, clock)
    clock.reboot(downtime_seconds=DAY, boot_id="boot-3")
    state = ticked(state, clock)
    assert detox.held_seconds(state) == pytest.approx(2 * DAY - 20)
    clock.synchronise()
    state = ticked(state, clock)
    assert detox.elapsed(state) == timedelta(days=2)


def test_a_clock_set_back_while_running_is_no_credit_across_a_reboot(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    clock.jump(-10 * DAY)  # set back while detoxd runs: ignored, as before...
    state = ticked(state, clock)
    assert detox.elapsed(state) == timedelta(hours=1)
    clock.reboot(downtime_seconds=60, boot_id="boot-2")
    clock.jump(10 * DAY)  # ...and NTP puts it right after the reboot: 10 days must not appear
    clock.synchronise()
    assert detox.elapsed(ticked(state, clock)) == timedelta(hours=1, seconds=60)


def test_the_clock_is_asked_only_when_it_matters(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    assert not detox.needs_time_sync(state, now=clock.now(), boot=reading(clock))
    clock.jump(-HOUR)  # went back: a confirmed clock would move the checkpoint back
    assert detox.needs_time_sync(state, now=clock.now(), boot=reading(clock))
    clock.reboot(downtime_seconds=60, boot_id="boot-2")
    assert detox.needs_time_sync(state, now=clock.now(), boot=reading(clock))
    assert not detox.needs_time_sync(DetoxState(), now=clock.now(), boot=reading(clock))


def test_a_clock_set_back_by_the_jump_tolerance_is_not_worth_asking_about(clock: FakeClock) -> None:
    state = started(clock)
    clock.advance(HOUR)
    clock.jump(-detox.JUMP_TOLERANCE_SECONDS)
    assert not detox.needs_time_sync(state, now=clock.now(), boot=reading(clock))
    clock.jump(-0.001)
    assert detox.needs_time_sync(state, now=clock.now(), boot=reading(clock))
    # A state without a checkpoint gets one on the next tick: nothing to ask before.
    assert not detox.needs_time_sync(replace(state, checkpoint=None), now=clock.now(), boot=reading(clock))


def test_idle_and_overdue_states_count_no_time_left_and_none_held(clock: FakeClock) -> None:
    idle = DetoxState(credited_seconds=5 * DAY, duration_seconds=14 * DAY)
    assert detox.elapsed(idle) == timedelta(0) and detox.remaining(idle) == timedelta(0)
    overdue = replace(started(clock, days=1), credited_seconds=DAY + 5)
    assert detox.remaining(overdue) == timedelta(0) and detox.elapsed(overdue) == timedelta(seconds=DAY + 5)
    assert detox.held_seconds(started(clock)) == 0.0
    held = detox.HeldTime(seconds=HOUR, since=START, credited_before=0.0, reason="not confirmed")
    assert detox.held_seconds(replace(idle, held=held)) == 0.0  # what an ended detox held is gone
    assert detox.held_seconds(replace(started(clock), held=held)) == HOUR


def test_tick_is_a_no_op_when_idle(clock: FakeClock) -> None:
    state = DetoxState()
    clock.advance(DAY)
    assert ticked(state, clock) is state


def test_an_active_state_without_checkpoint_gets_one_and_no_credit(clock: FakeClock) -> None:
    state = replace(started(clock), checkpoint=None)
    clock.advance(DAY)
    state = ticked(state, clock)
    assert detox.elapsed(state) == timedelta(0)
    assert state.checkpoint == detox.Checkpoint(wall=clock.now(), boot=reading(clock))


# --- ending and extending ----------------------------------------------------------


def test_ending_a_locked_detox_is_refused(clock: FakeClock) -> None:
    result = detox.request_end(started(clock, locked=True))
    assert isinstance(result, Refusal)
    assert "locked" in result.reason


def test_ending_an_unlocked_detox_returns_to_idle(clock: FakeClock) -> None:
    state = detox.update_ratchet(started(clock, locked=False), {"x.com"})
    result = detox.request_end(state)
    assert isinstance(result, DetoxState)
    assert result.phase is Phase.IDLE
    assert result.ratchet == frozenset()


def test_ending_when_idle_is_refused() -> None:
    assert isinstance(detox.request_end(DetoxState()), Refusal)


# --- counters ----------------------------------------------------------------------


def test_tamper_events_are_counted_while_active(clock: FakeClock) -> None:
    state = detox.record_tamper(detox.record_tamper(started(clock)))
    assert state.tamper_events == 2


def test_tamper_is_not_counted_when_idle() -> None:
    assert detox.record_tamper(DetoxState()).tamper_events == 0


# --- the ratchet -------------------------------------------------------------------


def test_a_locked_detox_keeps_blocking_names_removed_from_the_config(clock: FakeClock) -> None:
    state = detox.update_ratchet(started(clock), {"a.com", "b.com"})
    state = detox.update_ratchet(state, {"a.com"})  # b.com removed from the YAML
    assert detox.enforced_names(state, {"a.com"}) == {"a.com", "b.com"}


def test_added_names_are_blocked_at_once_and_ratcheted(clock: FakeClock) -> None:
    state = detox.update_ratchet(started(clock), {"a.com"})
    assert detox.enforced_names(state, {"a.com", "c.com"}) == {"a.com", "c.com"}
    state = detox.update_ratchet(state, {"a.com", "c.com"})
    assert detox.enforced_names(state, set()) == {"a.com", "c.com"}


def test_a_ratchet_known_to_hold_the_config_is_the_answer_itself(clock: FakeClock) -> None:
    state = detox.update_ratchet(started(clock), {"a.com", "b.com"})
    assert detox.enforced_names(state, {"a.com"}, ratchet_holds_them=True) is state.ratchet
    unlocked = detox.update_ratchet(started(clock, locked=False), {"a.com", "b.com"})
    assert detox.enforced_names(unlocked, {"a.com"}, ratchet_holds_them=True) == {"a.com"}


def test_an_unlocked_detox_enforces_only_the_configured_names(clock: FakeClock) -> None:
    state = detox.update_ratchet(started(clock, locked=False), {"a.com", "b.com"})
    assert detox.enforced_names(state, {"a.com"}) == {"a.com"}


def test_update_ratchet_returns_the_same_state_when_nothing_is_new(clock: FakeClock) -> None:
    state = detox.update_ratchet(started(clock), {"a.com", "b.com"})
    assert detox.update_ratchet(state, {"b.com"}) is state


def test_update_ratchet_is_ignored_when_idle() -> None:
    assert detox.update_ratchet(DetoxState(), {"a.com"}).ratchet == frozenset()


# --- properties --------------------------------------------------------------------

clock_moves = st.lists(
    st.tuples(
        st.sampled_from(["advance", "jump"]),
        # Whole seconds keep float sums exact, so the end boundary is tested exactly.
        st.integers(min_value=-20 * int(DAY), max_value=20 * int(DAY)),
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(moves=clock_moves, days=st.sampled_from([7, 14]))
def test_within_one_boot_only_boottime_is_credited(moves: list[tuple[str, int]], days: int) -> None:
    clock = FakeClock(wall=START)
    state = started(clock, days=days)
    real_seconds = 0
    for kind, seconds in moves:
        if kind == "advance":
            seconds = abs(seconds)  # real time only moves forward
            clock.advance(seconds)
            real_seconds += seconds
        else:
            clock.jump(seconds)
        state = ticked(state, clock)
        if real_seconds < days * DAY:
            assert state.active
            assert state.credited_seconds == real_seconds
        else:
            assert not state.active


@given(
    configs=st.lists(
        st.frozensets(st.sampled_from(["a.com", "b.com", "c.com", "d.com"])), min_size=1
    )
)
def test_a_locked_detox_never_unblocks_a_name_it_enforced(
    configs: list[frozenset[str]],
) -> None:
    state = started(FakeClock(wall=START), locked=True)
    enforced_so_far: set[str] = set()
    for configured in configs:
        enforced = detox.enforced_names(state, configured)
        assert enforced >= configured
        assert enforced >= enforced_so_far
        enforced_so_far |= enforced
        state = detox.update_ratchet(state, configured)


# --- the peer lock ---------------------------------------------------------------

def _peer_verifier(secret: bytes = bytes(16), identifier: int = 77) -> tuple[detox.Verifier, bytes]:
    from detoxd.core import peerkey

    kdf = peerkey.KdfParams(n=2**14)
    shares = peerkey.split(secret, ["A", "B", "C", "D", "E"], 3, identifier=identifier,
                           salt=b"s" * 16, kdf=kdf)
    return shares.verifier, peerkey.proof(secret, b"s" * 16, kdf)


def peer_locked(clock: FakeClock, identifier: int = 77) -> tuple[DetoxState, bytes]:
    verifier, proof = _peer_verifier(identifier=identifier)
    state = detox.start(DetoxState(), now=clock.now(), boot=reading(clock), days=14, locked=False,
                        peer_lock=verifier)
    assert isinstance(state, DetoxState)
    return state, proof


def test_a_peer_locked_detox_is_locked_and_plain_end_names_the_way(clock: FakeClock) -> None:
    state, _ = peer_locked(clock)
    assert state.locked and state.peer_lock is not None
    refusal = detox.request_end(state)
    assert isinstance(refusal, Refusal)
    assert "only with 3 of your 5 peers' shares: sudo detoxd end --with-peers" in refusal.reason


def test_the_right_proof_ends_it_and_remembers_the_share_set(clock: FakeClock) -> None:
    state, proof = peer_locked(clock)
    attempt = detox.end_with_peers(state, proof)
    assert attempt.ended and not attempt.state.active
    assert attempt.state.peer_lock is None
    assert attempt.state.past_share_sets == (detox.KnownSet(77, START),)
    again, _ = peer_locked(clock, identifier=78)
    restarted = detox.start(attempt.state, now=clock.now(), boot=reading(clock), days=14, locked=True,
                            peer_lock=again.peer_lock.verifier if again.peer_lock else None)
    assert isinstance(restarted, DetoxState) and restarted.past_share_sets == (detox.KnownSet(77, START),)


def test_wrong_proofs_are_counted_and_then_must_wait_in_credited_time(clock: FakeClock) -> None:
    state, proof = peer_locked(clock)
    for failure in range(1, detox.FREE_PEER_ATTEMPTS + 1):
        attempt = detox.end_with_peers(state, b"\x01" * 32)
        assert not attempt.ended and attempt.state.active
        state = attempt.state
        assert state.peer_lock is not None and state.peer_lock.failed_attempts == failure
    assert attempt.retry_in == 60.0 and "checked in 1 minute" in (attempt.reason or "")
    # While waiting even the right proof is not checked, and the refusal is not counted.
    waiting = detox.end_with_peers(state, proof)
    assert not waiting.ended and waiting.state == state and "3 failed attempts" in (waiting.reason or "")
    clock.jump(3600)  # setting the clock forward does not shorten the wait
    state = ticked(state, clock)
    assert detox.peer_retry_in(state) == 60.0
    clock.advance(61)
    state = ticked(state, clock)
    assert detox.peer_retry_in(state) == 0.0
    assert detox.end_with_peers(state, proof).ended


def test_retry_delay_doubles_up_to_an_hour() -> None:
    delays = [detox.peer_retry_delay(n) for n in range(1, 12)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2:7] == [60.0, 120.0, 240.0, 480.0, 960.0]
    assert delays[-1] == detox.MAX_PEER_WAIT_SECONDS and max(delays) == 3600.0


def test_end_with_peers_without_a_peer_lock_is_refused(clock: FakeClock) -> None:
    attempt = detox.end_with_peers(started(clock), b"\x00" * 32)
    assert not attempt.ended and "not started with `lock: peers`" in (attempt.reason or "")
    assert not detox.end_with_peers(DetoxState(), b"").ended


def test_the_end_shown_does_not_creep_between_ticks_or_across_a_stop(clock: FakeClock) -> None:
    state = started(clock, days=14)
    promised = START + timedelta(days=14)
    assert detox.ends_at(state, clock.now()) == promised
    clock.advance(0.7)  # no tick yet (a status between two ticks, or a daemon killed and restarted)
    assert detox.ends_at(state, clock.now()) == promised
    state = ticked(state, clock)
    assert detox.ends_at(state, clock.now()) == promised
    assert detox.ends_at(detox.DetoxState(), clock.now()) is None


def test_paths_follow_the_ratchet_like_names(clock: FakeClock) -> None:
    locked = detox.update_ratchet(started(clock), {"a.example.com"}, {"linkedin.com/feed"})
    assert detox.enforced_paths(locked, {"youtube.com/shorts"}) == {"linkedin.com/feed", "youtube.com/shorts"}
    assert detox.update_ratchet(locked, {"a.example.com"}, {"linkedin.com/feed"}) is locked  # nothing new
    unlocked = detox.update_ratchet(started(clock, locked=False), (), {"linkedin.com/feed"})
    assert detox.enforced_paths(unlocked, ()) == frozenset()  # an unlocked detox follows the config
    assert detox.enforced_paths(DetoxState(), {"linkedin.com/feed"}) == frozenset()  # idle: nothing

"""The detox's life: start, end (plainly or with the peers' shares), the detox clock's tick,
failing closed when the state is lost, and the windows reports and audits read.

The keeper holds no state of its own beyond the last ended detox's window: the detox state is the
engine's (:attr:`Engine.state`), saved by its checkpoint; every method runs with the engine's lock
held. A refusal is raised as an :class:`~detoxd.protocol.ErrorReply` (the command table replies).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from detoxd.core import detox, peerkey, planned
from detoxd.core.config import LockMode
from detoxd.core.report import DetoxWindow
from detoxd.protocol import ErrorReply, Peer, bad_request, refused
from detoxd.service import journal
from detoxd.service.loader import missing_files_error
from detoxd.service.scheduler import local_zone
from detoxd.service.status import duration_text

if TYPE_CHECKING:
    from detoxd.service.engine import Engine

log = logging.getLogger("detoxd")


class DetoxKeeper:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last_window: DetoxWindow | None = None  # of the detox that ended while this daemon ran
        self.local_zone: Callable[[], tzinfo] = local_zone  # what `start --at` times are read in

    # ---- start and end ----

    def start(self, days: Any, peer: Peer, peer_lock: Any = None) -> dict[str, Any]:
        engine = self.engine
        self._refuse_on_config_error(peer)
        wanted = engine.applied.days if days is None else detox.checked_days(days)
        if wanted is None:
            raise bad_request(detox.DAYS_RULE)
        verifier = self._start_verifier(peer_lock, peer)
        result = detox.start(engine.state, now=engine.clock.now(), boot=self.boot_reading(),
                             days=wanted, locked=engine.applied.lock, peer_lock=verifier)
        if isinstance(result, detox.Refusal):
            log.warning("refused start from uid %d: %s", peer.uid, result.reason)
            raise refused(result.reason)
        engine.state = result
        engine.state_error = None  # a new detox: whatever was recovered before is settled
        engine.app_watcher.reset_counts()  # apps_closed counts this detox, like tamper_events
        engine.checkpoint()
        engine.allowances.detox_started(locked=result.locked)
        engine.enforce()
        how = "locked" if result.locked else "unlocked"
        if verifier is not None:
            how = (f"peer lock: {verifier.needed} of {len(verifier.holders)} peers' shares end it "
                   f"early (share set {peerkey.set_words(verifier.share_set)!r})")
        log.info("detox started by uid %d: %g days, %s, %d names blocked", peer.uid, wanted, how,
                 len(engine.hosts.names))
        ends_at = _iso(detox.ends_at(engine.state, engine.clock.now()))
        engine.recovery.lifecycle("detox_started", days=wanted, locked=result.locked,
                                  names=len(engine.hosts.names), ends_at=ends_at, by_uid=peer.uid)
        engine.publish("detox_started")
        return {"ok": True, "status": engine.status(private=True)}

    def plan_start(self, at: Any, days: Any, peer: Peer, peer_lock: Any = None) -> dict[str, Any]:
        """`detoxd start --at "YYYY-MM-DD HH:MM"`: plan a detox to begin then (this machine's
        local time), by itself, counted on the detox's clock (see :mod:`detoxd.core.planned`)."""
        engine = self.engine
        self._refuse_on_config_error(peer)
        wanted = engine.applied.days if days is None else detox.checked_days(days)
        if wanted is None:
            raise bad_request(detox.DAYS_RULE)
        verifier = self._start_verifier(peer_lock, peer)  # `lock: peers`: from the cards written now
        now = engine.clock.now()
        starts_at = planned.parse_at(at, self.local_zone(), now)
        if isinstance(starts_at, detox.Refusal):
            raise bad_request(starts_at.reason)
        result = planned.plan(engine.state, now=now, boot=self.boot_reading(), starts_at=starts_at,
                              days=wanted, locked=engine.applied.lock, peer_lock=verifier)
        if isinstance(result, detox.Refusal):
            log.warning("refused a planned start from uid %d: %s", peer.uid, result.reason)
            raise refused(result.reason)
        engine.state = result
        engine.checkpoint()
        engine.refresh_sessions()  # sessions on the detox's days follow the planned start
        until = planned.cancellable_until(result)
        log.info("detox planned by uid %d: %g days from %s, %s", peer.uid, wanted, _iso(starts_at),
                 "locked" if result.locked else "unlocked")
        journal.record("detox_planned", starts_at=_iso(starts_at), days=wanted,
                       locked=result.planned.locked if result.planned else True,
                       peer_lock=verifier is not None, cancellable_until=_iso(until), by_uid=peer.uid)
        engine.publish("detox_planned")
        return {"ok": True, "status": engine.status(private=True)}

    def cancel(self, peer: Peer) -> dict[str, Any]:
        """`detoxd cancel`: drop a planned start, unless it is locked by schedule."""
        engine = self.engine
        engine.tick()  # the credited wait decides: a due plan has begun, a near one is locked
        before = engine.state.planned
        result = planned.cancel(engine.state)
        if isinstance(result, detox.Refusal):
            log.warning("refused cancel from uid %d: %s", peer.uid, result.reason)
            journal.record("cancel_refused", by_uid=peer.uid, reason=result.reason)
            raise refused(result.reason)
        engine.state = result
        engine.checkpoint()
        engine.refresh_sessions()
        assert before is not None
        log.info("planned detox (%s) cancelled by uid %d", _iso(before.starts_at), peer.uid)
        journal.record("detox_plan_cancelled", starts_at=_iso(before.starts_at), by_uid=peer.uid)
        engine.publish("detox_plan_cancelled")
        return {"ok": True, "status": engine.status(private=True)}

    def _tick_planned(self, now: datetime, boot: detox.BootReading) -> None:
        """The planned start's clock; the detox begins here when its wait is over."""
        engine = self.engine
        before = engine.state
        sync = engine.clock.time_sync() if planned.needs_time_sync(before, now=now, boot=boot) else None
        engine.state = planned.tick(before, now=now, boot=boot, sync=sync)
        waiting = before.planned
        if waiting is None:
            return
        after = engine.state.planned
        jumps = after.clock_jumps if after is not None else engine.state.clock_jumps  # (begun: carried)
        if jumps > waiting.clock_jumps:
            wall = (now - waiting.checkpoint.wall).total_seconds()
            credited = boot.seconds - waiting.checkpoint.boot.seconds
            journal.record("clock_jump", seconds=round(wall - credited), waiting=True)
        held = engine.state.planned.held if engine.state.planned is not None else None
        if held is not None and held.seconds > (waiting.held.seconds if waiting.held else 0.0):
            log.warning("%s of downtime held before the planned start: %s", duration_text(held.seconds),
                        held.reason)
            journal.record("time_held", seconds=round(held.seconds), reason=held.reason, waiting=True)
        elif waiting.held is not None and held is None:
            log.info("the clock is confirmed: the planned start's held time released (%s held)",
                     duration_text(waiting.held.seconds))
            journal.record("time_released", held_seconds=round(waiting.held.seconds), waiting=True)
        if not engine.state.active:
            if planned.cancel_locked(engine.state) and not planned.cancel_locked(before):
                log.info("the planned detox (%s) is locked by schedule: it can no longer be cancelled",
                         _iso(waiting.starts_at))
                engine.publish("status")  # the trays say so at once
            return
        late = engine.state.credited_seconds
        log.info("planned detox begins: %g days (planned for %s)", waiting.days, _iso(waiting.starts_at))
        engine.state_error = None
        engine.app_watcher.reset_counts()
        engine.checkpoint()
        engine.allowances.detox_started(locked=engine.state.locked)
        engine.enforce()
        ends_at = _iso(detox.ends_at(engine.state, now))
        engine.recovery.lifecycle("detox_started", days=waiting.days, locked=engine.state.locked,
                                  names=len(engine.hosts.names), ends_at=ends_at, reason="planned",
                                  planned_for=_iso(waiting.starts_at), late_seconds=round(late))
        engine.publish("detox_started")

    def _refuse_on_config_error(self, peer: Peer) -> None:
        """A detox starts only on the config the user wrote, as written: never on the last good
        one while the files are in error, never on built-in defaults of a missing file."""
        engine = self.engine
        error = engine.config_error
        if error is None and engine.config_missing:
            error = missing_files_error(engine.paths.config_dir, engine.config_missing)
        if error is None:
            return
        log.warning("refused start from uid %d: the config is in error: %s", peer.uid,
                    "; ".join(str(issue.redacted()) for issue in error.issues))
        journal.record("start_refused", by_uid=peer.uid, errors=error.total, reason="config in error")
        raise ErrorReply("invalid_config", str(error), errors=[str(issue) for issue in error.issues],
                         total=error.total)

    def _start_verifier(self, data: Any, peer: Peer) -> peerkey.Verifier | None:
        """The verifier a `lock: peers` start must carry (None for other locks), or a refusal."""
        try:
            return self._verifier(data)
        except ErrorReply as refusal:
            log.warning("refused start from uid %d: %s", peer.uid, refusal.message)
            raise

    def _verifier(self, data: Any) -> peerkey.Verifier | None:
        applied = self.engine.applied
        peers = applied.lock_mode is LockMode.PEERS
        if data is None:
            if not peers:
                return None
            raise refused("detoxd.yaml has `lock: peers`: start with `sudo detoxd start --shares-out "
                          "DIR`, which writes each peer's card to DIR")
        if not peers:
            raise refused(f"a peer lock was sent but detoxd.yaml has `lock: {applied.lock_mode.value}`, "
                          "not `lock: peers`")
        try:
            verifier = peerkey.verifier_from_json(data)
        except ValueError as error:
            raise bad_request(f"peer_lock: {error}") from None
        if verifier.needed != applied.peers_needed:
            raise refused(f"the shares need {verifier.needed} peers but detoxd.yaml says "
                          f"peers_needed: {applied.peers_needed}")
        return verifier

    def end(self, peer: Peer) -> dict[str, Any]:
        engine = self.engine
        if not engine.state.active and engine.state.planned is not None:
            raise refused("no detox is running: one is planned (`detoxd cancel` cancels a plan)")
        result = detox.request_end(engine.state)
        if isinstance(result, detox.Refusal):
            log.warning("refused end from uid %d: %s", peer.uid, result.reason)
            journal.record("end_refused", by_uid=peer.uid, reason=result.reason)
            raise refused(result.reason)
        self.last_window = self.window_of(engine.state, ended_at=engine.clock.now())
        engine.state = result
        engine.checkpoint()
        log.info("detox ended early by uid %d (it was not locked)", peer.uid)
        return self._ended(reason=f"ended early by uid {peer.uid}")

    def end_with_peers(self, proof_hex: Any, peer: Peer) -> dict[str, Any]:
        """`end --with-peers`: the CLI recovered the secret from the shares and sends a proof
        derived from it (never the secret or a share); attempts are rate-limited and logged."""
        engine = self.engine
        try:
            proof = bytes.fromhex(proof_hex) if isinstance(proof_hex, str) else b""
        except ValueError:
            proof = b""
        if len(proof) != peerkey.PROOF_BYTES:
            raise bad_request(f"peers_proof must be {peerkey.PROOF_BYTES} bytes in hex")
        engine.tick()  # credited time decides the wait, and a due detox has ended
        before = engine.state
        attempt = detox.end_with_peers(before, proof)
        lock = before.peer_lock if attempt.ended else attempt.state.peer_lock
        failures = lock.failed_attempts if lock else 0
        if attempt.ended:
            self.last_window = self.window_of(before, ended_at=engine.clock.now())
        if attempt.state is not before:
            engine.state = attempt.state
            engine.checkpoint()  # a failure is counted before anyone can retry, across restarts
        journal.record("peer_end_attempt", ended=attempt.ended, by_uid=peer.uid,
                       failed_attempts=failures, reason=attempt.reason)
        if not attempt.ended:
            log.warning("refused end with peers from uid %d (%d failed attempts): %s",
                        peer.uid, failures, attempt.reason)
            engine.publish("peer_attempt_failed", failed_attempts=failures)
            raise refused(attempt.reason or "refused", failed_attempts=failures,
                          retry_in_seconds=round(attempt.retry_in))
        log.warning("detox ended early by uid %d with the peers' shares", peer.uid)
        return self._ended(reason=f"ended early with the peers' shares by uid {peer.uid}")

    def _ended(self, *, reason: str) -> dict[str, Any]:
        engine = self.engine
        engine.allowances.detox_ended()
        engine.schedule.detox_ended()
        engine.enforce()
        engine.recovery.lifecycle("detox_ended", early=True, reason=reason)
        engine.publish("detox_ended", continues=engine.schedule.continuing())
        return {"ok": True, "status": engine.status(private=True)}

    def peer_lock(self) -> dict[str, Any]:
        """What `end --with-peers` needs to check shares and derive the proof: public values
        only (the salt, scrypt's parameters, the share set's identifier, who holds which share)."""
        engine = self.engine
        engine.tick()
        state = engine.state
        lock = state.peer_lock
        earlier = [{"share_set": known.identifier, "started_at": _iso(known.started_at)}
                   for known in state.past_share_sets]
        if not state.active or lock is None:
            # The earlier sets still: a new detox's shares must not begin like an old one's.
            raise ErrorReply("no_peer_lock", "no detox started with `lock: peers` is running",
                             earlier_share_sets=earlier)
        verifier = lock.verifier
        return {"ok": True, "needed": verifier.needed, "holders": list(verifier.holders),
                "share_set": verifier.share_set, "salt": verifier.salt.hex(),
                "kdf": {"name": "scrypt", "n": verifier.kdf.n, "r": verifier.kdf.r, "p": verifier.kdf.p},
                "failed_attempts": lock.failed_attempts,
                "retry_in_seconds": round(detox.peer_retry_in(state)),
                "earlier_share_sets": earlier}

    def fail_closed(self, reason: str) -> None:
        """No copy of the state survived, but the block in the hosts file shows a detox was
        running. Its end cannot be known: a new locked detox of the configured length starts
        now (never ends early), keeping every name the file blocks, and status says so."""
        engine = self.engine
        days = engine.applied.days
        result = detox.start(detox.DetoxState(), now=engine.clock.now(), boot=self.boot_reading(),
                             days=days, locked=True)
        assert isinstance(result, detox.DetoxState)  # an idle state can always start
        engine.state = detox.update_ratchet(result, engine.recovery.block_names_in_hosts_file(),
                                            engine.browser.paths_in_policy_files())
        engine.state_error = (f"the detox state was lost ({reason}), so a locked detox of "
                              f"{days:g} days was started again")
        log.error("%s", engine.state_error)
        engine.recovery.lifecycle("state_lost", reason=reason, failed_closed=True)
        ends_at = _iso(detox.ends_at(engine.state, engine.clock.now()))
        engine.recovery.lifecycle("detox_started", days=days, locked=True, names=len(engine.state.ratchet),
                                  ends_at=ends_at, reason="failed closed")

    # ---- the detox clock ----

    def tick(self) -> None:
        engine, paths = self.engine, self.engine.paths
        now, boot = engine.clock.now(), self.boot_reading()
        if engine.state.planned is not None:
            self._tick_planned(now, boot)
        before = engine.state
        sync = engine.clock.time_sync() if detox.needs_time_sync(before, now=now, boot=boot) else None
        engine.state = detox.tick(before, now=now, boot=boot, sync=sync)
        self._report_held_time(before, engine.state)
        if engine.state.clock_jumps > before.clock_jumps and before.checkpoint is not None:
            wall = (now - before.checkpoint.wall).total_seconds()
            credited = boot.seconds - before.checkpoint.boot.seconds
            journal.record("clock_jump", seconds=round(wall - credited))
        engine.recovery.watch_state_dir()
        if (engine.state.active or engine.state.planned is not None or "state" in engine.problems) \
                and not os.path.lexists(paths.state_file):
            # Removed (or never written: the disk was full): a kill now would lose the detox.
            if "state" not in engine.problems:
                log.warning("the state file %s is gone: writing it again", paths.state_file)
            engine.checkpoint()
        if before.active and not engine.state.active:
            log.info("detox finished: removing the block from %s", paths.hosts_file)
            engine.recovery.lifecycle("detox_ended", early=False, reason="finished")
            self.last_window = self.window_of(before, ended_at=now)
            engine.checkpoint()
            engine.allowances.detox_ended()
            engine.schedule.detox_ended()
            engine.enforce()
            engine.publish("detox_ended", continues=engine.schedule.continuing())

    def _report_held_time(self, before: detox.DetoxState, after: detox.DetoxState) -> None:
        """Time the wall clock claims across a reboot without confirmation: held, loudly."""
        was, held = detox.held_seconds(before), detox.held_seconds(after)
        if held > was and after.held is not None:
            log.warning("%s of downtime held, not credited: %s", duration_text(held), after.held.reason)
            journal.record("time_held", seconds=round(held), reason=after.held.reason)
            self.engine.publish("status")
        elif was and not held:
            credited = after.credited_seconds - before.credited_seconds if after.active else None
            log.info("the clock is confirmed: held time released (%s held)", duration_text(was))
            journal.record("time_released", held_seconds=round(was),
                           credited_seconds=None if credited is None else round(credited))
            self.engine.publish("status")

    def boot_reading(self) -> detox.BootReading:
        return detox.BootReading(self.engine.clock.boot_id(), self.engine.clock.boottime())

    # ---- windows ----

    def report_window(self) -> DetoxWindow | None:
        """The running detox; else the one that ended while this daemon ran; else None (the
        report then takes the latest one in the journal)."""
        running = self.window_of(self.engine.state)
        return running if running is not None else self.last_window

    def journal_header(self) -> dict[str, Any]:
        window = self.window_of(self.engine.state)
        return {"detox_started_at": _iso(window.started_at) if window else None,
                "detox_ends_at": _iso(window.ends_at) if window else None}

    def window_of(self, state: detox.DetoxState, ended_at: datetime | None = None) -> DetoxWindow | None:
        started, ends = state.started_at, detox.ends_at(state, self.engine.clock.now())
        if not state.active or started is None or ends is None:
            return None
        return DetoxWindow(started, ends, ended_at)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None

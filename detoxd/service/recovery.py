"""The detox state brought back at start-up, and kept when its directory goes while detoxd runs;
the evidence outside the state directory (the ledger of lifecycle events) that makes that possible.

At start the state comes from the first usable copy (:func:`state_store.load_first`); damaged
copies are set aside as evidence; a running detox keeps every name detoxd's block in the hosts file
still holds. When no copy is usable, the traces outside the state (:mod:`detoxd.service.traces`)
decide: a detox was running (the engine fails closed at boot), none was, or nothing says (loud).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detoxd.core import detox, evidence, hosts
from detoxd.durable import remove_stale_temporaries
from detoxd.service import journal, ledger, state_store, traces

if TYPE_CHECKING:
    from detoxd.service.engine import Engine

log = logging.getLogger("detoxd")


class StateRecovery:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lost: str | None = None  # no copy of the state could be used, and a detox ran: why
        self.lost_at_start: str | None = None  # copies were gone at start (journalled at boot)
        self._state_dir_missing = False  # removed while running, and not made again yet
        self._evidence_failed = False  # the evidence directory could not be written (said once)
        # The record of the hosts block that start-up found true (the block as detoxd left it).
        self.block_record: state_store.BlockRecord | None = None

    def prepare_directories(self) -> None:
        """The state directory and the evidence directory (LogsDirectory= makes it under
        systemd), private; the temporary files a kill left between write and rename."""
        from detoxd.service.engine import TICK_SECONDS  # (loaded: the engine is being made)

        paths, problems = self.engine.paths, self.engine.problems
        try:
            paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:  # a file in its place, a read-only parent: loud, never fatal
            reason = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
            problems["state"] = f"cannot use the state directory {paths.state_dir}: {reason}"
            log.error("%s (enforcement goes on; retrying every %gs)", problems["state"], TICK_SECONDS)
        try:
            paths.evidence_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            self._evidence_unwritable(exc)
        remove_stale_temporaries(paths.state_dir)  # a full-size hosts copy each, at worst
        remove_stale_temporaries(paths.hosts_file.parent, only_for=paths.hosts_file.name)

    def state_copies(self) -> tuple[Path, ...]:
        """Beside state.json, the other places that know the detox's end."""
        paths = self.engine.paths
        return (paths.state_backup_file, paths.runtime_state_file, paths.evidence_state_file)

    def persist(self, what: str, write: Callable[[], None]) -> bool:
        """Run a write to the state directory; on OSError keep running and say so loudly (status
        shows it as the "state" problem until a write works again)."""
        from detoxd.service.engine import TICK_SECONDS

        engine = self.engine
        try:
            write()
        except OSError as exc:
            message = f"cannot save the {what} in {engine.paths.state_dir}: {exc.strerror or exc}"
            if engine.problems.get("state") != message:
                log.error("%s (enforcement goes on; retrying every %gs)", message, TICK_SECONDS)
                engine.problems["state"] = message
                engine.notifier.status(message)
                engine.publish("status")
            return False
        if engine.problems.pop("state", None) is not None:
            log.info("the state directory %s is writable again", engine.paths.state_dir)
            engine.publish("status")
        return True

    def lifecycle(self, kind: str, **fields: Any) -> None:
        """A detox's start or end (and the daemon's, and a lost state): in the event journal and
        in the ledger outside the state directory, so that its removal leaves a trace."""
        journal.record(kind, **fields)
        try:
            ledger.append(self.engine.paths.ledger_file, kind, self.engine.clock.now(), **fields)
        except OSError as exc:
            self._evidence_unwritable(exc)
        else:
            self._evidence_failed = False

    def _evidence_unwritable(self, exc: OSError) -> None:
        if not self._evidence_failed:
            self._evidence_failed = True
            log.error("cannot keep evidence of the detox in %s: %s (a removed state directory would "
                      "then lose the detox)", self.engine.paths.evidence_dir, exc.strerror or exc)

    def load(self) -> detox.DetoxState:
        """The state from the first usable copy. When none is usable but the hosts file still
        holds detoxd's block (a detox was running), :attr:`lost` says why: boot fails closed."""
        engine, paths = self.engine, self.engine.paths
        state, problems = state_store.load_first((paths.state_file, *self.state_copies()))
        for problem in problems:
            log.error("state file unusable: %s", problem)
            if not isinstance(problem, state_store.MissingRatchetError) and os.path.lexists(problem.path):
                state_store.set_aside(problem.path)  # the evidence, out of the way of the next save
        if state is not None:
            if state.active:  # every name detoxd's block holds was enforced: the ratchet keeps it
                state = detox.update_ratchet(state, self.block_names_in_hosts_file(
                    known=state.ratchet, ratchet_file=state_store.ratchet_side_file(state.ratchet)),
                    engine.browser.paths_in_policy_files())
            if problems:
                used = "a copy" if not isinstance(problems[-1], state_store.MissingRatchetError) else "it"
                engine.state_error = f"{problems[0].path.name}: {problems[0].reason}; resumed from {used}"
            elif not os.path.lexists(paths.state_file):  # removed while detoxd was stopped
                engine.state_error = f"{paths.state_file} was gone; resumed from a copy"
                self.lost_at_start = engine.state_error
            return state
        reason = problems[0].reason if problems else "no state file"
        verdict = traces.verdict(paths, in_hosts_file=bool(self.block_names_in_hosts_file()),
                                 damaged=bool(problems))
        if verdict.word is evidence.Word.RUNNING:
            self.lost = f"{reason}; {verdict}"
        elif verdict.word is evidence.Word.SILENT:
            self.lost_at_start = (f"every copy of the detox state is gone ({reason}) and nothing left "
                                  f"says whether a detox was running ({verdict.source}): if one was, "
                                  "its traces vanished")
            engine.state_error = self.lost_at_start
            engine.problems["lost state"] = self.lost_at_start
            log.error("%s", self.lost_at_start)
        elif problems:
            log.error("state unusable (%s), and %s: no detox was running", reason, verdict)
        return detox.DetoxState()

    def block_names_in_hosts_file(self, known: frozenset[str] = frozenset(),
                                  ratchet_file: str | None = None) -> frozenset[str]:
        """The names detoxd's block in the hosts file holds, beyond ``known`` ones (validated).

        ``ratchet_file``: the side file ``known`` was read from. When the block is byte for byte
        one whose names that file held (:class:`state_store.BlockRecord`), its names are not
        parsed: a digest of the block says so (a second at a million names)."""
        try:
            text = self.engine.hosts.file.read()
        except OSError:
            return frozenset()
        record = None if ratchet_file is None else state_store.load_block_record(
            self.engine.paths.hosts_block_file)
        if record is not None and record.ratchet_file == ratchet_file:
            if record.file is not None and record.order is not None \
                    and record.file == state_store.file_digest(text):
                # The very file detoxd left (its block with it): the guard need not render the
                # block to know it either, if the order is the same (it checks the file again).
                self.block_record = record
                self.engine.hosts.guard.expect(record.file, record.order)
                return record.beyond - known
            parsed = hosts.split(text)
            if parsed.block is not None and record.digest == state_store.block_digest(parsed.block):
                self.block_record = record
                return record.beyond - known
            log.info("detoxd's block in %s changed since detoxd last saw it: reading every name "
                     "in it", self.engine.paths.hosts_file)
        else:
            parsed = hosts.split(text)
        # Names the ratchet already holds were validated when they got there: at a million names
        # validating them all again doubled a restart.
        names = parsed.names - known
        try:
            return frozenset(state_store.checked_names(sorted(names), "the hosts block"))
        except (TypeError, ValueError):
            return frozenset(name for name in names if state_store.is_valid_name(name))

    def watch_state_dir(self) -> None:
        """Each tick: a state directory removed while running is written again at once."""
        directory = self.engine.paths.state_dir
        missing = not os.path.lexists(directory)  # (something else there: see problems)
        if missing and not self._state_dir_missing:
            self._state_dir_removed()  # once: it stays missing only when it cannot be made again
        self._state_dir_missing = missing and not os.path.lexists(directory)

    def _state_dir_removed(self) -> None:
        """`rm -rf /var/lib/detoxd` while running: everything is written again from memory at
        once (the state, the last good blocklist, the kept app rules), and it is said in the
        event journal (started again), the ledger, the log and status."""
        engine = self.engine
        engine.state_error = (f"the state directory {engine.paths.state_dir} was removed while detoxd "
                              f"ran (at {_iso(engine.clock.now())}); written again from memory; the "
                              "event journal before that is gone")
        log.error("%s", engine.state_error)
        engine.rewrite_state_files()
        self.lifecycle("state_lost", reason="state directory removed while running",
                         during_detox=engine.state.active)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")

"""The daemon's decisions: what is blocked now, and what each command and tick changes.

The engine holds the detox state, the config in force and the enforcement targets. It reads
time only from its :class:`~detoxd.clock.Clock` and never waits, so every decision is tested
in-process with a FakeClock in milliseconds. The daemon (:mod:`detoxd.service.daemon`) only
wires it to select(), signals, the control socket's threads and the config watcher; every call
into the engine is made with :attr:`Engine.lock` held.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from detoxd import __version__
from detoxd.clock import Clock
from detoxd.core import activity, apps, detox, evidence, hosts, ics, peerkey, plan
from detoxd.core.config import LockMode
from detoxd.core.network import CANARY
from detoxd.core.report import DetoxWindow
from detoxd.core.yamlsource import ConfigError
from detoxd.durable import remove_stale_temporaries
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import cutter, journal, ledger, state_store, traces
from detoxd.service.allowance_keeper import AllowanceKeeper
from detoxd.service.appwatch import AppWatcher
from detoxd.service.audit import Audit
from detoxd.service.loader import LoadedConfig, load_config, missing_files_error
from detoxd.service.scheduler import SessionScheduler, local_zone, system_timezone
from detoxd.service.sdnotify import Notifier
from detoxd.service.status import StatusBuilder, duration_text
from detoxd.service.targets import Drift, Target
from detoxd.service.targets.browser import BrowserTarget
from detoxd.service.targets.hosts import HostsTarget
from detoxd.service.targets.hosts.fsops import ReadOnlyInSandbox
from detoxd.service.targets.hosts.hostsfile import Recovery
from detoxd.service.targets.network import NetworkTarget, agent_uids

log = logging.getLogger("detoxd")

TICK_SECONDS = 1.0  # how often the daemon ticks: the detox clock is read and targets checked
MAX_AGENT_TEXT = 400  # a tray's reason or fix, as shown by doctor
AGENT_REPORT_SECONDS = 60.0  # tray agents report every 10 s; older reports are from gone agents
MAX_AGENTS = 256
EXIT_RESTART = 75  # EX_TEMPFAIL: systemd's Restart=always starts the daemon again

Publish = Callable[[dict[str, Any]], None]


@dataclass
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


class Engine:
    def __init__(self, paths: Paths, clock: Clock, *, notifier: Notifier | None = None,
                 policy_root: Path | None = None, app_watcher: AppWatcher | None = None,
                 allowances: AllowanceKeeper | None = None) -> None:
        self.paths = paths
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.lock = threading.RLock()
        self.publish_to: Publish | None = None  # the control server's publish, once it listens
        self.exit_code: int | None = None  # set when the daemon must exit (and be restarted)
        self.config_error: ConfigError | None = None
        self.config_missing: tuple[str, ...] = ()  # config files read as defaults (see start)
        self.warnings: list[str] = []
        self.applied = Applied(frozenset(), (), 14.0, True)
        self._agents: dict[int, tuple[float, dict[str, Any]]] = {}  # uid -> (when, tray report)
        # What cannot be done right now, shown loudly in status until it works again:
        # "state" (saving to the state directory), "hosts file"/"browser policies" (enforcing).
        self.problems: dict[str, str] = {}
        self.state_error: str | None = None  # the detox state had to be recovered or guessed
        self.status_builder = StatusBuilder(self)
        # When the daemon's main loop last went round (monotonic; None without a loop, as in
        # tests): a loop stuck outside the lock must not be hidden by a fresh-looking status.
        self.loop_seen: float | None = None
        # When the hosts file was last seen as it should be, with no change waiting to settle, or
        # found impossible to enforce and reported (monotonic): what the watchdog is fed on.
        self.hosts_checked_at: float | None = None
        # Why the daemon does not feed systemd's watchdog now (see detoxd.service.liveness).
        self.guard_problem: str | None = None
        self._applied_unsaved = False
        self._read_lock = threading.Lock()  # one config read at a time, outside self.lock
        self.list_directories: frozenset[Path] = frozenset()  # of `lists:` files, to watch
        self._names_applied: frozenset[str] = frozenset()  # what enforce() last gave the targets
        self._hosts_names_logged: frozenset[str] = frozenset()
        try:
            paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:  # a file in its place, a read-only parent: loud, never fatal
            reason = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
            self.problems["state"] = f"cannot use the state directory {paths.state_dir}: {reason}"
            log.error("%s (enforcement goes on; retrying every %gs)", self.problems["state"], TICK_SECONDS)
        self._evidence_failed = False  # the evidence directory could not be written (said once)
        self._make_evidence_dir()
        # Temporary files a kill left between write and rename (a full-size hosts copy each).
        remove_stale_temporaries(paths.state_dir)
        remove_stale_temporaries(paths.hosts_file.parent, only_for=paths.hosts_file.name)
        self.hosts = HostsTarget(paths.hosts_file, paths.state_dir, clock.monotonic)
        self._state_lost: str | None = None  # no copy of the state could be used: why
        self._lost_at_start: str | None = None  # copies were gone at start (journalled at boot)
        self._state_dir_missing = False  # removed while running, and not made again yet
        self.state = self._load_state()
        self.browser = BrowserTarget(paths.hosts_file, paths.state_dir, policy_root)
        if self.browser.policies is not None:  # before any writer runs, as for the hosts file
            self.browser.policies.remove_stale_temporaries()
        # The household's DNS engines, through the network agents (detoxd netagent).
        self.network = NetworkTarget(paths.state_dir, clock.monotonic)
        self.targets: tuple[Target, ...] = (self.hosts, self.browser, self.network)
        self.app_watcher = app_watcher or AppWatcher()
        self._configured_apps: tuple[apps.AppRule, ...] = ()
        self._kept_apps = self._load_kept_apps()
        self.sessions = SessionScheduler(clock, self._publish_session_event,
                                         fired_file=paths.sessions_announced_file)
        # Sites that may leave the block for a while (allowances: in blocklist.yaml).
        self.allowances = allowances or AllowanceKeeper(paths.allowances_file, clock)
        # The audit trail: every decision worth a line in `detoxd report` (journal.record).
        self.journal = journal.Journal(journal.directory_for(paths.state_dir), clock,
                                       header=self._journal_header)
        journal.install(self.journal)
        self.audit = Audit(self.journal.directory, clock.monotonic)
        self._last_window: DetoxWindow | None = None

    # ---- life cycle ----

    def boot(self) -> None:
        """At start-up: the last good config, the detox clock, then the config on disk.

        The config is read without holding :attr:`lock` (like every reload)."""
        with self.lock:
            self._lifecycle("daemon_started", version=__version__)
            if self.hosts.recovery is not Recovery.NOTHING:  # a crash interrupted a hosts write
                journal.record("hosts_write_recovered", outcome=self.hosts.recovery.name.lower(),
                               detail=self.hosts.recovery.value)
            self._load_applied()
            if self._state_lost is not None:
                self._fail_closed(self._state_lost)
            elif self._lost_at_start is not None:
                self._lifecycle("state_lost", reason=self._lost_at_start, failed_closed=False)
            self.tick()
            self.checkpoint()
        self.reload()
        with self.lock:
            self.allowances.sync_lock(active=self.state.active, locked=self.state.locked)
            self.enforce()
            # Finishes a policy removal that a crash interrupted (the names did not change).
            self.browser.apply(self.hosts.names)

    def shutdown(self) -> None:
        self.checkpoint()
        self.hosts.close()
        self.journal.close()
        if journal.installed() is self.journal:
            journal.install(None)

    def checkpoint(self) -> None:
        """Save the state (and its copies); a full or broken disk is reported, never raised."""
        paths = self.paths
        saved = self._persist("state", lambda: state_store.save(
            paths.state_file, self.state, copies=self._state_copies()))
        if saved and self._applied_unsaved:
            self._save_applied()

    def _state_copies(self) -> tuple[Path, ...]:
        paths = self.paths
        return (paths.state_backup_file, paths.runtime_state_file, paths.evidence_state_file)

    def _make_evidence_dir(self) -> None:
        """The evidence directory (LogsDirectory= makes it under systemd), private like the state."""
        try:
            self.paths.evidence_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            self._evidence_unwritable(exc)

    def _evidence_unwritable(self, exc: OSError) -> None:
        if not self._evidence_failed:
            self._evidence_failed = True
            log.error("cannot keep evidence of the detox in %s: %s (a removed state directory would "
                      "then lose the detox)", self.paths.evidence_dir, exc.strerror or exc)

    def _lifecycle(self, kind: str, **fields: Any) -> None:
        """A detox's start or end (and the daemon's, and a lost state): in the event journal and
        in the ledger outside the state directory, so that its removal leaves a trace."""
        journal.record(kind, **fields)
        try:
            ledger.append(self.paths.ledger_file, kind, self.clock.now(), **fields)
        except OSError as exc:
            self._evidence_unwritable(exc)
        else:
            self._evidence_failed = False

    def _persist(self, what: str, write: Callable[[], None]) -> bool:
        """Run a write to the state directory; on OSError keep running and say so loudly."""
        try:
            write()
        except OSError as exc:
            message = f"cannot save the {what} in {self.paths.state_dir}: {exc.strerror or exc}"
            if self.problems.get("state") != message:
                log.error("%s (enforcement goes on; retrying every %gs)", message, TICK_SECONDS)
                self.problems["state"] = message
                self.notifier.status(message)
                self.publish("status")
            return False
        if self.problems.pop("state", None) is not None:
            log.info("the state directory %s is writable again", self.paths.state_dir)
            self.publish("status")
        return True

    # ---- config ----

    def reload(self) -> ConfigError | None:
        """Read the config *without* :attr:`lock` (a large or hostile config must not stall
        enforcement or status), then apply the result under it."""
        with self._read_lock:
            try:
                result: LoadedConfig | ConfigError = load_config(self.paths.config_dir)
            except ConfigError as error:
                result = error
            with self.lock:
                return self.apply_config(result)

    def apply_config(self, result: LoadedConfig | ConfigError) -> ConfigError | None:
        if isinstance(result, ConfigError):
            self._config_failed(result)
            return result
        self._config_loaded(result)
        return None

    def _config_failed(self, error: ConfigError) -> None:
        # Only what any user may read goes to the log: a `lists:` file's content is root's.
        public = "; ".join(str(issue.redacted()) for issue in error.issues)
        first = public.split("; ", 1)[0] if public else "invalid config"
        new_error = self.config_error is None or str(self.config_error) != str(error)
        self.config_error = error
        self.notifier.status(f"config error: {first}")
        self.enforce()  # first: the count logged is what is in force (the ratchet's names too)
        if new_error:
            log.error("config invalid, keeping the block in force (%d names): %s",
                      len(self.hosts.names), public)
            issues = error.issues
            journal.record("config_error", errors=len(issues),
                           first=str(issues[0].redacted()) if issues else first)
        self.publish("config_error", message=str(error))

    def _config_loaded(self, loaded: LoadedConfig) -> None:
        changed = loaded.order != self.applied.order  # the order decides the block's bytes
        lock_before = (self.applied.lock_mode, self.applied.peers_needed)
        self.config_error = None
        self.config_missing = loaded.missing
        self.warnings = [str(warning) for warning in loaded.warnings]
        self._configured_apps = loaded.blocklist.apps
        self.allowances.configure(loaded.blocklist.allowances)
        for warning in self.warnings:
            log.warning("%s", warning)
        self.applied = Applied(loaded.names, loaded.order, loaded.main.detox.days, loaded.main.detox.lock,
                               loaded.main.bypass.browser_policies, loaded.main.notifications.suppress,
                               loaded.main.detox.lock_mode, loaded.main.detox.peers_needed)
        self.list_directories = frozenset(
            (self.paths.config_dir / ref.path).parent for ref in loaded.blocklist.lists)
        self.browser.browser_policies = self.applied.browser_policies
        self.network.configure(loaded.main.network, loaded.blocklist.allow,
                               active=self.state.active, locked=self.state.locked)
        self.sessions.update(plan.from_config(loaded.main, system_timezone()), self.clock.now())
        if changed or (self.applied.lock_mode, self.applied.peers_needed) != lock_before:
            self._save_applied()
        self.enforce()
        if changed:
            log.info("config loaded: %d names in the blocklist", len(loaded.names))

    # ---- enforcement ----

    def enforce(self) -> None:
        """Put the names the detox calls for into every target."""
        if self.state.active:
            before = self.state.ratchet
            self.state = detox.update_ratchet(self.state, self.applied.names)
            if self.state.ratchet != before:
                # Saved at once, not at the next 30 s checkpoint: a kill -9 in between, with the
                # YAML and applied.json damaged, must not shrink the block.
                self.checkpoint()
        self._enforce_app_rules()
        enforced = detox.enforced_names(self.state, self.applied.names)
        if self.state.active:
            # Firefox's canary: NXDOMAIN (or a null answer) turns its default DNS-over-HTTPS off.
            enforced = enforced | {CANARY}
        self.network.configure(self.network.configured, self.network.allowed,
                               active=self.state.active, locked=self.state.locked)
        # Open allowances take their names out of every target for a while.
        names = enforced - self.allowances.unblocked(enforced, detox_active=self.state.active)
        before = self._names_applied
        order = self._block_order(names)
        if self._apply(self.hosts, names, order) and names != self._hosts_names_logged:
            log.info("hosts block applied: %d names (%+d) in %s", len(names),
                     len(names) - len(self._hosts_names_logged), self.paths.hosts_file)
            self._hosts_names_logged = names
        # A tamper that landed while these names were applied (a config change): counted too.
        self._record_drift(self.hosts.take_drift())
        if names != before:
            # Whether or not the hosts file could take them: a hosts file that cannot be
            # written must not hold back the browsers' policies and the household's engines.
            self._names_applied = names
            self._apply(self.browser, names, order)
            self._apply(self.network, names, order)
            self._request_cut(blocked=names - before, opened=before - names)
            self.publish("status")
        self._journal_allowances(enforced)

    def _request_cut(self, *, blocked: frozenset[str], opened: frozenset[str]) -> None:
        """Ask the connection cutter (detoxd-cutter.service) to close open connections to the
        names just blocked, and to learn where names just let through point."""
        if not self.state.active:
            return  # at the end of a detox everything is let through: nothing to cut
        try:
            cutter.request_cut(self.paths.cutter_dir, block=blocked, opened=opened)
        except OSError as exc:
            log.error("cannot queue a request for the connection cutter in %s: %s",
                      self.paths.cutter_dir, exc)

    def _journal_allowances(self, enforced: frozenset[str]) -> None:
        for kind, fields in self.allowances.drain_events():
            if kind == "allowance_opened":
                opened = self.allowances.names_of(fields["allowance"], enforced)
                fields = {**fields, "names": sorted(opened)[:100]}
            journal.record(kind, **fields)

    def _apply(self, target: Target, names: frozenset[str], order: tuple[str, ...]) -> bool:
        try:
            target.apply(names, order)
        except OSError as exc:
            self._target_failed(target, exc)
            return False
        self._target_ok(target)
        return True

    def _target_ok(self, target: Target) -> None:
        if target is self.hosts and self.hosts.deadline() is None:  # nothing left to settle
            self.hosts_checked_at = self.clock.monotonic()
        if self.problems.pop(target.name, None) is not None:
            log.info("the %s is enforced again", target.name)
            journal.record("enforced_again", target=target.name)
            self.publish("status")

    def check(self, now: float, *, full: bool) -> None:
        """The tick's look at every target: settle pending changes, find and undo drift."""
        for target in self.targets:
            try:
                drift = target.check(now, full=full)
            except OSError as exc:
                self._target_failed(target, exc)
                continue
            if target is not self.hosts or self.hosts.in_sync:
                self._target_ok(target)
            self._record_drift(drift)

    def settle(self, now: float) -> None:
        """A hosts-file change inotify reported has settled: restore the block at once."""
        try:
            self._record_drift(self.hosts.settle(now))
        except OSError as exc:
            self._target_failed(self.hosts, exc)
            return
        if self.hosts.in_sync:
            self._target_ok(self.hosts)

    def _target_failed(self, target: Target, exc: OSError) -> None:
        if target is self.hosts and isinstance(exc, ReadOnlyInSandbox):
            # Under systemd's ProtectSystem=strict only the original /etc/hosts inode is
            # writable; after a rename-replace the new file is read-only here, and PID 1's view
            # of it could not be opened. A restart (Restart=always) mounts the new file writable.
            # (Any other read-only file — a read-only bind mount — is reported, never a restart
            # loop.)
            log.error("hosts file %s is read-only here (%s): exiting so that the service "
                      "restarts with write access", self.paths.hosts_file, exc.strerror)
            self.exit_code = EXIT_RESTART
            return
        if target is self.hosts:  # looked, and said loudly why it cannot: a restart would not help
            self.hosts_checked_at = self.clock.monotonic()
        message = f"cannot enforce the block in the {target.name}: {exc.strerror or exc}"
        if self.problems.get(target.name) != message:  # once, not every second
            log.error("%s (retrying every %gs)", message, TICK_SECONDS)
            journal.record("enforcement_failed", target=target.name, reason=str(exc.strerror or exc))
            self.problems[target.name] = message
            self.notifier.status(message)
            self.publish("status")
        if target is self.hosts:
            self.hosts.retry_after(TICK_SECONDS)  # true to the message: the next tick tries again

    def _record_drift(self, drift: list[Drift]) -> None:
        for line in self.hosts.take_neutralised():
            log.warning("%s: neutralised a line giving %s another address: %s", self.paths.hosts_file,
                        ", ".join(line.names), line)
            journal.record("hosts_line_neutralised", line=str(line)[:300], names=list(line.names[:20]),
                           addresses=sorted({address for address, _ in line.overrides})[:5])
        for found in drift:
            self.state = detox.record_tamper(self.state)
            log.warning("%s tampered with: %s (%d restores so far)", found.target, found.detail,
                        self.state.tamper_events)
            journal.record("tamper", target=found.target, restored=found.detail)
            self.publish("tamper", target=found.target)

    def _enforce_app_rules(self) -> None:
        """Like the names: while a locked detox runs, app rules only accumulate (kept in the
        state directory, so a restart with the app removed from the YAML still closes it)."""
        locked = self.state.active and self.state.locked
        configured = self._configured_apps
        rules = apps.ratchet_rules(self._kept_apps, configured) if locked else configured
        kept = rules if locked else ()
        if kept != self._kept_apps and self._save_kept_apps(kept):
            self._kept_apps = kept  # else retried at the next enforce
        self.app_watcher.set_rules(rules)

    def _save_kept_apps(self, kept: tuple[apps.AppRule, ...]) -> bool:
        data = json.dumps(apps.rules_to_json(kept)).encode()
        return self._persist("kept app rules", lambda: state_store.write_atomic(
            self.paths.apps_ratchet_file, data))

    def watch_apps(self, now: float) -> None:
        """Close blocked apps started since the last tick; only while a detox runs."""
        if not self.state.active:
            self.app_watcher.pause()
            return
        try:
            closures = self.app_watcher.scan(now)
            for closure in closures:
                journal.record("app_closed", app=closure.app, uid=closure.root.real_uid, pid=closure.root.pid)
            if closures:
                self.publish("status")
        except OSError as exc:  # /proc unreadable: everything else keeps working
            log.error("cannot watch for blocked apps: %s", exc)

    def _block_order(self, names: frozenset[str]) -> tuple[str, ...]:
        """The config's order, then names the ratchet keeps after they left the config, sorted."""
        if not names:
            return ()
        configured = self.applied.order if names >= self.applied.names else tuple(
            name for name in self.applied.order if name in names)
        kept = names - self.applied.names
        return configured + tuple(sorted(kept)) if kept else configured

    # ---- the detox clock ----

    def tick(self) -> None:
        self._tick_detox()
        if self.allowances.tick():
            self.enforce()  # an allowance opened or closed by itself: every target follows
            self.publish("allowance")
        for notice in self.allowances.notices(detox_active=self.state.active):
            # The tray shows it even under do-not-disturb: it is the user's own allowance.
            self.publish("allowance_closing", **notice)
        self._agent_reports()  # notices agents that went away
        self.journal.sync()
        self.status_builder.snapshot()

    def _tick_detox(self) -> None:
        before = self.state
        now, boot = self.clock.now(), self._boot()
        sync = self.clock.time_sync() if detox.needs_time_sync(before, now=now, boot=boot) else None
        self.state = detox.tick(before, now=now, boot=boot, sync=sync)
        self._report_held_time(before, self.state)
        if self.state.clock_jumps > before.clock_jumps and before.checkpoint is not None:
            wall = (now - before.checkpoint.wall).total_seconds()
            credited = boot.seconds - before.checkpoint.boot.seconds
            journal.record("clock_jump", seconds=round(wall - credited))
        missing = not os.path.lexists(self.paths.state_dir)  # (something else there: see problems)
        if missing and not self._state_dir_missing:
            self._state_dir_removed()  # once: it stays missing only when it cannot be made again
        self._state_dir_missing = missing and not os.path.lexists(self.paths.state_dir)
        if (self.state.active or "state" in self.problems) and not os.path.lexists(self.paths.state_file):
            # Removed (or never written: the disk was full): a kill now would lose the detox.
            if "state" not in self.problems:
                log.warning("the state file %s is gone: writing it again", self.paths.state_file)
            self.checkpoint()
        if before.active and not self.state.active:
            log.info("detox finished: removing the block from %s", self.paths.hosts_file)
            self._lifecycle("detox_ended", early=False, reason="finished")
            self._last_window = self._window_of(before, ended_at=now)
            self.checkpoint()
            self.allowances.detox_ended()
            self.enforce()
            self.publish("detox_ended")

    def _report_held_time(self, before: detox.DetoxState, after: detox.DetoxState) -> None:
        """Time the wall clock claims across a reboot without confirmation: held, loudly."""
        was, held = detox.held_seconds(before), detox.held_seconds(after)
        if held > was and after.held is not None:
            log.warning("%s of downtime held, not credited: %s", duration_text(held), after.held.reason)
            journal.record("time_held", seconds=round(held), reason=after.held.reason)
            self.publish("status")
        elif was and not held:
            credited = after.credited_seconds - before.credited_seconds if after.active else None
            log.info("the clock is confirmed: held time released (%s held)", duration_text(was))
            journal.record("time_released", held_seconds=round(was),
                           credited_seconds=None if credited is None else round(credited))
            self.publish("status")

    def _state_dir_removed(self) -> None:
        """`rm -rf /var/lib/detoxd` while running: everything is written again from memory at
        once (the state, the last good blocklist, the kept app rules), and it is said in the
        event journal (started again), the ledger, the log and status."""
        directory = self.paths.state_dir
        self.state_error = (f"the state directory {directory} was removed while detoxd ran (at "
                            f"{_iso(self.clock.now())}); written again from memory; the event journal "
                            "before that is gone")
        log.error("%s", self.state_error)
        self._applied_unsaved = True
        self.checkpoint()  # makes the directory again
        if self._kept_apps:
            self._save_kept_apps(self._kept_apps)
        self._lifecycle("state_lost", reason="state directory removed while running",
                        during_detox=self.state.active)

    def _boot(self) -> detox.BootReading:
        return detox.BootReading(self.clock.boot_id(), self.clock.boottime())

    # ---- state files ----

    def _load_state(self) -> detox.DetoxState:
        """The state from the first usable copy. When none is usable but the hosts file still
        holds detoxd's block (a detox was running), :meth:`boot` fails closed."""
        paths = self.paths
        state, problems = state_store.load_first((paths.state_file, *self._state_copies()))
        for problem in problems:
            log.error("state file unusable: %s", problem)
            self._set_aside(problem)
        if state is not None:
            if state.active:  # every name detoxd's block holds was enforced: the ratchet keeps it
                state = self._rebuild_ratchet(state)
            if problems:
                used = "a copy" if not isinstance(problems[-1], state_store.MissingRatchetError) else "it"
                self.state_error = (f"{problems[0].path.name}: {problems[0].reason}; resumed from {used}")
            elif not os.path.lexists(paths.state_file):  # removed while detoxd was stopped
                self.state_error = f"{paths.state_file} was gone; resumed from a copy"
                self._lost_at_start = self.state_error
            return state
        reason = problems[0].reason if problems else "no state file"
        verdict = self._evidence(bool(problems))
        if verdict.word is evidence.Word.RUNNING:
            self._state_lost = f"{reason}; {verdict}"
        elif verdict.word is evidence.Word.SILENT:
            self._lost_at_start = (f"every copy of the detox state is gone ({reason}) and nothing left "
                                   f"says whether a detox was running ({verdict.source}): if one was, "
                                   "its traces vanished")
            self.state_error = self._lost_at_start
            self.problems["lost state"] = self._lost_at_start
            log.error("%s", self._lost_at_start)
        elif problems:
            log.error("state unusable (%s), and %s: no detox was running", reason, verdict)
        return detox.DetoxState()

    def _evidence(self, damaged: bool) -> evidence.Verdict:
        """What the traces outside the state copies say about a detox (see core.evidence)."""
        return traces.verdict(self.paths, in_hosts_file=self._block_in_hosts_file(), damaged=damaged)

    def _set_aside(self, problem: state_store.StateFileError) -> None:
        """Keep the evidence out of the way of the next save (a directory, garbage, a newer version)."""
        if isinstance(problem, state_store.MissingRatchetError) or not os.path.lexists(problem.path):
            return
        aside = problem.path.with_suffix(".corrupt")
        try:
            if os.path.isdir(aside) and not os.path.islink(aside):
                return
            os.replace(problem.path, aside)
        except OSError as exc:
            log.error("cannot move %s aside: %s", problem.path, exc.strerror)

    def _block_names_in_hosts_file(self, known: frozenset[str] = frozenset()) -> frozenset[str]:
        """The names detoxd's block in the hosts file holds, beyond ``known`` ones (validated)."""
        try:
            text = self.hosts.file.read()
        except OSError:
            return frozenset()
        # Names the ratchet already holds were validated when they got there: at a million names
        # validating them all again doubled a restart.
        names = hosts.split(text).names - known
        try:
            return frozenset(state_store.checked_names(sorted(names), "the hosts block"))
        except (TypeError, ValueError):
            return frozenset(name for name in names if state_store.is_valid_name(name))

    def _block_in_hosts_file(self) -> bool:
        return bool(self._block_names_in_hosts_file())

    def _rebuild_ratchet(self, state: detox.DetoxState) -> detox.DetoxState:
        """The ratchet's side file is gone: keep every name the hosts file still blocks."""
        if not state.active:
            return state
        return detox.update_ratchet(state, self._block_names_in_hosts_file(known=state.ratchet))

    def _fail_closed(self, reason: str) -> None:
        """No copy of the state survived, but the block in the hosts file shows a detox was
        running. Its end cannot be known: a new locked detox of the configured length starts
        now (never ends early), keeping every name the file blocks, and status says so."""
        result = detox.start(detox.DetoxState(), now=self.clock.now(), boot=self._boot(),
                             days=self.applied.days, locked=True)
        assert isinstance(result, detox.DetoxState)  # an idle state can always start
        self.state = detox.update_ratchet(result, self._block_names_in_hosts_file())
        self.state_error = (f"the detox state was lost ({reason}), so a locked detox of "
                            f"{self.applied.days:g} days was started again")
        log.error("%s", self.state_error)
        self._lifecycle("state_lost", reason=reason, failed_closed=True)
        self._lifecycle("detox_started", days=self.applied.days, locked=True, names=len(self.state.ratchet),
                        ends_at=_iso(detox.ends_at(self.state, self.clock.now())), reason="failed closed")
        self._state_lost = None

    def _load_kept_apps(self) -> tuple[apps.AppRule, ...]:
        try:
            return apps.rules_from_json(state_store.read_json(self.paths.apps_ratchet_file))
        except FileNotFoundError:
            return ()
        except (OSError, state_store.StateFileError, ValueError) as exc:
            log.error("ignoring unreadable %s: %s", self.paths.apps_ratchet_file, exc)
            return ()

    def _load_applied(self) -> None:
        """The last good blocklist, validated as strictly as the config: ignored when damaged."""
        path = self.paths.applied_file
        try:
            # It holds the whole blocklist (up to the loader's names limit): bounded like the
            # ratchet's side file, not like state.json, or a large block is dropped at restart.
            data = state_store.read_json(path, state_store.MAX_RATCHET_BYTES)
            if not isinstance(data, dict):
                raise TypeError("expected a JSON object")
            order = tuple(dict.fromkeys(state_store.checked_names(data["names"], "names")))
            days, lock = data["days"], data["lock"]
            if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 365:
                raise ValueError(f"days must be a number from 0 to 365, got {days!r}")
            policies = data.get("browser_policies", True)
            suppress = data.get("suppress_notifications", True)
            if not all(isinstance(flag, bool) for flag in (lock, policies, suppress)):
                raise TypeError("lock and the switches must be true or false")
            peers_needed = data.get("peers_needed", 3)
            if type(peers_needed) is not int or not 1 <= peers_needed <= 64:
                raise ValueError(f"peers_needed must be a small whole number, got {peers_needed!r}")
            self.applied = Applied(frozenset(order), order, float(days), lock, policies, suppress,
                                   LockMode(data.get("lock_mode", "true" if lock else "false")),
                                   peers_needed)
            self.browser.browser_policies = self.applied.browser_policies
        except FileNotFoundError:
            pass
        except (state_store.StateFileError, KeyError, TypeError, ValueError) as exc:
            log.error("ignoring unusable %s: %s", path, exc)

    def _save_applied(self) -> None:
        data = {"version": 1, "names": self.applied.order, "days": self.applied.days,
                "lock": self.applied.lock, "browser_policies": self.applied.browser_policies,
                "suppress_notifications": self.applied.suppress_notifications,
                "lock_mode": self.applied.lock_mode.value, "peers_needed": self.applied.peers_needed}
        encoded = json.dumps(data).encode()
        self._applied_unsaved = not self._persist(
            "last good blocklist", lambda: state_store.write_atomic(self.paths.applied_file, encoded))

    # ---- commands (from the control socket; SO_PEERCRED already checked for mutations) ----

    def handle(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "report":
            return self.report(peer)
        if command == "reload":  # reads the config outside the lock
            return self.reload_command(peer)
        if command == "status":
            return self._status_reply(private=peer.uid == 0)
        if command == "start":
            # The config as it is on disk now, read outside the lock like every reload: a start
            # right after an edit must see that edit (the watcher settles for a moment first).
            self.reload()
        with self.lock:
            if command == "activity_targets":
                return self.activity_targets()
            if command == "activity_report":
                return self.audit.activity_report(
                    request, peer, window=self._report_window(),
                    blocked_names=self.hosts.names | self.applied.names,
                    blocked_apps=self._blocked_app_names(), tz=local_zone())
            if command == "start":
                return self.start(request.get("days"), peer, request.get("peer_lock"))
            if command == "end":
                if "peers_proof" in request:
                    return self.end_with_peers(request["peers_proof"], peer)
                return self.end(peer)
            if command == "peer_lock":
                return self.peer_lock()
            if command == "calendar":
                return self.calendar()
            if command == "agent_report":
                return self.agent_report(request, peer)
            if command == "network_sync":
                return self.network_sync(request, peer)
            if command in ("open", "close"):
                return self.allowance_command(command, request, peer)
        return {"ok": False, "code": "bad_request", "error": f"unknown command {command!r}"}

    def start(self, days: Any, peer: Peer, peer_lock: Any = None) -> dict[str, Any]:
        refusal = self._config_refusal()
        if refusal is not None:
            log.warning("refused start from uid %d: the config is in error: %s", peer.uid,
                        "; ".join(refusal.pop("public")))
            journal.record("start_refused", by_uid=peer.uid, errors=refusal["total"],
                           reason="config in error")
            return refusal
        if days is None:
            days = self.applied.days
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 365:
            return {"ok": False, "code": "bad_request", "error": "days must be a number from 0 to 365"}
        verifier = self._start_verifier(peer_lock)
        if isinstance(verifier, dict):
            log.warning("refused start from uid %d: %s", peer.uid, verifier["error"])
            return verifier
        result = detox.start(self.state, now=self.clock.now(), boot=self._boot(),
                             days=float(days), locked=self.applied.lock, peer_lock=verifier)
        if isinstance(result, detox.Refusal):
            log.warning("refused start from uid %d: %s", peer.uid, result.reason)
            return {"ok": False, "code": "refused", "error": result.reason}
        self.state = result
        self.state_error = None  # a new detox: whatever was recovered before is settled
        self.app_watcher.reset_counts()  # apps_closed counts this detox, like tamper_events
        self.checkpoint()
        self.allowances.detox_started(locked=self.state.locked)
        self.enforce()
        how = "locked" if self.state.locked else "unlocked"
        if verifier is not None:
            how = (f"peer lock: {verifier.needed} of {len(verifier.holders)} peers' shares end it "
                   f"early (share set {peerkey.set_words(verifier.share_set)!r})")
        log.info("detox started by uid %d: %g days, %s, %d names blocked", peer.uid, days, how,
                 len(self.hosts.names))
        self._lifecycle("detox_started", days=float(days), locked=self.state.locked,
                       names=len(self.hosts.names), ends_at=_iso(detox.ends_at(self.state, self.clock.now())),
                       by_uid=peer.uid)
        self.publish("detox_started")
        return {"ok": True, "status": self.status(private=True)}

    def _config_refusal(self) -> dict[str, Any] | None:
        """A detox starts only on the config the user wrote, as written: never on the last good
        one while the files are in error, never on built-in defaults of a missing file."""
        error = self.config_error
        if error is None and self.config_missing:
            error = missing_files_error(self.paths.config_dir, self.config_missing)
        if error is None:
            return None
        return {"ok": False, "code": "invalid_config", "error": str(error),
                "errors": [str(issue) for issue in error.issues], "total": error.total,
                "public": [str(issue.redacted()) for issue in error.issues]}  # for the log

    def end(self, peer: Peer) -> dict[str, Any]:
        result = detox.request_end(self.state)
        if isinstance(result, detox.Refusal):
            log.warning("refused end from uid %d: %s", peer.uid, result.reason)
            return {"ok": False, "code": "refused", "error": result.reason}
        self._last_window = self._window_of(self.state, ended_at=self.clock.now())
        self.state = result
        self.checkpoint()
        self.allowances.detox_ended()
        self.enforce()
        log.info("detox ended early by uid %d (it was not locked)", peer.uid)
        self._lifecycle("detox_ended", early=True, reason=f"ended early by uid {peer.uid}")
        self.publish("detox_ended")
        return {"ok": True, "status": self.status(private=True)}

    def _start_verifier(self, data: Any) -> peerkey.Verifier | dict[str, Any] | None:
        """The verifier a `lock: peers` start must carry (None for other locks), or a refusal."""
        peers = self.applied.lock_mode is LockMode.PEERS
        if data is None:
            if not peers:
                return None
            return {"ok": False, "code": "refused", "error": "detoxd.yaml has `lock: peers`: start "
                    "with `sudo detoxd start --shares-out DIR`, which writes each peer's card to DIR"}
        if not peers:
            return {"ok": False, "code": "refused", "error": "a peer lock was sent but detoxd.yaml "
                    f"has `lock: {self.applied.lock_mode.value}`, not `lock: peers`"}
        try:
            verifier = peerkey.verifier_from_json(data)
        except ValueError as error:
            return {"ok": False, "code": "bad_request", "error": f"peer_lock: {error}"}
        if verifier.needed != self.applied.peers_needed:
            return {"ok": False, "code": "refused", "error": f"the shares need {verifier.needed} "
                    f"peers but detoxd.yaml says peers_needed: {self.applied.peers_needed}"}
        return verifier

    def end_with_peers(self, proof_hex: Any, peer: Peer) -> dict[str, Any]:
        """`end --with-peers`: the CLI recovered the secret from the shares and sends a proof
        derived from it (never the secret or a share); attempts are rate-limited and logged."""
        try:
            proof = bytes.fromhex(proof_hex) if isinstance(proof_hex, str) else b""
        except ValueError:
            proof = b""
        if len(proof) != peerkey.PROOF_BYTES:
            return {"ok": False, "code": "bad_request",
                    "error": f"peers_proof must be {peerkey.PROOF_BYTES} bytes in hex"}
        self.tick()  # credited time decides the wait, and a due detox has ended
        before = self.state
        attempt = detox.end_with_peers(before, proof)
        lock = before.peer_lock if attempt.ended else attempt.state.peer_lock
        failures = lock.failed_attempts if lock else 0
        if attempt.ended:
            self._last_window = self._window_of(before, ended_at=self.clock.now())
        if attempt.state is not before:
            self.state = attempt.state
            self.checkpoint()  # a failure is counted before anyone can retry, across restarts
        journal.record("peer_end_attempt", ended=attempt.ended, by_uid=peer.uid,
                       failed_attempts=failures, reason=attempt.reason)
        if not attempt.ended:
            log.warning("refused end with peers from uid %d (%d failed attempts): %s",
                        peer.uid, failures, attempt.reason)
            self.publish("peer_attempt_failed", failed_attempts=failures)
            return {"ok": False, "code": "refused", "error": attempt.reason,
                    "failed_attempts": failures, "retry_in_seconds": round(attempt.retry_in)}
        self.allowances.detox_ended()
        self.enforce()
        log.warning("detox ended early by uid %d with the peers' shares", peer.uid)
        self._lifecycle("detox_ended", early=True,
                       reason=f"ended early with the peers' shares by uid {peer.uid}")
        self.publish("detox_ended")
        return {"ok": True, "status": self.status(private=True)}

    def peer_lock(self) -> dict[str, Any]:
        """What `end --with-peers` needs to check shares and derive the proof: public values
        only (the salt, scrypt's parameters, the share set's identifier, who holds which share)."""
        self.tick()
        lock = self.state.peer_lock
        earlier = [{"share_set": known.identifier, "started_at": _iso(known.started_at)}
                   for known in self.state.past_share_sets]
        if not self.state.active or lock is None:
            # The earlier sets still: a new detox's shares must not begin like an old one's.
            return {"ok": False, "code": "no_peer_lock", "earlier_share_sets": earlier,
                    "error": "no detox started with `lock: peers` is running"}
        verifier = lock.verifier
        return {"ok": True, "needed": verifier.needed, "holders": list(verifier.holders),
                "share_set": verifier.share_set, "salt": verifier.salt.hex(),
                "kdf": {"name": "scrypt", "n": verifier.kdf.n, "r": verifier.kdf.r, "p": verifier.kdf.p},
                "failed_attempts": lock.failed_attempts,
                "retry_in_seconds": round(detox.peer_retry_in(self.state)),
                "earlier_share_sets": earlier}

    def reload_command(self, peer: Peer) -> dict[str, Any]:
        # `ExecReload=detoxd reload` is synchronous; tell systemd too, so that the unit shows
        # "reloading" and the following READY=1 ends it (matched by MONOTONIC_USEC on systemd 253+).
        self.notifier.reloading(status="reloading the config")
        error = self.reload()
        with self.lock:
            self.notifier.ready(status=self.one_line())
            log.info("reload requested by uid %d: %s", peer.uid, "failed" if error else "ok")
            if error:
                return {"ok": False, "code": "invalid_config", "error": str(error),
                        "errors": [str(issue) for issue in error.issues]}
            return {"ok": True, "status": self.status(private=True)}

    def allowance_command(self, command: str, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """`detoxd open NAME [MINUTES]` and `detoxd close NAME`: any person at the seat (the
        keeper checks the SO_PEERCRED peer); applied to every target before the answer."""
        if command == "open":
            response = self.allowances.open(request, peer, detox_active=self.state.active)
        else:
            response = self.allowances.close(request, peer)
        if response.get("ok"):
            self.enforce()
            self.publish("allowance")
        return response

    def agent_report(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """A tray agent says whether it silenced its user's notifications (for status/doctor).

        Any user may report, but only for their own uid (from SO_PEERCRED), and a report only
        informs: nothing a tray says changes enforcement."""
        silenced = request.get("notifications_silenced")
        backend = request.get("backend")
        if not isinstance(silenced, bool) or not isinstance(backend, str | None):
            return {"ok": False, "code": "bad_request", "error": "notifications_silenced must be a bool"}
        if peer.uid not in self._agents and len(self._agents) >= MAX_AGENTS:
            return {"ok": False, "code": "busy", "error": "too many agents"}
        report = {"uid": peer.uid, "notifications_silenced": silenced, "backend": (backend or "")[:64]}
        for key in ("reason", "fix"):  # why silencing did not take, and what to do (shown by doctor)
            text = request.get(key)
            if isinstance(text, str) and text:
                report[key] = text[:MAX_AGENT_TEXT]
        if peer.uid not in self._agents:
            journal.record("agent_connected", uid=peer.uid, during_detox=self.state.active)
        self._agents[peer.uid] = (self.clock.monotonic(), report)
        return {"ok": True}

    def network_sync(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """A network agent fetches the engines and names and reports each engine's state.
        Only root and the agent's own user may: the names may come from root-only list files."""
        if peer.uid not in agent_uids():
            return {"ok": False, "code": "not_authorized", "error": "'network_sync' is for the network agent"}
        response = self.network.sync(request)
        if response.get("ok") and "lookups" in request:  # counts of the engines' query logs
            response["journalled_lookups"] = self.record_blocked_lookups(request["lookups"])
        self.check(self.clock.monotonic(), full=False)  # count the tampering it reported at once
        return response

    def _agent_reports(self) -> list[dict[str, Any]]:
        fresh_since = self.clock.monotonic() - AGENT_REPORT_SECONDS
        for uid in [uid for uid, (at, _) in self._agents.items() if at < fresh_since]:
            del self._agents[uid]  # that agent stopped, or its session ended
            journal.record("agent_disconnected", uid=uid, during_detox=self.state.active)
        return [report for _, report in self._agents.values()]

    def report(self, peer: Peer) -> dict[str, Any]:
        """`detoxd report`: built outside the lock (reading the journal takes a while)."""
        with self.lock:
            window, now = self._report_window(), self.clock.now()
        return self.audit.report(peer, now=now, tz=local_zone(), window=window)

    def _report_window(self) -> DetoxWindow | None:
        """The running detox; else the one that ended while this daemon ran; else None (the
        report then takes the latest one in the journal)."""
        running = self._window_of(self.state)
        return running if running is not None else self._last_window

    def _window_of(self, state: detox.DetoxState, ended_at: datetime | None = None) -> DetoxWindow | None:
        started, ends = state.started_at, detox.ends_at(state, self.clock.now())
        if not state.active or started is None or ends is None:
            return None
        return DetoxWindow(started, ends, ended_at)

    def activity_targets(self) -> dict[str, Any]:
        """What a tray agent measures in ActivityWatch: the blocked names (the hosts file shows
        them to everyone anyway) and the window names of the blocked apps."""
        window = self._report_window()
        if window is None:
            return {"ok": True, "detox": None, "names": [], "apps": {}}
        names = self._block_order(self.hosts.names) if self.hosts.names else self.applied.order
        rules = {rule.name: rule for rule in (*self._configured_apps, *self._kept_apps)}
        return {"ok": True,
                "detox": {"started_at": _iso(window.started_at), "ends_at": _iso(window.ends_at),
                          "ended_at": _iso(window.ended_at)},
                "names": list(names[:activity.MAX_NAMES_IN_QUERY]),
                "apps": activity.window_app_names(rules.values())}

    def record_blocked_lookups(self, entries: Any) -> int:
        """For the network agent's reports (engines that keep a query log): see Audit.blocked_lookups."""
        return self.audit.blocked_lookups(entries, blocked_names=self.hosts.names | self.applied.names)

    def _journal_header(self) -> dict[str, Any]:
        window = self._window_of(self.state)
        return {"detox_started_at": _iso(window.started_at) if window else None,
                "detox_ends_at": _iso(window.ends_at) if window else None}

    def _blocked_app_names(self) -> frozenset[str]:
        return frozenset(rule.name for rule in (*self._configured_apps, *self._kept_apps))

    def calendar(self) -> dict[str, Any]:
        """The sessions as iCalendar text, for the tray's "export" (the agent cannot read /etc
        files that need root, and must not need a second copy of the config logic)."""
        planned = self.sessions.plan
        if planned is None:
            return {"ok": False, "code": "no_sessions", "error": "no sessions planned in detoxd.yaml"}
        return {"ok": True, "ics": ics.calendar(planned, self.clock.now()).decode()}

    # ---- status ----

    def status(self, *, private: bool = False) -> dict[str, Any]:
        """The status now, as sent (see :mod:`detoxd.service.status`). Under the lock."""
        return self.status_builder.build(private=private).to_json()

    def _status_reply(self, *, private: bool) -> dict[str, Any]:
        return {"ok": True, "status": self.current_status(private=private)}

    def current_status(self, *, private: bool = False) -> dict[str, Any]:
        """Without waiting on a busy engine: see :meth:`StatusBuilder.current`."""
        return self.status_builder.current(private=private).to_json()

    def one_line(self) -> str:
        if self.problems:
            return "; ".join(sorted(self.problems.values()))
        if not self.state.active:
            return "idle"
        return f"detox active, {detox.days_left(self.state)} days left, {len(self.hosts.names)} names"

    # ---- events ----

    def status_event(self) -> dict[str, Any]:
        """For the control server's subscribers (on subscribing, then every few seconds): never
        waits on a busy engine, so a stuck main loop shows in the tray as a stale status."""
        return {"event": "status", "status": self.current_status()}

    def publish(self, event: str, **details: Any) -> None:
        if self.publish_to is not None:
            self.publish_to({"event": event, **details, "status": self.status()})

    def _publish_session_event(self, event: str, details: dict[str, Any]) -> None:
        """Called from the scheduler's thread at reminders and hot-seat handovers."""
        with self.lock:
            if event == "hot_seat":
                if details.get("seat") == 1:
                    journal.record("session_started", session=details.get("session"),
                                   starts_at=details.get("starts_at"))
                journal.record("hot_seat", session=details.get("session"), seat=details.get("seat"),
                               person=details.get("name"), starts_at=details.get("starts_at"))
            self.publish(event, **details)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None

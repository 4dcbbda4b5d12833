"""The daemon's decisions as a facade: reload, enforce, check and tick, over keepers.

The engine holds the detox state, the config in force and the enforcement targets; the detox's
life is :class:`DetoxKeeper`'s, recovery and evidence :class:`StateRecovery`'s, allowances, apps
and tray agents their keepers', the commands :mod:`detoxd.service.commands`' table. It reads time
only from its :class:`~detoxd.clock.Clock` and never waits, so every decision is tested in-process
with a FakeClock. The daemon (:mod:`detoxd.service.daemon`) wires it to select(), signals, the
control socket's threads and the config watcher; every call is made with :attr:`Engine.lock` held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from detoxd import __version__
from detoxd.clock import Clock
from detoxd.core import detox, plan, planned
from detoxd.core.config import MainConfig
from detoxd.core.network import CANARY
from detoxd.core.yamlsource import ConfigError
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import cutter, journal, state_store
from detoxd.service.agents import AgentRegistry
from detoxd.service.allowance_keeper import AllowanceKeeper
from detoxd.service.apps_keeper import AppsKeeper
from detoxd.service.appwatch import AppWatcher
from detoxd.service.audit import Audit
from detoxd.service.commands import Authorizer, CommandTable
from detoxd.service.detox_keeper import DetoxKeeper
from detoxd.service.loader import LoadedConfig, load_config
from detoxd.service.mail import MailKeeper
from detoxd.service.recovery import StateRecovery
from detoxd.service.schedule_keeper import ScheduleKeeper
from detoxd.service.scheduler import SessionScheduler, local_zone, system_timezone
from detoxd.service.sdnotify import Notifier
from detoxd.service.state_store import Applied
from detoxd.service.status import StatusBuilder
from detoxd.service.targets import Drift, Target
from detoxd.service.targets.browser import BrowserTarget
from detoxd.service.targets.hosts import HostsTarget
from detoxd.service.targets.hosts.fsops import ReadOnlyInSandbox
from detoxd.service.targets.hosts.hostsfile import Recovery
from detoxd.service.targets.network import NetworkTarget

log = logging.getLogger("detoxd")

TICK_SECONDS = 1.0  # how often the daemon ticks while a target cannot be enforced (it retries)
# The longest the daemon's loop sleeps when nothing else is due (issue 26: idle costs battery).
# Each tick reads the detox clock, stat()s the hosts file for an event inotify lost, forgets gone
# agents, syncs the journal and feeds the watchdog (half its WatchdogSec=30 s). Tampering does not
# wait for it: inotify wakes the loop within milliseconds. 15 s bounds how late a lost event, a
# removed state file or a resume from suspend (the loop's timer stops while suspended) is seen.
QUIET_SECONDS = 15.0
EXIT_RESTART = 75  # EX_TEMPFAIL: systemd's Restart=always starts the daemon again

Publish = Callable[[dict[str, Any]], None]


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
        self.agents = AgentRegistry(clock.monotonic)  # the tray agents that report
        # What cannot be done right now, shown loudly in status until it works again:
        # "state" (saving to the state directory), "hosts file"/"browser policies" (enforcing).
        self.problems: dict[str, str] = {}
        self.state_error: str | None = None  # the detox state had to be recovered or guessed
        self.status_builder = StatusBuilder(self)
        # When the daemon's main loop last went round (monotonic; None without a loop, as in
        # tests): a loop stuck outside the lock must not be hidden by a fresh-looking status.
        self.loop_seen: float | None = None
        self.loop_due: float | None = None  # when the loop asked to be woken (monotonic)
        # When the hosts file was last seen as it should be, with no change waiting to settle, or
        # found impossible to enforce and reported (monotonic): what the watchdog is fed on.
        self.hosts_checked_at: float | None = None
        # Why the daemon does not feed systemd's watchdog now (see detoxd.service.liveness).
        self.guard_problem: str | None = None
        self._applied_unsaved = False
        self._read_lock = threading.Lock()  # one config read at a time, outside self.lock
        self.list_directories: frozenset[Path] = frozenset()  # of `lists:` files, to watch
        self._names_applied: frozenset[str] = frozenset()  # what enforce() last gave the targets
        # What enforce() last found blocked, with the names open allowances let through.
        self.names_enforced: frozenset[str] = frozenset()
        self._hosts_names_logged: frozenset[str] = frozenset()
        self._order_cache: tuple[frozenset[str], Applied, tuple[str, ...]] | None = None
        self._start_cut_due = False  # boot(cut_later=True) until request_start_cut
        # The config's names and a ratchet known to hold them all (the very sets).
        self._ratchet_holds: tuple[frozenset[str], frozenset[str]] | None = None
        self._block_recorded: state_store.BlockRecord | None = None  # hosts-block.json, as written
        self.recovery = StateRecovery(self)  # the state directory, the evidence outside it
        self.recovery.prepare_directories()
        self.hosts = HostsTarget(paths.hosts_file, paths.state_dir, clock.monotonic)
        # (Before the state: a ratchet rebuilt after a lost state keeps the paths its files hold.)
        self.browser = BrowserTarget(paths.hosts_file, paths.state_dir, policy_root)
        self.state = self.recovery.load()
        if self.browser.policies is not None:  # before any writer runs, as for the hosts file
            self.browser.policies.remove_stale_temporaries()
        # The household's DNS engines, through the network agents (detoxd netagent).
        self.network = NetworkTarget(paths.state_dir, clock.monotonic)
        self.targets: tuple[Target, ...] = (self.hosts, self.browser, self.network)
        self.mail = MailKeeper(paths.state_dir)  # the outbox to the peers (detoxd-mail.service sends it)
        self.app_watcher = app_watcher or AppWatcher()
        self.apps = AppsKeeper(self.app_watcher, paths.apps_ratchet_file, self.recovery.persist)
        self.sessions = SessionScheduler(clock, self._publish_session_event,
                                         fired_file=paths.sessions_announced_file)
        self._main: MainConfig | None = None  # detoxd.yaml in force (the sessions' plan is made from it)
        self._sessions_anchor: datetime | None = None  # the detox start a relative plan was made from
        # Sites that may leave the block for a while (allowances: in blocklist.yaml).
        self.allowances = allowances or AllowanceKeeper(paths.allowances_file, clock)
        # Weekly block windows (schedule: in detoxd.yaml), on the allowances' trusted clock.
        self.schedule = ScheduleKeeper(paths.schedule_file, self._trusted_now, self._trusted_to_wall,
                                       timezone=lambda: self.allowances.tz)
        # The audit trail: every decision worth a line in `detoxd report` (journal.record).
        self.journal = journal.Journal(journal.directory_for(paths.state_dir), clock,
                                       header=lambda: self.detox.journal_header())
        journal.install(self.journal)
        self.journal.listeners.append(  # peers_informed: what the peers are told about
            lambda kind, fields: self.mail.on_event(kind, fields, active=self.state.active,
                                                    now=self.clock.now()))
        self.audit = Audit(self.journal.directory, clock.monotonic)
        self.detox = DetoxKeeper(self)  # start, end, peers, the detox clock, failing closed
        # The control socket's commands, checked against who may call each (logind: the seat).
        self._commands = CommandTable(self, Authorizer(lambda: self.allowances.logind))

    def _trusted_now(self) -> datetime:
        clock = self.allowances.state.clock
        return clock.at if clock is not None else self.clock.now()

    def _trusted_to_wall(self, moment: datetime) -> datetime:
        clock = self.allowances.state.clock
        # As the wall clock showed it at the trusted clock's last reading: exact between ticks.
        return clock.to_wall(moment, clock.checkpoint.wall) if clock is not None else moment

    # ---- life cycle ----

    def boot(self, *, cut_later: bool = False) -> None:
        """At start-up: the config on disk (read without holding :attr:`lock`, like every
        reload), or the last good one when it cannot be read; the detox clock; then the block.

        ``cut_later``: the request to cut connections to every name blocked (all are new to
        this process) waits for :meth:`request_start_cut` (the daemon's, once status answers)."""
        self._start_cut_due = cut_later
        with self._read_lock:
            result = self._read_config()
        with self.lock:
            self.recovery.lifecycle("daemon_started", version=__version__)
            if self.hosts.recovery is not Recovery.NOTHING:  # a crash interrupted a hosts write
                journal.record("hosts_write_recovered", outcome=self.hosts.recovery.name.lower(),
                               detail=self.hosts.recovery.value)
            # The names in force from the start (an unlocked detox's too, should the clock's
            # tick enforce before the config is applied): the config's, else the last good ones.
            self._load_applied(result)
            if self.recovery.lost is not None:
                self.detox.fail_closed(self.recovery.lost)
                self.recovery.lost = None
            elif self.recovery.lost_at_start is not None:
                self.recovery.lifecycle("state_lost", reason=self.recovery.lost_at_start, failed_closed=False)
            self.tick()
            self.checkpoint()
            self.apply_config(result)
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
        saved = self.recovery.persist("state", lambda: state_store.save(
            paths.state_file, self.state, copies=self.recovery.state_copies()))
        if saved and self._applied_unsaved:
            self._save_applied()
        if saved:
            self._record_hosts_block()

    def rewrite_state_files(self) -> None:
        """Everything the state directory holds, written again from memory (it was removed)."""
        self._applied_unsaved = True
        self._block_recorded = self.recovery.block_record = None  # hosts-block.json too
        self.checkpoint()  # makes the directory again
        if self.apps.kept:
            self.apps.save()

    # ---- config ----

    def reload(self) -> ConfigError | None:
        """Read the config *without* :attr:`lock` (a large or hostile config must not stall
        enforcement or status), then apply the result under it."""
        with self._read_lock:
            result = self._read_config()
            with self.lock:
                return self.apply_config(result)

    def _read_config(self) -> LoadedConfig | ConfigError:
        try:
            return load_config(self.paths.config_dir)
        except ConfigError as error:
            return error

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
        self.apps.configured = loaded.blocklist.apps
        self.allowances.configure(loaded.blocklist.allowances)
        self.schedule.configure(loaded.main.schedule, loaded.main.detox.after, whole=loaded.names,
                                allow=loaded.blocklist.allow,
                                apps=frozenset(rule.name for rule in loaded.blocklist.apps))
        for warning in self.warnings:
            log.warning("%s", warning)
        self.applied = _applied_from(loaded)
        self.list_directories = frozenset(
            (self.paths.config_dir / ref.path).parent for ref in loaded.blocklist.lists)
        self.browser.browser_policies = self.applied.browser_policies
        self.network.configure(loaded.main.network, loaded.blocklist.allow,
                               active=self.state.active, locked=self.state.locked)
        self.mail.configure(loaded.main.mail, loaded.main)
        self._main = loaded.main
        self.refresh_sessions(force=True)
        if changed or (self.applied.lock_mode, self.applied.peers_needed) != lock_before:
            self._save_applied()
        self.enforce()
        if changed:
            log.info("config loaded: %d names in the blocklist", len(loaded.names))

    def refresh_sessions(self, *, force: bool = False) -> None:
        """The sessions' plan again when it follows the detox (`sessions.first: "day N HH:MM"`)
        and the detox's start changed: a detox started, planned (`start --at`), cancelled, ended."""
        main = self._main
        if main is None:
            return
        state = self.state
        anchor = None
        if plan.follows_the_detox(main):
            # The running detox, else the planned one, else the latest (its start is kept when idle).
            anchor = state.planned.starts_at if state.planned and not state.active else state.started_at
        if anchor == self._sessions_anchor and not force:
            return
        self._sessions_anchor = anchor
        self.sessions.update(plan.from_config(main, system_timezone(), anchor), self.clock.now())

    # ---- enforcement ----

    def enforce(self) -> None:
        """Put the names the detox calls for into every target."""
        self.refresh_sessions()  # a detox started, began or ended: `first: "day N HH:MM"` follows it
        held = False  # the ratchet holds the config's names (known: no subset test of 1M names)
        if self.state.active:
            before = self.state.ratchet
            known = self._ratchet_holds
            if known is None or known[0] is not self.applied.names or known[1] is not before:
                self.state = detox.update_ratchet(self.state, self.applied.names)
                self._ratchet_holds = (self.applied.names, self.state.ratchet)
            paths_before = self.state.paths_ratchet
            if self.applied.paths:
                self.state = detox.update_ratchet(self.state, (), self.applied.paths)
            held = True
            # update_ratchet returns the same ratchet when nothing is new (a set's == compares
            # every name, even with itself)
            if self.state.ratchet is not before or self.state.paths_ratchet is not paths_before:
                # Saved at once, not at the next 30 s checkpoint: a kill -9 in between, with the
                # YAML and applied.json damaged, must not shrink the block.
                self.checkpoint()
        # Outside a detox only the apps a window in force names (schedule: in detoxd.yaml).
        self.apps.enforce(locked=self.state.active and self.state.locked,
                          only=None if self.state.active else self.schedule.apps)
        paths = detox.enforced_paths(self.state, self.applied.paths)
        if self.schedule.whole_in_force and not paths.issuperset(self.applied.paths):
            paths = paths.union(self.applied.paths)  # a window of the whole blocklist: its pages too
        self.browser.set_paths(paths)
        enforced = detox.enforced_names(self.state, self.applied.names, ratchet_holds_them=held)
        windows = self.schedule.blocked  # weekly block windows in force now, detox or not
        if windows and not (self.state.active and windows is self.applied.names) and not windows <= enforced:
            enforced = enforced | windows  # (no copy of a million names when the detox has them all)
        if (self.state.active or windows) and CANARY not in enforced:  # (a copy only when it is not in yet)
            # Firefox's canary: NXDOMAIN (or a null answer) turns its default DNS-over-HTTPS off.
            enforced = enforced | {CANARY}
        self.network.configure(self.network.configured, self.network.allowed,
                               active=self.state.active, locked=self.state.locked)
        # Open allowances take their names out of every target for a while.
        self.names_enforced = enforced
        unblocked = self.allowances.unblocked(enforced, detox_active=self.allowances_in_force)
        names = enforced - unblocked if unblocked else enforced
        before = self._names_applied
        order = self._block_order(names)
        if self._apply(self.hosts, names, order) and not _same(names, self._hosts_names_logged):
            log.info("hosts block applied: %d names (%+d) in %s", len(names),
                     len(names) - len(self._hosts_names_logged), self.paths.hosts_file)
            self._hosts_names_logged = names
        # A tamper that landed while these names were applied (a config change): counted too.
        self._record_drift(self.hosts.take_drift())
        if not _same(names, before):
            # Whether or not the hosts file could take them: a hosts file that cannot be
            # written must not hold back the browsers' policies and the household's engines.
            self._names_applied = names
            self._apply(self.browser, names, order)
            self._apply(self.network, names, order)
            if before:
                self._request_cut(blocked=names - before, opened=before - names)
            elif not self._start_cut_due:  # (else request_start_cut asks for them)
                self._request_cut(blocked=names, opened=frozenset())
            self.publish("status")
        self._journal_allowances(enforced)

    def _record_hosts_block(self) -> None:
        """What the block in the hosts file holds, for the next start (see
        :class:`state_store.BlockRecord`): at each checkpoint (the last one as detoxd stops),
        written when the block or the ratchet's file changed. Not at every change: hashing a
        million names' block costs a start 0.05 s; after a kill -9 the start reads the block."""
        if not self.state.active:
            return
        side_file = state_store.ratchet_side_file(self.state.ratchet)
        if side_file is None:
            return
        known = self._block_recorded or self.recovery.block_record
        whole = self.hosts.guard.file_record()
        if known is not None and whole is not None and (known.file, known.order) == whole \
                and known.ratchet_file == side_file:
            return  # the very file recorded (a start that took it as it was: no block rendered)
        found = self.hosts.guard.block_digest()
        if found is None:
            return
        digest, names = found
        if known is not None and (known.digest, known.ratchet_file, known.file, known.order) == (
                digest, side_file, *(whole or (None, None))):
            return
        beyond = names - self.state.ratchet
        if len(beyond) > state_store.MAX_BEYOND_RATCHET:
            return  # the start reads the block (a stale record stays true: both files are named)
        file_digest, order_digest = whole or (None, None)
        record = state_store.BlockRecord(digest, side_file, beyond, file_digest, order_digest)
        if self.recovery.persist("hosts block's digest", lambda: state_store.write_atomic(
                self.paths.hosts_block_file, state_store.encode_block_record(record))):
            self._block_recorded = record

    def _block_order(self, names: frozenset[str]) -> tuple[str, ...]:
        """The block's order for ``names``; the same as last time for the same names and config
        (a start enforces twice: the second pass over a million names is not needed)."""
        cached = self._order_cache
        if cached is not None and cached[0] is names and cached[1] is self.applied:
            return cached[2]
        order = self.applied.block_order(names)
        self._order_cache = (names, self.applied, order)
        return order

    def request_start_cut(self) -> None:
        """The start's request to cut open connections to the names blocked (see :meth:`boot`).
        Its costly part (choosing the shortest of a million names: 0.2 s) runs without the lock;
        should the names have changed meanwhile, the request is made from the names then."""
        with self.lock:
            if not self._start_cut_due:
                return
            names = self._names_applied
        shortest = cutter.shortest_names(names)
        with self.lock:
            self._start_cut_due = False
            current = self._names_applied
            self._request_cut(blocked=frozenset(shortest) if current is names else current,
                              opened=frozenset())

    def _request_cut(self, *, blocked: frozenset[str], opened: frozenset[str]) -> None:
        """Ask the connection cutter (detoxd-cutter.service) to close open connections to the
        names just blocked, and to learn where names just let through point."""
        if not self.state.active and not self.schedule.blocked:
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
        self._journal_schedule()

    def _journal_schedule(self) -> None:
        for kind, fields in self.schedule.drain_events():
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

    def exec_events(self, pids: list[int], *, lease_seconds: float, watching: bool, lost: bool) -> None:
        """The exec watcher's PIDs (see detoxd.service.execwatch): closed at once if blocked."""
        if self.apps.exec_events(pids, self.clock.monotonic(), active=self._closing_apps(),
                                 lease_seconds=lease_seconds, watching=watching, lost=lost):
            self.publish("status")

    def watch_apps(self, now: float) -> None:
        """Close blocked apps started since the last tick; only while a detox runs."""
        if self.apps.watch(now, active=self._closing_apps()):
            self.publish("status")

    # ---- when the loop must wake ----

    def next_tick_due(self, now: float, watchdog: float | None = None) -> float:
        """Monotonic time of the next tick, right after one: the soonest of an allowance opening,
        closing or announced as closing, the detox's end, a retry while a target fails, the
        watchdog's ping (``watchdog`` seconds apart), and :data:`QUIET_SECONDS`."""
        waits = [QUIET_SECONDS]
        if watchdog is not None:
            waits.append(watchdog)
        if self.problems or self.state.held is not None or planned.held_seconds(self.state):
            # A target failing is retried every second; held time waits for the kernel to
            # confirm the clock (NTP), which no event announces: looked at every second too.
            waits.append(TICK_SECONDS)
        if self.state.active:
            waits.append(detox.remaining(self.state).total_seconds())
        waits += self._planned_waits()
        allowance = self.allowances.seconds_to_next_change()
        if allowance is not None:
            waits.append(allowance)
        window = self.schedule.seconds_to_next_change()  # a window opens or closes, an edit is let go
        if window is not None:
            waits.append(window)
        return now + max(0.0, min(waits))

    def _planned_waits(self) -> list[float]:
        """A planned start (`start --at`): its wait, and when it becomes locked by schedule."""
        wait = planned.wait_left(self.state)
        if wait is None:
            return []
        lock = wait - planned.CANCEL_LOCK_SECONDS
        return [wait, lock] if self.state.planned and self.state.planned.locked and lock > 0 else [wait]

    def next_scan_due(self, now: float) -> float | None:
        """When to look for blocked apps again (None: no detox or no app rules)."""
        return self.apps.next_due(now, active=self._closing_apps())

    def _closing_apps(self) -> bool:
        """Blocked apps are closed during a detox and while a window names some."""
        return self.state.active or bool(self.schedule.apps)

    @property
    def allowances_in_force(self) -> bool:
        """Allowances open what is blocked during a detox, and while a block window is in force
        (detox or not): after the detox, `detox.after`'s windows and the allowances together are
        the step down the challenge's readers asked for ("cut back instead of cutting off")."""
        return self.state.active or bool(self.schedule.blocked)

    # ---- the detox clock ----

    def tick(self) -> None:
        self.detox.tick()
        if self.allowances.tick():
            self.enforce()  # an allowance opened or closed by itself: every target follows
            self.publish("allowance")
        if self.schedule.tick(detox_active=self.state.active):
            self.enforce()  # a window opened or closed: every target follows
            self.publish("schedule")
        self._journal_schedule()
        for notice in self.allowances.notices(detox_active=self.allowances_in_force):
            # The tray shows it even under do-not-disturb: it is the user's own allowance.
            self.publish("allowance_closing", **notice)
        self.agents.reports(during_detox=self.state.active)  # notices agents that went away
        self.mail.tick(self.clock.now(), summary=self._report_document, activity=self._activity_line)
        self.journal.sync()
        self.status_builder.snapshot()

    def _report_document(self) -> dict[str, Any] | None:
        """The report of the detox that just ended, for the peers' closing note."""
        window = self.detox.last_window
        reply = self.audit.report(None, now=self.clock.now(), tz=local_zone(), window=window)
        document = reply.get("report")
        return document if isinstance(document, dict) else None

    def _activity_line(self) -> str | None:
        """With `share_activity: true` only: the blocked apps closed, in the peers' messages."""
        closed = sum(self.app_watcher.closed_counts().values())
        return f"Blocked apps closed during the detox: {closed}." if closed else None

    # ---- the last good blocklist ----

    def _load_applied(self, config: LoadedConfig | ConfigError) -> None:
        """At start: the config read, or when it cannot be, the last good blocklist (ignored
        when damaged). applied.json is read only then: while the config loads it is only
        compared with what it should hold (at a million names, reading it cost half a second)."""
        applied: Applied | None
        if isinstance(config, LoadedConfig):
            applied = _applied_from(config)
            if not state_store.file_holds(self.paths.applied_file, state_store.encode_applied(applied)):
                self._applied_unsaved = True  # written at the first checkpoint
        else:
            # The ratchet's names were validated as the state was read: not again.
            applied = state_store.load_applied(self.paths.applied_file, known=self.state.ratchet)
        if applied is not None:
            self.applied = applied
            self.browser.browser_policies = applied.browser_policies
            self.schedule.whole_changed(applied.names)

    def _save_applied(self) -> None:
        encoded = state_store.encode_applied(self.applied)
        self._applied_unsaved = not self.recovery.persist(
            "last good blocklist", lambda: state_store.write_atomic(self.paths.applied_file, encoded))

    # ---- commands (from the control socket: see detoxd.service.commands) ----

    def handle(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """The control server's handler: the command table checks who may call what."""
        return self._commands(request, peer)

    @property
    def names_blocked(self) -> frozenset[str]:
        """The names the targets block now (the hosts file's, open allowances taken out)."""
        return self._names_applied

    def record_blocked_lookups(self, entries: Any) -> int:
        """For the network agent's reports (engines that keep a query log): see Audit.blocked_lookups."""
        return self.audit.blocked_lookups(entries, blocked_names=self.hosts.names | self.applied.names)

    # ---- status ----

    def status(self, *, private: bool = False) -> dict[str, Any]:
        """The status now, as sent (see :mod:`detoxd.service.status`). Under the lock."""
        return self.status_builder.build(private=private).to_json()

    def current_status(self, *, private: bool = False) -> dict[str, Any]:
        """Without waiting on a busy engine: see :meth:`StatusBuilder.current`."""
        return self.status_builder.current(private=private).to_json()

    def one_line(self) -> str:
        if self.problems:
            return "; ".join(sorted(self.problems.values()))
        if not self.state.active:
            start = planned.starts_at(self.state)
            return "idle" if start is None else f"detox planned for {plan.iso(start)}"
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


def _applied_from(loaded: LoadedConfig) -> Applied:
    main = loaded.main
    return Applied(loaded.names, loaded.order, main.detox.days, main.detox.lock, main.bypass.browser_policies,
                   main.notifications.suppress, main.detox.lock_mode, main.detox.peers_needed,
                   loaded.blocklist.paths)


def _same(names: frozenset[str], other: frozenset[str]) -> bool:
    """``names == other``, at once for the very same set (a set's == compares every name)."""
    return names is other or names == other

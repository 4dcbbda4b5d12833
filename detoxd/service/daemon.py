"""`detoxd run`: the root service. Loads config, enforces the block, watches, serves the socket.

One lock guards the detox state, the loaded config and the guard; the main loop and the control
socket's threads take it for every change. The main loop waits on inotify (hosts file), a wake-up
pipe (config edits, commands) and a timer (ticks of the detox clock, periodic verification).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from detoxd import __version__
from detoxd.clock import Clock
from detoxd.core import apps, detox, ics, plan
from detoxd.core.yamlsource import ConfigError
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import state_store
from detoxd.service.control import ControlServer
from detoxd.service.loader import LoadedConfig, load_config
from detoxd.service.scheduler import SessionScheduler, system_timezone
from detoxd.service.sdnotify import Notifier
from detoxd.service.targets.appwatch import AppWatcher
from detoxd.service.targets.browser import Bypass
from detoxd.service.targets.guard import HostsGuard, Outcome
from detoxd.service.targets.hostsfile import HostsFile

log = logging.getLogger("detoxd")

TICK_SECONDS = 1.0  # how often the detox clock is read and the hosts file stat()ed
CHECKPOINT_SECONDS = 30.0  # how much credited time a kill -9 can lose (it is re-credited by wall time)
FULL_VERIFY_SECONDS = 60.0  # a full read-and-compare even when stat() saw no change
CONFIG_SETTLE_SECONDS = 0.02  # editors write a file in several steps
AGENT_REPORT_SECONDS = 60.0  # tray agents report every 10 s; older reports are from gone agents
MAX_AGENTS = 256
EXIT_RESTART = 75  # EX_TEMPFAIL: systemd's Restart=always starts the daemon again


@dataclass
class Applied:
    """The last blocklist that loaded cleanly, kept so a broken edit never unblocks anything."""

    names: frozenset[str]
    order: tuple[str, ...]  # the names in the config's order: the block lists them so
    days: float
    lock: bool
    browser_policies: bool = True
    suppress_notifications: bool = True


class Daemon:
    def __init__(self, paths: Paths, clock: Clock, notifier: Notifier | None = None,
                 policy_root: Path | None = None) -> None:
        self.paths = paths
        self.clock = clock
        self.notifier = notifier or Notifier.from_environment()
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._reload_due: float | None = None
        self.config_error: ConfigError | None = None
        self.warnings: list[str] = []
        self.applied = Applied(frozenset(), (), 14.0, True)
        self.exit_code = 0
        self._agents: dict[int, tuple[float, dict[str, Any]]] = {}  # uid -> (when, tray report)
        self.server: ControlServer | None = None
        self.observer: Any = None
        paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.hosts_file = HostsFile(paths.hosts_file, paths.state_dir)
        self.hosts_file.recover()
        self.state = self._load_state()
        self.guard = HostsGuard(self.hosts_file)
        self.app_watcher = AppWatcher()
        self._configured_apps: tuple[apps.AppRule, ...] = ()
        self._kept_apps = self._load_kept_apps()
        self.bypass = Bypass(paths.hosts_file, paths.state_dir, policy_root)
        self.sessions = SessionScheduler(clock, self._publish_session_event,
                                         fired_file=paths.state_dir / "sessions-announced.json")

    # ---- life cycle ----

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        self.sessions.start()
        with self.lock:
            self._load_applied()
            self._tick()
            self.reload()
            # Finishes a policy removal that a crash interrupted (the names did not change).
            self.bypass.sync_policies(self.guard.names, browser_policies=self.applied.browser_policies)
        self.server = ControlServer(self.paths.socket, self.handle, snapshot=self.status_event)
        self.server.start()
        self.observer = self._watch_config()
        log.info("detoxd %s running: hosts file %s, config %s, socket %s", __version__,
                 self.paths.hosts_file, self.paths.config_dir, self.paths.socket)
        self.notifier.ready(status=self._one_line())
        try:
            self._loop()
        finally:
            self.notifier.stopping()
            self._shutdown()
        return self.exit_code

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping (the block stays while a detox is active)", signum)
        self.stop()

    def _shutdown(self) -> None:
        self.sessions.stop()  # never waits: a running job may be waiting for self.lock
        if self.observer is not None:
            self.observer.stop()
        if self.server is not None:
            self.server.close()
        with self.lock:
            self._checkpoint()
        self.guard.close()

    def _loop(self) -> None:
        next_tick = time.monotonic()
        next_checkpoint = next_tick + CHECKPOINT_SECONDS
        next_full_verify = next_tick + FULL_VERIFY_SECONDS
        watchdog = self.notifier.watchdog_interval()
        next_ping = next_tick
        while not self._stop.is_set():
            now = time.monotonic()
            deadlines = [next_tick, self.guard.deadline(), self._reload_due]
            timeout = max(0.0, min(d for d in deadlines if d is not None) - now)
            readable, _, _ = select.select([self.guard.fileno(), self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                self._drain_wake()
            if self.guard.fileno() in readable:
                self.guard.handle_events()
            now = time.monotonic()
            with self.lock:
                self._guarded(functools.partial(self.guard.settle, now))
                if self._reload_due is not None and now >= self._reload_due:
                    self._reload_due = None
                    self.reload()
                if now >= next_tick:
                    next_tick = now + TICK_SECONDS
                    self._tick()
                    full = now >= next_full_verify
                    if full:
                        next_full_verify = now + FULL_VERIFY_SECONDS
                    self._guarded(functools.partial(self.guard.verify, full=full))
                    self._watch_apps(now)
                    for _ in range(self.bypass.verify(self.guard.names)):
                        self.state = detox.record_tamper(self.state)
                if now >= next_checkpoint:
                    next_checkpoint = now + CHECKPOINT_SECONDS
                    self._checkpoint()
            if watchdog is not None and now >= next_ping and self._threads_healthy():
                self.notifier.watchdog()
                next_ping = now + watchdog

    def _threads_healthy(self) -> bool:
        server_ok = self.server is not None and self.server.is_alive()
        observer_ok = self.observer is None or self.observer.is_alive()
        return server_ok and observer_ok

    # ---- waking the loop from other threads ----

    def request_reload(self) -> None:
        self._reload_due = time.monotonic() + CONFIG_SETTLE_SECONDS
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: the loop is awake anyway
            os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _watch_config(self) -> Any:
        # Imported here: the CLI's fast commands must not pay for watchdog.
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        daemon = self

        class ConfigHandler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in ("opened", "closed_no_write"):
                    daemon.request_reload()

        self.paths.config_dir.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(ConfigHandler(), str(self.paths.config_dir), recursive=False)
        observer.daemon = True
        observer.start()
        return observer

    # ---- enforcement (called with self.lock held) ----

    def reload(self) -> ConfigError | None:
        try:
            loaded = load_config(self.paths.config_dir)
        except ConfigError as error:
            self._config_failed(error)
            return error
        self._config_loaded(loaded)
        return None

    def _config_failed(self, error: ConfigError) -> None:
        first = str(error).splitlines()[0] if str(error) else "invalid config"
        if self.config_error is None or str(self.config_error) != str(error):
            log.error("config invalid, keeping the last good blocklist (%d names): %s",
                      len(self.applied.names), str(error).replace("\n", "; "))
        self.config_error = error
        self.notifier.status(f"config error: {first}")
        self._enforce()
        self._publish("config_error", message=str(error))

    def _config_loaded(self, loaded: LoadedConfig) -> None:
        changed = loaded.order != self.applied.order  # the order decides the block's bytes
        self.config_error = None
        self.warnings = [str(warning) for warning in loaded.warnings]
        self._configured_apps = loaded.blocklist.apps
        for warning in self.warnings:
            log.warning("%s", warning)
        self.applied = Applied(loaded.names, loaded.order, loaded.main.detox.days, loaded.main.detox.lock,
                               loaded.main.bypass.browser_policies, loaded.main.notifications.suppress)
        self.sessions.update(plan.from_config(loaded.main, system_timezone()), self.clock.now())
        if changed:
            self._save_applied()
        self._enforce()
        if changed:
            log.info("config loaded: %d names in the blocklist", len(loaded.names))

    def _enforce(self) -> None:
        if self.state.active:
            self.state = detox.update_ratchet(self.state, self.applied.names)
        self._enforce_app_rules()
        names = detox.enforced_names(self.state, self.applied.names)
        before = self.guard.names
        order = self._block_order(names)
        self._guarded(lambda: self.guard.set_names(names, order))
        if names != before:
            log.info("hosts block applied: %d names (%+d) in %s", len(names),
                     len(names) - len(before), self.paths.hosts_file)
            self.bypass.block_changed(names, browser_policies=self.applied.browser_policies)
            self._publish("status")

    def _enforce_app_rules(self) -> None:
        """Like the names: while a locked detox runs, app rules only accumulate (kept in the
        state directory, so a restart with the app removed from the YAML still closes it)."""
        if self.state.active and self.state.locked:
            rules = apps.ratchet_rules(self._kept_apps, self._configured_apps)
        else:
            rules = self._configured_apps
        kept = rules if self.state.active and self.state.locked else ()
        if kept != self._kept_apps:
            self._kept_apps = kept
            state_store.write_atomic(self.paths.apps_ratchet_file,
                                     json.dumps(apps.rules_to_json(kept)).encode())
        self.app_watcher.set_rules(rules)

    def _load_kept_apps(self) -> tuple[apps.AppRule, ...]:
        try:
            return apps.rules_from_json(json.loads(self.paths.apps_ratchet_file.read_bytes()))
        except FileNotFoundError:
            return ()
        except (OSError, ValueError) as exc:
            log.error("ignoring unreadable %s: %s", self.paths.apps_ratchet_file, exc)
            return ()

    def _block_order(self, names: frozenset[str]) -> tuple[str, ...]:
        """The config's order, then names the ratchet keeps after they left the config, sorted."""
        if not names:
            return ()
        configured = self.applied.order if names >= self.applied.names else tuple(
            name for name in self.applied.order if name in names)
        kept = names - self.applied.names
        return configured + tuple(sorted(kept)) if kept else configured

    def _guarded(self, action: Callable[[], Outcome | None]) -> None:
        """Run a guard action; a failed write is logged and retried at the next tick."""
        try:
            outcome = action()
        except OSError as exc:
            if exc.errno == errno.EROFS:
                # Under systemd's ProtectSystem=strict only the original /etc/hosts inode is
                # writable; after a rename-replace the new file is read-only here. A restart
                # (Restart=always) mounts the new file writable.
                log.error("hosts file %s is read-only here (%s): exiting so that the service "
                          "restarts with write access", self.paths.hosts_file, exc.strerror)
                self.exit_code = EXIT_RESTART
                self.stop()
            else:
                log.error("cannot enforce the block in %s: %s (retrying every %gs)",
                          self.paths.hosts_file, exc, TICK_SECONDS)
            return
        self._record(outcome)

    def _record(self, outcome: Outcome | None) -> None:
        if outcome is None or not outcome.tampered:
            return
        self.state = detox.record_tamper(self.state)
        log.warning("hosts file tampered with: block restored (%d restores so far)",
                    self.state.tamper_events)
        self._publish("tamper")

    def _watch_apps(self, now: float) -> None:
        """Close blocked apps started since the last tick; only while a detox runs."""
        if not self.state.active:
            self.app_watcher.pause()
            return
        try:
            if self.app_watcher.scan(now):
                self._publish("status")
        except OSError as exc:  # /proc unreadable: everything else keeps working
            log.error("cannot watch for blocked apps: %s", exc)

    def _tick(self) -> None:
        was_active = self.state.active
        self.state = detox.tick(self.state, now=self.clock.now(), boot=self._boot())
        if was_active and not self.state.active:
            log.info("detox finished: removing the block from %s", self.paths.hosts_file)
            self._checkpoint()
            self._enforce()
            self._publish("detox_ended")

    def _boot(self) -> detox.BootReading:
        return detox.BootReading(self.clock.boot_id(), self.clock.boottime())

    def _checkpoint(self) -> None:
        state_store.save(self.paths.state_file, self.state)

    def _load_state(self) -> detox.DetoxState:
        try:
            return state_store.load(self.paths.state_file)
        except state_store.CorruptStateError as exc:
            # Keep the evidence; an unreadable state cannot prove a detox is running, and a
            # detox that can never end ("permablock") is worse than one that ends early.
            aside = self.paths.state_file.with_suffix(".corrupt")
            self.paths.state_file.replace(aside)
            log.error("state file unreadable (%s): moved to %s, starting idle", exc.reason, aside)
            return detox.DetoxState()

    def _load_applied(self) -> None:
        try:
            data = json.loads(self.paths.applied_file.read_text())
            order = tuple(dict.fromkeys(data["names"]))
            self.applied = Applied(frozenset(order), order, float(data["days"]), bool(data["lock"]),
                                   bool(data.get("browser_policies", True)),
                                   bool(data.get("suppress_notifications", True)))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring unreadable %s: %s", self.paths.applied_file, exc)

    def _save_applied(self) -> None:
        data = {"version": 1, "names": self.applied.order, "days": self.applied.days,
                "lock": self.applied.lock, "browser_policies": self.applied.browser_policies,
                "suppress_notifications": self.applied.suppress_notifications}
        state_store.write_atomic(self.paths.applied_file, json.dumps(data).encode())

    # ---- the control socket ----

    def handle(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        command = request.get("cmd")
        with self.lock:
            if command == "status":
                return {"ok": True, "status": self.status(private=peer.uid == 0)}
            if command == "start":
                return self._start(request.get("days"), peer)
            if command == "end":
                return self._end(peer)
            if command == "reload":
                return self._reload_command(peer)
            if command == "calendar":
                return self._calendar()
            if command == "agent_report":
                return self._agent_report(request, peer)
        return {"ok": False, "code": "bad_request", "error": f"unknown command {command!r}"}

    def _start(self, days: Any, peer: Peer) -> dict[str, Any]:
        if days is None:
            days = self.applied.days
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 365:
            return {"ok": False, "code": "bad_request", "error": "days must be a number from 0 to 365"}
        result = detox.start(self.state, now=self.clock.now(), boot=self._boot(),
                             days=float(days), locked=self.applied.lock)
        if isinstance(result, detox.Refusal):
            log.warning("refused start from uid %d: %s", peer.uid, result.reason)
            return {"ok": False, "code": "refused", "error": result.reason}
        self.state = result
        self.app_watcher.reset_counts()  # apps_closed counts this detox, like tamper_events
        self._checkpoint()
        self._enforce()
        log.info("detox started by uid %d: %g days, %s, %d names blocked", peer.uid, days,
                 "locked" if self.state.locked else "unlocked", len(self.guard.names))
        self._publish("detox_started")
        return {"ok": True, "status": self.status(private=True)}

    def _end(self, peer: Peer) -> dict[str, Any]:
        result = detox.request_end(self.state)
        if isinstance(result, detox.Refusal):
            log.warning("refused end from uid %d: %s", peer.uid, result.reason)
            return {"ok": False, "code": "refused", "error": result.reason}
        self.state = result
        self._checkpoint()
        self._enforce()
        log.info("detox ended early by uid %d (it was not locked)", peer.uid)
        self._publish("detox_ended")
        return {"ok": True, "status": self.status(private=True)}

    def _reload_command(self, peer: Peer) -> dict[str, Any]:
        # `ExecReload=detoxd reload` is synchronous; tell systemd too, so that the unit shows
        # "reloading" and the following READY=1 ends it (matched by MONOTONIC_USEC on systemd 253+).
        self.notifier.reloading(status="reloading the config")
        error = self.reload()
        self.notifier.ready(status=self._one_line())
        log.info("reload requested by uid %d: %s", peer.uid, "failed" if error else "ok")
        if error:
            return {"ok": False, "code": "invalid_config", "error": str(error),
                    "errors": [str(issue) for issue in error.issues]}
        return {"ok": True, "status": self.status(private=True)}

    def _agent_report(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
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
        self._agents[peer.uid] = (time.monotonic(), report)
        return {"ok": True}

    def _agent_reports(self) -> list[dict[str, Any]]:
        fresh_since = time.monotonic() - AGENT_REPORT_SECONDS
        for uid in [uid for uid, (at, _) in self._agents.items() if at < fresh_since]:
            del self._agents[uid]  # that agent stopped, or its session ended
        return [report for _, report in self._agents.values()]

    def _calendar(self) -> dict[str, Any]:
        """The sessions as iCalendar text, for the tray's "export" (the agent cannot read /etc
        files that need root, and must not need a second copy of the config logic)."""
        planned = self.sessions.plan
        if planned is None:
            return {"ok": False, "code": "no_sessions", "error": "no sessions planned in detoxd.yaml"}
        return {"ok": True, "ics": ics.calendar(planned, self.clock.now()).decode()}

    # ---- status ----

    def status(self, *, private: bool = False) -> dict[str, Any]:
        now = self.clock.now()
        state = self.state
        ends_at = detox.ends_at(state, now)
        return {
            "state": "active" if state.active else "idle",
            "locked": state.active and state.locked,
            "started_at": _iso(state.started_at) if state.active else None,
            "ends_at": _iso(ends_at),
            "days_left": detox.days_left(state) if state.active else None,
            "seconds_left": round(detox.remaining(state).total_seconds()) if state.active else None,
            "days_total": state.duration_seconds / detox.SECONDS_PER_DAY if state.active else None,
            "domains_blocked": len(self.guard.names),
            "domains_configured": len(self.applied.names),
            "hosts_file": str(self.paths.hosts_file),
            "hosts_in_sync": self.guard.in_sync,
            # Read by each user's tray agent, which owns the desktop's do-not-disturb switch.
            "notifications_suppress": self.applied.suppress_notifications,
            "agents": self._agent_reports(),
            "tamper_events": state.tamper_events,
            "apps_closed": self.app_watcher.closed_counts(),
            "clock_jumps": state.clock_jumps,
            "config_error": self._config_error_text(private),
            "warnings": self.warnings + self._session_warnings(now),
            **self.sessions.status_fields(now),
            "version": __version__,
        }

    def _config_error_text(self, private: bool) -> str | None:
        if self.config_error is None:
            return None
        issues = self.config_error.issues
        return "\n".join(str(issue if private else issue.redacted()) for issue in issues)

    def _session_warnings(self, now: datetime) -> list[str]:
        """Sessions outside the running detox, or after the end of one started now."""
        planned = self.sessions.plan
        if planned is None:
            return []
        if self.state.active:
            return plan.warnings(planned, self.state.started_at, detox.ends_at(self.state, now))
        return plan.warnings(planned, None, now + timedelta(days=self.applied.days))

    def _publish_session_event(self, event: str, details: dict[str, Any]) -> None:
        """Called from the scheduler's thread at reminders and hot-seat handovers."""
        with self.lock:
            self._publish(event, **details)

    def status_event(self) -> dict[str, Any]:
        with self.lock:
            return {"event": "status", "status": self.status()}

    def _publish(self, event: str, **details: Any) -> None:
        if self.server is not None:
            self.server.publish({"event": event, **details, "status": self.status()})

    def _one_line(self) -> str:
        if not self.state.active:
            return "idle"
        return f"detox active, {detox.days_left(self.state)} days left, {len(self.guard.names)} names"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


"""`detoxd run`: the root service's shell around the :class:`~detoxd.service.engine.Engine`.

The daemon owns the threads and descriptors: the main loop waits on inotify (the hosts file), a
wake-up pipe (config edits, signals, commands) and a timer set to the next thing that is due
(:meth:`Engine.next_tick_due`: an allowance opening or closing, the detox's end, the app scan,
the periodic check for lost events, the watchdog's ping); the control socket's threads call into
the engine with its lock held. Every decision is the engine's. Idle, the loop wakes every
:data:`~detoxd.service.engine.QUIET_SECONDS` (issue 26), not every second.

Config edits are read by a worker thread, never by the main loop and never with the engine's
lock held: a large or hostile config costs that thread time, while tampers are still restored
and status still answers; only the finished result is swapped in under the lock. The config
watcher starts before the first read, so an edit saved during start-up is not lost.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from detoxd import __version__
from detoxd.clock import Clock
from detoxd.paths import Paths
from detoxd.service import journal
from detoxd.service.control import ControlServer
from detoxd.service.engine import Engine
from detoxd.service.liveness import (
    HELD_UP_SHARE,
    LATE_SECONDS,
    VERIFIED_WITHIN_SECONDS,
    HeldUp,
    SuspendWatch,
    not_guarding,
)
from detoxd.service.sdnotify import Notifier

log = logging.getLogger("detoxd")

# How much credited time a kill -9 can lose (it is re-credited by wall time when the clock is
# trusted; otherwise the detox only lasts longer, never shorter). Each checkpoint fsyncs four files
# and their directories: every 30 s, they were most of an idle daemon's wake-ups (issue 26).
CHECKPOINT_SECONDS = 600.0
# A full read-and-compare even when stat() saw no change. Tampering is restored from inotify's
# events within milliseconds; the stat() at every tick (QUIET_SECONDS idle) catches a lost event,
# and this catches a change stat() cannot see (same size and times): five minutes bound it.
FULL_VERIFY_SECONDS = 300.0
# Under a watchdog, for a window after each change of the hosts file, the loop wakes this often, so
# that a process stopped and continued in a loop (issue 21: SIGSTOP, edit, SIGCONT) shows as held
# up; idle it sleeps until the next due thing (issue 26), and a freeze then harms nothing.
WATCHFUL_SLEEP_SECONDS = 0.2
RESUMED_SECONDS = 1.0  # CLOCK_BOOTTIME ran ahead of CLOCK_MONOTONIC by this much: a suspend
OBSERVER_TIMEOUT_SECONDS = 300.0
CONFIG_SETTLE_SECONDS = 0.02  # editors write a file in several steps
HEARTBEAT_SECONDS = 60.0  # a quiet subscriber (the tray) gets the status again this often: the
# keepalive issue 26 allows (at most once a minute); the tray calls a daemon unheard for longer
# than menu.SILENCE_SECONDS stale, so that must stay above it


class Daemon:
    def __init__(self, paths: Paths, clock: Clock, notifier: Notifier | None = None,
                 policy_root: Path | None = None) -> None:
        self.paths = paths
        self.clock = clock
        self.notifier = notifier or Notifier.from_environment()
        self.engine = Engine(paths, clock, notifier=self.notifier, policy_root=policy_root)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._reload_due: float | None = None
        self._reload_wanted = threading.Event()
        self._replan = False  # set from other threads: plan the next wake-up again
        self._continued = False  # SIGCONT came: the process was stopped (see _loop)
        self._config_worker = threading.Thread(target=self._read_configs, name="config-reader",
                                               daemon=True)
        self._held_up = HeldUp()  # when the loop woke later than it asked (see liveness)
        self._watched: dict[Path, Any] = {}  # directory of `lists:` files -> its watch
        self._config_handler: Any = None
        self.server: ControlServer | None = None
        self.observer: Any = None

    # ---- life cycle ----

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        signal.signal(signal.SIGCONT, self._on_continued)
        engine = self.engine
        engine.sessions.start()
        # Watching first: an edit saved while the config is read at start-up wakes a reload.
        self.observer = self._watch_config()
        engine.boot(cut_later=True)
        # What start-up read stays for the daemon's life: out of the collector's sight (cmd_run
        # turned it off for the start-up), so no collection walks a million names again.
        gc.freeze()
        gc.enable()
        self._watch_list_directories()
        self._config_worker.start()
        self.server = ControlServer(self.paths.socket, engine.handle, snapshot=engine.status_event,
                                    heartbeat_seconds=HEARTBEAT_SECONDS)
        self.server.start()
        engine.publish_to = self._publish
        engine.status_builder.on_stale_change = self.server.push_snapshot
        engine.agents.subscribed = lambda: self.server.subscriber_uids if self.server else frozenset()
        log.info("detoxd %s running: hosts file %s, config %s, socket %s", __version__,
                 self.paths.hosts_file, self.paths.config_dir, self.paths.socket)
        self.notifier.ready(status=engine.one_line())
        # Once status answers: at a million names choosing which to cut takes 0.2 s.
        engine.request_start_cut()
        try:
            self._loop()
        finally:
            self.notifier.stopping()
            self._shutdown()
        return engine.exit_code or 0

    def stop(self) -> None:
        self._stop.set()
        self._reload_wanted.set()
        self._wake()

    def _on_continued(self, _signum: int, _frame: FrameType | None) -> None:
        self._continued = True
        self._wake()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        state = self.engine.state
        if state.active and state.locked:
            # `systemctl stop` is not refused (see docs/cannot-be-undone.md: the unit must stay stoppable for
            # upgrades and shutdown), so it is made loud: journalctl -p warning shows it.
            log.warning("signal %d: stopping during a locked detox: the block stays in %s, but "
                        "nothing restores it until detoxd runs again (at the next boot, or "
                        "`sudo systemctl start detoxd`)", signum, self.paths.hosts_file)
        elif state.active:
            log.info("signal %d: stopping (the block stays while the detox is active)", signum)
        else:
            log.info("signal %d: stopping", signum)
        self.stop()

    def _shutdown(self) -> None:
        self.engine.sessions.stop()  # never waits: a running job may be waiting for the lock
        if self.observer is not None:
            self.observer.stop()
        if self.server is not None:
            self.server.close()
        with self.engine.lock:
            self.engine.shutdown()

    def _publish(self, event: dict[str, Any]) -> None:
        """The engine's events go to the subscribers; one from another thread (a command: a
        detox started, an allowance opened) also makes the loop plan its next wake-up again."""
        if self.server is not None:
            self.server.publish(event)
        if threading.current_thread() is not threading.main_thread():
            self._replan = True
            self._wake()

    def _loop(self) -> None:
        engine, hosts = self.engine, self.engine.hosts
        next_tick = self.clock.monotonic()
        next_apps: float | None = next_tick
        next_checkpoint = next_tick + CHECKPOINT_SECONDS
        next_full_verify = next_tick + FULL_VERIFY_SECONDS
        watchdog = self.notifier.watchdog_interval()
        next_ping = next_tick
        suspend = SuspendWatch(self.clock, RESUMED_SECONDS)
        watchful_until = next_tick  # see WATCHFUL_SLEEP_SECONDS
        while not self._stop.is_set():
            now = self.clock.monotonic()
            deadlines = [next_tick, next_apps, hosts.deadline(), engine.browser.deadline(), self._reload_due]
            if watchdog is not None:
                deadlines.append(next_ping)
                if now < watchful_until:  # the hosts file changed lately: a freeze shows as lateness
                    deadlines.append(now + WATCHFUL_SLEEP_SECONDS)
            wake_at = max(now, min(d for d in deadlines if d is not None))
            engine.loop_due = wake_at  # woken much later than this, the status says stale
            policies = engine.browser.fileno()  # browser policy edits (None: nothing watched)
            watched = [hosts.fileno(), self._wake_r] + ([policies] if policies is not None else [])
            went_to_sleep = self.clock.monotonic()
            readable, _, _ = select.select(watched, [], [], wake_at - now)
            engine.loop_seen = self.clock.monotonic()
            self._held_up.woke(wake_at, engine.loop_seen)
            if self._continued:
                # Stopped (SIGSTOP) and continued. Idle, the loop sleeps long and shows no
                # lateness, and how long it was stopped is unknown: the signal itself counts as
                # held up past the share of the window (for most of a window), so a daemon stopped
                # again and again (issue 21) is not fed to the watchdog, which restarts it.
                self._continued = False
                window = self._held_up.window
                since = engine.loop_seen - (HELD_UP_SHARE * window + LATE_SECONDS)
                self._held_up.woke(min(went_to_sleep, since), engine.loop_seen)
            if self._wake_r in readable:
                self._drain_wake()
            now = self.clock.monotonic()
            if slept := suspend.slept():
                # The timers here and APScheduler's stopped while the machine slept: look now.
                log.info("resumed after %.0f s suspended", slept)
                engine.sessions.wakeup()
                self._replan = True
            if self._replan:  # a command changed what is due: tick now, and plan from there
                self._replan = False
                next_tick, next_apps = now, now
            if self._reload_due is not None and now >= self._reload_due:
                self._reload_due = None
                self._reload_wanted.set()  # the worker reads it; enforcement goes on here
            with engine.lock:
                if hosts.fileno() in readable:
                    watchful_until = self.clock.monotonic() + self._held_up.window
                    # Under the lock: a write made from another thread (`start`, a reload)
                    # drains its own events; read here meanwhile, its append's IN_MODIFY was
                    # taken for a writer's and status said "out of sync" for 30 ms.
                    hosts.handle_events()
                    now = self.clock.monotonic()
                engine.settle(now)
                settle = engine.browser.deadline()
                if policies is not None and policies in readable:
                    engine.browser.drain_events(now)
                    engine.check(now, full=False)  # restores the policy now, not at the tick
                elif settle is not None and now >= settle:  # a policy's writer kept it open
                    engine.check(now, full=False)
                if engine.status_builder.ran_after_stale():  # the trays saw it stale: fresh again
                    engine.publish("status")
                if now >= next_tick:
                    engine.tick()
                    full = now >= next_full_verify
                    if full:
                        next_full_verify = now + FULL_VERIFY_SECONDS
                    engine.check(now, full=full)
                    next_tick = engine.next_tick_due(now, watchdog)
                    if next_apps is not None:  # the apps' safety net rides on the tick: no
                        next_apps = now  # wake-up of its own (see AppWatcher.next_due)
                if next_apps is not None and now >= next_apps:
                    engine.watch_apps(now)
                    next_apps = engine.next_scan_due(now)
                elif next_apps is None:
                    next_apps = engine.next_scan_due(now)
                if now >= next_checkpoint:
                    next_checkpoint = now + CHECKPOINT_SECONDS
                    engine.checkpoint()
            if engine.exit_code is not None:
                break
            if watchdog is not None and now >= next_ping and self._alive(now):
                self.notifier.watchdog()
                next_ping = now + watchdog

    def _alive(self, now: float) -> bool:
        """Whether to feed systemd's watchdog: the threads live and the daemon guards (see
        :mod:`detoxd.service.liveness`). A shorter WatchdogSec= shortens the window too."""
        if not self._threads_healthy():
            return False
        window = min(VERIFIED_WITHIN_SECONDS, 2 * (self.notifier.watchdog_interval() or 0.0))
        self._held_up.window = window
        reason = not_guarding(now, self.engine.hosts_checked_at, self._held_up.seconds(now), window)
        was, self.engine.guard_problem = self.engine.guard_problem, reason  # status shows it
        if (reason is None) != (was is None):
            self._report_guarding(reason, was)
        return reason is None

    def _report_guarding(self, reason: str | None, was: str | None) -> None:
        """When it changes: the log, systemd's status line and the journal."""
        if reason is None:
            log.info("guarding again (%s before): feeding systemd's watchdog again", was)
            self.notifier.status(self.engine.one_line())
            journal.record("watchdog_resumed")
            return
        message = f"{reason}: not feeding systemd's watchdog, which restarts the service"
        log.error("%s", message)
        self.notifier.status(message)
        journal.record("watchdog_withheld", reason=reason)

    def _threads_healthy(self) -> bool:
        server_ok = self.server is not None and self.server.is_alive()
        observer_ok = self.observer is None or self.observer.is_alive()
        return server_ok and observer_ok and self._config_worker.is_alive()

    def _read_configs(self) -> None:
        """The config worker: one read per wake-up (edits during a read cause one more)."""
        while not self._stop.is_set():
            self._reload_wanted.wait()
            self._reload_wanted.clear()
            if self._stop.is_set():
                return
            try:
                self.engine.reload()
                self._watch_list_directories()
            except Exception:  # never lose the worker: the next edit is read again
                log.exception("reading the config failed")

    # ---- waking the loop from other threads ----

    def request_reload(self) -> None:
        self._reload_due = self.clock.monotonic() + CONFIG_SETTLE_SECONDS
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
        # Its dispatching thread waits on its queue with this timeout only to see stop() (the
        # default, 1 s, woke it every second: issue 26); nothing waits for it to stop.
        observer = Observer(timeout=OBSERVER_TIMEOUT_SECONDS)
        self._config_handler = ConfigHandler()
        observer.schedule(self._config_handler, str(self.paths.config_dir), recursive=False)
        observer.daemon = True
        observer.start()
        return observer

    def _watch_list_directories(self) -> None:
        """`lists:` files outside the config directory (or in a subdirectory) are watched too."""
        if self.observer is None:
            return
        wanted = {directory for directory in self.engine.list_directories
                  if directory != self.paths.config_dir and directory.is_dir()}
        for directory in set(self._watched) - wanted:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.observer.unschedule(self._watched.pop(directory))
        for directory in wanted - set(self._watched):
            try:
                self._watched[directory] = self.observer.schedule(
                    self._config_handler, str(directory), recursive=False)
            except OSError as exc:
                log.error("cannot watch %s for list edits: %s", directory, exc.strerror)

"""``detoxd tray``: the per-user agent. Shows the detox in the system tray, silences notifications.

Three threads, each with one job:
- the main thread runs pystray's loop (appindicator where ``gi`` has it, else xorg);
- the connection thread subscribes to the daemon's control socket and turns pushed events
  into the agent's model; while the daemon is down it retries with backoff and the icon
  says so;
- the desktop thread does everything that talks to the user's session bus: it keeps
  do-not-disturb in line with the detox (re-asserting it if the user switches it back on),
  sends desktop notifications, and refreshes the icon so countdowns stay current. It wakes
  when the daemon pushes an event and when the desktop announces a change of its
  do-not-disturb setting (``BusWatcher``: change signals, or watched method calls), so a
  switched-off do-not-disturb is back on within milliseconds; a slow poll is the safety net.

Idle, nothing here runs on a short timer (issue 26): the daemon pushes every change and a
keepalive once a minute; the desktop thread sleeps until an event, the safety-net poll
(:data:`RECHECK_SECONDS`) or the moment a silent daemon must be shown as not responding
(:data:`menu.SILENCE_SECONDS` after it last spoke), whichever comes first.

What to show is decided by the pure modules ``menu`` and ``icon``; this module only wires.
The agent reads and subscribes; nothing here can end a detox. The one request that changes
enforcement opens an allowance within its budget ("Open twitter for 10 minutes"), which the
daemon checks again. During a detox there is no Quit (the user unit restarts an agent that dies).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from detoxd.agent import activitywatch, reportpage, xorg
from detoxd.agent.dnd import DndKeeper, DndReport, choose, probe_session, state_dir
from detoxd.client import ControlClient, ControlError
from detoxd.core import icon as icons
from detoxd.core import menu
from detoxd.core.report import parse_time
from detoxd.paths import Paths
from detoxd.protocol import Status

log = logging.getLogger(__name__)

ICON_SIZE = 64
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# The safety-net poll; changes normally arrive as D-Bus signals within milliseconds. Every five
# minutes: it only catches a signal the desktop failed to send, and each round costs D-Bus round
# trips (issue 26). Where changes cannot be watched, FAST_RECHECK_SECONDS applies instead.
RECHECK_SECONDS = float(os.environ.get("DETOXD_TRAY_RECHECK_SECONDS", "300"))
FAST_RECHECK_SECONDS = 0.5  # when the desktop's changes cannot be watched (no signal, no monitor)
# The agent reports what the desktop says when it changes and on each (re)connection; while its
# subscription is open the daemon knows it is alive, so this sign of life is rare.
REPORT_SECONDS = 3600.0
TAMPER_MEMORY = timedelta(hours=1)
NOTICE_MEMORY = timedelta(hours=1)
ANSWER_MEMORY = timedelta(minutes=10)  # an answer to the user's own request, in the menu
CRITICAL = 2  # the notification urgency do-not-disturb lets through (GNOME, KDE, Xfce, ...)
BACKENDS_IN_ORDER = ("appindicator", "xorg")


def now() -> datetime:
    """Local, timezone-aware: what the user's clock shows."""
    return datetime.now().astimezone()


@dataclass
class Model:
    """What the agent knows, guarded by ``TrayAgent.lock``."""

    status: Status | None = None
    status_at: float = 0.0  # time.monotonic() when the daemon last sent it
    last_known: Status | None = None  # kept while the daemon is unreachable: the days left, the end
    unreachable_reason: str = "not connected yet"
    tampered_at: datetime | None = None
    notices: list[menu.Notice] = field(default_factory=list)
    dnd: DndReport | None = None

    def view(self, moment: datetime) -> menu.TrayView:
        tampered = self.tampered_at is not None and moment - self.tampered_at < TAMPER_MEMORY
        dnd = self.dnd
        label = dnd.backend if dnd is not None and dnd.silenced else None
        problem = (dnd.problem.reason, dnd.problem.fix) if dnd is not None and dnd.problem else None
        status = self.status
        if status is not None:  # a daemon frozen since it last spoke must not look in sync
            status = menu.unheard(status, time.monotonic() - self.status_at)
        return menu.TrayView(status, moment, label, dnd.reasserted if dnd else 0, tampered,
                             tuple(self.notices), dnd_problem=problem, last_known=self.last_known)

    def wants_silence(self) -> bool | None:
        """True/False once the daemon said; None while it is unreachable (change nothing)."""
        if self.status is None:
            return None
        return self.status.active and self.status.notifications_suppress


def load_pystray() -> tuple[ModuleType, str]:
    """Import pystray with an explicit back-end: ``PYSTRAY_BACKEND`` if set, else appindicator, xorg."""
    requested = os.environ.get("PYSTRAY_BACKEND")
    errors: list[str] = []
    for name in (requested,) if requested else BACKENDS_IN_ORDER:
        os.environ["PYSTRAY_BACKEND"] = name
        try:
            import pystray

            return pystray, name
        except Exception as error:  # pystray's xorg raises Xlib errors, not ImportError
            errors.append(f"{name}: {error!r}")
            sys.modules.pop("pystray", None)
    raise RuntimeError("no usable tray back-end: " + "; ".join(errors))


class TrayAgent:
    def __init__(self, paths: Paths, pystray: ModuleType, backend_name: str) -> None:
        self.paths = paths
        self.pystray = pystray
        self.backend_name = backend_name
        self.lock = threading.Lock()
        self.model = Model()
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._outbox: queue.Queue[tuple[str, str, int]] = queue.Queue()  # summary, body, urgency
        self._keeper: DndKeeper | None = None
        self._reprobe = threading.Event()  # the notification server changed owner
        self._watcher: Any = None  # BusWatcher, once there is a session bus
        self._watching: str | None = None  # the back-end whose changes the watcher listens to
        self._poll_seconds = RECHECK_SECONDS
        self._dnd_due = True  # look at do-not-disturb in the next round (else at the poll)
        self._dnd_checked_at = 0.0
        self._reported: tuple[Any, ...] | None = None
        self._reported_at = 0.0
        self._shown: tuple[Any, ...] | None = None
        self._window: subprocess.Popen[bytes] | None = None
        view = self.model.view(now())
        self.icon: Any = pystray.Icon("detoxd", icons.render(icons.face_for(None), ICON_SIZE),
                                      menu.title(view), self._pystray_menu(view))
        self._face = icons.face_for(None)
        if backend_name == "xorg":
            xorg.enable_clicks_on_xorg(self.icon)
            xorg.draw_to_fit_on_xorg(self.icon, lambda: self._face)

    # ---- lifecycle ----

    def run(self) -> int:
        """Blocks in pystray's loop until Quit."""
        try:
            self.icon.run(setup=self._setup)
        except Exception:
            if not self.stopping.is_set():
                raise
            # pystray's GTK back-ends clear their notification on the way out, and fail
            # when the session has no notification server; we are done anyway.
            log.debug("pystray failed while shutting down", exc_info=True)
        self.stopping.set()
        return 0

    def _setup(self, icon: Any) -> None:
        if self.backend_name == "xorg":
            xorg.show_on_xorg(icon)
        else:
            icon.visible = True
        for target, name in ((self._connection_loop, "detoxd-tray-connection"),
                             (self._desktop_loop, "detoxd-tray-desktop")):
            threading.Thread(target=target, name=name, daemon=True).start()
        activitywatch.start_reporter(self.paths.socket, self.stopping)  # time on blocked sites

    def quit(self) -> None:
        with self.lock:
            wanted = self.model.wants_silence()
        if wanted is not False:
            log.warning("not quitting: a detox runs (or the daemon cannot say that none does), and the "
                        "agent keeps notifications silenced")
            return
        log.info("quitting the tray")
        self.stopping.set()
        self._wake.set()
        self.icon.stop()

    # ---- the daemon ----

    def _connection_loop(self) -> None:
        client = ControlClient(self.paths.socket)
        failures = 0
        while not self.stopping.is_set():
            try:
                with client.subscribe() as subscription:
                    log.info("connected to the daemon at %s", self.paths.socket)
                    failures = 0
                    with self.lock:
                        self._reported = None  # a restarted daemon knows no agent: report again
                        self._dnd_due = True
                    for event in subscription:
                        self.on_event(event)
                reason = "the daemon closed the connection"
            except ControlError as error:
                reason = str(error)
            delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
            (log.warning if failures == 0 else log.debug)(
                "daemon unreachable (%s); retrying in %gs", reason, delay)
            failures += 1
            self._set_unreachable(reason)
            self.stopping.wait(delay)

    def _set_unreachable(self, reason: str) -> None:
        with self.lock:
            self.model.last_known = self.model.status or self.model.last_known
            self.model.status = None
            self.model.unreachable_reason = reason
        self._wake.set()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("event", "status"))
        moment = now()
        with self.lock:
            if isinstance(event.get("status"), dict):
                wanted = self.model.wants_silence()
                self.model.status = Status.from_json(event["status"])
                self.model.status_at = time.monotonic()
                if self.model.wants_silence() != wanted:
                    self._dnd_due = True
            if kind == "tamper":
                self.model.tampered_at = moment
            notice = _notice_for(kind, event, moment)
            if notice is not None:
                self.model.notices = [n for n in self.model.notices if n.until > moment] + [notice[1]]
        if notice is not None:
            # The user's own allowance closing gets through do-not-disturb (critical urgency).
            self._outbox.put((notice[0], notice[1].text, CRITICAL if kind == "allowance_closing" else 1))
        log.debug("event %s", kind)
        self._wake.set()

    # ---- the desktop: do-not-disturb, notifications, the icon ----

    def _desktop_loop(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    # The icon first: probing the desktop can wait on D-Bus (a notification server
                    # started on demand), and the status must not wait for it.
                    shown = self._show(push=False)
                    if self._dnd_round_due():
                        self._keep_notifications_in_line()
                        shown = True
                    self._send_notifications()
                    self._show(push=shown)
                except Exception:  # this thread keeps the silence: it must outlive any one failure
                    log.exception("the desktop round failed; trying again")
                    self.stopping.wait(1.0)
                self._wake.wait(self._sleep_seconds())
                self._wake.clear()
        finally:
            if self._watcher is not None:
                self._watcher.stop()

    def _dnd_round_due(self) -> bool:
        """Whether to look at do-not-disturb now: asked for (a desktop change, the detox's wish
        changed, a new connection) or the safety-net poll is due."""
        moment = time.monotonic()
        with self.lock:
            due = self._dnd_due or moment - self._dnd_checked_at >= self._poll_seconds
            if due:
                self._dnd_due, self._dnd_checked_at = False, moment
        return due

    def _sleep_seconds(self) -> float:
        """Until the safety-net poll, or until a daemon that fell silent must show as stale."""
        moment = time.monotonic()
        with self.lock:
            wait = self._dnd_checked_at + self._poll_seconds - moment
            if self.model.status is not None and not self.model.status.stale:
                wait = min(wait, self.model.status_at + menu.SILENCE_SECONDS + 0.1 - moment)
        return max(0.0, wait)

    def on_desktop_change(self, what: str) -> None:
        """From the bus watcher's threads: the do-not-disturb setting or the server changed."""
        log.debug("desktop change: %s", what)
        if what in ("server", "bus"):
            self._reprobe.set()
        with self.lock:
            self._dnd_due = True
        self._wake.set()

    def _keep_notifications_in_line(self) -> None:
        with self.lock:
            wanted = self.model.wants_silence()
        if wanted is None:
            return
        keeper = self._dnd_keeper()
        try:
            report = keeper.update(wanted)
        except Exception as error:  # restoring failed: the saved setting stays for the next try
            log.warning("cannot restore notifications: %s", error)
            return
        with self.lock:
            self.model.dnd = report
        self._report(report)

    def _report(self, report: DndReport) -> None:
        """Tell the daemon what the desktop says, for `detoxd status` and `doctor`: on every change,
        and every REPORT_SECONDS as a sign of life (the daemon notices an agent that stops)."""
        payload = (report.silenced, report.backend, report.problem)
        if payload == self._reported and time.monotonic() - self._reported_at < REPORT_SECONDS:
            return
        problem = report.problem
        try:
            ControlClient(self.paths.socket).request(
                "agent_report", timeout=2.0, notifications_silenced=report.silenced,
                backend=report.backend, reason=problem.reason if problem else None,
                fix=problem.fix if problem else None, pid=os.getpid())
        except ControlError as error:
            log.debug("could not report to the daemon: %s", error)
            return
        self._reported, self._reported_at = payload, time.monotonic()

    def _dnd_keeper(self) -> DndKeeper:
        """The keeper for the running notification server: chosen again when the server changes
        owner, and on every round while there is none that detoxd can silence."""
        keeper = self._keeper
        if keeper is not None and keeper.backend is not None and not self._reprobe.is_set():
            return keeper
        self._reprobe.clear()
        session = probe_session()
        backend, problem = choose(session)
        if keeper is not None and backend is not None and keeper.backend is not None \
                and keeper.backend.name == backend.name:
            return keeper  # the same kind of server (restarted): keep the back-end and what it holds
        if backend is not None:
            server = (session.describe_server() if session.has_server
                      else f"none yet; D-Bus starts {', '.join(session.activatable)} on demand")
            log.info("do-not-disturb back-end: %s (server %s)", backend.label, server)
        elif problem is not None and (keeper is None or keeper.problem != problem):
            log.warning("cannot silence notifications: %s (%s)", problem.reason, problem.fix)
        self._keeper = DndKeeper(backend, state_dir(), problem=problem)
        self._watch(backend)
        return self._keeper

    def _watch(self, backend: Any) -> None:
        """Listen for the back-end's change signals (and the server changing owner)."""
        from detoxd.agent.dnd.bus import BusError, BusWatcher

        name = backend.name if backend is not None else None
        if self._watcher is not None and self._watching == name:
            return
        watch = backend.watch() if backend is not None else None
        if self._watcher is None:
            self._watcher = BusWatcher(self.on_desktop_change)
        try:
            self._watcher.start(watch.signals if watch else (), watch.calls if watch else ())
        except BusError as error:
            log.warning("cannot watch the session bus (%s): polling every %gs", error, FAST_RECHECK_SECONDS)
            self._watching, self._poll_seconds = None, FAST_RECHECK_SECONDS
            return
        self._watching = name
        blind = watch is not None and bool(watch.calls) and not self._watcher.monitoring
        self._poll_seconds = FAST_RECHECK_SECONDS if blind else RECHECK_SECONDS

    def _send_notifications(self) -> None:
        from detoxd.agent.dnd.bus import BusError, notify

        while True:
            try:
                summary, body, urgency = self._outbox.get_nowait()
            except queue.Empty:
                return
            try:
                notify(summary, body, urgency=urgency)
            except BusError as error:
                log.warning("cannot show a desktop notification (%s): %s", summary, error)

    def _show(self, push: bool = True) -> bool:
        """Refresh the icon; True if it changed. On xorg, a change (or ``push``) is sent at once."""
        changed = self.refresh()
        if self.backend_name == "xorg" and (changed or push):
            xorg.push_to_x_server(self.icon)  # also what pystray's thread drew on Expose
        return changed

    def refresh(self) -> bool:
        """Push the current view to the icon, if anything visible changed (then True)."""
        with self.lock:
            view = self.model.view(now())
        face = icons.face_for(view.status, tampered=view.tampered, notice=bool(view.current_notices()))
        title = menu.title(view)
        entries = menu.entries(view, has_menu=self.icon.HAS_MENU)
        shown = (face, title, tuple(entries))
        if shown == self._shown:
            return False
        image = None
        if self._shown is None or face != self._shown[0]:
            self._face = face
            image = icons.render(face, ICON_SIZE)
        # The menu first: a panel that sees the new title then finds the menu that goes with it
        # (a rebuilt menu has new item ids; a click on the old one's is lost).
        self.icon.menu = self._pystray_menu(view)
        if self.backend_name == "xorg":
            xorg.update_on_xorg(self.icon, image, title)
        else:
            if image is not None:
                self.icon.icon = image
            self.icon.title = title
        self._shown = shown
        log.info("tray: %s", title)
        return True

    def _pystray_menu(self, view: menu.TrayView) -> Any:
        pystray = self.pystray
        items = []
        for entry in menu.entries(view, has_menu=pystray.Icon.HAS_MENU):
            if entry == menu.SEPARATOR:
                items.append(pystray.Menu.SEPARATOR)
            elif entry.action is None:
                items.append(pystray.MenuItem(entry.label, None, enabled=False))
            elif entry.action is menu.Action.OPEN_ALLOWANCE:
                items.append(pystray.MenuItem(entry.label, self._opener(entry)))
            else:
                handler = self._handler(entry.action)
                items.append(pystray.MenuItem(entry.label, handler, default=entry.default))
        return pystray.Menu(*items)

    # ---- actions ----

    def _handler(self, action: menu.Action) -> Callable[[Any, Any], None]:
        actions: dict[menu.Action, Callable[[], None]] = {
            menu.Action.SHOW_STATUS: self.show_status,
            menu.Action.OPEN_BLOCKLIST: self.open_blocklist,
            menu.Action.EXPORT_CALENDAR: self.export_calendar,
            menu.Action.OPEN_REPORT: self.open_report,
            menu.Action.ABOUT: self.about,
            menu.Action.QUIT: self.quit,
        }
        chosen = actions[action]

        def handle(_icon: Any, _item: Any) -> None:
            log.info("menu: %s", action.value)
            try:
                chosen()
            except Exception:
                log.exception("menu action %s failed", action.value)

        return handle

    def _opener(self, entry: menu.MenuEntry) -> Callable[[Any, Any], None]:
        def handle(_icon: Any, _item: Any) -> None:
            log.info("menu: open %s for %d min", entry.allowance, entry.minutes)
            self.open_allowance(str(entry.allowance), entry.minutes)
        return handle

    def open_allowance(self, name: str, minutes: int) -> None:
        """`detoxd open NAME MINUTES` as this user: the daemon decides (budget, seat, lock)."""
        try:
            response = ControlClient(self.paths.socket).request("open", name=name, minutes=minutes)
        except ControlError as error:
            response = {"ok": False, "error": str(error)}
        text = str(response.get("message") if response.get("ok") else response.get("error", "refused"))
        self.answer("detoxd allowance", f"{name}: {text}" if not response.get("ok") else text)

    def answer(self, summary: str, text: str) -> None:
        """The daemon's answer to what the user asked from the tray: in the menu and as a dot on
        the icon for ANSWER_MEMORY, and as a notification marked critical, which the desktops'
        do-not-disturb (detoxd's own) lets through where the server supports it."""
        moment = now()
        with self.lock:
            self.model.notices = [n for n in self.model.notices if n.until > moment] + [
                menu.Notice(text, moment + ANSWER_MEMORY)]
        self._outbox.put((summary, text, CRITICAL))
        self._wake.set()

    def show_status(self) -> None:
        with self.lock:
            view = self.model.view(now())
        self.show_text("detoxd status", "\n".join([menu.title(view), "", *menu.status_lines(view)]))

    def open_blocklist(self) -> None:
        blocklist = self.paths.config_dir / "blocklist.yaml"
        opener = shutil.which("xdg-open")
        if opener:
            subprocess.Popen([opener, str(blocklist)], start_new_session=True)
            return
        try:
            text = blocklist.read_text()
        except OSError as error:
            text = f"cannot read {blocklist}: {error}"
        self.show_text(f"{blocklist} (read-only)", f"Edit with: sudoedit {blocklist}\n\n{text}")

    def export_calendar(self) -> None:
        target = Path.home() / "detoxd-sessions.ics"
        try:
            response = ControlClient(self.paths.socket).request("calendar")
        except ControlError as error:
            self.show_text("detoxd", f"Cannot export the calendar: {error}")
            return
        if not response.get("ok") or not isinstance(response.get("ics"), str):
            self.show_text("detoxd", f"Cannot export the calendar: {response.get('error', 'no calendar')}")
            return
        target.write_text(response["ics"])
        self.show_text("detoxd", f"Sessions calendar saved to {target}")

    def open_report(self) -> None:
        try:
            page = reportpage.write_page(self.paths.socket)
        except reportpage.ReportUnavailable as error:
            self.show_text("detoxd report", str(error))
            return
        opener = shutil.which("xdg-open")
        if opener:
            subprocess.Popen([opener, page.as_uri()], start_new_session=True)
        else:
            self.show_text("detoxd report", f"The report is in {page}")

    def about(self) -> None:
        from detoxd import __version__

        self.show_text("About detoxd", f"detoxd {__version__}: a 14-day digital detox.\n"
                       "The tray shows the detox; nothing here can end it.")

    def show_text(self, heading: str, text: str) -> None:
        """A small window on X (UTF-8, sized to fit the screen: ``textwindow``), else a desktop
        notification."""
        if os.environ.get("DISPLAY"):
            if self._window is not None and self._window.poll() is None:
                self._window.terminate()
            command = [sys.executable, "-m", "detoxd.agent.textwindow", heading]
            self._window = subprocess.Popen(command, stdin=subprocess.PIPE)
            assert self._window.stdin is not None
            with self._window.stdin:
                self._window.stdin.write(text.encode())
            return
        self._outbox.put((heading, text, CRITICAL))  # asked for by the user: shown during the silence
        self._wake.set()


def _notice_for(kind: str, event: dict[str, Any], moment: datetime) -> tuple[str, menu.Notice] | None:
    """(notification summary, menu notice) for a reminder or hot-seat handover, else None."""
    if kind in ("reminder", "session_reminder"):
        text = str(event.get("message") or _reminder_text(event))
        return "detoxd reminder", menu.Notice(f"Reminder: {text}", moment + NOTICE_MEMORY)
    if kind == "allowance_closing":
        closes = parse_time(event.get("closes_at")) or moment + timedelta(minutes=2)
        name = str(event.get("name") or "an allowance")
        return "detoxd allowance", menu.Notice(
            f"{name} closes at {closes.astimezone():%H:%M}: blocked again in 2 minutes", closes)
    if kind == "detox_ended":
        return "detoxd", menu.Notice(menu.closing_text(event.get("continues")), moment + NOTICE_MEMORY)
    if kind == "hot_seat":
        status = event.get("status")
        seat = Status.from_json(status).current_hot_seat if isinstance(status, dict) else None
        name = seat.name if seat is not None else str(event.get("name") or "next person")
        ends_at = seat.ends_at if seat is not None else event.get("ends_at")
        until = parse_time(ends_at) or moment + NOTICE_MEMORY
        return "detoxd hot seat", menu.Notice(f"Hot seat handed over to {name}", until)
    return None


def _reminder_text(event: dict[str, Any]) -> str:
    """"Peer session 1 on Thu 3 Dec 09:00 at Ada's office" from a scheduler reminder event."""
    start = parse_time(event.get("start"))
    when = f" on {start.astimezone():%a %-d %b %H:%M}" if start else ""
    where = f" at {event['location']}" if event.get("location") else ""
    return f"Peer session {event.get('session', '')}{when}{where}".replace("  ", " ")


def run_agent(paths: Paths) -> int:
    """What ``detoxd tray`` runs (after setting up logging)."""
    try:
        pystray, backend_name = load_pystray()
    except RuntimeError as error:
        log.error("%s", error)
        return 1
    log.info("tray back-end: %s (menu: %s)", backend_name, "yes" if pystray.Icon.HAS_MENU else "no, click")
    return TrayAgent(paths, pystray, backend_name).run()

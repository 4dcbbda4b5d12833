"""Closing blocked apps while a detox runs (the shell around :mod:`detoxd.core.apps`).

Cost is what shapes this module. Describing a process takes five reads in /proc (about 60 µs
in Python); doing that for 500 processes every second would cost 3 % of a core. So a scan first
reads the last PID handed out (/proc/loadavg): unchanged, nothing started and the scan is done.
Otherwise it lists /proc (about 400 µs with 600 processes) and describes only PIDs it has not
seen, plus:

* a *second look* at last scan's new PIDs: a process caught between fork() and exec() still
  shows its parent's name, and becomes the app a moment later;
* every ``recheck_seconds``, one read of ``comm`` per known PID: a process that exec()s into an
  app (`exec slack` from a script, a Snap launcher) changes its name, and is described again.

Closing is SIGTERM (and SIGCONT, so that a stopped process can act on it) to the app's process
tree, then SIGKILL for whatever still runs after ``grace_seconds``. Nothing here sleeps: the
pending kills carry deadlines that later scans act on, so ``scan`` can run in the daemon's tick.
Signals go through psutil handles, which refuse to signal a PID that was reused meanwhile.

With the exec watcher running (:mod:`detoxd.service.execwatch`), the kernel says which PID just
exec()d: :meth:`AppWatcher.exec_events` looks at those PIDs at once, and while its lease holds the
scan lists /proc only every ``recheck_seconds`` (a safety net), or at once when events were lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

from detoxd.core import apps
from detoxd.core.apps import AppRule, Finding, ProcessInfo

log = logging.getLogger("detoxd.core.apps")

GRACE_SECONDS = 5.0  # Electron apps save their state and quit well within this
RECHECK_SECONDS = 30.0  # how late a process that exec()s into an app may be noticed
# How often the daemon scans for new processes while there are app rules and no exec events
# (detoxd-execwatch) are in force: the one wake-up a second left in an idle daemon then.
POLL_SECONDS = 1.0
PROC = "/proc"
_CMDLINE_BYTES = 8192  # enough for argv[0..2]; a huge command line is not read whole


@dataclass
class Closure:
    """One app's process tree being closed: SIGTERM sent, SIGKILL due at ``deadline``."""

    app: str
    root: ProcessInfo
    deadline: float
    members: dict[int, psutil.Process] = field(default_factory=dict)
    via: str = "scan"  # what found it: "scan" (polling /proc) or "exec_event" (the kernel said)


class AppWatcher:
    """Finds blocked apps among new processes and closes them. Not thread-safe: the daemon calls
    it from its main loop, with its lock held."""

    def __init__(
        self,
        *,
        grace_seconds: float = GRACE_SECONDS,
        recheck_seconds: float = RECHECK_SECONDS,
        own_pid: int | None = None,
        proc: str = PROC,
    ) -> None:
        self.grace_seconds = grace_seconds
        self.recheck_seconds = recheck_seconds
        self.poll_seconds = POLL_SECONDS
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.proc = proc
        self.rules: tuple[AppRule, ...] = ()
        self.pending: list[Closure] = []
        self.closed: Counter[str] = Counter()
        self._names: dict[int, str] = {}  # every PID seen, with its name when last looked at
        self._second_look: set[int] = set()
        self._primed = False  # False: the next scan looks at every process
        self._next_recheck = 0.0
        self._last_pid: int | None = None  # the last PID the kernel handed out, at the last scan
        self._events_until = float("-inf")  # exec events are in force until then (monotonic)
        self.events_lost = 0  # times the lease lapsed or the kernel dropped events

    # ---- what the daemon calls ----

    def set_rules(self, rules: Iterable[AppRule]) -> None:
        rules = tuple(rules)
        if rules != self.rules:
            self.rules = rules
            self._primed = False  # apps already running may match the new rules

    def scan(self, now: float) -> list[Closure]:
        """Close newly started apps; SIGKILL what outlived its grace period. Returns the closures
        started by this scan. ``now`` is monotonic seconds."""
        self._finish_closures(now)
        if not self.rules:
            self.pause()
            return []
        if self.events_in_force(now) and self._primed and now < self._next_recheck:
            return []  # the kernel tells of every exec: no need to list /proc
        return self._look_at(self._candidates(now), now, "scan")

    # ---- exec events (see detoxd.service.execwatch) ----

    def events_in_force(self, now: float) -> bool:
        return now < self._events_until

    def exec_events(self, pids: Iterable[int], now: float, *, lease_seconds: float,
                    watching: bool = True, lost: bool = False) -> list[Closure]:
        """The exec watcher's word: ``pids`` exec()d just now. Closes those that are blocked apps
        (during a detox: only while rules are set). ``lease_seconds``: how long events may be
        trusted without another word; ``lost``: the kernel dropped some, so list /proc again."""
        was = self.events_in_force(now)
        self._events_until = now + lease_seconds if watching else float("-inf")
        if lost or (was and not watching):
            self.events_lost += lost
            self._primed = False  # the next scan lists every process
        self._finish_closures(now)
        if not self.rules:
            return []
        pids = set(pids)
        for pid in pids:
            self._second_look.discard(pid)
        return self._look_at(pids, now, "exec_event")

    def _look_at(self, candidates: Iterable[int], now: float, via: str) -> list[Closure]:
        started: list[Closure] = []
        cache: dict[int, ProcessInfo | None] = {}

        def look(pid: int) -> ProcessInfo | None:
            if pid not in cache:
                cache[pid] = describe(pid, self.proc)
            return cache[pid]

        for pid in sorted(candidates):  # parents before their children, mostly
            info = look(pid)
            if info is None:
                continue
            self._names[pid] = info.name
            rule = apps.rule_for(self.rules, info)
            if rule is None or info.zombie or apps.protection(info, self.own_pid):
                continue
            closure = self._close(rule, apps.tree_root(info, rule, look, self.own_pid), info, now, via)
            if closure is not None:
                started.append(closure)
        return started

    def next_due(self, now: float) -> float | None:
        """When the daemon must scan again (monotonic): the poll while there are rules, sooner a
        pending SIGKILL; None when there is nothing to watch."""
        due = [closure.deadline for closure in self.pending]
        if self.rules and self.events_in_force(now) and self._primed:
            # The kernel tells of every exec: list /proc again when the exec watcher's lease runs
            # out, not every second. The safety net (every ``recheck_seconds``) wakes no one: the
            # daemon scans at every tick, which comes at least every QUIET_SECONDS anyway.
            due.append(self._events_until)
        elif self.rules:
            due.append(now + self.poll_seconds)
        return min(due) if due else None

    def pause(self) -> None:
        """No detox (or no rules): stop watching and forget what was seen, so that the next scan
        looks at every process; kills still pending are called off."""
        self._names.clear()
        self._second_look.clear()
        self._primed = False
        self.pending.clear()

    def reset_counts(self) -> None:
        """A new detox counts from zero."""
        self.closed.clear()

    def closed_counts(self) -> dict[str, int]:
        """App name → how many times it was closed (one count per process tree)."""
        return dict(sorted(self.closed.items()))

    # ---- finding candidates ----

    def _candidates(self, now: float) -> set[int]:
        # Read before listing /proc, so that a process started in between is listed next time.
        last_pid = read_last_pid(self.proc)
        unchanged = last_pid is not None and last_pid == self._last_pid
        self._last_pid = last_pid
        if self._primed and unchanged and now < self._next_recheck:
            # No PID was handed out since the last scan, so no process started: skip the listing.
            candidates, self._second_look = self._second_look, set()
            return candidates
        pids = list_pids(self.proc)
        for gone in self._names.keys() - pids:
            del self._names[gone]
        if not self._primed:
            self._primed = True
            self._next_recheck = now + self.recheck_seconds
            self._second_look = set()
            return pids
        new = pids - self._names.keys()
        candidates = new | (self._second_look & pids)
        self._second_look = new
        if now >= self._next_recheck:
            self._next_recheck = now + self.recheck_seconds
            candidates |= {pid for pid, name in self._names.items() if read_comm(pid, self.proc) != name}
        for pid in new:
            self._names[pid] = ""  # seen; the real name is filled in when it is described
        return candidates

    # ---- closing ----

    def _close(self, rule: AppRule, root: ProcessInfo, found: ProcessInfo, now: float,
               via: str) -> Closure | None:
        if self._join_pending(found, root) is not None:
            return None
        try:
            handle = psutil.Process(root.pid)
            tree = [handle, *handle.children(recursive=True)]
        except psutil.Error:
            return None
        # The handles were taken after ``root`` was read: describe again, so a PID reused in
        # between is not closed for what its previous owner was.
        check = describe(root.pid, self.proc)
        if check is None or not rule.matches(check) or apps.protection(check, self.own_pid):
            return None
        closure = Closure(rule.name, root, now + self.grace_seconds, via=via)
        for member in tree:
            self._terminate(closure, member)
        if not closure.members:
            return None
        self.pending.append(closure)
        self.closed[rule.name] += 1
        log.info("closed %s: pid %d %s (uid %s) and %d more processes: SIGTERM, SIGKILL in %gs if "
                 "still running (found by %s)", rule.name, root.pid, root.exe or root.argv0 or root.name,
                 root.real_uid, len(closure.members) - 1, self.grace_seconds, via.replace("_", " "))
        return closure

    def _join_pending(self, found: ProcessInfo, root: ProcessInfo) -> Closure | None:
        """A process born into an app being closed (a helper it was starting) joins that closure
        instead of counting as another closure."""
        for closure in self.pending:
            if closure.members.keys() & {found.pid, found.ppid, root.pid}:
                if found.pid not in closure.members:
                    with contextlib.suppress(psutil.Error):
                        self._terminate(closure, psutil.Process(found.pid))
                return closure
        return None

    def _terminate(self, closure: Closure, member: psutil.Process) -> None:
        info = describe(member.pid, self.proc)
        if info is None or info.zombie or apps.protection(info, self.own_pid):
            return  # gone, already dead, or never ours to close (a setuid helper, detoxd)
        if _send(member, signal.SIGTERM, closure.app):
            _send(member, signal.SIGCONT, closure.app)
            closure.members[member.pid] = member

    def _finish_closures(self, now: float) -> None:
        for closure in list(self.pending):
            closure.members = {pid: p for pid, p in closure.members.items() if _running(p)}
            if not closure.members:
                self.pending.remove(closure)
                log.debug("%s (pid %d) has exited", closure.app, closure.root.pid)
            elif now >= closure.deadline:
                self.pending.remove(closure)
                killed = [pid for pid, p in closure.members.items() if _send(p, signal.SIGKILL, closure.app)]
                log.warning("%s: %d processes still ran %gs after SIGTERM: killed (pids %s)", closure.app,
                            len(killed), self.grace_seconds, " ".join(map(str, sorted(killed))))


def _send(process: psutil.Process, sig: signal.Signals, app: str) -> bool:
    """Signal ``process``; False when it is gone (or its PID now belongs to another process)."""
    try:
        process.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        log.warning("%s: not allowed to signal pid %d (is CAP_KILL missing?)", app, process.pid)
        return False
    return True


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ---- reading /proc ----


def list_pids(proc: str = PROC) -> set[int]:
    return {int(entry) for entry in os.listdir(proc) if entry.isdigit()}


def read_last_pid(proc: str = PROC) -> int | None:
    """The PID most recently handed out (to a process or a thread), from /proc/loadavg; None when
    unreadable. Unchanged between two reads means no process started in between (unless the
    PIDs wrapped around exactly, which takes pid_max forks)."""
    fields = _read(f"{proc}/loadavg", 128).split()
    return int(fields[4]) if len(fields) == 5 and fields[4].isdigit() else None


def read_comm(pid: int, proc: str = PROC) -> str:
    return _read(f"{proc}/{pid}/comm", 64).decode("utf-8", "replace").rstrip("\n")


def describe(pid: int, proc: str = PROC) -> ProcessInfo | None:
    """What :mod:`detoxd.core.apps` needs to know about ``pid``; None if it is gone or unreadable."""
    base = f"{proc}/{pid}"
    parsed = apps.parse_stat(pid, _read(f"{base}/stat", 4096).decode("utf-8", "replace"))
    if parsed is None:
        return None
    name, ppid, kernel_thread, zombie = parsed
    if kernel_thread or zombie:
        return ProcessInfo(pid, ppid, name, kernel_thread=kernel_thread, zombie=zombie)
    real_uid, effective_uid = apps.parse_uids(_read(f"{base}/status", 8192).decode("utf-8", "replace"))
    try:
        exe = apps.clean_exe(os.readlink(f"{base}/exe"))
    except OSError:  # gone, or another user's process read without CAP_SYS_PTRACE
        exe = ""
    return ProcessInfo(
        pid, ppid, name, exe=exe,
        argv=apps.parse_cmdline(_read(f"{base}/cmdline", _CMDLINE_BYTES)),
        real_uid=real_uid, effective_uid=effective_uid,
        flatpak_app=apps.flatpak_app_id(_read(f"{base}/cgroup", 8192).decode("utf-8", "replace")),
    )


def _read(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb", buffering=0) as handle:
            return handle.read(limit)
    except OSError:  # the process exited, or its files are not ours to read
        return b""


# ---- `detoxd check` ----


def dry_run(rules: Iterable[AppRule], proc: str = PROC) -> list[Finding]:
    """Which running processes ``rules`` would close now, and which they match but spare."""
    rules = tuple(rules)
    infos = {pid: info for pid in list_pids(proc) if (info := describe(pid, proc)) is not None}
    own_pid = os.getpid()
    findings: dict[int, Finding] = {}
    for info in sorted(infos.values(), key=lambda i: i.pid):
        rule = apps.rule_for(rules, info)
        if rule is None or info.zombie:
            continue
        spared = apps.protection(info, own_pid)
        root = info if spared else apps.tree_root(info, rule, infos.get, own_pid)
        if root.pid not in findings:
            count = len(apps.descendants(root.pid, {i.pid: i.ppid for i in infos.values()}))
            findings[root.pid] = Finding(rule.name, root, spared, 0 if spared else count)
    return list(findings.values())


def check_report(rules: Iterable[AppRule]) -> str:
    """What `detoxd check` prints about apps: a dry run against the running processes."""
    findings = dry_run(rules)
    closing = sum(1 for finding in findings if finding.spared_because is None)
    if not findings:
        return "apps: no running process matches the app rules"
    head = f"apps: {closing} running app{'s' if closing != 1 else ''} would be closed during a detox"
    return "\n".join([head, *apps.describe_findings(findings)])

"""AppWatcher against real processes (no daemon): each test starts processes as an ordinary user
(uid 4242: closing is only ever done to user accounts' processes) and scans with real time.

The watcher scans all of /proc and closes whatever a rule matches, so these tests run only in
their own PID namespace with its own /proc (test_appwatch_namespace.py starts them there): a
rule such as the slack preset never sees, let alone signals, a process of the machine's."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from detoxd.core import apps
from detoxd.core.apps import AppRule, Matcher
from detoxd.service import appwatch
from detoxd.service.appwatch import AppWatcher

USER_UID = 4242
PYTHON = "/usr/bin/python3"

# Set by test_appwatch_namespace.py for the pytest it runs as PID 1 of a new PID namespace.
IN_OWN_PID_NAMESPACE = os.environ.get("DETOXD_TEST_PID_NAMESPACE") == "1" and os.getpid() == 1
pytestmark = pytest.mark.skipif(
    not IN_OWN_PID_NAMESPACE,
    reason="scans and signals every process it can see: runs in its own PID namespace "
           "(tests/service/test_appwatch_namespace.py)")


def rule(name: str, *texts: str) -> AppRule:
    matchers = [apps.parse_matcher(text) for text in texts]
    assert all(isinstance(m, Matcher) for m in matchers), matchers
    return AppRule(name, tuple(m for m in matchers if isinstance(m, Matcher)))


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.01)
    raise AssertionError("timed out")


def exited(process: subprocess.Popen[Any]) -> int | None:
    """The exit status once the process is gone (it is reaped here: the test is its parent)."""
    try:
        return process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        return None


class Spawner:
    """Starts processes as USER_UID from a directory that user can read, and cleans up."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[str]] = []

    def binary(self, name: str, source: str = "/bin/sleep") -> str:
        target = self.directory / name
        shutil.copy(source, target)
        target.chmod(0o755)
        return str(target)

    def start(self, argv: list[str], *, executable: str | None = None, uid: int | None = USER_UID,
              ready: bool = False) -> subprocess.Popen[str]:
        process = subprocess.Popen(argv, executable=executable, user=uid, stdout=subprocess.PIPE,
                                   stdin=subprocess.PIPE, text=True, cwd=self.directory)
        self.processes.append(process)
        if ready:  # the child prints a line once it is set up (signal handlers, children)
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        return process

    def script(self, name: str, text: str) -> str:
        path = self.directory / name
        path.write_text(text)
        path.chmod(0o644)
        return str(path)

    def python(self, argv0: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Python, shown as ``argv0``; args as for python3 (a script, or -c CODE)."""
        return self.start([argv0, *args], executable=PYTHON, **kwargs)

    def cleanup(self) -> None:
        for process in self.processes:
            for member in _tree(process.pid):
                with contextlib.suppress(psutil.Error):
                    member.kill()
            process.kill()
            process.wait()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    directory = Path(tempfile.mkdtemp(prefix="detoxd-apps-"))
    directory.chmod(0o755)
    spawner = Spawner(directory)
    yield spawner
    spawner.cleanup()
    shutil.rmtree(directory, ignore_errors=True)


def watcher(*rules: AppRule, **kwargs: Any) -> AppWatcher:
    watch = AppWatcher(**kwargs)
    watch.set_rules(rules)
    return watch


def test_a_renamed_binary_is_closed_and_counted(spawn: Spawner) -> None:
    slack = spawn.start([spawn.binary("slack"), "60"])
    watch = watcher(apps.builtin_presets()["slack"])
    closures = watch.scan(time.monotonic())
    assert [(c.app, c.root.pid) for c in closures] == [("slack", slack.pid)]
    assert exited(slack) == -signal.SIGTERM
    assert watch.closed_counts() == {"slack": 1}
    watch.reset_counts()
    assert watch.closed_counts() == {}


def test_the_app_name_only_in_arguments_survives(spawn: Spawner) -> None:
    code = "import time; print('ready', flush=True); time.sleep(60)"
    # An editor with the app's name and paths open, as arguments.
    editor = spawn.start(["vim", "-c", code, "slack", "/usr/lib/slack/slack", "slack.txt"],
                         executable=PYTHON, ready=True)
    watch = watcher(apps.builtin_presets()["slack"], rule("mine", "/opt/mychat/mychat"))
    assert watch.scan(time.monotonic()) == []
    time.sleep(0.2)
    assert editor.poll() is None
    assert watch.closed_counts() == {}


def test_argv0_set_to_a_blocked_path_is_closed(spawn: Spawner) -> None:
    chat = spawn.python("/opt/mychat/mychat", "-c", "import time; print('ready', flush=True); time.sleep(60)",
                        ready=True)
    watch = watcher(rule("my-chat-client", "my-chat", "/opt/mychat/mychat"))
    assert [c.root.pid for c in watch.scan(time.monotonic())] == [chat.pid]
    assert exited(chat) == -signal.SIGTERM


def test_only_new_processes_are_looked_at_after_the_first_scan(spawn: Spawner) -> None:
    watch = watcher(rule("chat", "chat"))
    assert watch.scan(time.monotonic()) == []
    chat = spawn.start([spawn.binary("chat"), "60"])
    started = time.monotonic()
    assert [c.root.pid for c in watch.scan(started)] == [chat.pid]
    assert exited(chat) == -signal.SIGTERM


EXEC_LATER = """
import os, sys
print("ready", flush=True)
sys.stdin.readline()
os.execv(sys.argv[1], ["chat", "60"])
"""

TREE = """
import subprocess, sys, time
kids = [subprocess.Popen([sys.argv[1], "60"]) for _ in range(2)]
grandkid = subprocess.Popen(["/usr/bin/python3", "-c",
                             "import subprocess, sys; subprocess.run([sys.argv[1], '60'])", sys.argv[1]])
time.sleep(0.3)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_process_that_execs_into_the_app_is_caught(spawn: Spawner) -> None:
    """A process first seen as a launcher becomes the app: the second look at new processes
    catches an exec() within a scan; the periodic name recheck catches a later one."""
    target, script = spawn.binary("chat"), spawn.script("launch.py", EXEC_LATER)
    early = spawn.python("launcher", script, target, ready=True)
    watch = watcher(rule("chat", "chat"), recheck_seconds=30)
    start = time.monotonic()
    assert watch.scan(start) == []  # the first scan looks at everything, ``early`` included
    late = spawn.python("launcher", script, target, ready=True)
    assert watch.scan(start + 1) == []  # new: looked at while it is still the launcher
    go(late)
    wait_for(lambda: appwatch.read_comm(late.pid) == "chat")
    assert [c.root.pid for c in watch.scan(start + 2)] == [late.pid]  # the second look
    go(early)
    wait_for(lambda: appwatch.read_comm(early.pid) == "chat")
    assert watch.scan(start + 3) == []  # seen twice already: waits for the recheck
    assert [c.root.pid for c in watch.scan(start + 30)] == [early.pid]
    assert exited(early) == -signal.SIGTERM and exited(late) == -signal.SIGTERM


def go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def test_the_whole_process_tree_is_closed_once(spawn: Spawner) -> None:
    parent = spawn.python("/opt/mychat/mychat", spawn.script("tree.py", TREE), spawn.binary("helper"),
                          ready=True)
    members = [parent.pid, *(p.pid for p in psutil.Process(parent.pid).children(recursive=True))]
    assert len(members) == 5
    watch = watcher(rule("my-chat-client", "/opt/mychat/mychat"))
    closures = watch.scan(time.monotonic())
    assert len(closures) == 1 and sorted(closures[0].members) == sorted(members)
    assert exited(parent) == -signal.SIGTERM
    wait_for(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                             for pid in members))
    assert watch.closed_counts() == {"my-chat-client": 1}


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(spawn: Spawner) -> None:
    stubborn = spawn.python(
        "/opt/mychat/mychat", "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)", ready=True)
    watch = watcher(rule("chat", "/opt/mychat/mychat"), grace_seconds=0.5)
    start = time.monotonic()
    assert len(watch.scan(start)) == 1
    time.sleep(0.2)
    watch.scan(time.monotonic())  # before the deadline: it still runs
    assert stubborn.poll() is None and len(watch.pending) == 1
    time.sleep(max(0.0, start + 0.5 - time.monotonic()))
    watch.scan(time.monotonic())
    assert exited(stubborn) == -signal.SIGKILL
    assert watch.pending == [] and watch.closed_counts() == {"chat": 1}


def test_zombies_count_as_closed_and_are_not_closed_again(spawn: Spawner) -> None:
    slack = spawn.start([spawn.binary("slack"), "60"])
    watch = watcher(apps.builtin_presets()["slack"], grace_seconds=0.2)
    watch.scan(time.monotonic())
    # Not reaped yet: a zombie, since this test is its parent and has not waited.
    wait_for(lambda: psutil.Process(slack.pid).status() == psutil.STATUS_ZOMBIE)
    watch.scan(time.monotonic())
    assert watch.pending == []
    watch.set_rules([apps.builtin_presets()["slack"], rule("other", "other")])  # a full look again
    assert watch.scan(time.monotonic() + 1) == []
    assert watch.closed_counts() == {"slack": 1}
    assert slack.wait() == -signal.SIGTERM


def test_root_processes_and_detoxd_itself_are_never_closed(spawn: Spawner) -> None:
    root_slack = spawn.start([spawn.binary("slack"), "60"], uid=None)
    # This test runs as root: a rule naming its interpreter must not close it (nor anything else).
    interpreter = Path(sys.executable).resolve().name  # refused in a config; a rule made in code
    everything = AppRule("everything", (Matcher("directory", f"{spawn.directory}/"),
                                        Matcher("name", interpreter)))
    watch = watcher(apps.builtin_presets()["slack"], everything, own_pid=os.getpid())
    assert watch.scan(time.monotonic()) == []
    assert root_slack.poll() is None
    findings = appwatch.dry_run([apps.builtin_presets()["slack"]])
    spared = [f for f in findings if f.process.pid == root_slack.pid]
    assert spared and spared[0].spared_because == "runs as a system user (uid 0)"


def test_pause_forgets_and_the_next_scan_looks_at_everything(spawn: Spawner) -> None:
    watch = watcher(rule("chat", "chat"))
    watch.scan(time.monotonic())
    watch.pause()
    chat = spawn.start([spawn.binary("chat"), "60"])
    assert [c.root.pid for c in watch.scan(time.monotonic())] == [chat.pid]


def test_no_rules_means_no_scanning(spawn: Spawner) -> None:
    chat = spawn.start([spawn.binary("chat"), "60"])
    watch = watcher()
    assert watch.scan(time.monotonic()) == []
    assert chat.poll() is None


def test_check_report_lists_what_would_be_closed(spawn: Spawner) -> None:
    slack = spawn.start([spawn.binary("slack"), "60"])
    report = appwatch.check_report([apps.builtin_presets()["slack"]])
    assert report.startswith("apps: 1 running app would be closed during a detox")
    assert f"  slack: would close pid {slack.pid} {spawn.directory}/slack (uid {USER_UID})" in report
    assert slack.poll() is None  # a dry run


def test_describe_reads_a_real_process(spawn: Spawner) -> None:
    slack = spawn.start([spawn.binary("slack"), "60", "30"])  # arguments sleep accepts: it stays
    info = appwatch.describe(slack.pid)
    assert info is not None
    assert (info.name, info.exe, info.argv) == ("slack", f"{spawn.directory}/slack",
                                                (f"{spawn.directory}/slack", "60", "30"))
    assert (info.ppid, info.real_uid, info.effective_uid) == (os.getpid(), USER_UID, USER_UID)
    assert info.flatpak_app is None and not info.zombie
    assert appwatch.describe(2 ** 22 + 1) is None


def test_the_last_pid_moves_when_a_process_starts(spawn: Spawner) -> None:
    before = appwatch.read_last_pid()
    process = spawn.start([spawn.binary("anything"), "60"])
    after = appwatch.read_last_pid()
    assert before is not None and after is not None and after != before
    assert before < process.pid <= after or after < before  # (or the PIDs wrapped around)


def test_exec_events_close_at_once_and_spare_the_scan_its_listing(spawn: Spawner) -> None:
    watch = watcher(apps.builtin_presets()["slack"])
    now = time.monotonic()
    assert watch.scan(now) == []  # primed: every process looked at once
    watch.exec_events([], now, lease_seconds=60)
    assert watch.events_in_force(now + 59) and not watch.events_in_force(now + 61)
    # Only the lease's end wakes the daemon: the 30 s safety net rides on its ticks.
    assert watch.next_due(now) == now + 60
    slack = spawn.start([spawn.binary("slack"), "60"])
    assert watch.scan(now + 1) == []  # events in force: no listing, the event will tell
    assert slack.poll() is None
    closures = watch.exec_events([slack.pid], now + 1, lease_seconds=60)
    assert [(c.app, c.root.pid, c.via) for c in closures] == [("slack", slack.pid, "exec_event")]
    assert exited(slack) == -signal.SIGTERM


def test_lost_events_or_a_lapsed_lease_bring_the_listing_back(spawn: Spawner) -> None:
    watch = watcher(apps.builtin_presets()["slack"])
    now = time.monotonic()
    watch.scan(now)
    watch.exec_events([], now, lease_seconds=60)
    slack = spawn.start([spawn.binary("slack"), "60"])
    watch.exec_events([], now + 1, lease_seconds=60, lost=True)  # the kernel dropped its event
    assert [(c.root.pid, c.via) for c in watch.scan(now + 1)] == [(slack.pid, "scan")]
    assert exited(slack) == -signal.SIGTERM
    other = spawn.start([spawn.binary("slack"), "60"])
    assert [(c.root.pid, c.via) for c in watch.scan(now + 61)] == [(other.pid, "scan")]  # lease over
    assert exited(other) == -signal.SIGTERM

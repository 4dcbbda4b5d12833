"""Blocked apps closed at exec from the kernel's events: a real `detoxd run`, a real
`detoxd execwatch`, real processes.

The kernel sends process events only to listeners in the initial PID namespace, so the exec
watcher runs here, in the test's own namespace; the daemon and every app run in a PID namespace
this test makes (``unshare --pid --mount-proc``, entered with ``nsenter``). The watcher passes on
only processes of the daemon's namespace (its scope, from the daemon's PID namespace), and the
daemon sees only its own /proc: nothing outside what this test started can be closed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import DetoxdEnv, wait_for

from tests.pidns import NOT_INITIAL_REASON, in_initial_pid_namespace

USER_UID = 4242

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
        reason="needs root (namespaces, processes of another user) and unshare/nsenter (util-linux)"),
    pytest.mark.skipif(not in_initial_pid_namespace(), reason=NOT_INITIAL_REASON),
]


class Namespace:
    """A PID namespace with its own /proc, kept alive by a placeholder init (and a PID 2: detoxd
    rightly spares PIDs 1 and 2)."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
             "sleep 3600 & exec sleep 3600"])
        self.init_pid = wait_for(self._init, what="the namespace's init")
        self.processes: list[subprocess.Popen[bytes]] = []

    def _init(self) -> int | None:
        children = psutil.Process(self.holder.pid).children()
        if children and children[0].name() == "sleep" and len(children[0].children()) == 1:
            return children[0].pid
        return None

    def enter(self, *extra: str) -> list[str]:
        return ["nsenter", f"--target={self.init_pid}", "--pid", "--mount", "--root", "--wd", *extra, "--"]

    def start_app(self, binary: str) -> subprocess.Popen[bytes]:
        # nsenter forks the app into the namespace, waits, and dies of the app's signal.
        process = subprocess.Popen(
            [*self.enter(f"--setuid={USER_UID}", f"--setgid={USER_UID}"), binary, "120"])
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
            process.wait()
        # The namespace ends with its init, and the kernel kills everything in it (the daemon too).
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init_pid, signal.SIGKILL)
        self.holder.wait(timeout=10)
        wait_for(lambda: not psutil.pid_exists(self.init_pid), what="the namespace to end")


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    made = Namespace()
    yield made
    made.close()


@pytest.fixture
def apps_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="detoxd-exec-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def app_binary(directory: Path, name: str) -> str:
    target = directory / name
    shutil.copy("/bin/sleep", target)
    target.chmod(0o755)
    return str(target)


@pytest.fixture
def detox(detoxd_env: DetoxdEnv, namespace: Namespace) -> DetoxdEnv:
    """A daemon inside the namespace, a detox closing slack."""
    detoxd_env.write_blocklist("domains: [twitter.com]\napps: [slack]\n")
    detoxd_env.wrapper = namespace.enter()
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    return detoxd_env


@pytest.fixture
def execwatch(detox: DetoxdEnv) -> Iterator[subprocess.Popen[bytes]]:
    log = (detox.root / "execwatch.log").open("ab")
    watcher = subprocess.Popen([sys.executable, "-m", "detoxd", "execwatch"], env=detox.env,
                               stdout=log, stderr=log)
    wait_for(lambda: detox.status()["apps_watch"] == "exec_events", what="the exec watcher's first word")
    yield watcher
    if watcher.poll() is None:
        watcher.kill()
        watcher.wait()


def closed_by(env: DetoxdEnv, app: str) -> list[str]:
    """How the daemon found each ``app`` it closed, from its log (written just after the SIGTERM:
    waited for)."""
    def found() -> list[str]:
        return [line.rsplit("(found by ", 1)[1].rstrip(")") for line in env.log().splitlines()
                if f"closed {app}: pid" in line]
    try:
        return wait_for(found, what=f"the daemon's log line on closing {app}")  # type: ignore[no-any-return]
    except AssertionError as error:
        raise AssertionError(f"{error}; the log:\n{env.log()[-3000:]}") from None


def test_an_app_started_in_the_namespace_is_closed_by_its_exec_event(
        detox: DetoxdEnv, namespace: Namespace, apps_dir: Path, execwatch: subprocess.Popen[bytes]) -> None:
    slack = namespace.start_app(app_binary(apps_dir, "slack"))
    assert slack.wait(timeout=10) == -signal.SIGTERM
    assert closed_by(detox, "slack") == ["exec event"]
    status = detox.status()
    assert status["apps_closed"] == {"slack": 1} and status["apps_watch"] == "exec_events"


def test_when_the_watcher_stops_polling_closes_apps_again(
        detox: DetoxdEnv, namespace: Namespace, apps_dir: Path, execwatch: subprocess.Popen[bytes]) -> None:
    execwatch.send_signal(signal.SIGTERM)
    assert execwatch.wait(timeout=10) == 0
    assert detox.status()["apps_watch"] == "polling"  # it said goodbye: no lease to wait out
    slack = namespace.start_app(app_binary(apps_dir, "slack"))
    assert slack.wait(timeout=10) == -signal.SIGTERM
    assert closed_by(detox, "slack") == ["scan"]


def test_without_events_polling_closes_apps_and_says_so(
        detox: DetoxdEnv, namespace: Namespace, apps_dir: Path) -> None:
    # The watcher inside the namespace: the kernel sends no events there, and it says so.
    inside = subprocess.run([*namespace.enter(), sys.executable, "-m", "detoxd", "execwatch"],
                            env=detox.env, capture_output=True, text=True, timeout=60, check=False)
    assert inside.returncode == 3  # the unit's RestartPreventExitStatus=
    assert "not in the initial PID and user namespaces" in inside.stderr
    assert detox.status()["apps_watch"] == "polling"
    slack = namespace.start_app(app_binary(apps_dir, "slack"))
    assert slack.wait(timeout=10) == -signal.SIGTERM
    assert closed_by(detox, "slack") == ["scan"]


def test_the_watcher_passes_on_nothing_from_outside_the_daemons_namespace(
        detox: DetoxdEnv, namespace: Namespace, apps_dir: Path, execwatch: subprocess.Popen[bytes]) -> None:
    # A "slack" of uid 4242 out here, in the test's namespace: the daemon must never hear of it.
    slack = app_binary(apps_dir, "slack")
    outside = subprocess.Popen([slack, "120"], user=USER_UID)
    try:
        inside = namespace.start_app(slack)  # proves events flowed after it
        assert inside.wait(timeout=10) == -signal.SIGTERM
        assert outside.poll() is None
        assert detox.status()["apps_closed"] == {"slack": 1}
        assert closed_by(detox, "slack") == ["exec event"]
    finally:
        outside.kill()
        outside.wait()


def test_the_scope_is_the_daemons_namespace_with_its_own_pids(namespace: Namespace) -> None:
    from detoxd.service.execwatch import Scope

    placeholder = psutil.Process(namespace.init_pid).children()[0].pid  # PID 2 in there
    scope = Scope.of(namespace.init_pid)
    assert scope.level == 1
    app = namespace.start_app("/bin/sleep")
    found = wait_for(lambda: [p for p in psutil.Process(app.pid).children() if p.uids().real == USER_UID],
                     what="the app in the namespace")
    assert scope.translate(found[0].pid) is not None and scope.translate(found[0].pid) != found[0].pid
    assert scope.translate(placeholder) is None  # root's: never passed on
    outsider = subprocess.Popen(["/bin/sleep", "120"], user=USER_UID)
    try:
        assert Scope.of(os.getpid()).translate(outsider.pid) == outsider.pid  # the initial namespace
        assert scope.translate(outsider.pid) is None  # beside the daemon's: not its to see
    finally:
        outsider.kill()
        outsider.wait()


def test_the_scope_takes_in_namespaces_below_the_daemons(namespace: Namespace) -> None:
    from detoxd.service.execwatch import Scope, namespace_pids

    nested = subprocess.Popen([*namespace.enter(), "unshare", "--pid", "--fork", "--kill-child", "setpriv",
                               f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups",
                               "/bin/sleep", "120"])
    try:
        def app() -> int | None:
            found = [p for p in psutil.Process(nested.pid).children(recursive=True)
                     if p.name() == "sleep" and p.uids().real == USER_UID]
            return found[0].pid if found else None
        pid = wait_for(app, what="the app two namespaces down")
        levels = namespace_pids(pid)
        assert len(levels) == 3  # here, the test's namespace, the one below it
        assert Scope.of(namespace.init_pid).translate(pid) == levels[1]
    finally:
        nested.kill()
        nested.wait()

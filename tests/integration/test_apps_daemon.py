"""The daemon closing blocked apps during a detox: real `detoxd run`, real processes.

The app processes run as an ordinary user (uid 4242), from a directory that user can read:
detoxd never closes a process of a system account, root included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import DetoxdEnv, wait_for

USER_UID = 4242
PYTHON = "/usr/bin/python3"
GRACE_SECONDS = 5.0  # detoxd.service.appwatchGRACE_SECONDS

# The daemon closes every process its rules match (the slack preset would close a real Slack
# of the machine's users): these tests run only as PID 1 of their own PID namespace, which
# test_apps_daemon_namespace.py starts.
IN_OWN_PID_NAMESPACE = os.environ.get("DETOXD_TEST_PID_NAMESPACE") == "1" and os.getpid() == 1
pytestmark = pytest.mark.skipif(
    not IN_OWN_PID_NAMESPACE,
    reason="its daemon signals every process its rules match: runs in its own PID namespace "
           "(tests/integration/test_apps_daemon_namespace.py)")

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""

TREE = """
import subprocess, sys, time
kids = [subprocess.Popen([sys.argv[1], "120"]) for _ in range(2)]
time.sleep(0.2)
print("ready", flush=True)
time.sleep(120)
"""

EDITOR = """
import time
print("ready", flush=True)
time.sleep(120)
"""


class Apps:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[str]] = []

    def binary(self, name: str) -> str:
        target = self.directory / name
        shutil.copy("/bin/sleep", target)
        target.chmod(0o755)
        return str(target)

    def start(self, argv: list[str], executable: str | None = None, ready: bool = False,
              uid: int | None = USER_UID) -> subprocess.Popen[str]:
        process = subprocess.Popen(argv, executable=executable, user=uid, text=True,
                                   stdout=subprocess.PIPE, cwd=self.directory)
        self.processes.append(process)
        if ready:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    def python(self, argv0: str, script: str, *args: str) -> subprocess.Popen[str]:
        path = self.directory / f"script{len(self.processes)}.py"
        path.write_text(script)
        path.chmod(0o644)
        return self.start([argv0, str(path), *args], executable=PYTHON, ready=True)

    def cleanup(self) -> None:
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
            process.wait()


@pytest.fixture
def app_env(detoxd_env: DetoxdEnv) -> Iterator[tuple[DetoxdEnv, Apps]]:
    directory = Path(tempfile.mkdtemp(prefix="detoxd-apps-"))
    directory.chmod(0o755)
    detoxd_env.write_blocklist(
        "domains: [twitter.com]\n"
        "apps:\n"
        "  - slack\n"
        "  - name: my-chat-client\n"
        "    match: [my-chat, /opt/mychat/mychat]\n")
    apps = Apps(directory)
    yield detoxd_env, apps
    apps.cleanup()
    shutil.rmtree(directory, ignore_errors=True)


def exit_status(process: subprocess.Popen[Any], timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def start_detox(env: DetoxdEnv) -> None:
    env.start_daemon()
    result = env.cli("start")
    assert result.returncode == 0, result.stderr


def test_apps_are_closed_during_a_detox_and_counted(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    start_detox(env)
    slack = apps.start([apps.binary("slack"), "120"])
    chat = apps.python("/opt/mychat/mychat", EDITOR)
    assert exit_status(slack, timeout=10) == -signal.SIGTERM
    assert exit_status(chat, timeout=10) == -signal.SIGTERM
    status = env.status()
    assert status["apps_closed"] == {"my-chat-client": 1, "slack": 1}
    assert "closed slack: pid" in env.log() and "closed my-chat-client: pid" in env.log()


def test_already_running_apps_are_closed_when_the_detox_starts(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    env.start_daemon()
    slack = apps.start([apps.binary("slack"), "120"])
    time.sleep(2.5)  # more than two ticks: an idle daemon closes nothing
    assert slack.poll() is None
    assert env.status()["apps_closed"] == {}
    assert env.cli("start").returncode == 0
    assert exit_status(slack, timeout=10) == -signal.SIGTERM


def test_the_name_in_arguments_only_survives(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    start_detox(env)
    editor = apps.python("vim", EDITOR, "slack.txt", "slack", "/opt/mychat/mychat")
    witness = apps.start([apps.binary("slack"), "120"])  # proves a scan ran after the editor started
    assert exit_status(witness, timeout=10) == -signal.SIGTERM
    assert editor.poll() is None
    assert env.status()["apps_closed"] == {"slack": 1}


def test_root_processes_are_never_closed(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    start_detox(env)
    as_root = apps.start([apps.binary("slack"), "120"], uid=None)
    witness = apps.start([apps.binary("my-chat"), "120"])
    assert exit_status(witness, timeout=10) == -signal.SIGTERM
    assert as_root.poll() is None


def test_a_process_tree_is_closed_as_one_app(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    start_detox(env)
    parent = apps.python("/opt/mychat/mychat", TREE, apps.binary("helper"))
    children = psutil.Process(parent.pid).children()
    assert len(children) == 2
    assert exit_status(parent, timeout=10) == -signal.SIGTERM
    # The helpers match no rule: they go because their app does.
    wait_for(lambda: not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                             for child in children), what="the helpers to exit")
    assert env.status()["apps_closed"] == {"my-chat-client": 1}


def test_sigterm_ignored_means_sigkill_after_the_grace_period(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    start_detox(env)
    stubborn = apps.python("/opt/mychat/mychat", STUBBORN)
    wait_for(lambda: "closed my-chat-client" in env.log(), what="the SIGTERM")
    time.sleep(GRACE_SECONDS - 1.5)
    assert stubborn.poll() is None  # still in its grace period
    assert exit_status(stubborn, timeout=10) == -signal.SIGKILL
    assert "still ran 5s after SIGTERM: killed" in env.log()
    assert env.status()["apps_closed"] == {"my-chat-client": 1}


def test_check_lists_what_the_matchers_would_close(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    slack = apps.start([apps.binary("slack"), "120"])
    result = env.cli("check")
    assert result.returncode == 0, result.stderr
    assert "apps: 1 running app would be closed during a detox" in result.stdout
    assert f"slack: would close pid {slack.pid} {apps.directory}/slack (uid {USER_UID})" in result.stdout
    assert slack.poll() is None  # only a dry run


def test_bad_app_rules_are_config_errors_with_lines(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, _apps = app_env
    env.write_blocklist("apps:\n  - slak\n  - name: mine\n    match: []\n")
    result = env.cli("check")
    assert result.returncode == 1
    assert "blocklist.yaml:2: apps[0]: unknown app preset 'slak'" in result.stderr
    assert "blocklist.yaml:4: apps[1].match: needs at least one matcher" in result.stderr


def test_removing_an_app_during_a_locked_detox_keeps_it_closed(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    start_detox(env)
    env.write_blocklist("domains: [twitter.com]\napps: []\n")  # the user takes slack out
    assert env.cli("reload").returncode == 0
    slack = apps.start([apps.binary("slack"), "120"])
    assert exit_status(slack, timeout=10) == -signal.SIGTERM
    env.stop_daemon()  # and across a restart, with slack still gone from the YAML
    env.start_daemon()
    slack = apps.start([apps.binary("slack"), "120"])
    assert exit_status(slack, timeout=10) == -signal.SIGTERM


def test_removing_an_app_during_an_unlocked_detox_lets_it_run(app_env: tuple[DetoxdEnv, Apps]) -> None:
    env, apps = app_env
    env.write_main("detox:\n  lock: false\n")
    start_detox(env)
    env.write_blocklist("domains: [twitter.com]\napps: []\n")
    assert env.cli("reload").returncode == 0
    slack = apps.start([apps.binary("slack"), "120"])
    assert exit_status(slack, timeout=3) is None

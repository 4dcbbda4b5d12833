"""Real `detoxd run` processes with temporary config, state, hosts file and socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.otheruser import python_for

USER_HOSTS = (
    b"127.0.0.1\tlocalhost\n"
    b"# my own comment, keep me\n"
    b"192.168.1.10 nas.home nas\n"
    b"::1 localhost ip6-localhost ip6-loopback\n"
)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0,
             what: str | Callable[[], str] = "condition") -> Any:
    """``predicate``'s first true value; ``what`` may be a function, for logs read at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


def wait_quietly(predicate: Callable[[], Any], timeout: float) -> bool:
    """Whether ``predicate`` became true within ``timeout`` (for a step that is retried)."""
    try:
        wait_for(predicate, timeout=timeout)
    except AssertionError:
        return False
    return True


@dataclass
class DetoxdEnv:
    root: Path
    hosts: Path
    config_dir: Path
    state_dir: Path
    socket: Path
    process: subprocess.Popen[bytes] | None = None
    wrapper: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DETOXD_CONFIG_DIR": str(self.config_dir),
            "DETOXD_STATE_DIR": str(self.state_dir),
            "DETOXD_HOSTS_FILE": str(self.hosts),
            "DETOXD_SOCKET": str(self.socket),
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.extra_env)
        return env

    def write_blocklist(self, text: str) -> None:
        # Editors replace the file by rename; do the same so the watcher sees a real-world edit.
        temp = self.config_dir / ".blocklist.yaml.tmp"
        temp.write_text(text)
        temp.replace(self.config_dir / "blocklist.yaml")

    def write_main(self, text: str) -> None:
        (self.config_dir / "detoxd.yaml").write_text(text)

    def start_daemon(self) -> None:
        log = (self.root / "daemon.log").open("ab")
        command = [*self.wrapper, sys.executable, "-m", "detoxd", "run", "-v"]
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        wait_for(self._answers, timeout=20, what="the daemon's socket")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
        return self.cli("status").returncode == 0

    def stop_daemon(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=20)
        self.process = None
        return code

    def cli(self, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
        # Another user runs a world-readable copy (the checkout may be in /root), from "/".
        return subprocess.run([python_for(user), "-m", "detoxd", *args], env=self.env,
                              capture_output=True, text=True, timeout=60, user=user,
                              cwd=None if user is None else "/")

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")


@pytest.fixture
def detoxd_env(tmp_path: Path) -> Iterator[DetoxdEnv]:
    # pytest's temp root is private (0700): the socket lives where a real unprivileged user
    # can reach it, as /run/detoxd does.
    socket_dir = Path(tempfile.mkdtemp(prefix="detoxd-test-"))
    socket_dir.chmod(0o755)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_bytes(USER_HOSTS)
    env = DetoxdEnv(tmp_path, hosts, config_dir, tmp_path / "state", socket_dir / "run" / "control.sock")
    env.write_main("detox:\n  days: 14\n  lock: true\n")
    env.write_blocklist("domains:\n  - twitter.com\n  - facebook.com\n")
    yield env
    if env.process is not None and env.process.poll() is None:
        env.process.kill()
        env.process.wait()
    shutil.rmtree(socket_dir, ignore_errors=True)


# A normal user's PATH often lacks the sbin directories where Debian puts dnsmasq, unbound, ...
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def find_program(program: str) -> str | None:
    """The program's absolute path, also from the sbin directories; None if not installed."""
    return shutil.which(program, path=_SEARCH_PATH)


def have(program: str) -> bool:
    return find_program(program) is not None

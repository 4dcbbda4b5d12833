"""Shared pieces of the benchmarks: a real `detoxd run` in temporary directories, waiting on the
hosts file without disturbing it, statistics and the machine description."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detoxd.client import ControlClient, DaemonUnreachable  # noqa: E402
from detoxd.service import inotify  # noqa: E402  (needs the repository on the path)

PYTHON = sys.executable
USER_HOSTS = (
    b"127.0.0.1\tlocalhost\n"
    b"127.0.1.1\tbench-laptop\n"
    b"# my own comment, keep me\n"
    b"192.168.1.10 nas.home nas\n"
    b"\n"
    b"# The following lines are desirable for IPv6 capable hosts\n"
    b"::1     localhost ip6-localhost ip6-loopback\n"
    b"ff02::1 ip6-allnodes\n"
    b"ff02::2 ip6-allrouters\n"
)
MAIN_YAML = "detox:\n  days: 14\n  lock: true\n"
# The shipped example: two presets and one extra domain, what a typical user runs.
EXAMPLE_BLOCKLIST = (
    "presets:\n  - social\n  - professional-networking\n"
    "domains:\n  - news.ycombinator.com\n"
)
HOSTS_CHANGES = (inotify.IN_MODIFY | inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO
                 | inotify.IN_CREATE | inotify.IN_DELETE)


_OWN_PID_NAMESPACE = "DETOXD_BENCH_OWN_PID_NAMESPACE"


def run_in_own_pid_namespace() -> None:
    """Re-run this benchmark as PID 1 of a PID namespace of its own (root only; once).

    A daemon with app rules closes every matching process it can see: in the machine's own PID
    namespace that is a developer's real Slack, or another run's test processes (it was seen to
    close a CI run's). In a namespace of its own it sees only what this benchmark starts, and
    everything in it ends with the benchmark."""
    if os.environ.get(_OWN_PID_NAMESPACE) or os.geteuid() != 0:
        return
    os.environ[_OWN_PID_NAMESPACE] = "1"
    command = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable, *sys.argv]
    os.execvp(command[0], command)


class BenchmarkError(RuntimeError):
    pass


@contextlib.contextmanager
def pid_namespace() -> Iterator[int]:
    """A PID namespace with its own /proc; yields the PID (here) of its placeholder init."""
    holder = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
                               "sleep 3600 & exec sleep 3600"])
    init_pid = 0
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not init_pid:
            children = psutil.Process(holder.pid).children()
            if children and children[0].name() == "sleep" and len(children[0].children()) == 1:
                init_pid = children[0].pid
            time.sleep(0.01)
        if not init_pid:
            raise BenchmarkError("the PID namespace did not start")
        yield init_pid
    finally:
        if init_pid:  # the kernel ends everything in the namespace with its init
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
        holder.kill()
        holder.wait()


def enter(init_pid: int, *extra: str) -> list[str]:
    return ["nsenter", f"--target={init_pid}", "--pid", "--mount", "--root", "--wd", *extra, "--"]


# ---- statistics ----


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p95 of 50 samples is the 48th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# ---- the machine ----


def machine_description(work_dir: Path) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                ram_kib = int(line.split()[1])
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "os": _os_name(),
        "filesystem": _filesystem_of(work_dir),
    }


def code_version() -> str:
    """The commit measured, and whether detoxd/ had uncommitted changes (read-only git calls)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30,
                              check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes in detoxd/" if git("status", "--porcelain", "detoxd") else "")


def machine_line(machine: dict[str, Any]) -> str:
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
            f"{machine['os']}, Linux {machine['kernel']}, Python {machine['python']}, "
            f"temp files on {machine['filesystem']}")


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def _filesystem_of(path: Path) -> str:
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _device, mount_point, fs_type, *_ = line.split()
            if str(path).startswith(mount_point) and len(mount_point) > len(best):
                best, kind = mount_point, fs_type
    return kind


# ---- watching the hosts file ----


class HostsWatch:
    """Waits for the hosts file to reach a state; only reads it (inotify wakes us, no polling
    storm), so the measurement neither writes nor holds the file open between reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._notify = inotify.Inotify()
        self._notify.add_watch(str(path.parent), HOSTS_CHANGES)

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float) -> float | None:
        """perf_counter() at which the file first satisfied ``predicate``, or None on timeout."""
        deadline = time.perf_counter() + timeout
        while True:
            self._notify.read_events()  # drain before reading: a later change wakes us again
            if predicate(self.read()):
                return time.perf_counter()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            # The 10 ms fallback only matters if an event is ever missed.
            select.select([self._notify.fd], [], [], min(0.010, remaining))

    def changed(self, timeout: float) -> bool:
        """Whether the file changed within ``timeout`` seconds (the events are drained)."""
        readable, _, _ = select.select([self._notify.fd], [], [], timeout)
        if readable:
            self._notify.read_events()
        return bool(readable)

    def wait_stable(self, quiet: float, timeout: float) -> bytes:
        """The content once no change has been seen for ``quiet`` seconds."""
        deadline = time.perf_counter() + timeout
        self._notify.read_events()
        while time.perf_counter() < deadline:
            readable, _, _ = select.select([self._notify.fd], [], [], quiet)
            if not readable:
                break
            self._notify.read_events()
        return self.read()

    def close(self) -> None:
        self._notify.close()


# ---- a real daemon ----


@dataclass
class DaemonEnv:
    """Temporary config, state, hosts file and socket for one `detoxd run`."""

    root: Path
    process: subprocess.Popen[bytes] | None = None
    spawned_at: float = 0.0
    extra_files: list[Path] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def hosts(self) -> Path:
        return self.root / "etc" / "hosts"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "control.sock"

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.update({
            "DETOXD_CONFIG_DIR": str(self.config_dir),
            "DETOXD_STATE_DIR": str(self.state_dir),
            "DETOXD_HOSTS_FILE": str(self.hosts),
            "DETOXD_SOCKET": str(self.socket),
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def prepare(self, blocklist: str, hosts: bytes = USER_HOSTS) -> None:
        for directory in (self.config_dir, self.hosts.parent):
            directory.mkdir(parents=True, exist_ok=True)
        self.hosts.write_bytes(hosts)
        (self.config_dir / "detoxd.yaml").write_text(MAIN_YAML)
        self.write_blocklist(blocklist)

    def write_blocklist(self, text: str) -> None:
        """Replace blocklist.yaml by rename, as editors save."""
        temporary = self.config_dir / ".blocklist.yaml.swp"
        temporary.write_text(text)
        os.replace(temporary, self.config_dir / "blocklist.yaml")

    def start(self, timeout: float = 120.0, prefix: Sequence[str] = ()) -> float:
        """Spawn `detoxd run -v` (after ``prefix``: :func:`enter`'s, for a PID namespace); returns
        seconds until the socket answers `status`."""
        with self.log_path.open("ab") as log:
            self.spawned_at = time.perf_counter()
            self.process = subprocess.Popen([*prefix, PYTHON, "-m", "detoxd", "run", "-v"], env=self.env,
                                            stdout=log, stderr=log, cwd=self.root)
        deadline = self.spawned_at + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
            if self.request("status", timeout=2.0) is not None:
                return time.perf_counter() - self.spawned_at
            time.sleep(0.005)
        raise BenchmarkError(f"daemon did not answer within {timeout}s:\n{self.log()}")

    def request(self, command: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """One request over the socket, in process (cheap: no interpreter start); None if down."""
        if not self.socket.exists():
            return None
        try:
            return ControlClient(self.socket).request(command, timeout=timeout)
        except (DaemonUnreachable, OSError):
            return None

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTHON, "-m", "detoxd", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start_detox(self) -> dict[str, Any]:
        result = self.cli("start")
        if result.returncode != 0:
            raise BenchmarkError(f"`detoxd start` failed: {result.stderr}")
        status = json.loads(self.cli("status", "--json").stdout)
        if status["state"] != "active":
            raise BenchmarkError(f"detox not active after start: {status}")
        return status  # type: ignore[no-any-return]

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def peak_rss_kib(self) -> int | None:
        """The daemon's peak resident set (VmHWM) while it still runs."""
        if self.process is None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def cpu_seconds(self) -> float | None:
        """The daemon's CPU time so far (user + system, every thread) while it still runs."""
        if self.process is None:
            return None
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@contextlib.contextmanager
def daemon_env(prefix: str = "detoxd-bench-") -> Iterator[DaemonEnv]:
    """A DaemonEnv whose daemon is stopped (killed if need be) and directory removed at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    env = DaemonEnv(root)
    try:
        yield env
    finally:
        env.stop()
        shutil.rmtree(root, ignore_errors=True)


def block_of(content: bytes) -> bytes:
    """The daemon's block at the end of the hosts file, marker lines included."""
    begin = content.find(b"# BEGIN detoxd block")
    if begin == -1 or not content.endswith(b"# END detoxd block\n"):
        raise BenchmarkError("the hosts file does not end with detoxd's block")
    return content[begin:]

"""Issue 26's idle cost: wake-ups a minute and memory of the daemon and the tray agent while a
detox runs and nothing happens.

One command: ``.venv/bin/python benchmarks/idle_cost.py [--seconds 300]``. It starts a real
``detoxd run`` (temporary directories, as the other benchmarks) with a detox of 150 names, 9 app
rules and 2 allowances (one with a daily window), and a real ``detoxd tray`` under Xvfb with a
private session bus (dunst as the notification server and trayer as the panel, when installed),
as the tray tests do. After a settling minute, it counts the voluntary context switches of every thread of
both processes over the window (``/proc/PID/task/*/status``): each is one time a thread went to
sleep, i.e. one wake-up. Nothing touches the hosts file, starts an app or edits a file meanwhile.
As root it re-runs itself in a PID namespace of its own: a daemon with app rules closes every
matching process it can see (it closed a CI run's test processes once).

``--exec-watcher`` adds ``detoxd execwatch`` (issue 26, item 2), which must run in the machine's
own PID namespace (the kernel sends process events only there): the daemon then runs in a PID
namespace made here, the watcher outside it, scoped to the daemon's namespace, and the watcher's
wake-ups are counted too. They are the machine's exec rate (the kernel's filter passes exec events
only); the load average says how busy the machine was.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from harness import (
    REPO,
    BenchmarkError,
    DaemonEnv,
    code_version,
    enter,
    machine_description,
    machine_line,
    pid_namespace,
    run_in_own_pid_namespace,
)

sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))  # its conftest before tests/conftest

NAMES = 150
TRAYER = ["trayer", "--edge", "top", "--align", "left", "--widthtype", "pixel", "--width", "160",
          "--height", "32", "--transparent", "false", "--SetDockType", "true"]
SETTLE_SECONDS = 60.0
APPS = ("slack", "discord", "teams", "telegram", "whatsapp", "signal", "element", "skype")
BLOCKLIST_HEAD = """\
allowances:
  - name: twitter
    sites: [twitter.com]
    minutes_per_day: 20
  - name: news
    sites: [news.example-0.test]
    minutes_per_day: 30
    windows: ["Mon-Sun 03:00-03:20"]
"""


def blocklist(app_rules: int = len(APPS) + 1) -> str:
    names = "".join(f"  - site{index}.example.test\n" for index in range(NAMES - 2))
    rules = [f"  - {app}\n" for app in APPS] + ["  - name: my-chat\n    match: [my-chat-client]\n"]
    apps = "".join(rules[:app_rules]) or " []\n"
    return (f"{BLOCKLIST_HEAD}domains:\n  - twitter.com\n  - news.example-0.test\n{names}"
            f"apps:\n{apps}")


def threads(pid: int) -> dict[str, tuple[str, int]]:
    """Thread id → (name, voluntary context switches) of every thread of ``pid``."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name, switches = "?", 0
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Name:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("voluntary_ctxt_switches:"):
                    switches = int(line.split()[1])
        found[task.name] = (name, switches)
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def wakeups(pid: int, seconds: float) -> dict[str, Any]:
    before = threads(pid)
    time.sleep(seconds)
    after = threads(pid)
    per_minute = 60.0 / seconds
    rows = []
    for tid, (name, count) in sorted(after.items(), key=lambda item: int(item[0])):
        start = before.get(tid, (name, 0))[1]
        rows.append({"tid": int(tid), "name": name,
                     "per_minute": round((count - start) * per_minute, 1)})
    total = round(sum(row["per_minute"] for row in rows), 1)
    return {"per_minute": total, "threads": rows, "rss_mib": rss_mib(pid)}


@contextlib.contextmanager
def tray(env: DaemonEnv, root: Path, logs: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    from desktop import desktop_session, start_dunst, tray_command

    with desktop_session(root / "desktop", screen="320x240x24") as desktop:
        if shutil.which("dunst"):
            start_dunst(desktop)
        if shutil.which("trayer"):  # a panel to dock in, as the tray tests have
            desktop.spawn(TRAYER, "trayer")
        tray_env = {**desktop.env, "DETOXD_SOCKET": str(env.socket),
                    "DETOXD_CONFIG_DIR": str(env.config_dir), "PYSTRAY_BACKEND": "xorg",
                    "PYTHONPATH": str(REPO)}
        try:
            yield desktop.spawn(tray_command(), "tray", env=tray_env)
        finally:
            if logs:
                print("--- tray log (end)\n" + desktop.log("tray")[-3000:], file=sys.stderr)


@contextlib.contextmanager
def exec_watcher(env: DaemonEnv) -> Iterator[subprocess.Popen[bytes]]:
    """`detoxd execwatch` in this PID namespace, until the daemon says it finds apps by events."""
    with (env.root / "execwatch.log").open("ab") as log:
        watcher = subprocess.Popen([sys.executable, "-m", "detoxd", "execwatch"], env=env.env,
                                   stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while (env.request("status") or {}).get("status", {}).get("apps_watch") != "exec_events":
            if time.monotonic() > deadline or watcher.poll() is not None:
                raise BenchmarkError("the daemon did not take the exec watcher's events:\n"
                                     + (env.root / "execwatch.log").read_text()[-2000:])
            time.sleep(0.05)
        yield watcher
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)


def measure(env: DaemonEnv, root: Path, args: argparse.Namespace,
            watcher: subprocess.Popen[bytes] | None) -> dict[str, Any]:
    """Settle, then count every process's wake-ups over the same window."""
    assert env.process is not None
    with tray(env, root, args.logs) as agent:
        time.sleep(args.settle)
        if agent.poll() is not None:
            raise BenchmarkError(f"the tray exited with {agent.returncode}")
        if (env.request("status") or {}).get("status", {}).get("apps_watch") != (
                "exec_events" if watcher else "polling"):
            raise BenchmarkError("the daemon does not find apps the way this run measures")
        load_before = load_average()
        # (Under --exec-watcher the daemon's PID here is nsenter's: its child is the daemon.)
        daemon_pid = daemon_process(env.process.pid)
        processes = {"daemon": daemon_pid, "tray": agent.pid}
        if watcher is not None:
            processes["execwatch"] = watcher.pid
        with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
            jobs = {label: pool.submit(wakeups, pid, args.seconds) for label, pid in processes.items()}
            figures = {label: job.result() for label, job in jobs.items()}
        return {"code": code_version(), "machine": machine_line(machine_description(root)),
                "window_s": args.seconds, "load_average_before": load_before,
                "load_average_after": load_average(), "names": NAMES, "app_rules": args.app_rules,
                "allowances": 2, "apps_watch": "exec_events" if watcher else "polling", **figures}


def daemon_process(pid: int) -> int:
    """The `detoxd run` process: ``pid`` itself, or the child nsenter started it as."""
    process = psutil.Process(pid)
    if process.name() == "nsenter":
        children = process.children()
        if len(children) != 1:
            raise BenchmarkError(f"nsenter {pid} has {len(children)} children")
        return children[0].pid
    return pid


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="the window (default 300)")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="seconds after start-up before counting (default 60)")
    parser.add_argument("--app-rules", type=int, default=len(APPS) + 1,
                        help="how many app rules (default 9; 0 shows the cost without the app scan)")
    parser.add_argument("--exec-watcher", action="store_true",
                        help="run `detoxd execwatch` too (the daemon finds apps by exec events)")
    parser.add_argument("--logs", action="store_true", help="print the end of both logs")
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args()
    if not args.exec_watcher:
        run_in_own_pid_namespace()  # its daemon closes the apps it sees: only this run's
    root = Path(tempfile.mkdtemp(prefix="detoxd-idle-"))
    env = DaemonEnv(root)
    try:
        with contextlib.ExitStack() as stack:
            watcher = None
            if args.exec_watcher:
                init_pid = stack.enter_context(pid_namespace())
                env.prepare(blocklist(args.app_rules))
                env.start(prefix=enter(init_pid))
                status = env.start_detox()
                watcher = stack.enter_context(exec_watcher(env))
            else:
                env.prepare(blocklist(args.app_rules))
                env.start()
                status = env.start_detox()
            if len(status.get("allowances") or []) != 2:
                raise BenchmarkError(f"expected 2 allowances: {status.get('allowances')}")
            result = measure(env, root, args, watcher)
    finally:
        if args.logs:
            print("--- daemon log (end)\n" + env.log()[-3000:], file=sys.stderr)
        env.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"code {result['code']}; {result['machine']}")
    print(f"{NAMES} names, {args.app_rules} app rules, 2 allowances (one with a window)")
    print(f"window {args.seconds:g} s; load average {result['load_average_before']} before, "
          f"{result['load_average_after']} after")
    for label in ("daemon", "tray", "execwatch"):
        if label not in result:
            continue
        figures = result[label]
        print(f"{label}: {figures['per_minute']} wake-ups a minute, RSS {figures['rss_mib']} MiB")
        for row in figures["threads"]:
            print(f"    {row['name']:<20} {row['per_minute']:>7}")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())

"""`detoxd run`, `netagent`, `tray`, `execwatch`, `browser-host`, `cut`: the long-running processes
(the cutter: one shot)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from detoxd.commands.common import EXIT_OK, EXIT_REFUSED, quiet_status
from detoxd.paths import DEFAULTS, Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse


def cmd_run(args: argparse.Namespace, paths: Paths) -> int:
    import gc

    from detoxd.clock import SystemClock
    from detoxd.service.daemon import Daemon
    from detoxd.service.logsetup import setup_logging

    setup_logging(verbose=args.verbose)
    if quiet_status(paths) is not None:
        # Checked before anything is touched: a second daemon would recover the first one's
        # hosts-file journal from under it.
        print(f"detoxd: another detoxd already answers on {paths.socket}", file=sys.stderr)
        return EXIT_REFUSED
    # Browser policies under another root: for tests and image builds (default: the real /etc
    # when guarding /etc/hosts, none for a scratch hosts file).
    policy_root = os.environ.get("DETOXD_POLICY_ROOT")
    # For tests: a file standing in for the kernel's word on the clock (never for the system's detoxd).
    from detoxd.service.timesync import stand_in_from_environment

    clock = SystemClock(stand_in_from_environment(paths.state_dir, Path(DEFAULTS["state_dir"])))
    # No cyclic garbage collection while the state, the last good blocklist and the config are
    # read (up to a million names each): the collections then walked every set of names again
    # and again. Daemon.run turns it back on once the block is in place.
    gc.disable()
    return Daemon(paths, clock, policy_root=Path(policy_root) if policy_root else None).run()


def cmd_netagent(args: argparse.Namespace, paths: Paths) -> int:
    import signal

    from detoxd.client import ControlClient
    from detoxd.netagent.agent import NetAgent
    from detoxd.service.logsetup import setup_logging

    setup_logging(verbose=args.verbose)
    agent = NetAgent(ControlClient(paths.socket), paths.config_dir, kind=args.engines,
                     check_seconds=args.check_seconds)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    return agent.run()


def cmd_tray(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.agent.tray import run_agent
    from detoxd.service.logsetup import setup_logging

    setup_logging(verbose=args.verbose)
    return run_agent(paths)


def cmd_execwatch(_args: argparse.Namespace, paths: Paths) -> int:
    import signal

    from detoxd.client import ControlClient
    from detoxd.service.execwatch import ExecWatcher
    from detoxd.service.logsetup import setup_logging

    setup_logging(verbose=False)
    watcher = ExecWatcher(ControlClient(paths.socket))
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    signal.signal(signal.SIGINT, lambda *_: watcher.stop())
    return watcher.run()


def cmd_browser_host(_args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.browserhost import main

    return main(str(paths.socket))


def cmd_cut(_args: argparse.Namespace, paths: Paths) -> int:
    from detoxd.service import cutter
    from detoxd.service.logsetup import setup_logging

    if os.geteuid() != 0:
        print("detoxd: closing other processes' connections needs root", file=sys.stderr)
        return EXIT_REFUSED
    setup_logging(verbose=False)
    print(cutter.run(paths.cutter_dir).summary())
    return EXIT_OK

"""`detoxd install`, `uninstall` and `doctor`: this machine's side of the detox."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from detoxd.commands.common import EXIT_NOT_EFFECTIVE, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from detoxd.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import argparse


def cmd_install(args: argparse.Namespace, _paths: Paths) -> int:
    from detoxd import install

    if args.root == "/" and os.geteuid() != 0:
        print("detoxd: installing a system service needs root: try sudo", file=sys.stderr)
        return EXIT_REFUSED
    try:
        lines = install.install(Path(args.root), now=args.now, executable=install.find_executable())
    except install.UnsafeCode as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except install.InstallError as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK


def cmd_uninstall(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd import install
    from detoxd.service.uninstall import remove_hosts_block

    if args.root == "/" and os.geteuid() != 0:
        print("detoxd: uninstalling a system service needs root: try sudo", file=sys.stderr)
        return EXIT_REFUSED
    refusal = _end_detox(paths)
    if refusal is not None:
        print(f"detoxd: uninstall refused: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    if args.block_only:
        print(remove_hosts_block(paths))
        return EXIT_OK
    try:
        lines = install.uninstall(Path(args.root), purge=args.purge)
    except install.InstallError as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    lines.insert(0, remove_hosts_block(paths))
    print("\n".join(lines))
    return EXIT_OK


def _end_detox(paths: Paths) -> str | None:
    """None when no detox is running any more; the reason when one is and cannot end. The daemon
    ends it if it runs; else the service's side reads the state file."""
    from detoxd.client import ControlClient, DaemonUnreachable
    from detoxd.protocol import Status

    try:
        status = Status.from_json(ControlClient(paths.socket).request("status")["status"])
        if not status.active and status.state != "scheduled":
            return None
        # A planned detox (`start --at`) is cancelled first: refused once it is locked by schedule.
        response = ControlClient(paths.socket).request("end" if status.active else "cancel")
        return None if response.get("ok") else str(response.get("error", "refused"))
    except DaemonUnreachable:
        from detoxd.service.uninstall import end_detox_offline

        return end_detox_offline(paths)


def cmd_doctor(args: argparse.Namespace, paths: Paths) -> int:
    from detoxd import doctor
    from detoxd.core.doctorchecks import format_human, format_json

    report = doctor.run(paths, root=Path(args.root))
    print(format_json(report) if args.json else format_human(report))
    return EXIT_OK if report.effective else EXIT_NOT_EFFECTIVE

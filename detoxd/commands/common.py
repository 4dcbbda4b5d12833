"""What every command shares: exit codes, asking the daemon, and saying why it refused."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from detoxd.paths import Paths
    from detoxd.protocol import Status

EXIT_OK = 0
EXIT_INVALID_CONFIG = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_NOT_EFFECTIVE = 1  # doctor: at least one check failed
DAEMON_FAILURES = frozenset({"internal_error", "timeout", "busy", "too_large"})


class CommandExit(Exception):
    """Ends the command with ``code``, after what went wrong was said on stderr."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def ask(paths: Paths | str, command: str, timeout: float = 10.0, **args: Any) -> dict[str, Any] | None:
    """The daemon's reply; None, after saying why on stderr, when there is none. ``paths``: or
    just the socket's (`detoxd status` resolves no other path)."""
    from detoxd.client import ControlClient, DaemonUnreachable, ProtocolError

    socket = paths if isinstance(paths, str) else paths.socket
    try:
        return ControlClient(socket).request(command, timeout=timeout, **args)
    except DaemonUnreachable as exc:
        print(f"detoxd: the daemon is not reachable at {socket}: {exc}", file=sys.stderr)
        print("Is it running? `systemctl status detoxd` or `sudo detoxd run`", file=sys.stderr)
        print("While it is not running, a detox's block stays in the hosts file but nothing "
              "restores it: `sudo systemctl start detoxd`", file=sys.stderr)
    except ProtocolError as exc:
        print(f"detoxd: {exc}", file=sys.stderr)
        print("Is the program listening there really detoxd, of this version?", file=sys.stderr)
    return None


def ask_or_exit(paths: Paths | str, command: str, *, timeout: float = 10.0, root_helps: bool = True,
                invalid_config: Callable[[dict[str, Any]], list[str]] | None = None,
                **args: Any) -> dict[str, Any]:
    """The daemon's successful reply; else :class:`CommandExit` with the exit code (4: no daemon,
    3: refused, 2: a bad request), after saying why. ``root_helps``: a refusal for want of root
    suggests sudo. ``invalid_config``: for a reply that the config is invalid, the lines to say
    after its errors (exit 1)."""
    response = ask(paths, command, timeout=timeout, **args)
    if response is None:
        raise CommandExit(EXIT_UNREACHABLE)
    if invalid_config is not None and response.get("code") == "invalid_config":
        print(response["error"], file=sys.stderr)
        for line in invalid_config(response):
            print(line, file=sys.stderr)
        raise CommandExit(EXIT_INVALID_CONFIG)
    if not response.get("ok"):
        raise CommandExit(refused(response, root_helps=root_helps))
    return response


def refused(response: dict[str, Any], *, root_helps: bool = True) -> int:
    print(f"detoxd: {response.get('error', 'refused')}", file=sys.stderr)
    if response.get("code") == "not_authorized" and os.geteuid() != 0 and root_helps:
        print("(changing the detox needs root: try sudo)", file=sys.stderr)
    if response.get("code") in ("refused", "not_authorized"):
        return EXIT_REFUSED
    if response.get("code") in DAEMON_FAILURES:
        return EXIT_UNREACHABLE  # the daemon is there but could not answer this request
    return EXIT_USAGE


def quiet_status(paths: Paths) -> Status | None:
    """The daemon's status, or None without a word when it does not answer."""
    from detoxd.client import ControlClient, ControlError
    from detoxd.protocol import Status

    try:
        response = ControlClient(paths.socket).request("status", timeout=2.0)
    except ControlError:
        return None
    status = response.get("status")
    return Status.from_json(status) if isinstance(status, dict) else None


def may_change(paths: Paths) -> bool:
    """The daemon lets root and its own user change the detox; it created the socket."""
    try:
        daemon_uid = paths.socket.stat().st_uid
    except OSError:
        return True  # let the request say what is wrong
    return os.geteuid() in (0, daemon_uid)


def write_output(target: str, data: bytes) -> None:
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        with open(target, "wb") as handle:
            handle.write(data)
        print(f"wrote {target}", file=sys.stderr)

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from detoxd.cli import main
from detoxd.commands.common import EXIT_UNREACHABLE
from detoxd.core.statustext import format_status
from detoxd.protocol import Status

BASE = {"state": "active", "locked": True, "ends_at": "2026-12-09T08:00:00+00:00", "domains_blocked": 4,
        "hosts_file": "/etc/hosts", "hosts_in_sync": True, "tamper_events": 0, "config_error": None}


def test_config_error_and_tampering_are_shown() -> None:
    text = format_status(Status.from_json({**BASE, "days_left": 3, "seconds_left": 3 * 86_400,
                                           "tamper_events": 2,
                                           "config_error": "blocklist.yaml:3: domains[1]: bad"}))
    assert "Tampering undone: 2 times" in text
    assert "  blocklist.yaml:3: domains[1]: bad" in text


def test_allowances_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    text = format_status(Status.from_json({**BASE, "days_left": 3, "seconds_left": 3 * 86_400, "allowances": [
        {"name": "twitter", "open": True, "open_until": "2026-12-01T12:50:00+00:00",
         "minutes_left_today": 14, "opens_left_today": 1, "next_window": None},
        {"name": "linkedin", "open": False, "open_until": None, "minutes_left_today": 0,
         "opens_left_today": None, "next_window": "2026-12-05T10:00:00+00:00"}]}))
    assert "Allowance twitter: open until Tue 12:50, 14 min left today, 1 open left" in text
    assert "Allowance linkedin: 0 min left today, next window Sat 10:00" in text
    idle = format_status(Status.from_json({**BASE, "state": "idle", "allowances": [
        {"name": "twitter", "open": False, "open_until": None, "minutes_left_today": 20,
         "opens_left_today": None, "next_window": None}]}))
    assert "Allowance" not in idle


def test_check_lists_the_allowances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blocklist.yaml").write_text(
        "domains: [twitter.com, x.com, facebook.com]\n"
        "allowances:\n"
        "  - name: twitter\n"
        "    sites: [twitter.com]\n"
        "    minutes_per_day: 20\n"
        "    max_opens_per_day: 2\n")
    assert main(["--config-dir", str(tmp_path), "check"]) == 0
    out = capsys.readouterr().out
    assert "allowance twitter: 20 min a day, at most 2 opens, opens 4 blocked names" in out


# ---- replies a real daemon should never send, from a test-owned socket ----



@pytest.fixture
def answering(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A Unix socket that answers each connection with the next canned reply."""
    path = tmp_path / "control.sock"
    replies: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(replies.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, replies
    server.close()


def test_a_garbled_reply_is_an_error_message_not_a_traceback(
        answering: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    path, replies = answering
    replies.append(b"this is not json\n")
    assert main(["--socket", str(path), "status"]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "bad reply" in err and "Traceback" not in err


def test_a_reply_cut_mid_line_names_the_problem_in_words(
        answering: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    path, replies = answering
    replies.append(b'{"ok": tr')
    assert main(["--socket", str(path), "status"]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "closed mid-reply" in err and "IncompleteLine" not in err


def test_status_shows_a_daemon_side_error_instead_of_a_key_error(
        answering: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    path, replies = answering
    replies.append(b'{"ok": false, "code": "internal_error", "error": "the handler failed"}\n')
    assert main(["--socket", str(path), "status"]) == EXIT_UNREACHABLE
    assert "the handler failed" in capsys.readouterr().err


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter imports running ``detoxd ARGV`` against no daemon."""
    import subprocess
    import sys

    probe = ("import sys\nfrom detoxd.cli import main\n"
             f"try:\n    main({list(argv)!r})\n"
             "except SystemExit:\n    pass\n"
             "print(' '.join(sorted(sys.modules)))")
    # Without the coverage hook scripts/test installs in subprocesses: coverage imports typing.
    env = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE")}
    env["DETOXD_SOCKET"] = "/nonexistent/detoxd.sock"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                          check=True, env=env)
    return set(done.stdout.split())


def test_the_status_command_imports_no_server_code_nor_typing() -> None:
    """`detoxd status` must start fast and must not need the daemon's modules: a fresh
    interpreter runs it and lists what it imported."""
    for argv in (["--socket", "/nonexistent/detoxd.sock", "status"], ["status"], ["status", "--json"]):
        modules = imported_by(*argv)
        assert "detoxd.client" in modules
        assert not {m for m in modules if m.startswith(("detoxd.service", "detoxd.core", "detoxd.agent"))}
        # The typed status is no dataclasses.dataclass for this: dataclasses imports inspect.
        assert not modules & {"typing", "dataclasses", "inspect", "shutil", "yaml", "watchdog", "apscheduler"}
    # Its two plain forms need no parser: argparse and 16 commands' parsers are a third of its start.
    assert "argparse" not in imported_by("status") | imported_by("status", "--json")
    assert "argparse" in imported_by("status", "--help")


def test_the_plain_status_imports_neither_pathlib_nor_the_socket_module() -> None:
    """Each a tenth of `detoxd status`'s start: the plain forms resolve the socket's path alone
    and connect with _socket. Without site (-S): the development venv's editable finder imports
    pathlib itself; a plain install's does not."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE")}
    env.update(DETOXD_SOCKET="/nonexistent/detoxd.sock", PYTHONPATH=str(repo))
    for argv in (["status"], ["status", "--json"]):
        probe = ("import sys\nfrom detoxd.cli import main\n"
                 f"assert main({argv!r}) == 4\n"
                 "print(' '.join(sorted(sys.modules)))")
        done = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                              timeout=30, check=True, env=env)
        modules = set(done.stdout.split())
        assert "detoxd.client" in modules
        assert not modules & {"pathlib", "socket", "selectors"}


def test_the_parserless_status_is_the_parsed_one(
        answering: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, replies = answering
    monkeypatch.setenv("DETOXD_SOCKET", str(path))
    document = {"state": "idle", "domains_blocked": 1, "hosts_file": "/etc/hosts", "hosts_in_sync": True}
    outputs = []
    for argv in (["status", "--json"], ["--socket", str(path), "status", "--json"], ["status"],
                 ["--socket", str(path), "status"]):
        replies.append(json.dumps({"ok": True, "status": document}).encode() + b"\n")
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and json.loads(outputs[0]) == document
    assert outputs[2] == outputs[3] and "1 name blocked in /etc/hosts (in sync)" in outputs[2]



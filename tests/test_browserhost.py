"""`detoxd browser-host`'s frames, in process: what it answers without a daemon, and how a broken
stream ends it (the real process against a real daemon: tests/integration/test_browser_host.py)."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

from detoxd.browserhost import BrowserHost
from detoxd.client import ControlClient

LENGTH = struct.Struct("=I")


def frame(message: Any) -> bytes:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    return LENGTH.pack(len(data)) + data


def frames(data: bytes) -> list[dict[str, Any]]:
    found, offset = [], 0
    while offset < len(data):
        (length,) = LENGTH.unpack_from(data, offset)
        found.append(json.loads(data[offset + 4:offset + 4 + length]))
        offset += 4 + length
    return found


def run(tmp_path: Path, stdin: bytes) -> tuple[int, list[dict[str, Any]]]:
    stdout = io.BytesIO()
    host = BrowserHost(ControlClient(tmp_path / "no-daemon.sock"), io.BytesIO(stdin), stdout, io.StringIO())
    code = host.run()
    return code, [message for message in frames(stdout.getvalue()) if "event" not in message]


def test_replies_carry_the_id_and_the_protocols_error_shape(tmp_path: Path) -> None:
    code, replies = run(tmp_path, b"".join([
        frame({"id": 1, "cmd": "browser_check", "url": "https://x.com/"}),
        frame({"id": "a", "cmd": "end"}),
        frame({"id": 2, "cmd": {"nested": True}}),
        frame({"id": [1], "cmd": "status"}),
        frame({"id": True, "cmd": "status"}),
        frame(b"[1, 2]"),
        frame(b"\xff\xfe"),
        frame(b"x" * (64 * 1024 + 1)),
        frame({"id": 3, "cmd": "status"}),
    ]))
    assert code == 0
    assert [(reply["id"], reply["ok"], reply["code"]) for reply in replies] == [
        (1, False, "daemon_unreachable"), ("a", False, "not_authorized"), (2, False, "not_authorized"),
        (None, False, "bad_request"), (None, False, "bad_request"), (None, False, "bad_request"),
        (None, False, "bad_request"), (None, False, "too_large"), (3, False, "daemon_unreachable")]
    assert "does not pass on 'end'" in replies[1]["error"]


def test_a_stream_cut_inside_a_frame_ends_the_host_with_1(tmp_path: Path) -> None:
    code, replies = run(tmp_path, frame({"id": 1, "cmd": "status"})[:-3])
    assert (code, replies) == (1, [])
    code, _ = run(tmp_path, b"\x05\x00")  # half a length
    assert code == 1

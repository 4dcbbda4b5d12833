"""`detoxd browser-host`: the browser extension's native-messaging host (``org.detoxd.browser_host``).

The browser starts it, as the user the browser runs as, when the extension connects
(``runtime.connectNative``), and talks to it over its stdin and stdout in native-messaging
frames: a 32-bit length in native byte order, then that many bytes of UTF-8 JSON. The host is a
relay to the control socket and nothing more:

- ``{"id": n, "cmd": "<command>", ...args}`` from the extension goes to the daemon as
  ``{"cmd": ..., ...args}`` on a connection of the host's own, so SO_PEERCRED gives the daemon the
  browser's user and the same rules apply as to that user's ``detoxd`` commands; the reply comes
  back as ``{"id": n, ...reply}``. Only :data:`FORWARDED` commands are passed on; any other, a
  frame that is not a JSON object or one too large gets the protocol's error reply
  (:func:`detoxd.protocol.error_response`) with its ``id`` (null when it had none).
- Each event the daemon publishes to its subscribers is passed on as it came, ``{"event": ...}``,
  so that the block page and the extension refresh at once; while the daemon cannot be reached
  the host says so once (``{"event": "daemon_unreachable", "error": ...}``) and subscribes again.
- End of stdin (the extension disconnected, the browser closed) ends the host with exit 0.

No argument it is given is used: browsers pass the caller's origin (Chromium) or the manifest's
path and the extension's id (Firefox), which say nothing the socket's peer check does not.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import threading
from typing import Any, BinaryIO

from detoxd.client import ControlClient
from detoxd.protocol import (
    BAD_REQUEST,
    MAX_REQUEST_BYTES,
    NOT_AUTHORIZED,
    TOO_LARGE,
    ControlError,
    DaemonUnreachable,
    decode_object,
    error_response,
)

HOST_NAME = "org.detoxd.browser_host"
FORWARDED = frozenset({"status", "browser_check", "browser_attempt", "browser_time", "open", "close"})
MAX_FRAME_TO_BROWSER = 1024 * 1024  # Chromium's and Firefox's limit on a message from the host
MAX_ID_CHARS = 100
UNREACHABLE = "daemon_unreachable"  # the reply's code, and the event, while no daemon answers
REQUEST_TIMEOUT = 15.0
RESUBSCRIBE_SECONDS = (0.5, 1.0, 2.0, 5.0)  # waits between attempts, the last one repeated
_LENGTH = struct.Struct("=I")


class BrowserHost:
    def __init__(self, client: ControlClient, stdin: BinaryIO, stdout: BinaryIO,
                 stderr: Any = None) -> None:
        self._client = client
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr if stderr is not None else sys.stderr
        self._write_lock = threading.Lock()
        self._stopped = threading.Event()

    def run(self) -> int:
        """Relay until stdin ends; 0 then (1 when the browser's side of the stream broke)."""
        threading.Thread(target=self._relay_events, name="events", daemon=True).start()
        try:
            while True:
                frame = self._read_frame()
                if frame is None:
                    return 0
                self._write(frame if isinstance(frame, dict) else self.answer(frame))
        except (OSError, ValueError) as error:  # stdout closed, or a frame cut short
            self._say(f"browser-host: {error}")
            return 1
        finally:
            self._stopped.set()

    def answer(self, raw: bytes) -> dict[str, Any]:
        """The reply to one frame from the extension (with the daemon's word, where it goes to it)."""
        try:
            message = decode_object(raw)
        except (ValueError, UnicodeDecodeError) as error:
            return {**error_response(BAD_REQUEST, f"not a JSON object: {error}"), "id": None}
        ident = message.pop("id", None)
        if not (ident is None or (isinstance(ident, int) and not isinstance(ident, bool))
                or (isinstance(ident, str) and len(ident) <= MAX_ID_CHARS)):
            return {**error_response(BAD_REQUEST, f"id must be a number or a string of at most "
                                                  f"{MAX_ID_CHARS} characters"), "id": None}
        name = message.pop("cmd", None)
        if not isinstance(name, str) or name not in FORWARDED:
            shown = name if isinstance(name, str) and len(name) <= 40 else type(name).__name__
            return {**error_response(NOT_AUTHORIZED, f"the browser host does not pass on {shown!r}; "
                                                     f"only {', '.join(sorted(FORWARDED))}"), "id": ident}
        try:
            reply = self._client.request(name, timeout=REQUEST_TIMEOUT, **message)
        except DaemonUnreachable as error:
            reply = error_response(UNREACHABLE, f"detoxd is not reachable: {error}")
        except ControlError as error:
            reply = error_response(UNREACHABLE, f"detoxd answered something unreadable: {error}")
        return {**reply, "id": ident}

    # ---- the frames ----

    def _read_frame(self) -> bytes | dict[str, Any] | None:
        """The next frame's bytes; None at the end of stdin; the error reply for a frame too large
        (read and dropped). Raises ValueError when the stream ends inside a frame."""
        header = self._read_exactly(_LENGTH.size)
        if header is None:
            return None
        (length,) = _LENGTH.unpack(header)
        if length > MAX_REQUEST_BYTES:
            while length:  # dropped in pieces: never held whole
                piece = self._stdin.read(min(length, 65536))
                if not piece:
                    raise ValueError("stdin ended inside a frame")
                length -= len(piece)
            return {**error_response(TOO_LARGE, f"a message over {MAX_REQUEST_BYTES} bytes"), "id": None}
        body = self._read_exactly(length)
        if body is None and length:
            raise ValueError("stdin ended inside a frame")
        return body or b""

    def _read_exactly(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            piece = self._stdin.read(count - len(data))
            if not piece:
                if data:
                    raise ValueError("stdin ended inside a frame")
                return None
            data += piece
        return data

    def _write(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
        if len(data) > MAX_FRAME_TO_BROWSER:
            if "event" in message:
                self._say(f"browser-host: dropped a {message['event']!r} event of {len(data)} bytes")
                return
            data = json.dumps({**error_response(TOO_LARGE, f"the reply of {len(data)} bytes is over "
                                                           "the browser's limit"),
                               "id": message.get("id")}).encode()
        with self._write_lock:
            self._stdout.write(_LENGTH.pack(len(data)) + data)
            self._stdout.flush()

    # ---- the daemon's events ----

    def _relay_events(self) -> None:
        failures = 0
        told = False
        while not self._stopped.is_set():
            try:
                with self._client.subscribe(timeout=None) as subscription:
                    failures, told = 0, False
                    for event in subscription:
                        if isinstance(event.get("event"), str):
                            self._write(event)
                error = "the daemon closed the connection"
            except ControlError as problem:
                error = str(problem)
            except (OSError, ValueError):
                return  # stdout is gone: the main loop ends too
            if not told:
                told = True
                try:
                    self._write({"event": UNREACHABLE, "error": error})
                except (OSError, ValueError):
                    return
            self._stopped.wait(RESUBSCRIBE_SECONDS[min(failures, len(RESUBSCRIBE_SECONDS) - 1)])
            failures += 1

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self._stderr, flush=True)


def main(socket: str) -> int:
    return BrowserHost(ControlClient(socket), sys.stdin.buffer, sys.stdout.buffer).run()

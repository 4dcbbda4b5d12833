"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no dependency).

Chromium reads commands from its fd 3 and writes replies and events to its fd 4, each message a
JSON object followed by a NUL byte. :class:`Browser` starts it with two pipes in those places (the
command is expected to end in ``exec chromium ...``: the redirections are appended), a reader
thread collects replies by id and keeps every event, and :meth:`Browser.wait_event` waits for an
event that matches (events seen before the call count too: nothing is missed between a command
and the wait for what it caused).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, launch: Callable[[str, tuple[int, int]], subprocess.Popen[bytes]]) -> None:
        """``launch(redirections, fds)`` starts the browser: ``redirections`` go after its command
        line in the shell script, ``fds`` are the two descriptors to pass on."""
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        redirections = f"3<&{to_browser_read} 4>&{from_browser_write}"
        try:
            self.process = launch(redirections, (to_browser_read, from_browser_write))
        finally:
            os.close(to_browser_read)
            os.close(from_browser_write)
        self._lock = threading.Condition()
        self._next_id = 1
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[Event] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._lock:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        with self._lock:
            ident = self._next_id
            self._next_id += 1
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CdpError(f"no reply to {method} ({'browser gone' if self._closed else 'timeout'})")
                self._lock.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_event(self, predicate: Callable[[Event], bool], timeout: float = 30.0,
                   what: str = "an event", since: int = 0) -> Event:
        """The first event from index ``since`` on that matches (waiting for it)."""
        deadline = time.monotonic() + timeout
        seen = since
        with self._lock:
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CdpError(f"waited in vain for {what}")
                self._lock.wait(left)

    def evaluate(self, session: str, expression: str, timeout: float = 30.0) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session, timeout)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mark(self) -> int:
        """Where the events received so far end (for ``wait_event(since=...)``)."""
        with self._lock:
            return len(self.events)

    def close(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            with contextlib.suppress(CdpError, OSError):
                self.send("Browser.close", timeout=timeout)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()  # the test's own child
                self.process.wait()
        os.close(self._to_browser)
        self._reader.join(timeout)
        os.close(self._from_browser)
        return self.process.returncode

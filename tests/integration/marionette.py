"""A minimal Marionette client: Firefox's own remote protocol, length-prefixed JSON over TCP.

Frames are ``<decimal length>:<JSON>``; a command is ``[0, id, name, params]`` and its answer
``[1, id, error, result]``. Firefox listens when started with ``--marionette``; with the pref
``marionette.port`` at 0 it picks a free port and writes it to ``MarionetteActivePort`` in the
profile directory, which :func:`wait_for_port` waits for through inotify (no polling, no sleep).
The chrome context runs script with the browser's own privileges (AddonManager, private windows).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
from pathlib import Path
from typing import Any

from detoxd.service import inotify

PORT_FILE = "MarionetteActivePort"


class MarionetteError(RuntimeError):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('error')}: {error.get('message')}")
        self.error = error.get("error")


def profile_prefs(**extra: Any) -> str:
    """user.js lines for a test profile driven through Marionette on a kernel-picked port."""
    prefs: dict[str, Any] = {
        "marionette.port": 0,
        "browser.shell.checkDefaultBrowser": False,
        "browser.startup.homepage_override.mstone": "ignore",
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.reportingpolicy.firstRun": False,
        "app.update.disabledForTesting": True,
        "browser.aboutwelcome.enabled": False,
        **extra,
    }
    return "".join(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n" for name, value in prefs.items())


def wait_for_port(profile: Path, process: subprocess.Popen[Any], timeout: float = 60.0) -> int:
    """The port Firefox wrote to the profile; fails when the process exits first."""
    path = profile / PORT_FILE
    watcher = inotify.Inotify()
    try:
        watcher.add_watch(str(profile), inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO)
        while True:
            if path.exists():
                text = path.read_text().strip()
                if text:
                    return int(text)
            if process.poll() is not None:
                raise RuntimeError(f"firefox exited ({process.returncode}) before Marionette listened")
            ready, _, _ = select.select([watcher.fd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no {PORT_FILE} in {profile} after {timeout} s")
            watcher.read_events()
    finally:
        watcher.close()


class Marionette:
    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""
        self._next_id = 0
        hello = self._read()
        assert hello.get("marionetteProtocol") == 3, hello

    def _read(self) -> Any:
        while b":" not in self._buffer:
            self._recv()
        length, _, rest = self._buffer.partition(b":")
        size = int(length)
        self._buffer = rest
        while len(self._buffer) < size:
            self._recv()
        frame, self._buffer = self._buffer[:size], self._buffer[size:]
        return json.loads(frame)

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("marionette closed the connection")
        self._buffer += chunk

    def call(self, name: str, params: dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        body = json.dumps([0, self._next_id, name, params or {}]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            message = self._read()
            if message[0] == 1 and message[1] == self._next_id:
                if message[2] is not None:
                    raise MarionetteError(message[2])
                result = message[3]
                return result.get("value", result) if isinstance(result, dict) else result

    # ---- conveniences ----

    def start_session(self) -> None:
        self.call("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})

    def context(self, value: str) -> None:
        self.call("Marionette:SetContext", {"value": value})

    def navigate(self, url: str) -> None:
        self.call("WebDriver:Navigate", {"url": url})

    def url(self) -> str:
        return str(self.call("WebDriver:GetCurrentURL"))

    def script(self, script: str, *args: Any) -> Any:
        return self.call("WebDriver:ExecuteScript", {"script": script, "args": list(args)})

    def async_script(self, script: str, *args: Any, timeout_ms: int = 30000) -> Any:
        """``script`` ends by calling ``arguments[arguments.length - 1](value)``."""
        self.call("WebDriver:SetTimeouts", {"script": timeout_ms})
        return self.call("WebDriver:ExecuteAsyncScript", {"script": script, "args": list(args)})

    def chrome(self, script: str, *args: Any) -> Any:
        """An async script in the browser's chrome context (``resolve`` is the last argument)."""
        self.context("chrome")
        try:
            return self.async_script(script, *args)
        finally:
            self.context("content")

    def quit(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            self.call("Marionette:Quit", {"flags": ["eForceQuit"]})
        self.sock.close()


#!/usr/bin/env python3
"""The browser extension's native-messaging host: `.venv/bin/python benchmarks/browserhost_bench.py`
(about half a minute; any user).

A real daemon in temporary directories runs a detox of the shipped example blocklist plus
``paths:`` and a ``lists:`` file of 100,000 names; a real `detoxd browser-host` is spoken to in
native-messaging frames on its stdin/stdout, as a browser does:

- start: from spawning the host (what ``runtime.connectNative`` makes the browser do) to its
  first frame (the daemon's status event) and to the answer of a first ``browser_check``;
- ``browser_check`` through the host, one after another (median, p95), for a blocked name, a
  blocked path and a URL that is not blocked: what the extension waits for before it lets a
  navigation go on or redirects it to the block page;
- the host's resident memory after those requests (VmRSS, VmHWM).
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import EXAMPLE_BLOCKLIST, PYTHON, daemon_env, median, ms, percentile
from names import write_list

LENGTH = struct.Struct("=I")
URLS = {"blocked name": "https://www.facebook.com/", "blocked path": "https://www.example.org/feed/",
        "not blocked": "https://www.example.org/messages/"}


class Host:
    def __init__(self, env: dict[str, str]) -> None:
        self.spawned = time.perf_counter()
        self.process = subprocess.Popen([PYTHON, "-m", "detoxd", "browser-host", "chrome-extension://bench/"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        header = self.process.stdout.read(LENGTH.size)
        if len(header) < LENGTH.size:
            raise RuntimeError("the host closed its stdout")
        return json.loads(self.process.stdout.read(LENGTH.unpack(header)[0]))  # type: ignore[no-any-return]

    def ask(self, ident: int, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        data = json.dumps({"id": ident, "cmd": cmd, **args}).encode()
        self.process.stdin.write(LENGTH.pack(len(data)) + data)
        self.process.stdin.flush()
        while True:
            frame = self.read()
            if frame.get("id") == ident:
                return frame

    def memory_kib(self) -> dict[str, int]:
        found = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(line.split()[1])
        return found

    def close(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=10)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": ms(median(values)), "p95": ms(percentile(values, 0.95))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checks", type=int, default=300, help="browser_check requests per URL")
    parser.add_argument("--starts", type=int, default=15, help="host starts")
    args = parser.parse_args(argv)
    with daemon_env("detoxd-bench-host-") as env:
        env.prepare(EXAMPLE_BLOCKLIST + "paths:\n  - example.org/feed\nlists:\n  - names.txt\n")
        names = write_list(env.config_dir / "names.txt", 100_000)
        env.start()
        env.start_detox()
        first_frame, first_check = [], []
        for _ in range(args.starts):
            host = Host(env.env)
            host.read()
            first_frame.append(time.perf_counter() - host.spawned)
            reply = host.ask(0, "browser_check", url=URLS["blocked name"])
            first_check.append(time.perf_counter() - host.spawned)
            assert reply["blocked"] is True, reply
            assert host.close() == 0
        host = Host(env.env)
        checks: dict[str, list[float]] = {}
        ident = 0
        for label, url in URLS.items():
            timings = checks[label] = []
            for _ in range(args.checks):
                ident += 1
                began = time.perf_counter()
                reply = host.ask(ident, "browser_check", url=url)
                timings.append(time.perf_counter() - began)
                assert reply["ok"] is True and reply["blocked"] is (label != "not blocked"), reply
        memory = host.memory_kib()
        assert host.close() == 0
    results = {
        "names_blocked": names,
        "start_to_first_event_ms": spread(first_frame),
        "start_to_first_check_ms": spread(first_check),
        "browser_check_ms": {label: spread(values) for label, values in checks.items()},
        "host_memory_kib": memory,
    }
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

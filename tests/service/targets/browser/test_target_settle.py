"""The browser target does not restore a policy file while someone is still writing it (real
inotify, real files under a scratch root). Read between a writer's `open(O_TRUNC)` and its write,
the file looked empty; the restore replaced it by rename, the writer's bytes went to the
replaced file, and the user's own policies were gone when the detox ended."""

from __future__ import annotations

import json
import os
import select
from pathlib import Path

from detoxd.service.targets.browser import WRITER_SETTLE_SECONDS, BrowserTarget

USER_POLICY = {"policies": {"DisableTelemetry": True}}


def firefox_target(tmp_path: Path) -> tuple[BrowserTarget, Path]:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/firefox").write_text("#!/bin/sh\n")
    policy = root / "etc/firefox/policies/policies.json"
    policy.parent.mkdir(parents=True)
    policy.write_text(json.dumps(USER_POLICY))
    (tmp_path / "state").mkdir()
    target = BrowserTarget(tmp_path / "hosts", tmp_path / "state", policy_root=root)
    target.apply(frozenset({"twitter.com"}))
    assert "DNSOverHTTPS" in json.loads(policy.read_text())["policies"]
    return target, policy


def events_arrive(target: BrowserTarget, now: float) -> None:
    descriptor = target.fileno()
    assert descriptor is not None
    assert select.select([descriptor], [], [], 10)[0], "no inotify event within 10 s"
    target.drain_events(now)


def test_a_policy_being_written_is_restored_only_once_its_writer_closes_it(tmp_path: Path) -> None:
    target, policy = firefox_target(tmp_path)
    inode = policy.stat().st_ino
    writer = os.open(policy, os.O_WRONLY | os.O_TRUNC)  # as `write_text` does: truncated, then written
    try:
        events_arrive(target, now=100.0)
        assert target.check(100.0, full=False) == []  # not while it is open for writing
        assert policy.stat().st_ino == inode and policy.stat().st_size == 0
        assert target.deadline() == 100.0 + WRITER_SETTLE_SECONDS
        os.write(writer, json.dumps(USER_POLICY).encode())
    finally:
        os.close(writer)
    events_arrive(target, now=100.1)
    assert target.deadline() is None
    assert len(target.check(100.1, full=False)) == 1  # restored, with the user's write in it
    policies = json.loads(policy.read_text())["policies"]
    assert policies["DisableTelemetry"] is True and policies["DNSOverHTTPS"]["Enabled"] is False
    target.remove()
    assert json.loads(policy.read_text()) == USER_POLICY  # the end gives back exactly the user's


def test_a_writer_that_keeps_the_file_open_holds_the_restore_back_only_so_long(tmp_path: Path) -> None:
    target, policy = firefox_target(tmp_path)
    writer = os.open(policy, os.O_WRONLY | os.O_TRUNC)
    try:
        events_arrive(target, now=100.0)
        assert target.check(100.0 + WRITER_SETTLE_SECONDS / 2, full=False) == []
        assert len(target.check(100.0 + WRITER_SETTLE_SECONDS, full=False)) == 1
        assert "DNSOverHTTPS" in json.loads(policy.read_text())["policies"]
    finally:
        os.close(writer)

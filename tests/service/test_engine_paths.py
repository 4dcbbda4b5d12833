"""`paths:` through the engine: blocklist.yaml -> the ratchet -> the browsers' policy files (in-process,
fake clock, the policy files under a scratch root as ``DETOXD_POLICY_ROOT`` puts them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detoxd.clock import FakeClock
from detoxd.paths import Paths
from detoxd.service.engine import Engine
from tests.service.enginekit import DAY, ROOT, blocked, scratch_paths

CHROMIUM_FILE = "etc/chromium/policies/managed/detoxd.json"
FIREFOX_FILE = "etc/firefox/policies/policies.json"


@pytest.fixture
def policy_root(tmp_path: Path) -> Path:
    root = tmp_path / "policy-root"
    for browser in ("usr/bin/chromium", "usr/bin/firefox-esr"):
        (root / browser).parent.mkdir(parents=True, exist_ok=True)
        (root / browser).touch()
    return root


def make_engine(tmp_path: Path, clock: FakeClock, policy_root: Path, blocklist: str,
                main: str = "detox:\n  days: 14\n  lock: true\n") -> tuple[Engine, Paths]:
    paths = scratch_paths(tmp_path, blocklist=blocklist, main=main)
    engine = Engine(paths, clock, policy_root=policy_root)
    engine.boot()
    return engine, paths


def url_blocklist(root: Path) -> list[str] | None:
    path = root / CHROMIUM_FILE
    return json.loads(path.read_text()).get("URLBlocklist") if path.exists() else None


def without_extension(document: dict[str, object]) -> dict[str, object]:
    """A policy document without the extension's policies (tests/service/targets/browser/
    test_chromium_extension.py tests those)."""
    return {key: value for key, value in document.items()
            if key not in ("ExtensionInstallForcelist", "IncognitoModeAvailability",
                           "BrowserGuestModeEnabled")}


def test_paths_are_blocked_by_policy_during_a_locked_detox_and_kept_by_its_ratchet(
        tmp_path: Path, clock: FakeClock, policy_root: Path) -> None:
    engine, paths = make_engine(tmp_path, clock, policy_root,
                                "domains: [a.example.com]\npaths: [linkedin.com/feed]\n")
    try:
        assert url_blocklist(policy_root) is None  # no detox: nothing in force
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        assert url_blocklist(policy_root) == ["linkedin.com/feed"]
        firefox = json.loads((policy_root / FIREFOX_FILE).read_text())["policies"]
        assert firefox["WebsiteFilter"] == {"Block": ["*://*.linkedin.com/feed*"]}
        assert "linkedin.com" not in blocked(paths) and "a.example.com" in blocked(paths)
        assert engine.status()["paths_blocked"] == ["linkedin.com/feed"]
        # The path taken out and another added: adding is immediate, removing waits for the end.
        (paths.config_dir / "blocklist.yaml").write_text(
            "domains: [a.example.com]\npaths: [youtube.com/shorts]\n")
        assert engine.reload() is None
        assert url_blocklist(policy_root) == ["linkedin.com/feed", "youtube.com/shorts"]
        assert engine.status()["paths_blocked"] == ["linkedin.com/feed", "youtube.com/shorts"]
        clock.advance(15 * DAY)
        engine.tick()  # the detox ends: every policy detoxd added goes
        assert engine.status()["state"] == "idle"
        assert not (policy_root / CHROMIUM_FILE).exists(), (policy_root / CHROMIUM_FILE).read_text()
        assert not (policy_root / FIREFOX_FILE).exists(), (policy_root / FIREFOX_FILE).read_text()
        assert engine.status()["paths_blocked"] == []
    finally:
        engine.shutdown()


def test_an_unlocked_detox_follows_the_config_and_no_paths_changes_nothing(
        tmp_path: Path, clock: FakeClock, policy_root: Path) -> None:
    engine, paths = make_engine(tmp_path, clock, policy_root, "domains: [a.example.com]\n",
                                main="detox:\n  days: 14\n  lock: false\n")
    try:
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        chromium = json.loads((policy_root / CHROMIUM_FILE).read_text())
        assert without_extension(chromium) == {"DnsOverHttpsMode": "off"}  # as before paths: existed
        (paths.config_dir / "blocklist.yaml").write_text(
            "domains: [a.example.com]\npaths: [reddit.com/r/all]\n")
        assert engine.reload() is None
        assert url_blocklist(policy_root) == ["reddit.com/r/all"]
        (paths.config_dir / "blocklist.yaml").write_text("domains: [a.example.com]\n")
        assert engine.reload() is None
        assert json.loads((policy_root / CHROMIUM_FILE).read_text()) == chromium
    finally:
        engine.shutdown()


def test_the_paths_in_force_survive_a_restart(tmp_path: Path, clock: FakeClock, policy_root: Path) -> None:
    engine, paths = make_engine(tmp_path, clock, policy_root, "paths: [linkedin.com/feed]\n")
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    engine.shutdown()
    (paths.config_dir / "blocklist.yaml").write_text("paths: [\n")  # broken while the daemon was down
    restarted = Engine(paths, clock, policy_root=policy_root)
    restarted.boot()
    try:
        assert restarted.status()["paths_blocked"] == ["linkedin.com/feed"]
        assert url_blocklist(policy_root) == ["linkedin.com/feed"]
    finally:
        restarted.shutdown()


def test_a_lost_state_keeps_the_paths_the_policy_files_hold(
        tmp_path: Path, clock: FakeClock, policy_root: Path) -> None:
    """Every copy of the state gone (a kill, then `rm`), the path taken out of the config: the
    locked detox that starts again (fail closed) keeps the path its own policy files still hold."""
    engine, paths = make_engine(tmp_path, clock, policy_root,
                                "domains: [a.example.com]\npaths: [linkedin.com/feed]\n")
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    engine.hosts.close()  # killed: no shutdown
    for path in (paths.state_file, paths.state_backup_file, paths.runtime_state_file,
                 paths.evidence_state_file):
        path.unlink()
    (paths.config_dir / "blocklist.yaml").write_text("domains: [a.example.com]\n")
    again = Engine(paths, clock, policy_root=policy_root)
    again.boot()
    try:
        status = again.status()
        assert status["state"] == "active" and "state was lost" in status["state_error"]
        assert status["paths_blocked"] == ["linkedin.com/feed"]
        assert url_blocklist(policy_root) == ["linkedin.com/feed"]
    finally:
        again.shutdown()

"""Installing and removing browser policy files under a temporary root (real files)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from detoxd.service.targets.browser import policyfiles
from detoxd.service.targets.browser.policyfiles import Action, BrowserPolicies, installed_browsers

USER_FIREFOX_POLICIES = '{\n    "policies": {"DisableTelemetry": true,\n  "Homepage": {"URL": "https://example.org"}}\n}\n'


def install_browser(root: Path, *relative: str) -> None:
    for item in relative:
        path = root / item
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(exist_ok=True) if not item.startswith(("usr/bin", "snap/bin")) else path.touch()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    install_browser(root, "usr/lib/firefox-esr", "opt/google/chrome")
    return root


def firefox_file(root: Path) -> Path:
    return root / "etc/firefox/policies/policies.json"


def test_detection_of_installed_browsers(tmp_path: Path) -> None:
    install_browser(tmp_path, "usr/bin/chromium", "var/lib/flatpak/app/org.mozilla.firefox")
    found = installed_browsers(tmp_path)
    assert found.covered == ("chromium",)
    assert found.uncovered == ("firefox (var/lib/flatpak/app/org.mozilla.firefox)",)
    # The snaps of Firefox and Chromium read host policies; Brave's, Edge's, Vivaldi's own dirs.
    install_browser(tmp_path, "snap/bin/firefox", "snap/bin/chromium", "opt/brave.com/brave",
                    "opt/microsoft/msedge", "opt/vivaldi")
    assert installed_browsers(tmp_path).covered == (
        "firefox", "chromium", "brave", "edge", "vivaldi", "chromium (snap)")
    assert installed_browsers(tmp_path / "empty") == policyfiles.InstalledBrowsers((), ())


def test_merge_with_an_existing_user_file_and_restore_it_byte_for_byte(root: Path, tmp_path: Path) -> None:
    users = firefox_file(root)
    users.parent.mkdir(parents=True)
    users.write_text(USER_FIREFOX_POLICIES)
    users.chmod(0o640)
    manager = BrowserPolicies(tmp_path / "state", root)

    results = {result.browser: result.action for result in manager.apply()}
    assert results == {"firefox": Action.INSTALLED, "chrome": Action.INSTALLED}
    document = json.loads(users.read_text())
    assert document["policies"]["DNSOverHTTPS"] == {"Enabled": False, "Locked": True}
    assert document["policies"]["DisableTelemetry"] is True
    assert stat.S_IMODE(users.stat().st_mode) == 0o640  # the user's mode is kept
    chrome = root / "etc/opt/chrome/policies/managed/detoxd.json"
    assert json.loads(chrome.read_text()) == {"DnsOverHttpsMode": "off"}
    assert not (root / "etc/chromium").exists()  # not installed: nothing written

    assert {result.action for result in manager.lift()} == {Action.REMOVED}
    assert users.read_text() == USER_FIREFOX_POLICIES
    assert not chrome.exists()
    assert (root / "etc/opt/chrome/policies/managed").is_dir()
    assert not (tmp_path / "state" / policyfiles.STATE_NAME).exists()


def test_created_files_and_directories_are_readable_by_browsers_under_umask_077(
        root: Path, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        BrowserPolicies(tmp_path / "state", root).apply()
    finally:
        os.umask(old)
    path = firefox_file(root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "etc/firefox").stat().st_mode) == 0o755


def test_tampering_is_undone_and_other_edits_are_kept(root: Path, tmp_path: Path) -> None:
    manager = BrowserPolicies(tmp_path / "state", root)
    manager.apply()
    assert manager.verify() == []  # nothing changed: not even read again
    path = firefox_file(root)
    path.write_text(json.dumps({"policies": {"DNSOverHTTPS": {"Enabled": True}, "BlockAboutConfig": True}}))
    restored = [result for result in manager.verify() if result.browser == "firefox"]
    assert [result.action for result in restored] == [Action.RESTORED]
    document = json.loads(path.read_text())
    assert document["policies"] == {"DNSOverHTTPS": {"Enabled": False, "Locked": True},
                                    "BlockAboutConfig": True}
    (root / "etc/opt/chrome/policies/managed/detoxd.json").unlink()
    assert {r.browser: r.action for r in manager.verify()}["chrome"] is Action.RESTORED

    manager.lift()  # the file was detoxd's; the user's later policy stays
    assert json.loads(path.read_text()) == {"policies": {"BlockAboutConfig": True}}


def test_a_broken_user_file_is_never_overwritten(root: Path, tmp_path: Path) -> None:
    path = firefox_file(root)
    path.parent.mkdir(parents=True)
    path.write_text("{ this is not json")
    results = {result.browser: result for result in BrowserPolicies(tmp_path / "state", root).apply()}
    assert results["firefox"].action is Action.FAILED and "not valid JSON" in results["firefox"].detail
    assert path.read_text() == "{ this is not json"


def test_a_crash_between_remembering_and_writing_is_settled(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash is simulated by making the file write raise once (a real kill -9 at exactly
    that instant cannot be aimed at); the record is already durable then, as after a crash."""
    users = firefox_file(root)
    users.parent.mkdir(parents=True)
    users.write_text(USER_FIREFOX_POLICIES)

    def crash(_path: Path, _text: str) -> None:
        raise OSError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(policyfiles, "_write", crash)
        BrowserPolicies(tmp_path / "state", root).apply()
    assert users.read_text() == USER_FIREFOX_POLICIES
    restarted = BrowserPolicies(tmp_path / "state", root)  # a new daemon process
    assert "etc/firefox/policies/policies.json" in {file for file, _ in restarted.records()}
    assert {r.browser: r.action for r in restarted.apply()}["firefox"] is Action.RESTORED
    restarted.lift()
    assert users.read_text() == USER_FIREFOX_POLICIES


def test_lifting_twice_and_lifting_nothing_are_harmless(root: Path, tmp_path: Path) -> None:
    manager = BrowserPolicies(tmp_path / "state", root)
    assert manager.lift() == []
    manager.apply()
    manager.lift()
    assert manager.lift() == []
    assert not firefox_file(root).exists()


def test_a_corrupt_record_file_is_moved_aside(root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / policyfiles.STATE_NAME).write_text("garbage")
    assert BrowserPolicies(state, root).records() == {}
    assert (state / "browser-policies.corrupt").read_text() == "garbage"


def test_paths_share_the_files_and_everything_goes_at_the_end(root: Path, tmp_path: Path) -> None:
    users = firefox_file(root)
    users.parent.mkdir(parents=True)
    users.write_text(USER_FIREFOX_POLICIES)
    chrome = root / "etc/opt/chrome/policies/managed/detoxd.json"
    policies_ = BrowserPolicies(tmp_path / "state", root)
    policies_.apply()  # secure DNS off first (the detox starts), then a path is added
    policies_.set_paths({"linkedin.com/feed"})
    assert {result.action for result in policies_.apply()} == {Action.IN_PLACE, Action.INSTALLED}
    assert json.loads(chrome.read_text()) == {"DnsOverHttpsMode": "off",
                                              "URLBlocklist": ["linkedin.com/feed"]}
    firefox = json.loads(users.read_text())["policies"]
    assert firefox["WebsiteFilter"] == {"Block": ["*://*.linkedin.com/feed*"]}
    assert firefox["DisableTelemetry"] is True and firefox["DNSOverHTTPS"]["Locked"] is True
    policies_.set_paths({"linkedin.com/feed", "youtube.com/shorts"})
    assert Action.UPDATED in {result.action for result in policies_.apply()}
    assert json.loads(chrome.read_text())["URLBlocklist"] == ["linkedin.com/feed", "youtube.com/shorts"]
    chrome.write_text('{"DnsOverHttpsMode": "off"}')  # tampering
    assert Action.RESTORED in {result.action for result in policies_.verify()}
    assert json.loads(chrome.read_text())["URLBlocklist"] == ["linkedin.com/feed", "youtube.com/shorts"]
    policies_.set_paths(())  # an unlocked detox's paths removed: only they go
    policies_.apply()
    assert json.loads(chrome.read_text()) == {"DnsOverHttpsMode": "off"}
    policies_.set_paths({"linkedin.com/feed"})
    policies_.apply()
    restarted = BrowserPolicies(tmp_path / "state", root)  # a new daemon lifts what the old one added
    restarted.lift()
    assert users.read_text() == USER_FIREFOX_POLICIES
    assert not chrome.exists() and restarted.records() == {}


@pytest.mark.parametrize("users_text", [None, '{"policies": {"DisableTelemetry": true}}\n', '{"other": 1}\n'])
def test_paths_first_then_secure_dns_then_paths_lifted_alone_leave_the_file_as_it_was(
        root: Path, tmp_path: Path, users_text: str | None) -> None:
    """The order a detox's start and end take: paths are set before the names are applied."""
    users = firefox_file(root)
    if users_text is not None:
        users.parent.mkdir(parents=True)
        users.write_text(users_text)
    policies_ = BrowserPolicies(tmp_path / "state", root)
    policies_.set_paths({"linkedin.com/feed"}, base=False)
    policies_.apply()
    policies_.set_paths({"linkedin.com/feed"})
    policies_.apply()
    assert "DNSOverHTTPS" in json.loads(users.read_text())["policies"]
    policies_.set_paths(())  # the end: paths go first, the names' policies after
    policies_.apply()
    policies_.lift()
    assert (users.read_text() if users.exists() else None) == users_text
    assert policies_.records() == {}

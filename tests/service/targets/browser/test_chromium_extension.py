"""The extension for Chromium and Google Chrome on disk: key, package, update.xml, launcher, and the
policies that install it, in and out with the detox (the engine in-process, a fake clock)."""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from detoxd import __version__
from detoxd.clock import FakeClock
from detoxd.core import browserext
from detoxd.service.engine import Engine
from detoxd.service.targets.browser import chromium_extension
from detoxd.service.targets.browser.chromium_extension import KEY_NAME, ChromiumExtension
from tests.core.test_browserext import fields
from tests.service.enginekit import DAY, ROOT, scratch_paths

HOST_MANIFEST = "etc/chromium/native-messaging-hosts/org.detoxd.browser_host.json"
CHROMIUM_FILE = "etc/chromium/policies/managed/detoxd.json"


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = ChromiumExtension(tmp_path, tmp_path / "root")
    ext_id = first.extension_id()
    key_file = tmp_path / KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    again = ChromiumExtension(tmp_path, tmp_path / "root")
    assert again.extension_id() == ext_id and key_file.read_bytes() == pem
    assert ChromiumExtension(tmp_path / "elsewhere", tmp_path / "root").extension_id(create=False) is None


def test_the_package_is_a_crx3_chromium_can_verify(tmp_path: Path) -> None:
    extension = ChromiumExtension(tmp_path, tmp_path / "root", python="/usr/bin/python3")
    written = extension.write()
    assert set(written) == {extension.crx, extension.update_manifest, extension.launcher}
    crx = extension.crx.read_bytes()
    (header_size,) = struct.unpack("<I", crx[8:12])
    header = dict(fields(crx[12:12 + header_size]))
    archive = crx[12 + header_size:]
    proof = dict(fields(header[2]))
    public = serialization.load_der_public_key(proof[1])
    assert isinstance(public, rsa.RSAPublicKey)
    signed = browserext.signing_input(proof[1], archive)
    public.verify(proof[2], signed, padding.PKCS1v15(), hashes.SHA256())
    assert browserext.extension_id(proof[1]) == extension.extension_id()
    with zipfile.ZipFile(io.BytesIO(archive)) as package:
        assert sorted(package.namelist()) == sorted(["manifest.json", *browserext.SOURCE_FILES])
        manifest = json.loads(package.read("manifest.json"))
    assert manifest["background"] == {"service_worker": "background.js"}
    assert extension.update_manifest.read_text().count(extension.crx.as_uri()) == 1
    launcher = "#!/bin/sh\nexec '/usr/bin/python3' -m detoxd browser-host \"$@\"\n"
    assert extension.launcher.read_text() == launcher
    assert stat.S_IMODE(extension.launcher.stat().st_mode) == 0o755
    assert stat.S_IMODE(extension.crx.stat().st_mode) == 0o644
    # The same bytes every time: nothing is written again, even by a new process.
    def again() -> list[Path]:
        return ChromiumExtension(tmp_path, tmp_path / "root", python="/usr/bin/python3").write()
    assert again() == []
    extension.crx.write_bytes(b"tampered")
    assert again() == [extension.crx]
    assert extension.crx.read_bytes() == crx


def test_a_private_directory_on_the_way_is_made_passable_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    state = root / "var/lib/detoxd"
    state.mkdir(parents=True)
    state.chmod(0o700)
    (state / "state.json").write_text("{}")
    (state / "state.json").chmod(0o600)
    extension = ChromiumExtension(state, root)
    extension.write()
    assert stat.S_IMODE(state.stat().st_mode) == 0o711  # passable, not listable
    assert stat.S_IMODE((state / "state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / KEY_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(extension.directory.stat().st_mode) == 0o755


def test_the_detox_installs_the_extension_and_its_end_takes_it_out(tmp_path: Path) -> None:
    root = tmp_path / "policy-root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/chromium").touch()
    users_own = root / "etc/chromium/policies/managed/site.json"
    users_own.parent.mkdir(parents=True)
    users_own.write_text('{"HomepageLocation": "https://example.org/"}\n')
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    paths = scratch_paths(tmp_path, blocklist="domains: [a.example.com]\n")
    engine = Engine(paths, clock, policy_root=root)
    engine.boot()
    try:
        assert not (root / CHROMIUM_FILE).exists()
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        extension = ChromiumExtension(paths.state_dir, root)
        ext_id = extension.extension_id(create=False)
        assert ext_id is not None
        policy = json.loads((root / CHROMIUM_FILE).read_text())
        assert policy["ExtensionInstallForcelist"] == [f"{ext_id};{extension.update_manifest.as_uri()}"]
        assert policy["IncognitoModeAvailability"] == 1 and policy["BrowserGuestModeEnabled"] is False
        host = json.loads((root / HOST_MANIFEST).read_text())
        assert host == browserext.chromium_host_manifest(str(extension.launcher), ext_id)
        assert Path(host["path"]).is_relative_to(root)  # every path written points under the root
        assert extension.crx.is_file() and extension.launcher.is_file()
        assert not (root / "etc/opt/chrome").exists()  # Google Chrome is not installed here
        (root / HOST_MANIFEST).unlink()  # tampering: put back at the next check
        engine.check(clock.monotonic(), full=False)
        assert json.loads((root / HOST_MANIFEST).read_text()) == host
        clock.advance(15 * DAY)
        engine.tick()
        assert engine.status()["state"] == "idle"
        assert not (root / CHROMIUM_FILE).exists() and not (root / HOST_MANIFEST).exists()
        assert users_own.read_text() == '{"HomepageLocation": "https://example.org/"}\n'
    finally:
        engine.shutdown()


def test_an_extension_that_cannot_be_written_is_a_problem_until_it_can(tmp_path: Path) -> None:
    root = tmp_path / "policy-root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/chromium").touch()
    in_the_way = root / browserext.BROWSER_DIR
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_text("a file where the directory goes\n")
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    paths = scratch_paths(tmp_path, blocklist="domains: [a.example.com]\n")
    engine = Engine(paths, clock, policy_root=root)
    engine.boot()
    try:
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        assert json.loads((root / CHROMIUM_FILE).read_text()) == {"DnsOverHttpsMode": "off"}  # the rest holds
        engine.check(clock.monotonic(), full=False)
        [problem] = [text for text in engine.status()["problems"] if "browser extension" in text]
        assert f"cannot be written under {root / browserext.BROWSER_DIR}" in problem
        in_the_way.unlink()
        engine.check(clock.monotonic(), full=False)
        assert not any("browser extension" in text for text in engine.status()["problems"])
        assert "ExtensionInstallForcelist" in json.loads((root / CHROMIUM_FILE).read_text())
    finally:
        engine.shutdown()


def test_changed_files_get_a_higher_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ChromiumExtension(tmp_path, tmp_path / "root")
    first.write()
    assert first.version() == browserext.package_version(__version__, 1)
    assert ChromiumExtension(tmp_path, tmp_path / "root").write() == []  # the same files: the same build
    sources = chromium_extension.source_files()
    monkeypatch.setattr(chromium_extension, "source_files",
                        lambda: {**sources, "blocked.css": sources["blocked.css"] + b"\n/* changed */\n"})
    again = ChromiumExtension(tmp_path, tmp_path / "root")
    assert set(again.write()) == {again.crx, again.update_manifest}
    assert again.version() == browserext.package_version(__version__, 2)
    assert f"version='{browserext.package_version(__version__, 2)}'" in again.update_manifest.read_text()

"""The extension's packaging, pure: manifests, the extension id, CRX3 bytes, update.xml, policies."""

from __future__ import annotations

import hashlib
import struct
import xml.etree.ElementTree as ET

import pytest

from detoxd.core import browserext
from detoxd.core.policies import CHROME, CHROMIUM


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def fields(data: bytes) -> list[tuple[int, bytes]]:
    """A protobuf message's length-delimited fields, in order (every field of a CRX3 header is one)."""
    found, at = [], 0
    while at < len(data):
        key, at = read_varint(data, at)
        assert key & 7 == 2, f"wire type {key & 7}"
        size, at = read_varint(data, at)
        found.append((key >> 3, data[at:at + size]))
        at += size
    return found


def test_the_id_is_the_key_s_hash_in_chromium_s_alphabet() -> None:
    key = b"some DER bytes"
    ext_id = browserext.extension_id(key)
    assert len(ext_id) == 32 and set(ext_id) <= set("abcdefghijklmnop")
    alphabet = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
    expected = hashlib.sha256(key).hexdigest()[:32].translate(alphabet)
    assert ext_id == expected


def test_a_crx3_file_holds_the_key_the_signature_the_id_and_the_zip() -> None:
    key, archive = b"K" * 300, b"PK\x03\x04 zip bytes"
    signed_inputs: list[bytes] = []

    def sign(data: bytes) -> bytes:
        signed_inputs.append(data)
        return b"S" * 256

    crx = browserext.crx3(archive, key, sign)
    assert crx[:4] == b"Cr24"
    version, header_size = struct.unpack("<II", crx[4:12])
    assert version == 3
    header = crx[12:12 + header_size]
    assert crx[12 + header_size:] == archive
    parsed = fields(header)
    assert [number for number, _ in parsed] == [2, 10000]
    proof = dict(fields(parsed[0][1]))
    assert proof == {1: key, 2: b"S" * 256}
    signed_data = parsed[1][1]
    assert fields(signed_data) == [(1, hashlib.sha256(key).digest()[:16])]
    context = b"CRX3 SignedData\x00"
    assert signed_inputs == [context + struct.pack("<I", len(signed_data)) + signed_data + archive]


def test_each_family_has_its_manifest_v3() -> None:
    chromium = browserext.manifest("chromium", "1.2.3")
    firefox = browserext.manifest("firefox", "1.2.3")
    assert chromium["manifest_version"] == firefox["manifest_version"] == 3
    assert chromium["background"] == {"service_worker": "background.js"}
    assert firefox["background"] == {"scripts": ["background.js"]}
    assert firefox["browser_specific_settings"]["gecko"]["id"] == "browser@detoxd.org"
    assert "nativeMessaging" in chromium["permissions"] and "browser_specific_settings" not in chromium
    with pytest.raises(ValueError):
        browserext.manifest("lynx", "1")


def test_update_xml_offers_the_package_at_its_version() -> None:
    text = browserext.update_xml("a" * 32, "0.1.0", "file:///r/var/lib/detoxd/browser/chromium/detoxd.crx?'&")
    app = ET.fromstring(text).find("{http://www.google.com/update2/response}app")
    assert app is not None and app.get("appid") == "a" * 32
    check = app.find("{http://www.google.com/update2/response}updatecheck")
    assert check is not None
    assert check.get("codebase") == "file:///r/var/lib/detoxd/browser/chromium/detoxd.crx?'&"
    assert check.get("version") == "0.1.0"


def test_the_launcher_runs_the_host_with_nothing_else_in_it() -> None:
    assert browserext.launcher_script("/usr/bin/python3") == (
        "#!/bin/sh\nexec '/usr/bin/python3' -m detoxd browser-host \"$@\"\n")
    for bad in ("python3", "/opt/it's/python", "/x/$(reboot)", "/a\nb"):
        with pytest.raises(ValueError):
            browserext.launcher_script(bad)


def test_the_policies_force_install_switch_incognito_off_and_register_the_host() -> None:
    specs = browserext.chromium_specs("b" * 32, "file:///r/update.xml", "/r/launcher")
    by_key = {(spec.browser, spec.file, spec.key_path): spec.value for spec in specs}
    for browser, file in ((CHROMIUM, "etc/chromium/policies/managed/detoxd.json"),
                          (CHROME, "etc/opt/chrome/policies/managed/detoxd.json")):
        forced = ("b" * 32 + ";file:///r/update.xml",)
        assert by_key[(browser, file, ("ExtensionInstallForcelist",))] == forced
        assert by_key[(browser, file, ("IncognitoModeAvailability",))] == 1
        assert by_key[(browser, file, ("BrowserGuestModeEnabled",))] is False
    host = "etc/chromium/native-messaging-hosts/org.detoxd.browser_host.json"
    assert by_key[(CHROMIUM, host, ("path",))] == "/r/launcher"
    assert by_key[(CHROMIUM, host, ("allowed_origins",))] == [f"chrome-extension://{'b' * 32}/"]
    assert by_key[(CHROME, "etc/opt/chrome/native-messaging-hosts/org.detoxd.browser_host.json",
                   ("name",))] == "org.detoxd.browser_host"


def test_forced_recognises_either_policy() -> None:
    ext_id = "c" * 32
    assert browserext.forced({"ExtensionInstallForcelist": [f"{ext_id};file:///u.xml"]}, ext_id)
    settings = {"ExtensionSettings": {ext_id: {"installation_mode": "force_installed"}}}
    assert browserext.forced(settings, ext_id)
    assert not browserext.forced({"ExtensionInstallForcelist": ["d" * 32 + ";x"]}, ext_id)
    settings[ext_id] = {"ExtensionSettings": {ext_id: {"installation_mode": "allowed"}}}
    assert not browserext.forced(settings[ext_id], ext_id)
    assert not browserext.forced(None, ext_id) and not browserext.forced("broken", ext_id)


def test_the_package_version_is_detoxds_and_a_build_number() -> None:
    assert browserext.package_version("0.1.0", 3) == "0.1.0.3"
    assert browserext.package_version("1.2", 1) == "1.2.0.1"
    assert browserext.package_version("2.0.1.dev4", 7) == "2.0.1.7"

"""detoxd's browser extension, packaged (pure: values in, values out).

The extension's source is ``detoxd/data/browser-extension/`` (one source for every browser:
``globalThis.browser ?? chrome``); each browser family gets its own Manifest V3 (:func:`manifest`).
For Chromium and Google Chrome it goes in a CRX3 file (:func:`crx3`, signed with a per-machine RSA
key: the extension's id is that key's), offered by a gupdate ``update.xml`` (:func:`update_xml`)
that ``ExtensionInstallForcelist`` points at (:func:`chromium_specs`): force-installed, so the user
cannot disable or remove it while the policy is in force, in every profile. Incognito and guest
windows, where a policy-installed extension does not run, are switched off with the same policies
(``IncognitoModeAvailability: 1``, ``BrowserGuestModeEnabled: false``), and the native-messaging
host manifest that lets the extension reach ``detoxd browser-host`` is written as detoxd's own file
in each browser's system directory.
Everything goes in and comes out with the detox, through :mod:`detoxd.core.policies`' records.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable
from typing import Any

from detoxd.core.policies import CHROME, CHROMIUM, PolicySpec

HOST_NAME = "org.detoxd.browser_host"  # contract: the native-messaging host's name
FIREFOX_ID = "browser@detoxd.org"  # contract: the Firefox extension's id
BROWSER_DIR = "var/lib/detoxd/browser"  # under the policy root: packages, update.xml, launcher
LAUNCHER_NAME = "detoxd-browser-host"
CHROMIUM_DIR = f"{BROWSER_DIR}/chromium"
CRX_NAME = "detoxd.crx"
UPDATE_NAME = "update.xml"
SOURCE_FILES = ("background.js", "blocked.html", "blocked.js", "blocked.css", "icon.png")
PERMISSIONS = ("nativeMessaging", "webNavigation", "tabs", "storage", "alarms")
DESCRIPTION = "detoxd: the block page of your digital detox, and the time spent on blocked sites"
# Where each Chromium-family browser reads system-wide native-messaging host manifests.
CHROMIUM_HOST_DIRS: tuple[tuple[str, str], ...] = (
    (CHROMIUM, "etc/chromium/native-messaging-hosts"),
    (CHROME, "etc/opt/chrome/native-messaging-hosts"),
)
# detoxd's own policy file in each managed directory (the same files as core.policies').
CHROMIUM_POLICY_FILES: tuple[tuple[str, str], ...] = (
    (CHROMIUM, "etc/chromium/policies/managed/detoxd.json"),
    (CHROME, "etc/opt/chrome/policies/managed/detoxd.json"),
)
INCOGNITO_DISABLED = 1  # IncognitoModeAvailability: 0 available, 1 disabled, 2 forced
# Guest windows: off-the-record profiles too, where the extension does not run (measured with
# `chromium --guest`: the page in a browser context of its own, the service worker elsewhere).
GUEST_POLICY = "BrowserGuestModeEnabled"

CRX3_MAGIC = b"Cr24"
CRX3_VERSION = 3
CRX3_SIGNATURE_CONTEXT = b"CRX3 SignedData\x00"


def manifest(family: str, version: str) -> dict[str, Any]:
    """The Manifest V3 of ``family`` ("chromium" or "firefox")."""
    document: dict[str, Any] = {
        "manifest_version": 3,
        "name": "detoxd",
        "version": version,
        "description": DESCRIPTION,
        "icons": {"128": "icon.png"},
        "permissions": list(PERMISSIONS),
    }
    if family == "chromium":
        document["background"] = {"service_worker": "background.js"}
        document["minimum_chrome_version"] = "110"
    elif family == "firefox":
        document["background"] = {"scripts": ["background.js"]}
        document["browser_specific_settings"] = {"gecko": {"id": FIREFOX_ID, "strict_min_version": "115.0"}}
    else:
        raise ValueError(f"unknown browser family {family!r}")
    return document


def package_version(version: str, build: int) -> str:
    """A version Chromium accepts (one to four numbers below 65536): ``version``'s first three
    numbers and the build number."""
    numbers = [int(part) % 65536 for part in re.findall(r"\d+", version)[:3]]
    numbers += [0] * (3 - len(numbers))
    return ".".join(str(number) for number in (*numbers, build % 65536))


def extension_id(public_key_der: bytes) -> str:
    """Chromium's id of the extension signed with this key (DER SubjectPublicKeyInfo)."""
    digest = hashlib.sha256(public_key_der).hexdigest()[:32]
    return "".join(chr(ord("a") + int(char, 16)) for char in digest)


# ---- CRX3 (Chromium's components/crx_file/crx3.proto) ----

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def signed_header_data(public_key_der: bytes) -> bytes:
    """SignedData {1: crx_id}: the first 16 bytes of the key's SHA-256."""
    return _field(1, hashlib.sha256(public_key_der).digest()[:16])


def signing_input(public_key_der: bytes, archive: bytes) -> bytes:
    """What the RSA PKCS#1 v1.5 SHA-256 signature covers."""
    signed = signed_header_data(public_key_der)
    return CRX3_SIGNATURE_CONTEXT + struct.pack("<I", len(signed)) + signed + archive


def crx3(archive: bytes, public_key_der: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """The CRX3 file of the zip ``archive``; ``sign`` signs bytes with the key's private half."""
    signature = sign(signing_input(public_key_der, archive))
    proof = _field(1, public_key_der) + _field(2, signature)
    header = _field(2, proof) + _field(10000, signed_header_data(public_key_der))
    return CRX3_MAGIC + struct.pack("<II", CRX3_VERSION, len(header)) + header + archive


def _attribute(value: str) -> str:
    """``value`` as a quoted XML attribute."""
    escaped = (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
               .replace("'", "&apos;").replace('"', "&quot;"))
    return f"'{escaped}'"


def update_xml(ext_id: str, version: str, codebase: str) -> str:
    """The gupdate manifest that offers ``codebase`` (a file:// URL of the CRX) at ``version``."""
    return ("<?xml version='1.0' encoding='UTF-8'?>\n"
            "<gupdate xmlns='http://www.google.com/update2/response' protocol='2.0'>\n"
            f"  <app appid={_attribute(ext_id)}>\n"
            f"    <updatecheck codebase={_attribute(codebase)} version={_attribute(version)} />\n"
            "  </app>\n"
            "</gupdate>\n")


def launcher_script(python: str) -> str:
    """The host manifest's "path": an executable without arguments, and no user strings in it."""
    if not python.startswith("/") or any(char in python for char in "'\"\\$`\n"):
        raise ValueError(f"not a plain absolute path: {python!r}")
    return f"#!/bin/sh\nexec '{python}' -m detoxd browser-host \"$@\"\n"


def chromium_host_manifest(launcher: str, ext_id: str) -> dict[str, Any]:
    return {
        "name": HOST_NAME,
        "description": "detoxd: the extension's way to the daemon (detoxd browser-host)",
        "path": launcher,
        "type": "stdio",
        "allowed_origins": [f"chrome-extension://{ext_id}/"],
    }


def forcelist_entry(ext_id: str, update_url: str) -> str:
    return f"{ext_id};{update_url}"


def chromium_specs(ext_id: str, update_url: str, launcher: str) -> tuple[PolicySpec, ...]:
    """Force-install, incognito and guest windows off, the host manifest: Chromium and Google Chrome."""
    specs: list[PolicySpec] = []
    for browser, file in CHROMIUM_POLICY_FILES:
        specs.append(PolicySpec(browser, file, ("ExtensionInstallForcelist",),
                                (forcelist_entry(ext_id, update_url),), members=True))
        specs.append(PolicySpec(browser, file, ("IncognitoModeAvailability",), INCOGNITO_DISABLED))
        specs.append(PolicySpec(browser, file, (GUEST_POLICY,), False))
    host = chromium_host_manifest(launcher, ext_id)
    for browser, directory in CHROMIUM_HOST_DIRS:
        file = f"{directory}/{HOST_NAME}.json"
        specs += [PolicySpec(browser, file, (key,), value) for key, value in host.items()]
    return tuple(specs)


def host_manifest_file(browser: str) -> str | None:
    return next((f"{directory}/{HOST_NAME}.json" for name, directory in CHROMIUM_HOST_DIRS
                 if name == browser), None)


def forced(document: Any, ext_id: str) -> bool:
    """Whether a policy document force-installs the extension ``ext_id`` (either policy)."""
    if not isinstance(document, dict):
        return False
    entries = document.get("ExtensionInstallForcelist")
    if isinstance(entries, list) and any(isinstance(entry, str) and entry.split(";")[0] == ext_id
                                         for entry in entries):
        return True
    settings = document.get("ExtensionSettings")
    entry = settings.get(ext_id) if isinstance(settings, dict) else None
    return isinstance(entry, dict) and entry.get("installation_mode") == "force_installed"

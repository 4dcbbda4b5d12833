"""detoxd's extension in Firefox: the policies that force-install it (pure: values in, values out).

Firefox reads ``/etc/firefox/policies/policies.json``; detoxd adds, as records of
:mod:`detoxd.core.policies` (undone exactly at the end, restored when edited):

- ``ExtensionSettings["browser@detoxd.org"]``: ``force_installed`` from a ``file://`` XPI under the
  policy root, ``private_browsing: true`` (it runs in private windows too). A force-installed
  extension cannot be disabled or removed by the user, in any profile.
- ``Preferences["xpinstall.signatures.required"]``: false, locked. Measured on Debian's
  firefox-esr 153: without it the policy's install fails with ``ERROR_SIGNEDSTATE_REQUIRED`` (the
  XPI is not signed by Mozilla); with it the extension is installed and active (signedState
  "missing"). ESR honours the pref; Mozilla's release and beta builds ignore it (signing is
  compiled in), so a non-ESR Firefox needs a Mozilla-signed XPI (docs/browsers.md).
- The native-messaging host manifest ``/usr/lib/mozilla/native-messaging-hosts/org.detoxd.browser_host.json``
  (``allowed_extensions``: the extension's id), one spec per key: detoxd's own file, removed at the end.
"""

from __future__ import annotations

from typing import Any

from detoxd.core.browserext import BROWSER_DIR, FIREFOX_ID, HOST_NAME
from detoxd.core.policies import FIREFOX, FIREFOX_FILE, PolicySpec

__all__ = ["FIREFOX_ID", "HOST_NAME", "extension_entry", "firefox_forced", "firefox_specs"]
FIREFOX_DIR = f"{BROWSER_DIR}/firefox"  # under the policy root
XPI_NAME = "detoxd.xpi"
HOST_DIR = "usr/lib/mozilla/native-messaging-hosts"
HOST_FILE = f"{HOST_DIR}/{HOST_NAME}.json"
SIGNATURES_PREF = "xpinstall.signatures.required"
EXTENSION_KEY = ("policies", "ExtensionSettings", FIREFOX_ID)
SIGNATURES_KEY = ("policies", "Preferences", SIGNATURES_PREF)


def extension_setting(xpi_url: str) -> dict[str, Any]:
    """The ``ExtensionSettings`` entry that force-installs the XPI at ``xpi_url`` (file://)."""
    return {"installation_mode": "force_installed", "install_url": xpi_url, "private_browsing": True}


def host_manifest(launcher: str) -> dict[str, Any]:
    """Firefox's native-messaging host manifest: ``launcher`` takes no arguments."""
    return {
        "name": HOST_NAME,
        "description": "detoxd: the extension's way to the daemon (detoxd browser-host)",
        "path": launcher,
        "type": "stdio",
        "allowed_extensions": [FIREFOX_ID],
    }


def firefox_specs(xpi_url: str, launcher: str) -> tuple[PolicySpec, ...]:
    """Force-install (unsigned: the signature pref off, locked) and the host manifest."""
    return (
        PolicySpec(FIREFOX, FIREFOX_FILE, EXTENSION_KEY, extension_setting(xpi_url)),
        PolicySpec(FIREFOX, FIREFOX_FILE, SIGNATURES_KEY, {"Value": False, "Status": "locked"}),
        *(PolicySpec(FIREFOX, HOST_FILE, (key,), value) for key, value in host_manifest(launcher).items()),
    )


def _policy(document: Any, name: str, key: str) -> Any:
    policies = document.get("policies") if isinstance(document, dict) else None
    value = policies.get(name) if isinstance(policies, dict) else None
    return value.get(key) if isinstance(value, dict) else None


def extension_entry(document: Any) -> Any:
    """The ``ExtensionSettings`` entry of detoxd's extension in a policies.json document (or None)."""
    return _policy(document, "ExtensionSettings", FIREFOX_ID)


def firefox_forced(document: Any) -> bool:
    """Whether a Firefox policies.json document force-installs detoxd's extension, unsigned as it is."""
    entry = extension_entry(document)
    signatures = _policy(document, "Preferences", SIGNATURES_PREF)
    return (isinstance(entry, dict) and entry.get("installation_mode") == "force_installed"
            and isinstance(signatures, dict) and signatures.get("Value") is False)

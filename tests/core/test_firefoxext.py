"""The Firefox policies that force-install detoxd's extension: merged into a user's policies.json
and taken out again exactly."""

from __future__ import annotations

import json

from detoxd.core import firefoxext, policies
from detoxd.core.firefoxext import FIREFOX_ID, firefox_forced, firefox_specs

XPI = "file:///var/lib/detoxd/browser/firefox/detoxd.xpi"
LAUNCHER = "/var/lib/detoxd/browser/detoxd-browser-host"


def apply(document: dict[str, object] | None) -> tuple[dict[str, object], list[policies.Record]]:
    records = []
    for spec in firefox_specs(XPI, LAUNCHER):
        if spec.file == policies.FIREFOX_FILE:
            document, record = policies.merge(document, spec)
            records.append(record)
    assert document is not None
    return document, records


def test_force_installed_unsigned_and_in_private_windows() -> None:
    document, _ = apply(None)
    entry = document["policies"]["ExtensionSettings"][FIREFOX_ID]  # type: ignore[index]
    assert entry == {"installation_mode": "force_installed", "install_url": XPI, "private_browsing": True}
    assert firefox_forced(document)
    assert not firefox_forced({"policies": {"ExtensionSettings": {FIREFOX_ID: entry}}})  # signatures still on
    assert not firefox_forced({"policies": []}) and not firefox_forced(None)


def test_a_users_extension_settings_and_preferences_stay_and_come_back_unchanged() -> None:
    users = {"policies": {"ExtensionSettings": {"*": {"installation_mode": "blocked"}},
                          "Preferences": {"browser.tabs.warnOnClose": {"Value": False}}}}
    document, records = apply(json.loads(json.dumps(users)))
    assert document["policies"]["ExtensionSettings"]["*"] == {"installation_mode": "blocked"}  # type: ignore[index]
    specs = {spec.key: spec for spec in firefox_specs(XPI, LAUNCHER)}
    restored: dict[str, object] | None = document
    for record in reversed(records):
        restored = policies.unmerge(restored, record, specs[record.key])
    assert restored == users


def test_the_host_manifest_names_the_launcher_and_only_detoxds_extension() -> None:
    host = {spec.key_path[0]: spec.value for spec in firefox_specs(XPI, LAUNCHER)
            if spec.file == firefoxext.HOST_FILE}
    assert host == {"name": "org.detoxd.browser_host", "type": "stdio", "path": LAUNCHER,
                    "allowed_extensions": [FIREFOX_ID], "description": host["description"]}
    assert firefoxext.HOST_FILE == "usr/lib/mozilla/native-messaging-hosts/org.detoxd.browser_host.json"

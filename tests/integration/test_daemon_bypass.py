"""The daemon puts browser policies in place for a detox and removes exactly them afterwards.

The machine's /etc is not touched: DETOXD_POLICY_ROOT points the daemon at a scratch root in
which a Firefox is "installed" (its executable path exists).
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import DetoxdEnv, wait_for

USER_POLICY = {"policies": {"DisableTelemetry": True}}


def scratch_root(env: DetoxdEnv) -> Path:
    root = env.root / "machine"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/firefox").write_text("#!/bin/sh\n")
    policies = root / "etc/firefox/policies"
    policies.mkdir(parents=True)
    (policies / "policies.json").write_text(json.dumps(USER_POLICY))
    env.extra_env["DETOXD_POLICY_ROOT"] = str(root)
    return policies / "policies.json"


def test_firefox_doh_is_switched_off_for_the_detox_and_restored(detoxd_env: DetoxdEnv) -> None:
    policy_file = scratch_root(detoxd_env)
    original = policy_file.read_bytes()
    detoxd_env.write_main("detox:\n  lock: false\n")
    detoxd_env.start_daemon()
    assert policy_file.read_bytes() == original  # idle: nothing changes
    assert detoxd_env.cli("start").returncode == 0
    merged = json.loads(policy_file.read_text())
    assert merged["policies"]["DisableTelemetry"] is True  # the user's policy is kept
    assert merged["policies"]["DNSOverHTTPS"] == {"Enabled": False, "Locked": True}

    policy_file.write_text(json.dumps(USER_POLICY))  # tamper: DoH policy removed
    wait_for(lambda: "DNSOverHTTPS" in policy_file.read_text(), what="policy restored")
    assert wait_for(lambda: detoxd_env.status()["tamper_events"] >= 1)

    assert detoxd_env.cli("end").returncode == 0
    assert json.loads(policy_file.read_text()) == USER_POLICY


def test_browser_policies_can_be_switched_off(detoxd_env: DetoxdEnv) -> None:
    policy_file = scratch_root(detoxd_env)
    detoxd_env.write_main("bypass:\n  browser_policies: false\n")
    detoxd_env.start_daemon()
    assert detoxd_env.cli("start").returncode == 0
    assert "DNSOverHTTPS" not in policy_file.read_text()

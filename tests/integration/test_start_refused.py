"""Issue 21, bullet 8: `detoxd start` on a config in error starts nothing, against a real daemon.

Before, a typo or a world-writable config directory made `sudo detoxd start` print "Detox
started: 1 name blocked … It is locked … Good luck!" and exit 0: a locked 14-day detox of the
built-in defaults. Now it exits 1 with every error (file, line, key), and the refusal shows in
the journal, in `detoxd status`, in `detoxd doctor` and in the tray's lines.
"""

from __future__ import annotations

import os

import pytest
from conftest import USER_HOSTS, DetoxdEnv, wait_for
from fourplaces import can_run_doctor, doctor, doctor_check, events, tray_text

EXIT_INVALID_CONFIG = 1
TYPOS = "domains:\n  - twitter.com\n  - 'face..book'\nalow:\n  - business.twitter.com\n"


def refused_start(env: DetoxdEnv) -> str:
    """Start a detox that must be refused; its stderr. Nothing may have changed."""
    result = env.cli("start")
    assert result.returncode == EXIT_INVALID_CONFIG, (result.stdout, result.stderr)
    assert "Detox started" not in result.stdout and "Good luck" not in result.stdout
    assert "no detox was started" in result.stderr
    status = env.status()
    assert status["state"] == "idle" and status["domains_blocked"] == 0
    assert env.hosts.read_bytes() == USER_HOSTS
    assert events(env, "start_refused")
    assert not events(env, "detox_started")
    return result.stderr


def test_a_start_on_typos_lists_every_error_and_starts_nothing(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.write_blocklist(TYPOS)
    stderr = refused_start(detoxd_env)  # at once: start reads the config as it is on disk now
    assert "blocklist.yaml:3: domains[1]: 'face..book'" in stderr
    assert "blocklist.yaml:4: alow: unknown key" in stderr
    assert "2 errors in" in stderr

    status = detoxd_env.status()
    assert "face..book" in status["config_error"]
    assert "Config error" in tray_text(status)
    if can_run_doctor() and os.geteuid() == 0:
        check = doctor_check(doctor(detoxd_env), "config")
        assert check["level"] == "FAIL" and "start` is refused" in check["message"]
        assert "detoxd check" in check["fix"]

    # Fixed, the same command starts the detox.
    detoxd_env.write_blocklist("domains:\n  - twitter.com\n")
    result = detoxd_env.cli("start")
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: detoxd_env.status()["state"] == "active")


@pytest.mark.skipif(os.geteuid() != 0, reason="config ownership is only checked for root's daemon")
def test_a_world_writable_config_directory_refuses_the_start(detoxd_env: DetoxdEnv) -> None:
    detoxd_env.start_daemon()
    detoxd_env.config_dir.chmod(0o777)
    stderr = refused_start(detoxd_env)
    assert str(detoxd_env.config_dir) in stderr and "writable" in stderr


def test_a_missing_config_file_is_an_error_for_start_with_the_fix(detoxd_env: DetoxdEnv) -> None:
    (detoxd_env.config_dir / "detoxd.yaml").unlink()
    detoxd_env.start_daemon()
    stderr = refused_start(detoxd_env)
    assert "detoxd.yaml does not exist: a detox does not start on built-in defaults" in stderr
    assert "sudo detoxd install" in stderr

    status = detoxd_env.status()
    assert status["config_missing"] == ["detoxd.yaml"]
    assert any("does not exist" in warning for warning in status["warnings"])
    assert "Config missing: detoxd.yaml" in tray_text(status)
    if can_run_doctor() and os.geteuid() == 0:
        check = doctor_check(doctor(detoxd_env), "config")
        assert check["level"] == "warn" and "detoxd.yaml missing" in check["message"]

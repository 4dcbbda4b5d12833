"""Who may open an allowance: the rule, and libsystemd's sd-login read for real.

The sd-login tests run ``SdLogin`` in a child inside ``unshare -m`` with a scratch directory
bind-mounted over /run/systemd/users, written in the format logind writes (the machine's own
/run/systemd is never touched).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detoxd.service.seat import SdLogin, SessionFacts, check_peer, may_open


def test_root_may_open() -> None:
    assert may_open(0, None) is None


@pytest.mark.parametrize("uid", [1, 110, 999, 65534])
def test_system_users_may_not(uid: int) -> None:
    reason = may_open(uid, SessionFacts(None, active_seats=("seat0",)))
    assert reason == f"uid {uid} is a system user: only people at this machine may open allowances"


def test_a_user_with_an_active_session_at_the_seat_may() -> None:
    assert may_open(1000, SessionFacts(None, active_seats=("seat0",))) is None
    assert may_open(1000, SessionFacts("2", session_seat="seat0")) is None


def test_a_remote_session_may_not_even_when_the_user_also_sits_at_the_seat() -> None:
    reason = may_open(1000, SessionFacts("c3", session_remote=True, active_seats=("seat0",)))
    assert reason == "session c3 is remote: allowances open only from this machine's seat"


def test_a_user_at_no_seat_may_not() -> None:
    assert may_open(1000, SessionFacts(None)) == "uid 1000 has no active session at this machine's seat"
    assert may_open(1000, None) == "logind is not available: only root may open allowances here"


class Broken:
    def facts(self, uid: int, pid: int) -> SessionFacts:
        raise OSError("no")


def test_a_failing_logind_means_not_at_the_seat() -> None:
    assert check_peer(1000, 1, Broken()) == "logind is not available: only root may open allowances here"
    assert check_peer(0, 1, Broken()) is None


def test_sd_login_without_logind_reports_no_seat() -> None:
    login = SdLogin()
    if not login.available():
        pytest.skip("libsystemd.so.0 is not installed")
    facts = login.facts(4_000_000, os.getpid())  # a uid nobody has
    assert facts == SessionFacts(None)


PROBE = """
import json, os, sys
from detoxd.service.seat import SdLogin
login = SdLogin()
print(json.dumps([list(login.facts(int(uid), os.getpid()).active_seats) for uid in sys.argv[1:]]))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_sd_login_reads_the_seats_logind_recorded(tmp_path: Path) -> None:
    if not SdLogin().available():
        pytest.skip("libsystemd.so.0 is not installed")
    users = tmp_path / "users"
    users.mkdir()
    (users / "1000").write_text("# This is private data. Do not parse.\nNAME=alice\nSTATE=active\n"
                                "SESSIONS=3\nSEATS=seat0\nACTIVE_SESSIONS=3\nONLINE_SESSIONS=3\n"
                                "ACTIVE_SEATS=seat0\nONLINE_SEATS=seat0\n")
    (users / "1001").write_text("NAME=bob\nSTATE=online\nSESSIONS=c4\nSEATS=\nACTIVE_SESSIONS=\n"
                                "ONLINE_SESSIONS=c4\nACTIVE_SEATS=\nONLINE_SEATS=\n")
    # Without logind there is no /run/systemd/users to mount over: a private /run then.
    script = ('{ [ -d /run/systemd/users ] || { mount -t tmpfs tmpfs /run && '
              'mkdir -p /run/systemd/users; }; } && '
              'mount --bind "$1" /run/systemd/users && shift && exec "$@"')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", script, "sh", str(users), sys.executable, "-c", PROBE,
         "1000", "1001", "1002"], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["seat0"], [], []]

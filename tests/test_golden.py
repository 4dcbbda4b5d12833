"""The on-disk formats, pinned by files detoxd 0.1.0 wrote (tests/golden/v0.1).

The literals below are written out on purpose instead of imported from the code: renaming the
marker in the code must fail here, because every installed block carries the old one.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from detoxd.clock import FakeClock
from detoxd.core import hosts
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import state_store
from detoxd.service.engine import Engine

GOLDEN = Path(__file__).resolve().parent / "golden" / "v0.1"
NAMES = ["twitter.com", "www.twitter.com", "linkedin.com", "www.linkedin.com"]
BEGIN_0_1 = b"# BEGIN detoxd block: managed by detoxd, edits are reverted during a detox\n"
END_0_1 = b"# END detoxd block\n"


def test_the_block_renders_byte_for_byte_as_in_0_1() -> None:
    user = (GOLDEN / "hosts.user").read_bytes()
    block = hosts.render_block_in_order(NAMES, b"\n")
    assert block.startswith(BEGIN_0_1) and block.endswith(END_0_1)
    assert hosts.apply(user, block, frozenset()) == (GOLDEN / "hosts").read_bytes()
    assert hosts.apply(user + b"10.0.0.1 printer", block, frozenset()) == (
        GOLDEN / "hosts.unterminated").read_bytes()


def test_a_0_1_block_is_recognised_and_stripped_back_to_the_users_lines() -> None:
    user = (GOLDEN / "hosts.user").read_bytes()
    assert hosts.strip((GOLDEN / "hosts").read_bytes(), frozenset(NAMES)) == user
    # 0.1 ended the user's unterminated line (and said so in its marker): taking the block out
    # gives the line back exactly as the user left it, without the newline.
    assert hosts.strip((GOLDEN / "hosts.unterminated").read_bytes(), frozenset(NAMES)) == (
        user + b"10.0.0.1 printer")


def test_a_0_1_state_file_loads_with_its_version_and_ratchet() -> None:
    document = json.loads((GOLDEN / "state" / "state.json").read_text())
    assert document["version"] == 1 == state_store.FORMAT_VERSION
    state = state_store.load(GOLDEN / "state" / "state.json")
    assert state.active and state.locked
    assert state.started_at == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert state.duration_seconds == 14 * 86400
    assert "gone.example" in state.ratchet


def test_an_engine_resumes_a_0_1_detox_without_rewriting_its_block(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    shutil.copytree(GOLDEN / "state", state_dir)
    state_dir.chmod(0o700)
    hosts_file = tmp_path / "hosts"
    shutil.copy(GOLDEN / "hosts", hosts_file)
    config = tmp_path / "config"
    config.mkdir()
    (config / "blocklist.yaml").write_text("domains: [twitter.com, linkedin.com]\n")
    clock = FakeClock(datetime(2026, 11, 21, 8, 0, tzinfo=UTC), boot=500.0 + 86400, boot_identity="boot-0.1")
    engine = Engine(Paths(config, state_dir, hosts_file, tmp_path / "sock"), clock)
    engine.boot()
    status = engine.handle({"cmd": "status"}, Peer(1, 0, 0))["status"]
    assert status["state"] == "active" and status["days_left"] == 13
    # The ratchet's gone.example joins the block (sorted after the config's names), the rest
    # of the 0.1 block stays as it was.
    text = hosts_file.read_bytes()
    assert text.startswith((GOLDEN / "hosts").read_bytes().split(b":: twitter.com")[0])
    assert b"0.0.0.0 gone.example\n" in text
    engine.shutdown()


def test_a_0_1_journal_reads_and_reports() -> None:
    """The journal's lines as 0.1 writes them (version 1): a later detoxd must still read them."""
    from detoxd.core import report
    from detoxd.service.journal import read_events

    events, stats = read_events(GOLDEN / "journal")
    assert stats.corrupt_lines == 0 and stats.newer_version_lines == 0
    assert [(event["v"], event["seq"], event["kind"]) for event in events] == [
        (1, 1, "daemon_started"), (1, 2, "detox_started"), (1, 3, "tamper"), (1, 4, "app_closed"),
        (1, 5, "activity_day"), (1, 6, "activity_day")]
    document = report.build(events, now=datetime(2026, 12, 1, 12, 0, tzinfo=UTC), tz=UTC)
    assert document["summary"] == ("Day 1 of 14 so far: 1 tamper attempt, Slack closed once, 0 h 1 min "
                                   "on blocked sites vs 0 h 30 min in the 1 day ActivityWatch saw before")

"""Fuzzing the YAML path and the state readers (issue 12) with Hypothesis.

The properties are the invariants, not examples: for *any* bytes in the config files or the
state files, no exception escapes, and a running detox keeps its block in the hosts file (the
last good blocklist stays in force, the end time is not lost).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detoxd.clock import FakeClock
from detoxd.core import presets
from detoxd.core.config import parse_blocklist, parse_main
from detoxd.core.yamlsource import ConfigError
from detoxd.paths import Paths
from detoxd.protocol import Peer
from detoxd.service import state_store
from detoxd.service.engine import Engine
from detoxd.service.loader import load_config

ROOT = Peer(pid=1, uid=0, gid=0)
NAMES = {"twitter.com", "www.twitter.com", "linkedin.com"}
GOOD_BLOCKLIST = b"domains: [twitter.com, linkedin.com]\n"

# Pieces YAML gives meaning to, the characters it forbids, and text that looks like a config.
_YAML_PIECES = st.sampled_from([
    "[", "]", "{", "}", ":", "- ", "&a ", "*a", "&b ", "*b", "!!str ", "!!python/object ", "? ",
    "|", ">", "'", '"', "#", "\n", "  ", "\t", "---\n", "...\n", "<<: ", ",", "%YAML 1.1\n",
    "domains", "lists", "presets", "allow", "apps", "detox", "days", "lock", "twitter.com",
    "2026-13-45", "1e999", "0x1F", "~", "null", "yes", "\x00", "\x01", "\x1b", "\x7f", "\ufffe",
    "\ud800", "ü", "о", "\u2028", "\ufeff", "9" * 50,
])
yaml_texts = st.one_of(
    st.lists(_YAML_PIECES, max_size=60).map("".join),
    st.text(max_size=300),
)
yaml_bytes = st.one_of(
    yaml_texts.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
)


@given(yaml_texts)
@settings(max_examples=400, deadline=None)
def test_parsing_any_text_never_raises(text: str) -> None:
    config, source = parse_blocklist(text, known_presets=presets.PRESET_NAMES)
    assert config is not None or source.errors
    main, main_source = parse_main(text)
    assert main is not None or main_source.errors
    for issue in source.issues + main_source.issues:
        assert issue.line >= 0 and str(issue)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    # On tmpfs when there is one: every example boots an engine, and fsync on a disk is slow.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    directory = Path(tempfile.mkdtemp(prefix=f"detoxd-fuzz-{os.getpid()}-", dir=shm))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _fresh(scratch: Path, name: str) -> Paths:
    root = scratch / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "config").mkdir(parents=True)
    (root / "run").mkdir()
    (root / "config" / "blocklist.yaml").write_bytes(GOOD_BLOCKLIST)
    (root / "config" / "detoxd.yaml").write_bytes(b"detox:\n  days: 14\n")  # start needs both files
    (root / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    return Paths(root / "config", root / "state", root / "hosts", root / "run" / "control.sock")


def _blocked(paths: Paths) -> set[str]:
    lines = paths.hosts_file.read_text(errors="replace").splitlines()
    return {line.split()[1] for line in lines if line.startswith("0.0.0.0 ")}


@given(blocklist=yaml_bytes, main=yaml_bytes)
# Each example boots an engine (fsyncs included): fewer examples, still every kind of input.
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_config_bytes_are_an_error_and_the_block_stays(
        scratch: Path, blocklist: bytes, main: bytes) -> None:
    paths = _fresh(scratch, "config")
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    engine = Engine(paths, clock)
    try:
        engine.boot()
        assert engine.handle({"cmd": "start"}, ROOT)["ok"]
        (paths.config_dir / "blocklist.yaml").write_bytes(blocklist)
        (paths.config_dir / "detoxd.yaml").write_bytes(main)
        try:
            load_config(paths.config_dir)
        except ConfigError as error:
            assert all(str(issue) for issue in error.issues)
        engine.reload()  # never raises, whatever the bytes
        clock.advance(1)
        engine.tick()
        assert _blocked(paths) >= NAMES  # the last good blocklist (and the ratchet) in force
        assert engine.status()["state"] == "active"
    finally:
        engine.shutdown()


state_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from([
        "{", "}", "[", "]", ",", ":", '"version"', "1", "2", "99", '"phase"', '"active"', '"idle"',
        '"ratchet"', '"file"', '"state.ratchet-00000000000000000000000000000000.json"', "null",
        "true", "-1", "1e400", '"started_at"', '"2026-03-02T09:00:00+00:00"', '"checkpoint"',
        '"names"', '"abc"', '"a b"', "NaN", "Infinity", '"\\u0000"',
    ]), max_size=60).map(lambda parts: "".join(parts).encode()),
)


@given(primary=state_bytes, backup=state_bytes, applied=state_bytes)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_state_bytes_never_crash_and_never_end_the_detox(
        scratch: Path, primary: bytes, backup: bytes, applied: bytes) -> None:
    paths = _fresh(scratch, "state")
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    engine = Engine(paths, clock)
    engine.boot()
    assert engine.handle({"cmd": "start"}, ROOT)["ok"]
    ends_at = engine.status()["ends_at"]
    engine.hosts.close()  # kill -9
    (paths.config_dir / "blocklist.yaml").write_bytes(b"domains: [\n")  # applied.json must serve
    for path, data in ((paths.state_file, primary), (paths.state_backup_file, backup),
                       (paths.applied_file, applied)):
        path.write_bytes(data)
        with contextlib.suppress(state_store.StateFileError):  # the only one a reader may raise
            state_store.load(path)
    again = Engine(paths, clock)
    try:
        again.boot()
        status = again.status()
        assert status["state"] == "active" and status["locked"] is True
        assert status["ends_at"] is not None and status["ends_at"] >= ends_at
        assert _blocked(paths) >= NAMES
    finally:
        again.shutdown()


@given(names=st.one_of(st.text(max_size=30), st.lists(st.text(max_size=20), max_size=5),
                       st.integers(), st.none(), st.dictionaries(st.text(max_size=5), st.integers())))
@settings(max_examples=300, deadline=None)
def test_checked_names_accepts_only_names_detoxd_writes(names: object) -> None:
    try:
        accepted = state_store.checked_names(names, "names")
    except (TypeError, ValueError):
        return
    assert isinstance(names, list)
    for name in accepted:
        assert state_store.is_valid_name(name)

"""Detecting and flushing resolver caches. dnsmasq against a real process is in
tests/integration/test_resolution.py; nscd and resolvectl are not installed here, so small
stand-in executables (shell scripts that record their arguments) take their place on PATH."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from detoxd.service import resolvers
from detoxd.service.resolvers import Environment, Outcome


def stand_in(directory: Path, name: str, exit_code: int = 0) -> Path:
    """An executable ``name`` that appends its arguments to ``name.calls`` and exits."""
    directory.mkdir(exist_ok=True)
    program = directory / name
    program.write_text(f'#!/bin/sh\necho "$@" >> "{directory / name}.calls"\n'
                       f'echo "{name} says no" >&2\nexit {exit_code}\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return directory / f"{name}.calls"


def fake_proc(tmp_path: Path, processes: dict[int, str]) -> Path:
    proc = tmp_path / "proc"
    for pid, name in processes.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(name + "\n")
    (proc / "self").mkdir(parents=True, exist_ok=True)  # non-numeric entries are skipped
    return proc


def test_dnsmasq_processes_are_found_by_name(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {12: "dnsmasq", 40: "bash", 7: "dnsmasq"})
    assert resolvers.dnsmasq_pids(proc) == [7, 12]


def test_a_dnsmasq_that_exited_meanwhile_is_not_a_failure(tmp_path: Path) -> None:
    gone = 2**22 + 1234  # above pid_max's default: no such process
    result = resolvers.flush_dnsmasq(Environment(proc=fake_proc(tmp_path, {gone: "dnsmasq"})))
    assert result.outcome is Outcome.FLUSHED


def test_nscd_is_flushed_with_its_invalidate_option(tmp_path: Path) -> None:
    calls = stand_in(tmp_path / "bin", "nscd")
    socket_file = tmp_path / "nscd.socket"
    socket_file.touch()
    environment = Environment(nscd_socket=socket_file, search_path=str(tmp_path / "bin"))
    assert resolvers.flush_nscd(environment).outcome is Outcome.FLUSHED
    assert calls.read_text() == "-i hosts\n"


def test_nscd_installed_but_not_running_is_absent(tmp_path: Path) -> None:
    calls = stand_in(tmp_path / "bin", "nscd")
    environment = Environment(nscd_socket=tmp_path / "none", search_path=str(tmp_path / "bin"))
    assert resolvers.flush_nscd(environment).outcome is Outcome.ABSENT
    assert not calls.exists()


def test_a_failing_flush_is_reported_with_its_message(tmp_path: Path) -> None:
    stand_in(tmp_path / "bin", "nscd", exit_code=3)
    (tmp_path / "nscd.socket").touch()
    result = resolvers.flush_nscd(Environment(nscd_socket=tmp_path / "nscd.socket",
                                              search_path=str(tmp_path / "bin")))
    assert result.outcome is Outcome.FAILED and result.detail == "exit 3: nscd says no"


def test_resolvectl_is_the_fallback_when_the_bus_does_not_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = stand_in(tmp_path / "bin", "resolvectl")
    (tmp_path / "resolve").mkdir()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    result = resolvers.flush_systemd_resolved(Environment(resolved_runtime_dir=tmp_path / "resolve",
                                                          search_path=str(tmp_path / "bin")))
    assert result.outcome is Outcome.FLUSHED and result.detail == "resolvectl flush-caches"
    assert calls.read_text() == "flush-caches\n"


def test_flush_all_never_raises(tmp_path: Path) -> None:
    unreadable = tmp_path / "proc-is-a-file"
    unreadable.write_text("")
    results = resolvers.flush_all(Environment(resolved_runtime_dir=tmp_path / "x", nscd_socket=tmp_path / "y",
                                              proc=unreadable, search_path=str(tmp_path)))
    assert [result.outcome for result in results] == [Outcome.ABSENT, Outcome.ABSENT, Outcome.FAILED]
    assert os.path.exists(unreadable)

"""Settings for the whole suite."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests import otheruser
from tests.skipgate import SkipGate, load

# CI (and `scripts/test`) use "ci": no per-example deadline — a loaded 2-core machine makes the
# default 200 ms deadline a flake — and the seed printed with every failure, to reproduce it.
settings.register_profile("ci", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=1000)
# `scripts/test --fast`: the inner loop; fewer examples, every property still exercised.
settings.register_profile("fast", deadline=None, max_examples=20)
# `scripts/mutation`: the same examples on every run (a score must not depend on chance) and no
# example database shared between the forked mutant runs.
settings.register_profile("mutation", deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# One per session (set in pytest_configure); report hooks get no config to find it on.
_gate = SkipGate([])


def pytest_configure(config: pytest.Config) -> None:
    global _gate
    _gate = SkipGate(load())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _gate.record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _gate.record(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    otheruser.remove()
    if _gate.refused() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = _gate.summary()
    if lines:
        terminalreporter.section("skips not allowed", sep="=", red=True, bold=True)
        for line in lines:
            terminalreporter.write_line(line, red=True)

"""The skip gate (tests/skipgate.py): which skips fail the run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.skipgate import ALLOW_LIST, Allowed, SkipGate, load

REPO = Path(__file__).resolve().parent.parent
NAMESPACE_TEST = "tests/x_namespace.py::test_inner"


def skipped(nodeid: str, reason: str) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("x.py", 1, "t"), {}, "skipped", ("x.py", 1, f"Skipped: {reason}"),
                             "setup")


def passed(nodeid: str) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("x.py", 1, "t"), {}, "passed", None, "call")


def gate() -> SkipGate:
    return SkipGate([Allowed(re.compile(r"its own PID namespace"), "covered inside", NAMESPACE_TEST)])


def test_a_skip_not_on_the_list_fails_and_says_what_to_do() -> None:
    checked = gate()
    checked.record(skipped("tests/a.py::test_a", "needs dnsmasq"))
    [(skip, why)] = checked.refused()
    assert (skip.nodeid, skip.reason) == ("tests/a.py::test_a", "needs dnsmasq")
    assert why == "not on skips-allowed.toml"
    summary = "\n".join(checked.summary())
    assert "'needs dnsmasq'" in summary and "tests/a.py::test_a" in summary and "scripts/setup" in summary


def test_an_allowed_skip_needs_its_covering_test_to_pass_in_the_same_run() -> None:
    checked = gate()
    checked.record(skipped("tests/x.py::test_b", "runs in its own PID namespace"))
    [(_, why)] = checked.refused()
    assert why == f"allowed only when {NAMESPACE_TEST} passes in the same run"
    checked.record(passed(NAMESPACE_TEST))
    assert checked.refused() == [] and checked.summary() == []


def test_a_collection_skip_counts_and_xfail_does_not() -> None:
    checked = gate()
    module = pytest.CollectReport("tests/m.py", "skipped", ("m.py", 3, "Skipped: could not import 'gi'"), [])
    checked.record(module)
    xfailed = skipped("tests/x.py::test_c", "known")
    xfailed.wasxfail = "known"  # type: ignore[attr-defined]
    checked.record(xfailed)
    assert [(skip.nodeid, skip.reason) for skip, _ in checked.refused()] == [
        ("tests/m.py", "could not import 'gi'")]


def test_a_malformed_entry_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "allowed.toml"
    path.write_text('[[allowed]]\nreason = "x"\n')
    with pytest.raises(ValueError, match=rf"{path}: entry 1 needs a 'reason' pattern and a 'why'"):
        load(path)


def test_the_allow_list_is_short_and_its_covering_tests_exist() -> None:
    allowed = load()
    assert 0 < len(allowed) <= 5, ALLOW_LIST
    for entry in allowed:
        assert entry.why.strip()
        if entry.covered_by is not None:
            path, _, name = entry.covered_by.partition("::")
            assert f"def {name}(" in (REPO / path).read_text(), entry.covered_by

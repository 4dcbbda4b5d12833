"""The connection cutter's requests and memory (the real cut: tests/integration/test_allowances_daemon.py).

Resolvers are passed in: a test must not resolve real names. ``ss`` is a missing program here, so
nothing on the machine is closed; what reaches it is checked through the report.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from detoxd.service import cutter


def fake_dns(table: dict[str, set[str]]) -> cutter.Resolver:
    def resolve(names: Collection[str]) -> set[str]:
        return {address for name in names for address in table.get(name, set())}
    return resolve


def test_nothing_to_ask_writes_nothing(tmp_path: Path) -> None:
    assert cutter.request_cut(tmp_path) is None
    assert not (tmp_path / "requests").exists()


def test_requests_are_private_json_in_order(tmp_path: Path) -> None:
    first = cutter.request_cut(tmp_path, opened=["x.com", "twitter.com"])
    second = cutter.request_cut(tmp_path, block=["x.com"])
    assert first is not None and second is not None
    assert sorted((tmp_path / "requests").iterdir()) == [first, second]
    assert first.stat().st_mode & 0o777 == 0o600
    assert json.loads(first.read_text()) == {"version": 1, "block": [], "open": ["x.com", "twitter.com"]}


def test_open_names_are_remembered_and_cut_when_blocked_again(tmp_path: Path) -> None:
    resolve = fake_dns({"x.com": {"192.0.2.1"}, "twitter.com": {"192.0.2.2", "2001:db8::2"}})
    cutter.request_cut(tmp_path, opened=["x.com", "twitter.com"])
    report = cutter.run(tmp_path, resolve=resolve, resolve_dns=fake_dns({}), ss="/nonexistent/ss")
    assert report.requests == 1 and report.report is None and report.remembered == 3
    assert not list((tmp_path / "requests").iterdir())
    cutter.request_cut(tmp_path, block=["twitter.com"])
    report = cutter.run(tmp_path, resolve=fake_dns({}), resolve_dns=fake_dns({}), ss="/nonexistent/ss")
    assert report.report is not None
    # The two remembered addresses reached ss (which is missing here), and were forgotten.
    assert "ss" in report.report.error or "No such file" in report.report.error
    assert report.remembered == 1
    assert json.loads((tmp_path / "addresses.json").read_text()) == {"x.com": ["192.0.2.1"]}


def test_names_added_by_an_edit_are_looked_up_through_dns(tmp_path: Path) -> None:
    cutter.request_cut(tmp_path, block=["reddit.com"])
    seen: list[set[str]] = []

    def dns(names: Collection[str]) -> set[str]:
        seen.append(set(names))
        return {"192.0.2.9"}

    report = cutter.run(tmp_path, resolve=fake_dns({}), resolve_dns=dns, ss="/nonexistent/ss")
    assert seen == [{"reddit.com"}]
    assert report.report is not None and report.report.error


def test_bad_requests_are_dropped_and_bad_names_never_used(tmp_path: Path) -> None:
    requests = tmp_path / "requests"
    requests.mkdir()
    (requests / "1.json").write_text("not json")
    names = ["x.com\n1.2.3.4", "-rf", "ok.example"]
    (requests / "2.json").write_text(json.dumps({"version": 1, "block": names}))
    seen: list[set[str]] = []

    def dns(names: Collection[str]) -> set[str]:
        seen.append(set(names))
        return set()

    report = cutter.run(tmp_path, resolve=fake_dns({}), resolve_dns=dns, ss="/nonexistent/ss")
    assert report.requests == 2
    assert seen == [{"ok.example"}]
    assert not list(requests.iterdir())


def test_a_cutter_that_never_runs_does_not_fill_the_disk(tmp_path: Path) -> None:
    for index in range(cutter.MAX_PENDING):
        assert cutter.request_cut(tmp_path, block=[f"n{index}.example"]) is not None
    assert cutter.request_cut(tmp_path, block=["one-more.example"]) is None

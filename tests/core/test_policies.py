"""Merging and unmerging browser policy documents (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detoxd.core import policies
from detoxd.core.policies import PolicyError, Record

FIREFOX, CHROME, CHROMIUM = policies.SPECS[:3]


def test_firefox_policy_merges_into_a_users_file_and_unmerges_to_it() -> None:
    users = {"policies": {"DisableTelemetry": True, "Homepage": {"URL": "https://example.org"}}}
    merged, record = policies.merge(users, FIREFOX)
    assert merged["policies"]["DNSOverHTTPS"] == {"Enabled": False, "Locked": True}
    assert merged["policies"]["DisableTelemetry"] is True
    assert users == {"policies": {"DisableTelemetry": True, "Homepage": {"URL": "https://example.org"}}}
    assert not record.created_file and record.created_containers == 0 and not record.had_previous
    assert policies.unmerge(merged, record, FIREFOX) == users


def test_a_users_own_secure_dns_setting_comes_back_afterwards() -> None:
    users = {"policies": {"DNSOverHTTPS": {"Enabled": True, "ProviderURL": "https://dns.example"}}}
    merged, record = policies.merge(users, FIREFOX)
    assert policies.is_applied(merged, FIREFOX)
    assert record.had_previous and record.previous == users["policies"]["DNSOverHTTPS"]
    assert policies.unmerge(merged, record, FIREFOX) == users


def test_a_file_detoxd_created_goes_away_when_nothing_else_was_added() -> None:
    merged, record = policies.merge(None, FIREFOX)
    assert merged == {"policies": {"DNSOverHTTPS": {"Enabled": False, "Locked": True}}}
    assert record.created_file and record.created_containers == 1
    assert policies.unmerge(merged, record, FIREFOX) is None


def test_a_file_detoxd_created_stays_when_the_user_added_policies_to_it() -> None:
    merged, record = policies.merge(None, FIREFOX)
    merged["policies"]["DisableTelemetry"] = True
    assert policies.unmerge(merged, record, FIREFOX) == {"policies": {"DisableTelemetry": True}}


def test_chrome_policy_is_one_key_of_its_own_file() -> None:
    merged, record = policies.merge(None, CHROME)
    assert merged == {"DnsOverHttpsMode": "off"}
    assert policies.unmerge(merged, record, CHROME) is None
    assert CHROMIUM.file.startswith("etc/chromium/policies/managed/")


def test_a_value_changed_by_someone_else_is_left_alone() -> None:
    merged, record = policies.merge({"policies": {}}, FIREFOX)
    merged["policies"]["DNSOverHTTPS"] = {"Enabled": True}
    assert policies.unmerge(merged, record, FIREFOX) == merged


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"policies"'])
def test_a_file_that_is_not_a_json_object_is_never_taken_over(text: str) -> None:
    with pytest.raises(PolicyError, match="left alone"):
        policies.parse(text, "policies.json")


def test_a_policies_key_that_is_not_an_object_is_never_overwritten() -> None:
    with pytest.raises(PolicyError, match="policies is not an object"):
        policies.merge({"policies": ["DisableTelemetry"]}, FIREFOX)


def test_an_empty_file_holds_no_policy() -> None:
    assert policies.parse("  \n", "policies.json") == {}
    assert policies.parse(None, "policies.json") is None


def test_records_survive_their_json_form() -> None:
    _, record = policies.merge({"policies": {"DNSOverHTTPS": {"Enabled": True}}}, FIREFOX)
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=12), json_values, max_size=4),
       st.one_of(st.none(), st.dictionaries(st.text(max_size=12), json_values, max_size=4)))
def test_merge_then_unmerge_gives_back_the_users_document(top: dict[str, Any],
                                                          inner: dict[str, Any] | None) -> None:
    document: dict[str, Any] = dict(top)
    if inner is not None:
        document["policies"] = inner
    elif "policies" in document and not isinstance(document["policies"], dict):
        del document["policies"]
    merged, record = policies.merge(document, FIREFOX)
    assert policies.is_applied(merged, FIREFOX)
    assert policies.unmerge(merged, record, FIREFOX) == document


def test_the_file_is_written_as_indented_json_or_given_back_byte_for_byte() -> None:
    document = {"policies": {"Homepage": "ü"}}
    assert policies.render(document) == '{\n  "policies": {\n    "Homepage": "ü"\n  }\n}\n'
    original = '{"policies":{"Homepage":"ü"}}'  # the user's own layout
    record = Record("f.json", ("policies", "DNSOverHTTPS"), False, 0, False, original_text=original)
    assert policies.render(document, record) == original  # nothing else changed: their bytes
    assert policies.render({"policies": {}}, record) == '{\n  "policies": {}\n}\n'
    broken = Record("f.json", ("policies", "DNSOverHTTPS"), False, 0, False, original_text="{not json")
    assert policies.render(document, broken) == policies.render(document)
    assert policies.render(document, Record("f.json", ("a",), False, 0, False)) == policies.render(document)


def test_tampering_is_undone_without_touching_the_rest() -> None:
    tampered = {"policies": {"DNSOverHTTPS": {"Enabled": True}, "DisableTelemetry": True}}
    assert policies.reapply(tampered, FIREFOX)[0] == {
        "policies": {"DNSOverHTTPS": {"Enabled": False, "Locked": True}, "DisableTelemetry": True}}
    assert tampered["policies"]["DNSOverHTTPS"] == {"Enabled": True}  # a copy, not the argument
    assert policies.reapply(None, CHROME)[0] == {"DnsOverHttpsMode": "off"}


def test_a_broken_file_or_record_is_refused_with_the_reason() -> None:
    assert policies.parse(None, "f.json") is None
    assert policies.parse(" \n", "f.json") == {}
    with pytest.raises(PolicyError) as raised:
        policies.parse("[1]", "etc/x.json")
    assert str(raised.value) == "etc/x.json: expected a JSON object: left alone"
    with pytest.raises(PolicyError) as raised:
        policies.parse("{", "etc/x.json")
    assert str(raised.value).startswith("etc/x.json: not valid JSON (") and str(raised.value).endswith(
        "): left alone")
    with pytest.raises(PolicyError) as raised:
        policies.merge({"policies": "off"}, FIREFOX)
    assert str(raised.value) == "etc/firefox/policies/policies.json: policies is not an object: left alone"
    good = Record("f.json", ("a", "b"), True, 2, True, {"x": 1}, "{}").to_json()
    assert good == {"file": "f.json", "key_path": ["a", "b"], "created_file": True, "created_containers": 2,
                    "had_previous": True, "previous": {"x": 1}, "original_text": "{}"}
    assert Record.from_json({**good, "previous": None, "original_text": None}) == Record(
        "f.json", ("a", "b"), True, 2, True, None, None)
    for key_path in ([], ["a", 1]):
        with pytest.raises(ValueError) as error:
            Record.from_json({**good, "key_path": key_path})
        assert str(error.value) == f"invalid key path {key_path!r}"


def test_paths_join_a_users_firefox_website_filter_and_leave_it_as_it_was() -> None:
    spec = policies.path_specs(("linkedin.com/feed",))[0]
    assert spec.key_path == ("policies", "WebsiteFilter", "Block")
    users = {"policies": {"WebsiteFilter": {"Block": ["*://*.example.org/*"], "Exceptions": ["x"]}}}
    merged, record = policies.merge(users, spec)
    assert merged["policies"]["WebsiteFilter"]["Block"] == ["*://*.example.org/*", "*://*.linkedin.com/feed*"]
    assert record.added == ("*://*.linkedin.com/feed*",)
    assert policies.is_applied(merged, spec, record)
    assert policies.unmerge(merged, record, spec) == users


def test_chromium_family_paths_are_url_blocklist_entries_in_detoxds_own_files() -> None:
    specs = policies.path_specs(("linkedin.com/feed", "youtube.com/shorts"))
    chromium = [spec for spec in specs if spec.browser != policies.FIREFOX]
    assert {spec.browser for spec in chromium} == {"chrome", "chromium", "brave", "edge", "vivaldi",
                                                   "chromium (snap)"}
    merged, record = policies.merge({"DnsOverHttpsMode": "off"}, chromium[0])
    assert merged == {"DnsOverHttpsMode": "off", "URLBlocklist": ["linkedin.com/feed", "youtube.com/shorts"]}
    assert policies.unmerge(merged, record, chromium[0]) == {"DnsOverHttpsMode": "off"}
    assert policies.path_specs(()) == ()


def test_a_grown_path_list_is_added_and_a_shrunk_one_taken_out_keeping_the_users_entries() -> None:
    first = policies.path_specs(("a.example.com/x",))[1]
    merged, record = policies.merge({"URLBlocklist": ["users.example/y"]}, first)
    grown = policies.path_specs(("a.example.com/x", "b.example.com/z"))[1]
    assert not policies.is_applied(merged, grown, record)
    merged, updated = policies.reapply(merged, grown, record)
    assert updated is not None and updated.added == ("a.example.com/x", "b.example.com/z")
    shrunk = policies.path_specs(("b.example.com/z",))[1]
    merged, updated = policies.reapply(merged, shrunk, updated)
    assert merged == {"URLBlocklist": ["users.example/y", "b.example.com/z"]}
    assert updated is not None and updated.added == ("b.example.com/z",)
    assert policies.unmerge(merged, updated, shrunk) == {"URLBlocklist": ["users.example/y"]}
    assert Record.from_json(updated.to_json()) == updated

from collections.abc import Iterator

import pytest
import yaml

from detoxd.core import yamlsource
from detoxd.core.yamlsource import MAX_NODES, ConfigIssue, Source, as_mapping, parse_document


def parse(text: str) -> tuple[object, Source]:
    source = Source("x.yaml")
    return parse_document(text, source), source


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both of PyYAML's parsers: what users read must not depend on which one is underneath."""
    if request.param == "libyaml":
        # Both dependency sets (Debian's python3-yaml, PyPI's wheel) have it: never skipped.
        assert yaml.__with_libyaml__, "this PyYAML has no C parser: the libyaml case is not tested"
        monkeypatch.setattr(yamlsource, "_Loader", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    yield request.param


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    _, source = parse("detox:\n  days: 3\ndetox:\n  days: 4\n")
    assert [str(i) for i in source.errors] == [
        "x.yaml:3: detox: duplicate key (first defined on line 1)"]


def test_syntax_error_names_the_line(parser: str) -> None:
    root, source = parse("a: 1\nb: [unclosed\nc: 3\n")
    assert root is None
    assert source.errors[0].line >= 2
    assert "YAML syntax error" in source.errors[0].message


BROKEN = (
    "a: 1\nb: [unclosed\nc: 3\n",
    "a: 1\n  b: 2\n",
    "a: 1\nb: - - x\n",
    "a: 'open\n",
    "- a\nb: 1\n",
    "a: {b: 1\n",
    "a: *undefined\n",
    "a: 1\n---\nb: 2\n",
    "a: !!python/name:os.system x\n",
    "a: 1\nb: " + "{x: " * 3_000,
    "a: 1\nb: \x1b\n",
    "\t- a\n",
    "? [a]\n: 1\n",
    "a: 1\na: 2\nb: [\n",  # a duplicate key found before the parser stops: reported once
)


@pytest.mark.parametrize("text", BROKEN)
def test_errors_read_the_same_whichever_parser_is_underneath(
        text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert yaml.__with_libyaml__, "this PyYAML has no C parser: the libyaml case is not tested"
    worded = {}
    for name, loader in (("libyaml", yaml.CSafeLoader), ("pure-python", yaml.SafeLoader)):
        monkeypatch.setattr(yamlsource, "_Loader", loader)
        _, source = parse(text)
        assert source.errors, (name, text)
        worded[name] = [str(issue) for issue in source.issues]
    assert worded["libyaml"] == worded["pure-python"]
    assert all(message.startswith("x.yaml:") for message in worded["libyaml"])


def test_python_tags_are_refused_by_the_safe_loader() -> None:
    root, source = parse("x: !!python/object/apply:os.system ['true']\n")
    assert root is None
    assert source.errors


def test_billion_laughs_is_cut_off() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        refs = ", ".join(f"*a{level - 1}" for _ in range(10))
        lines.append(f"a{level}: &a{level} [{refs}]")
    root, source = parse("\n".join(lines) + "\n")
    assert root is None
    assert str(MAX_NODES) in source.errors[0].message


def test_unknown_keys_reported_with_their_line() -> None:
    root, source = parse("known: 1\ntypo: 2\n")
    assert root is not None
    fields = as_mapping(source, root, "", {"known"})  # type: ignore[arg-type]
    assert fields is not None and set(fields) == {"known"}
    assert str(source.errors[0]) == "x.yaml:2: typo: unknown key (expected one of: known)"


def test_private_issue_is_redacted_for_unprivileged_readers() -> None:
    issue = ConfigIssue("list.txt", 4, "lists[0]", "'secret stuff' is not a valid domain name",
                        private=True)
    assert "secret" not in str(issue.redacted())
    assert str(issue.redacted()).startswith("list.txt:4: lists[0]:")


def test_an_anchored_string_referenced_many_times_is_refused_while_composing() -> None:
    import time

    text = "a: &x " + "x" * 400_000 + "\nb: [" + ", ".join(["*x"] * 2000) + "]\n"
    started = time.monotonic()
    root, source = parse(text)
    assert time.monotonic() - started < 2
    assert root is None
    assert "characters of text (too many aliases?)" in source.errors[0].message
    assert source.errors[0].line == 2


def test_recursive_alias_deep_nesting_and_forbidden_characters_are_errors_with_lines(parser: str) -> None:
    for text, line, words in (
        ("ok: 1\nd: &a [*a]\n", 2, "contains it"),
        # PyPI's libyaml stops at 1,000 levels while scanning ahead; Debian's has no limit
        ("a: 1\nb: " + "[" * 10_000, 2, "nested more than 64 levels deep"),
        ("a: 1\nb:\n" + "".join(" " * level + "- \n" for level in range(2_000)), 66, "levels deep"),
        ("a: 1\nb: [\n" + "[\n" * 70 + "[" * 2_000, 65, "levels deep"),
        ("a: 1\nb: x\x01\n", 2, "U+0001 is not allowed"),
        ("a: 1\n\nb: '\ufffe'\n", 3, "U+FFFE is not allowed"),
        ("a: é\nb: \x00\n", 2, "U+0000 is not allowed"),  # the C reader counts bytes, not characters
        ("a: 2026-02-30\n", 1, "cannot read the value"),
    ):
        root, source = parse(text)
        assert root is None, text[:20]
        assert source.errors[0].line == line and words in source.errors[0].message, source.errors


def test_errors_past_the_limit_are_counted_in_one_summary() -> None:
    from detoxd.core.yamlsource import MAX_ERRORS_PER_FILE, ConfigError

    source = Source("x.yaml")
    for number in range(MAX_ERRORS_PER_FILE + 40):
        source.error(number + 1, "", "bad")
    error = ConfigError(source.issues)
    assert error.total == MAX_ERRORS_PER_FILE + 40
    assert str(error.issues[-1]) == "x.yaml: and 40 more errors"


def test_an_issue_reads_file_line_path_and_message() -> None:
    assert str(ConfigIssue("a.yaml", 3, "detox.days", "bad")) == "a.yaml:3: detox.days: bad"
    assert str(ConfigIssue("a.yaml", 0, "", "unreadable")) == "a.yaml: unreadable"
    assert str(ConfigIssue("a.yaml", 1, "", "odd", "warning")) == "a.yaml:1: warning: odd"


def test_a_private_issue_shows_only_its_position_and_a_private_path_not_even_that() -> None:
    plain = ConfigIssue("list.txt", 4, "lists[0]", "'a b' is not a valid domain name", "warning")
    assert plain.redacted() is plain
    private = plain.as_private()
    assert private == ConfigIssue("list.txt", 4, "lists[0]", "'a b' is not a valid domain name", "warning",
                                  private=True, summary=False, path_private=True)
    hidden = "invalid entry (details visible to root only)"
    assert private.redacted() == ConfigIssue("list.txt", 4, "", hidden, "warning")
    summary = ConfigIssue("list.txt", 0, "lists[0]", "and 3 more errors", private=True, summary=True)
    assert summary.redacted() == ConfigIssue("list.txt", 0, "lists[0]", hidden, summary=True)
    assert summary.as_private().summary is True


def test_a_config_error_keeps_200_issues_in_reading_order_and_counts_the_rest() -> None:
    from detoxd.core.yamlsource import MAX_REPORTED_ISSUES, ConfigError

    assert MAX_REPORTED_ISSUES == 200
    exactly = [ConfigIssue("b.yaml", n, "", "bad") for n in range(200, 0, -1)]
    error = ConfigError(exactly)
    assert error.total == 200 and [issue.line for issue in error.issues] == list(range(1, 201))
    assert str(error).split("\n")[:2] == ["b.yaml:1: bad", "b.yaml:2: bad"]
    # One more, in another file that sorts first, and a summary standing for 40 more.
    summary = ConfigIssue("a.yaml", 0, "", "and 40 more errors", summary=True)
    error = ConfigError([*exactly, summary, ConfigIssue("a.yaml", 9, "", "first")],
                        warnings=[ConfigIssue("a.yaml", 1, "", "w", "warning")] * 201)
    assert error.total == 200 + 40 + 1
    assert [str(issue) for issue in error.issues[:2]] == ["a.yaml:9: first", "a.yaml: and 40 more errors"]
    assert len(error.issues) == 201 and error.issues[-2].line == 198
    assert error.issues[-1] == ConfigIssue("b.yaml", 0, "", "and 2 more errors", summary=True)
    assert len(error.warnings) == 200
    # Only "and N more errors" stands for N: words not checked are no errors known.
    not_checked = ConfigIssue("a.yaml", 0, "", "and 7 more words not checked", summary=True)
    assert ConfigError([not_checked]).total == 1
    assert ConfigError([ConfigIssue("a.yaml", 0, "", "and 7 more errors")]).total == 1  # no summary
    assert ConfigError([ConfigIssue("a.yaml", 0, "", "and many more errors", summary=True)]).total == 1

from detoxd.core.yamlsource import MAX_NODES, ConfigIssue, Source, as_mapping, parse_document


def parse(text: str) -> tuple[object, Source]:
    source = Source("x.yaml")
    return parse_document(text, source), source


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    _, source = parse("detox:\n  days: 3\ndetox:\n  days: 4\n")
    assert [str(i) for i in source.errors] == [
        "x.yaml:3: detox: duplicate key (first defined on line 1)"]


def test_syntax_error_names_the_line() -> None:
    root, source = parse("a: 1\nb: [unclosed\nc: 3\n")
    assert root is None
    assert source.errors[0].line >= 2
    assert "YAML syntax error" in source.errors[0].message


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

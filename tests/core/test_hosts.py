"""detoxd.core.hosts: the block, byte-exact round trips, and every kind of damage a tamperer can do."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detoxd.core.hosts import (
    BEGIN_MARKER,
    BEGIN_MARKER_AFTER_UNTERMINATED_LINE,
    END_MARKER,
    NEUTRALISED_MARKER,
    apply,
    merge,
    newline_of,
    render_block,
    split,
    strip,
)

USER = b"127.0.0.1\tlocalhost\n# my comment\n192.168.1.10 nas.home nas\n::1 localhost\n"
NAMES = ["twitter.com", "facebook.com"]
BLOCK = render_block(NAMES)
MARKERS = (BEGIN_MARKER, BEGIN_MARKER_AFTER_UNTERMINATED_LINE, END_MARKER)


def lines_of(text: bytes) -> list[bytes]:
    """Line contents, without terminators: for 'every user line survives'."""
    return [line.removesuffix(b"\r") for line in text.split(b"\n") if line]


def without_line(text: bytes, line: bytes) -> bytes:
    return b"".join(part for part in text.splitlines(keepends=True) if part.rstrip(b"\r\n") != line)


# ---- strategies ----

host_names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,8}(\.[a-z][a-z0-9]{1,4}){1,2}", fullmatch=True)
name_sets = st.sets(host_names, max_size=12)


def _marker_lookalikes() -> st.SearchStrategy[bytes]:
    marker = st.sampled_from(MARKERS)
    return st.one_of(
        st.builds(lambda m, n: m[:n], marker, st.integers(0, 80)),  # prefixes
        st.builds(lambda m, n: m[n:], marker, st.integers(1, 80)),  # suffixes
        st.builds(lambda m, s: m + s, marker, st.sampled_from([b"x", b" #", b"\xff", b":"])),
        st.builds(lambda m, s: s + m, marker, st.sampled_from([b"x", b"#", b"\xff"])),
        st.builds(lambda m: m.replace(b"detoxd", b"detox"), marker),
        st.builds(lambda m: m.lower(), marker),
    )


line_contents = st.one_of(
    st.binary(max_size=24).map(lambda raw: raw.replace(b"\n", b"")),
    st.sampled_from([b"", b"#", b"127.0.0.1\tlocalhost", b"::1 ip6-localhost", b"\t  ",
                     b"0.0.0.0 example.org", b":: example.org", b"\xff\xfe caf\xe9", b"\r"]),
    _marker_lookalikes(),
)


def _is_marker(content: bytes) -> bool:
    """A line detoxd owns by its text: a marker, or a line it neutralised (which strip gives back
    without the prefix, by design). Hypothesis mines such constants from the code under test."""
    return content.strip(b" \t\r") in MARKERS or content.startswith(NEUTRALISED_MARKER)


@st.composite
def user_texts(draw: st.DrawFn) -> bytes:
    contents = draw(st.lists(line_contents, max_size=8))
    assume(not any(_is_marker(content) for content in contents))
    endings = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in contents]
    text = b"".join(content + ending for content, ending in zip(contents, endings, strict=True))
    if contents and draw(st.booleans()):  # the last line without its newline
        text = text.removesuffix(endings[-1])
    return text


newlines = st.sampled_from([b"\n", b"\r\n"])


def has_entry_for(text: bytes, names: set[str]) -> bool:
    entries = {f"{address} {name}".encode() for name in names for address in ("0.0.0.0", "::")}
    return any(content in entries for content in lines_of(text))


# ---- properties ----


@given(user_texts(), name_sets, newlines)
def test_strip_gives_back_the_exact_user_text(user: bytes, names: set[str], newline: bytes) -> None:
    merged = merge(user, render_block(names, newline))
    assert strip(merged, names) == user
    assert strip(merged) == user  # an intact block needs no name list


@given(user_texts(), name_sets, newlines)
def test_applying_the_same_block_again_changes_nothing(
    user: bytes, names: set[str], newline: bytes
) -> None:
    block = render_block(names, newline)
    merged = merge(user, block)
    assert apply(merged, block, names) is merged
    assert apply(merged, block) is merged
    assert apply(user, block) == merged


@given(user_texts(), name_sets, newlines)
def test_every_user_line_survives_merge(user: bytes, names: set[str], newline: bytes) -> None:
    merged = merge(user, render_block(names, newline))
    assert merged.startswith(user)  # every user byte, in place
    added = merged[len(user):]
    if not user or user.endswith(b"\n"):
        assert added.startswith(BEGIN_MARKER + newline)
    else:  # the block still starts a line of its own
        assert added.startswith(newline + BEGIN_MARKER_AFTER_UNTERMINATED_LINE + newline)


@given(user_texts(), name_sets, name_sets, newlines)
def test_a_new_name_set_keeps_the_user_text(
    user: bytes, first: set[str], second: set[str], newline: bytes
) -> None:
    block = render_block(second, newline)
    changed = apply(merge(user, render_block(first, newline)), block, first)
    assert strip(changed, first | second) == user
    assert split(changed).names == frozenset(second)
    assert apply(changed, block) is changed


@given(user_texts(), name_sets, user_texts())
def test_user_text_added_after_the_block_keeps_its_place(
    user: bytes, names: set[str], appended: bytes
) -> None:
    assume(appended)
    block = render_block(names)
    edited = merge(user, block) + appended
    assert apply(edited, block, names) is edited  # the block did not change: no write
    expected_user = user + (b"" if not user or user.endswith(b"\n") else b"\n") + appended
    assert strip(edited, names) == expected_user


@given(user_texts(), name_sets, newlines, st.sampled_from(["begin", "end", "both"]))
def test_a_deleted_marker_removes_only_detoxds_lines(
    user: bytes, names: set[str], newline: bytes, deleted: str
) -> None:
    assume(not has_entry_for(user, names))
    merged = merge(user, render_block(names, newline))
    damaged = merged
    if deleted in ("begin", "both"):
        damaged = without_line(without_line(damaged, BEGIN_MARKER),
                               BEGIN_MARKER_AFTER_UNTERMINATED_LINE)
    if deleted in ("end", "both"):
        damaged = without_line(damaged, END_MARKER)
    repaired = strip(damaged, names)
    # Without the begin marker nothing says the newline after the user's last line was ours.
    assert repaired in (user, user + newline)
    if deleted == "end":
        assert repaired == user
    assert apply(damaged, render_block(names, newline), names) == merge(repaired,
                                                                        render_block(names, newline))


@given(user_texts(), name_sets, st.lists(line_contents, max_size=4), st.integers(0, 30))
def test_edits_inside_an_intact_block_are_all_detoxds(
    user: bytes, names: set[str], inserted: list[bytes], at_line: int
) -> None:
    assume(not any(_is_marker(content) for content in inserted))
    merged = merge(user, render_block(names))
    begin = merged.index(b"\n", len(user) + 1) + 1  # after the begin marker line
    body_lines = merged[begin:].splitlines(keepends=True)[:-1]  # up to the end marker
    position = begin + sum(len(line) for line in body_lines[: at_line % (len(body_lines) + 1)])
    edited = merged[:position] + b"".join(content + b"\n" for content in inserted) + merged[position:]
    assert strip(edited, names) == user
    assert apply(edited, render_block(names), names) == merged


@given(user_texts(), name_sets, st.data())
def test_a_truncated_file_keeps_the_user_text(user: bytes, names: set[str], data: st.DataObject) -> None:
    assume(not has_entry_for(user, names) and names)
    merged = merge(user, render_block(names))
    begin = merged.index(b"# BEGIN detoxd", len(user))
    cut = data.draw(st.integers(begin + len(b"# BEGIN detoxd"), len(merged)))
    repaired = strip(merged[:cut], names)
    assert repaired in (user, user + b"\n")


# ---- rendering ----


def test_render_sorts_deduplicates_and_lowercases() -> None:
    block = render_block(["b.example", "A.example", "a.example", "B.EXAMPLE"])
    assert block == (
        BEGIN_MARKER + b"\n"
        b"0.0.0.0 a.example\n0.0.0.0 b.example\n"
        b":: a.example\n:: b.example\n"
        + END_MARKER + b"\n"
    )


def test_render_does_not_depend_on_input_order_or_type() -> None:
    names = [f"site{number}.example" for number in range(500)]
    assert render_block(names) == render_block(reversed(names)) == render_block(frozenset(names))
    assert render_block(iter(names)) == render_block(names)


def test_render_uses_the_requested_newline_on_every_line() -> None:
    block = render_block(["x.example", "y.example"], b"\r\n")
    assert block.count(b"\n") == block.count(b"\r\n") == 6
    assert render_block(["x.example"], b"\r\n").replace(b"\r\n", b"\n") == render_block(["x.example"])


def test_an_empty_name_set_renders_just_the_markers() -> None:
    assert render_block([]) == BEGIN_MARKER + b"\n" + END_MARKER + b"\n"
    assert split(merge(USER, render_block([]))).names == frozenset()


@pytest.mark.parametrize("bad", ["", "a b.com", "a\nb.com", "a.com\n", "evil.com #x",
                                 "\r.com", "b\u00fc.de", "x:y", "tab\t.com", "a\n\nb"])
def test_render_refuses_names_that_could_escape_their_line(bad: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        render_block(["good.example", bad])


def test_render_refuses_other_newlines() -> None:
    with pytest.raises(ValueError):
        render_block(["a.example"], b"\r")


def test_render_handles_many_names_exactly() -> None:
    names = [f"host{number}.example" for number in range(100_000)]
    block = render_block(names + names[:1000])
    assert block.count(b"\n") == 2 * len(names) + 2
    assert split(merge(USER, block)).names == frozenset(names)


def test_newline_of_follows_the_first_line() -> None:
    assert newline_of(b"a\r\nb\n") == b"\r\n"
    assert newline_of(b"a\nb\r\n") == b"\n"
    assert newline_of(b"") == b"\n"
    assert newline_of(b"no newline") == b"\n"
    assert newline_of(b"\r\n") == b"\r\n"
    assert newline_of(b"\n") == b"\n"
    assert newline_of(b"\nlast line ends in CR\r") == b"\n"  # an empty first line is LF


# ---- merging and applying ----


def test_merge_appends_the_block() -> None:
    assert merge(USER, BLOCK) == USER + BLOCK
    assert merge(b"", BLOCK) == BLOCK


def test_merge_after_an_unterminated_line_says_it_added_the_newline() -> None:
    merged = merge(b"10.0.0.1 printer", BLOCK)
    assert merged.startswith(b"10.0.0.1 printer\n" + BEGIN_MARKER_AFTER_UNTERMINATED_LINE + b"\n")
    assert strip(merged) == b"10.0.0.1 printer"


def test_merge_in_a_crlf_file_adds_a_crlf() -> None:
    merged = merge(b"a\r\nb", render_block(NAMES, b"\r\n"))
    assert merged.startswith(b"a\r\nb\r\n" + BEGIN_MARKER_AFTER_UNTERMINATED_LINE + b"\r\n")
    assert strip(merged) == b"a\r\nb"


def test_merge_refuses_a_block_it_did_not_render() -> None:
    with pytest.raises(ValueError):
        merge(USER, b"0.0.0.0 facebook.com\n")


def test_apply_returns_the_same_object_when_in_sync() -> None:
    text = merge(USER, BLOCK)
    assert apply(text, BLOCK) is text


def test_apply_replaces_a_stale_block_in_place() -> None:
    stale = merge(USER, render_block(["old.example"])) + b"10.1.1.1 after.home\n"
    assert apply(stale, BLOCK) is not stale
    assert apply(stale, BLOCK) == USER + BLOCK + b"10.1.1.1 after.home\n"


def test_a_block_the_user_moved_to_the_top_stays_there() -> None:
    moved = BLOCK + USER
    assert apply(moved, BLOCK) is moved
    assert strip(moved) == USER


@pytest.mark.parametrize("text", [
    USER,
    USER + render_block(["facebook.com"]),
    USER + BLOCK + BLOCK,
    USER + BLOCK.replace(b"0.0.0.0 twitter.com\n", b""),
    without_line(USER + BLOCK, END_MARKER),
    USER + BLOCK + END_MARKER + b"\n",
    (USER + BLOCK).replace(b"\n", b"\r\n"),
])
def test_apply_rewrites_anything_but_exactly_the_block(text: bytes) -> None:
    assert apply(text, BLOCK) is not text
    fixed = apply(text, BLOCK, NAMES)
    assert apply(fixed, BLOCK) is fixed


def test_apply_keeps_the_added_newline_marker_while_text_follows_the_block() -> None:
    merged = merge(b"last", BLOCK) + b"appended\n"
    replaced = apply(merged, render_block(["x.example"]), NAMES)
    assert replaced.startswith(b"last\n" + BEGIN_MARKER_AFTER_UNTERMINATED_LINE + b"\n")
    # Once the appended line goes, detoxd's newline goes too: the user's bytes come back.
    assert strip(replaced.removesuffix(b"appended\n")) == b"last"


# ---- finding ----


def test_split_reports_user_text_block_and_names() -> None:
    parsed = split(USER + BLOCK + b"after\n")
    assert parsed.user_text == USER + b"after\n"
    assert parsed.block == BLOCK
    assert parsed.block_at == len(USER)
    assert parsed.names == frozenset(NAMES)


def test_split_without_block() -> None:
    parsed = split(USER)
    assert (parsed.user_text, parsed.block, parsed.block_at, parsed.names) == (
        USER, None, None, frozenset())


def test_markers_are_found_despite_padding_and_cr() -> None:
    padded = USER + BLOCK.replace(BEGIN_MARKER + b"\n", b"  " + BEGIN_MARKER + b"\t\r\n")
    assert strip(padded) == USER


@pytest.mark.parametrize("lookalike", [
    b"# BEGIN detoxd block", BEGIN_MARKER + b" (mine)", b"#" + END_MARKER, END_MARKER.lower(),
    b"# END detoxd blocks", b"## BEGIN detoxd block: managed by detoxd, edits are reverted",
])
def test_lines_that_only_resemble_markers_are_the_users(lookalike: bytes) -> None:
    user = USER + lookalike + b"\n"
    assert strip(merge(user, BLOCK), NAMES) == user
    assert strip(user, NAMES) == user


def test_the_users_own_entry_for_a_blocked_name_is_kept_outside_an_intact_block() -> None:
    user = USER + b"0.0.0.0 facebook.com\n"
    assert strip(merge(user, BLOCK), NAMES) == user


def test_non_utf8_and_crlf_user_text_round_trips() -> None:
    user = b"\xff\xfe\r\n127.0.0.1 caf\xe9\r\n\tweird\x00line"
    assert strip(merge(user, render_block(NAMES, newline_of(user))), NAMES) == user


# ---- damage ----


def test_deleted_begin_marker_keeps_edited_lines_and_user_lines() -> None:
    damaged = USER + BLOCK.replace(BEGIN_MARKER + b"\n", b"").replace(
        b"0.0.0.0 twitter.com", b"#0.0.0.0 twitter.com")
    assert strip(damaged, NAMES) == USER + b"#0.0.0.0 twitter.com\n"


def test_deleted_end_marker_removes_entries_to_the_end_only() -> None:
    damaged = without_line(USER + BLOCK, END_MARKER) + b"10.9.9.9 mine.home\n"
    assert strip(damaged, NAMES) == USER + b"10.9.9.9 mine.home\n"


def test_orphan_end_marker_spares_entries_before_an_earlier_intact_block() -> None:
    # Entries of the user's own before an intact block are theirs, even with debris later.
    user = b"0.0.0.0 facebook.com\n"
    damaged = user + BLOCK + b"0.0.0.0 twitter.com\n" + END_MARKER + b"\n"
    assert strip(damaged, NAMES) == user


def test_both_markers_deleted_removes_detoxds_entry_lines_everywhere() -> None:
    damaged = without_line(without_line(USER + BLOCK, BEGIN_MARKER), END_MARKER)
    assert strip(damaged, NAMES) == USER
    # Documented cost: the user's own identical line goes with them ...
    assert strip(b"0.0.0.0 facebook.com\n" + damaged, NAMES) == USER
    # ... but lines that merely mention a blocked name stay.
    kept = b"0.0.0.0  facebook.com\n0.0.0.0 facebook.com.evil\n127.0.0.1 facebook.com\n"
    assert strip(kept + damaged, NAMES) == kept + USER


def test_without_managed_names_a_file_without_markers_is_all_the_users() -> None:
    damaged = without_line(without_line(USER + BLOCK, BEGIN_MARKER), END_MARKER)
    assert strip(damaged) == damaged


def test_duplicated_block_is_removed_whole() -> None:
    assert strip(USER + BLOCK + b"x\n" + BLOCK, NAMES) == USER + b"x\n"


def test_two_begin_markers_the_first_one_orphaned() -> None:
    damaged = USER + BEGIN_MARKER + b"\n0.0.0.0 twitter.com\nkept line\n" + BLOCK
    assert strip(damaged, NAMES) == USER + b"kept line\n"
    assert split(damaged).block == BLOCK


@pytest.mark.parametrize(("tail", "expected_tail"), [
    (b"0.0.0.0 twit", b""),  # mid entry
    (b"0.0", b""),  # mid address
    (b":: ", b""),
    (b"# END detox", b""),  # mid end marker
    (b"0.0.0.0 twitter.comX", b"0.0.0.0 twitter.comX"),  # not a prefix of an entry: kept
    (b"0.0.0.0 zzz", b"0.0.0.0 zzz"),  # not a managed name: kept
])
def test_truncated_inside_the_block(tail: bytes, expected_tail: bytes) -> None:
    truncated = USER + BEGIN_MARKER + b"\n0.0.0.0 facebook.com\n" + tail
    assert strip(truncated, NAMES) == USER + expected_tail


def test_truncated_inside_the_begin_marker() -> None:
    assert strip(USER + BEGIN_MARKER[:30], NAMES) == USER
    assert strip(USER + b"# BEGIN detoxd", NAMES) == USER
    # Too short to be sure it is detoxd's: the user might have typed it.
    assert strip(USER + b"# BEGIN", NAMES) == USER + b"# BEGIN"
    # And only when detoxd manages names (so the block should be there).
    assert strip(USER + BEGIN_MARKER[:30]) == USER + BEGIN_MARKER[:30]


def test_truncated_after_an_added_newline_marker_restores_the_unterminated_line() -> None:
    merged = merge(b"last", BLOCK)
    for cut in range(merged.index(b"\n0.0.0.0") + 1, len(merged) + 1):
        assert strip(merged[:cut], NAMES) == b"last", cut



def test_render_in_order_keeps_the_order_and_refuses_what_render_refuses() -> None:
    from detoxd.core.hosts import render_block_in_order

    block = render_block_in_order(["b.example", "a.example"])
    lines = block.split(b"\n")
    assert lines[1:5] == [b"0.0.0.0 b.example", b"0.0.0.0 a.example", b":: b.example", b":: a.example"]
    assert render_block_in_order(["a.example", "b.example"]) == render_block(["b.example", "a.example"])
    for bad in (["A.example"], ["a.example\n0.0.0.0 bank.example"], ["a example"], ["a#b"]):
        with pytest.raises(ValueError):
            render_block_in_order(bad)


def test_render_in_order_writes_crlf_files_and_says_what_it_refuses() -> None:
    from detoxd.core.hosts import BEGIN_MARKER, END_MARKER, render_block_in_order

    assert render_block_in_order([], b"\r\n") == BEGIN_MARKER + b"\r\n" + END_MARKER + b"\r\n"
    assert render_block_in_order([]) == BEGIN_MARKER + b"\n" + END_MARKER + b"\n"
    crlf = render_block_in_order(["b.example", "a.example"], b"\r\n")
    assert crlf == render_block_in_order(["b.example", "a.example"]).replace(b"\n", b"\r\n")
    for newline in (b"\r", b"\n\n", b""):
        with pytest.raises(ValueError) as raised:
            render_block_in_order(["a.example"], newline)
        assert str(raised.value) == f"newline must be LF or CRLF, not {newline!r}"
    with pytest.raises(ValueError) as raised:
        render_block_in_order(["a.example", "B.example"])
    assert str(raised.value) == "names must be lower-case"
    with pytest.raises(ValueError) as raised:
        render_block_in_order(["a.example", "a b"])
    assert str(raised.value) == "not a host name detoxd can write into the hosts file: 'a b'"


def test_the_users_text_may_be_as_long_as_the_limit_and_not_a_byte_longer() -> None:
    from detoxd.core.hosts import TooMuchUserText

    user = b"127.0.0.1 localhost\n"
    assert split(user, max_user_bytes=len(user)).user_text == user
    with pytest.raises(TooMuchUserText) as raised:
        split(user, max_user_bytes=len(user) - 1)
    assert (raised.value.size, raised.value.limit) == (20, 19)
    assert str(raised.value) == "20 bytes besides detoxd's block, more than 19"
    blocked = user + render_block(["x.example"])
    assert split(blocked, max_user_bytes=len(user)).user_text == user  # the block does not count
    with pytest.raises(TooMuchUserText):
        split(blocked, ["x.example"], max_user_bytes=len(user) - 1)

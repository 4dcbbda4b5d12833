"""detoxd.core.hosts: lines of the user's that give a blocked name another address are neutralised
by apply() (commented out, every byte kept) and come back exactly with strip() (issue 21, bullet 1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detoxd.core import diagnosis
from detoxd.core.hosts import (
    BEGIN_MARKER,
    BEGIN_MARKER_AFTER_UNTERMINATED_LINE,
    END_MARKER,
    NEUTRALISED_MARKER,
    apply,
    desired,
    neutralise,
    render_block,
    split,
    strip,
)

NAMES = frozenset({"twitter.com", "www.twitter.com", "facebook.com"})
BLOCK = render_block(NAMES)
USER = b"127.0.0.1\tlocalhost\n# my comment\n192.168.1.10 nas.home nas\n::1 localhost\n"


def resolves_to(text: bytes, name: str) -> str | None:
    """The address glibc's files backend gives ``name``: the first line naming it."""
    for line in text.decode().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name in (field.lower() for field in fields[1:]):
            return fields[0]
    return None


@pytest.mark.parametrize("user", [
    b"104.244.42.1 twitter.com\n" + USER,  # above the block
    USER + b"104.244.42.1 twitter.com\n",  # below it (appended before the block is)
    USER + b"104.244.42.1 foo.example twitter.com\n",  # an alias on another line
    b"104.244.42.1\tTWITTER.COM\t# with a comment\n" + USER,  # any case, tabs, a comment
    USER + b"2606:1f80::1 twitter.com",  # IPv6, the last line without a newline
    b"  104.244.42.1 twitter.com\r\n" + USER.replace(b"\n", b"\r\n"),  # CRLF, leading blanks
])
def test_a_line_giving_a_blocked_name_an_address_is_neutralised_and_comes_back_exactly(user: bytes) -> None:
    current = apply(user, BLOCK)
    assert resolves_to(current, "twitter.com") == "0.0.0.0"
    assert diagnosis.overrides(current.decode(), NAMES) == []  # doctor's reader agrees
    assert NEUTRALISED_MARKER in current
    assert strip(current) == user  # byte for byte at the end of the detox
    assert apply(current, BLOCK) is current  # nothing more to change


def test_the_line_is_commented_out_whole_with_its_bytes_kept() -> None:
    user = USER + b"104.244.42.1 foo.example twitter.com # mine\n"
    result = desired(user, BLOCK)
    assert b"\n#detoxd-neutralised: 104.244.42.1 foo.example twitter.com # mine\n" in result.text
    assert [(str(line), line.names) for line in result.neutralised] == [
        ("104.244.42.1 foo.example twitter.com # mine", ("twitter.com",))]
    assert result.neutralised[0].overrides == (("104.244.42.1", "twitter.com"),)


def test_a_line_below_an_intact_block_is_neutralised_where_it_stands() -> None:
    with_block = apply(USER, BLOCK)
    tampered = with_block + b"31.13.72.36 facebook.com\n"
    result = desired(tampered, BLOCK)
    assert result.text == with_block + NEUTRALISED_MARKER + b"31.13.72.36 facebook.com\n"
    assert split(result.text).block == BLOCK
    assert strip(result.text) == USER + b"31.13.72.36 facebook.com\n"


@pytest.mark.parametrize("line", [
    b"0.0.0.0 twitter.com", b":: twitter.com", b"::ffff:0.0.0.0 twitter.com", b"# 1.2.3.4 twitter.com",
    b"1.2.3.4 nottwitter.com", b"1.2.3.4 m.twitter.com", b"not-an-address twitter.com", b"1.2.3.4",
    b"1.2.3.4 #twitter.com",
])
def test_null_entries_comments_and_other_names_are_left_alone(line: bytes) -> None:
    user = USER + line + b"\n"
    result = desired(user, BLOCK)
    assert result.neutralised == ()
    assert result.text == user + BLOCK


def test_a_line_edited_back_during_the_detox_is_neutralised_again() -> None:
    current = apply(b"104.244.42.1 twitter.com\n" + USER, BLOCK)
    edited_back = current.replace(NEUTRALISED_MARKER, b"", 1)  # the user takes the marker off
    result = desired(edited_back, BLOCK)
    assert result.text == current and len(result.neutralised) == 1


def test_a_neutralised_line_stays_until_the_end_even_when_its_names_are_no_longer_blocked() -> None:
    current = apply(b"104.244.42.1 twitter.com\n" + USER, BLOCK)
    fewer = render_block({"facebook.com"})  # an allowance opened twitter.com, say
    during = apply(current, fewer)
    assert during.startswith(NEUTRALISED_MARKER + b"104.244.42.1 twitter.com\n")
    assert strip(during) == b"104.244.42.1 twitter.com\n" + USER


def test_a_marker_the_user_removed_after_the_detox_leaves_their_line() -> None:
    # The daemon was not running at the end: the user takes the marker off by hand.
    current = apply(b"104.244.42.1 twitter.com\n" + USER, BLOCK)
    by_hand = strip(current.replace(NEUTRALISED_MARKER, b""))
    assert by_hand == b"104.244.42.1 twitter.com\n" + USER


def test_the_block_names_are_read_from_the_block_unless_given() -> None:
    user = b"1.2.3.4 twitter.com\n5.6.7.8 example.org\n"
    assert desired(user, BLOCK).neutralised[0].names == ("twitter.com",)
    given_names = desired(user, BLOCK, blocked=frozenset({"example.org"}))
    assert [line.names for line in given_names.neutralised] == [("example.org",)]


def test_neutralise_without_blocked_names_changes_nothing() -> None:
    user = b"1.2.3.4 twitter.com\n"
    assert neutralise(user, frozenset()) == (user, ())


# A line that is one of detoxd's markers is detoxd's, never the user's (an orphan one is the debris
# of a damaged block and goes): the user's text holds none.
MARKERS = {BEGIN_MARKER, BEGIN_MARKER_AFTER_UNTERMINATED_LINE, END_MARKER}
lines = st.one_of(
    st.sampled_from([b"1.2.3.4 twitter.com", b"0.0.0.0 twitter.com", b"# c", b"", b"10.0.0.1 nas",
                     b"2001:db8::1 www.twitter.com x", b"\t1.1.1.1 facebook.com\r", b" "]),
    st.binary(max_size=30).filter(lambda raw: b"\n" not in raw and not raw.startswith(NEUTRALISED_MARKER)
                                  and raw.strip(b" \t\r") not in MARKERS),
)


@given(st.lists(lines, max_size=12), st.booleans())
def test_every_user_text_comes_back_exactly_and_nothing_overrides(
        parts: list[bytes], terminated: bool) -> None:
    user = b"\n".join(parts) + (b"\n" if terminated and parts else b"")
    current = apply(user, BLOCK)
    assert strip(current) == user
    assert apply(current, BLOCK) == current
    text = current.decode("ascii", "surrogateescape")
    assert diagnosis.overrides(text, NAMES) == []

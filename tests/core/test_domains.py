import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detoxd.core.domains import (
    ListIssue,
    Normalized,
    _all_clean,
    _is_clean,
    _normalize_carefully,
    expand_in_order,
    normalize_domain,
    parse_list_text,
    with_www,
)

# What an accepted name may look like: nothing that could start a new hosts line or a comment.
SAFE_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]*[a-z0-9])?")


def accepted(raw: str) -> str:
    result = normalize_domain(raw)
    assert result.error is None and result.name is not None, result
    return result.name


def refused(raw: str) -> str:
    result = normalize_domain(raw)
    assert result.name is None and result.warning is None, result
    assert result.error is not None
    return result.error


# ---- normalize_domain: accepted names ----


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("twitter.com", "twitter.com"),
        ("Twitter.COM", "twitter.com"),
        ("twitter.com.", "twitter.com"),  # the fully qualified form
        ("  twitter.com\t", "twitter.com"),  # what people type around a name
        ("a-b.example.org", "a-b.example.org"),
        ("ad_server.example.com", "ad_server.example.com"),  # underscores inside a label
        ("1.2.3.example.com", "1.2.3.example.com"),  # numeric labels below a real TLD
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),  # already punycode
        ("a" * 63 + ".com", "a" * 63 + ".com"),  # longest label
        ("localhost.example.com", "localhost.example.com"),  # only the system's own names
    ],
)
def test_valid_names_are_normalised(raw: str, name: str) -> None:
    assert normalize_domain(raw) == Normalized(name)


def name_of_length(length: int) -> str:
    """A plain name of exactly ``length`` characters: labels of 62 characters, then ".com"."""
    body = "".join("." if i % 63 == 62 else "a" for i in range(length - len(".com")))
    assert not body.endswith(".")
    return body + ".com"


def test_a_name_of_253_characters_is_accepted_everywhere_and_of_254_nowhere() -> None:
    longest, too_long = name_of_length(253), name_of_length(254)
    assert accepted(longest) == longest
    assert accepted(longest.upper() + ".") == longest  # the careful path (trailing dot, upper case)
    assert accepted(f"https://{longest}/path") == longest  # a URL's host
    assert refused(too_long) == (f"'{too_long[:80]}…' is not a valid domain name "
                                 "(254 characters long, at most 253)")
    assert "254 characters long, at most 253" in refused(too_long.upper())
    assert _is_clean(longest) and not _is_clean(too_long)
    # A list file: the batch check and the name-by-name check draw the line at the same place.
    assert parse_list_text(f"{longest}\n") == ([longest], [])
    assert _all_clean([longest]) and not _all_clean([too_long])
    names, issues = parse_list_text(f"{longest}\n{too_long}\n")
    assert names == [longest] and [issue.line for issue in issues] == [2]
    assert "254 characters long, at most 253" in issues[0].message


def test_the_www_variant_is_added_up_to_253_characters() -> None:
    fits, overflows = name_of_length(249), name_of_length(250)
    assert with_www(fits) == (fits, "www." + fits) and len("www." + fits) == 253
    assert with_www(overflows) == (overflows,)


def test_longest_name_is_accepted_and_one_more_is_not() -> None:
    longest = ".".join(["a" * 61] * 4) + ".com"  # 4 * 62 + 3 = 251 characters
    assert len(longest) == 251 and accepted(longest) == longest
    too_long = "ab." + longest
    assert "254 characters long, at most 253" in refused(too_long)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.de", "xn--bcher-kva.de"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("例え.jp", "xn--r8jz45g.jp"),
        ("ｔｗｉｔｔｅｒ．ｃｏｍ", "twitter.com"),  # full-width letters and dot fold to ASCII
    ],
)
def test_international_names_become_punycode(raw: str, name: str) -> None:
    assert normalize_domain(raw) == Normalized(name)


@pytest.mark.parametrize("raw", ["faß.de", "ς.gr.example.com"])
def test_idna_deviation_characters_are_refused_not_guessed(raw: str) -> None:
    # IDNA 2003 would turn faß.de into fass.de, a different site from the one browsers open.
    assert "xn--" in refused(raw)


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("https://twitter.com/home", "twitter.com"),
        ("http://Twitter.com:8080/home", "twitter.com"),
        ("https://user:secret@twitter.com/", "twitter.com"),
        ("https://twitter.com/search?q=a#top", "twitter.com"),
        ("https://twitter.com/#!/jack", "twitter.com"),
        ("twitter.com/home", "twitter.com"),
        ("x.com:443", "x.com"),
        ("https://bücher.de/x", "xn--bcher-kva.de"),
    ],
)
def test_urls_are_reduced_to_their_host_with_a_warning(raw: str, host: str) -> None:
    result = normalize_domain(raw)
    assert result.name == host and result.error is None
    assert result.warning == f"{raw!r} is a URL; using its host '{host}'"


def test_the_issue_examples_read_as_specified() -> None:
    assert refused("twiter..com") == "'twiter..com' is not a valid domain name (empty label)"
    result = normalize_domain("https://twitter.com/home")
    assert result.warning == "'https://twitter.com/home' is a URL; using its host 'twitter.com'"


# ---- normalize_domain: refused input ----


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # Everything that could add a line or a comment to /etc/hosts.
        ("a.com\n0.0.0.0 b.com", "whitespace (U+000A)"),
        ("a.com\r\n", "whitespace (U+000D)"),
        ("a.com b.com", "contains whitespace"),
        ("a.com\tb.com", "whitespace (U+0009)"),
        ("a.com#x", "'#' starts a comment"),
        ("#a.com", "'#' starts a comment"),
        ("\x00", "control or invisible character U+0000"),
        ("a.com\x00", "control or invisible character U+0000"),
        ("a.com\u2028b.com", "whitespace (U+2028)"),
        ("a.com\u2029", "whitespace (U+2029)"),
        ("a.com\x85b.com", "whitespace (U+0085)"),
        ("a.com\x0bb.com", "whitespace (U+000B)"),
        ("a.com\x1eb.com", "whitespace (U+001E)"),
        ("a\u00a0b.com", "whitespace (U+00A0)"),
        ("a\u200db.com", "invisible character U+200D"),  # zero-width joiner
        ("a\u00adb.com", "invisible character U+00AD"),  # soft hyphen
        ("a\x1bb.com", "control or invisible character U+001B"),  # terminal escape
        ("a.b\\@c.com", "backslash"),
        # Not host names.
        ("", "empty"),
        ("   ", "empty"),
        ("twiter..com", "empty label"),
        ("twitter.com..", "empty label"),
        (".facebook.com", "a leading dot does not mean 'and subdomains'"),
        ("a" * 64 + ".com", "64 characters long, at most 63"),
        ("-a.com", "starts or ends with '-'"),
        ("a-.com", "starts or ends with '-'"),
        ("_dmarc.example.com", "starts or ends with '_'"),
        ("a_.example.com", "starts or ends with '_'"),
        ("example.c_m", "top-level domain 'c_m'"),
        ("example.1com", "top-level domain '1com' must start with a letter"),
        ("1.2.3.4.5", "top-level domain '5'"),
        ("a;b.com", "contains ';'"),
        ("a'b.com", "contains \"'\""),
        ("xn--zz.com", "not valid punycode"),
        ("é" * 70 + ".com", "longer than 63 characters as punycode"),
        ("\ufe0f.com", "only characters that IDNA removes"),
        ("http:///path", "names no host"),
    ],
)
def test_invalid_input_is_refused_with_its_reason(raw: str, reason: str) -> None:
    assert reason in refused(raw)


@pytest.mark.parametrize(
    "raw", ["127.0.0.1", "127.1", "0x7f.1", "2130706433", "010.0.0.1", "::1", "[::1]", "fe80::1"]
)
def test_ip_addresses_are_refused(raw: str) -> None:
    assert "is an IP address, not a domain name" in refused(raw)


@pytest.mark.parametrize("raw", ["http://127.0.0.1:80/", "https://[::1]/x"])
def test_urls_with_an_ip_host_are_refused(raw: str) -> None:
    error = refused(raw)
    assert "is a URL and its host is unusable" in error and "IP address" in error


@pytest.mark.parametrize("raw", ["*.facebook.com", "facebook.*", "https://*.x.com/"])
def test_wildcards_are_refused_with_a_hint(raw: str) -> None:
    error = refused(raw)
    assert "wildcard" in error and "the presets already list the hosts" in error


@pytest.mark.parametrize("raw", ["com", "intranet", "ip6-allnodes"])
def test_single_labels_are_refused(raw: str) -> None:
    assert "a single label" in refused(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "localhost",
        "LOCALHOST.",
        "localhost.localdomain",
        "localhost6.localdomain6",
        "ip6-localhost",
        "broadcasthost",
        "anything.localhost",
        "https://localhost/x",
    ],
)
def test_names_the_system_needs_are_never_blocked(raw: str) -> None:
    assert "detoxd never blocks it" in refused(raw)


def test_messages_quote_input_safely_and_briefly() -> None:
    error = refused("a" * 500 + "\n")
    assert "\n" not in error and len(error) < 200


# ---- normalize_domain: properties ----

NEAR_NAMES = st.lists(
    st.one_of(
        st.text(alphabet="abcxyz019-_", min_size=0, max_size=8),
        st.text(alphabet="ab09-_.A \n\t#é\x00\u2028", min_size=0, max_size=4),
        st.sampled_from(["xn--bcher-kva", "xn--", "localhost", "com", "0x7f", "www", "a" * 64]),
    ),
    min_size=1,
    max_size=5,
).map(".".join)


@given(st.one_of(st.text(), NEAR_NAMES))
@example("a.com\n0.0.0.0 b.com")
@example("a.com\u2028")
@settings(max_examples=500)
def test_whatever_goes_in_an_accepted_name_is_safe(raw: str) -> None:
    result = normalize_domain(raw)
    assert (result.name is None) != (result.error is None)
    if result.name is not None:
        name = result.name
        assert SAFE_NAME.fullmatch(name) and len(name) <= 253
        assert not any(character.isspace() or character == "#" for character in name)
        assert normalize_domain(name) == Normalized(name)  # idempotent


@given(st.one_of(st.text(), NEAR_NAMES))
@settings(max_examples=500)
def test_fast_path_agrees_with_careful_path(raw: str) -> None:
    fast, careful = normalize_domain(raw), _normalize_carefully(raw)
    assert fast.name == careful.name
    assert (fast.error is None) == (careful.error is None)


# ---- with_www and expand_in_order ----


def expand(**lists: list[str]) -> frozenset[str]:
    return frozenset(expand_in_order(**lists))


def test_with_www_adds_the_www_variant_once() -> None:
    assert with_www("twitter.com") == ("twitter.com", "www.twitter.com")
    assert with_www("www.twitter.com") == ("www.twitter.com",)
    long_name = ".".join(["a" * 62] * 4)[:250] + ".com"
    assert with_www(long_name) == (long_name,)  # "www." would make it longer than 253


def test_expand_unites_domains_presets_and_lists() -> None:
    names = expand(
        domains=["news.ycombinator.com"],
        presets=["twitter.com", "x.com"],
        lists=["ads.example.net"],
        allow=[],
    )
    assert names == {
        "news.ycombinator.com",
        "www.news.ycombinator.com",
        "twitter.com",
        "x.com",
        "ads.example.net",
    }


def test_allow_removes_the_exact_name_and_its_www_variant_only() -> None:
    names = expand(
        domains=["example.com"],
        presets=["m.example.com", "www.other.org"],
        lists=["example.com"],
        allow=["example.com", "other.org"],
    )
    # m.example.com is a different name: allow lists names, not whole domains.
    assert names == {"m.example.com"}


def test_allowing_a_www_name_keeps_the_bare_name() -> None:
    names = expand(domains=["example.com"], presets=[], lists=[], allow=["www.example.com"])
    assert names == {"example.com"}


# ---- parse_list_text ----


def test_plain_list_with_comments_and_blank_lines() -> None:
    text = "# my list\n\ntwitter.com\n  Reddit.com.  # trailing comment\nx.com\r\n"
    assert parse_list_text(text) == (["twitter.com", "reddit.com", "x.com"], [])


def test_hosts_format_as_stevenblack_writes_it() -> None:
    text = (
        "# Title: StevenBlack/hosts with the social extension\n"
        "127.0.0.1 localhost\n"
        "127.0.0.1 localhost.localdomain\n"
        "127.0.0.1 local\n"
        "255.255.255.255 broadcasthost\n"
        "::1 localhost\n"
        "::1 ip6-localhost\n"
        "::1 ip6-loopback\n"
        "fe80::1%lo0 localhost\n"
        "ff00::0 ip6-localnet\n"
        "ff00::0 ip6-mcastprefix\n"
        "ff02::1 ip6-allnodes\n"
        "ff02::2 ip6-allrouters\n"
        "ff02::3 ip6-allhosts\n"
        "0.0.0.0 0.0.0.0\n"
        "# End of boilerplate\n"
        "0.0.0.0 facebook.com # Facebook\n"
        "0.0.0.0\twww.facebook.com\n"
        "127.0.0.1 fb.com fb.me\n"
        ":: twitter.com\n"
    )
    names, issues = parse_list_text(text)
    assert names == ["facebook.com", "www.facebook.com", "fb.com", "fb.me", "twitter.com"]
    assert issues == []


def test_invalid_names_are_errors_with_their_line_numbers() -> None:
    text = (
        "twitter.com\n"  # 1
        "twiter..com\n"  # 2
        "# comment with junk ..\n"  # 3
        "0.0.0.0 good.example.com bad_.example.com\n"  # 4
        "https://reddit.com/r/x\n"  # 5
        "Twiter..com\n"  # 6: the same mistake again, reported again, quoted as written
    )
    names, issues = parse_list_text(text)
    assert names == ["twitter.com", "good.example.com"]
    assert issues == [
        ListIssue(2, "'twiter..com' is not a valid domain name (empty label)"),
        ListIssue(4, "'bad_.example.com' is not a valid domain name (the label 'bad_' starts "
                     "or ends with '_')"),
        ListIssue(5, "'https://reddit.com/r/x' is a URL, not a host name; write 'reddit.com' "
                     "instead"),
        ListIssue(6, "'Twiter..com' is not a valid domain name (empty label)"),
    ]


def test_list_lines_cannot_smuggle_unsafe_names() -> None:
    text = "a.com\x00b.com\nc.com\u2028d.com\n*.e.com\nf.com\x0b0.0.0.0 g.com\nlocalhost.h\n"
    names, issues = parse_list_text(text)
    assert all(SAFE_NAME.fullmatch(name) for name in names)
    assert names == ["c.com", "d.com", "f.com", "g.com", "localhost.h"]
    assert [issue.line for issue in issues] == [1, 3]


def test_one_issue_per_line_names_the_first_invalid_word() -> None:
    names, issues = parse_list_text("ok.example.com\nnot a domain.example\n")
    assert names == ["ok.example.com", "domain.example"]
    assert len(issues) == 1 and issues[0].line == 2
    assert issues[0].message.startswith("'not' is not a valid domain name (a single label")
    assert issues[0].message.endswith("(and 1 more invalid on this line)")


def test_addresses_anywhere_on_a_line_are_skipped() -> None:
    assert parse_list_text("10.1.2.3 a.com\n2001:db8::1 b.com\n127.1\n") == (
        ["a.com", "b.com"],
        [],
    )


def test_list_keeps_international_and_normalises_trailing_dots() -> None:
    text = "xn--bcher-kva.de\nbücher.de\nexample.com.\n"
    assert parse_list_text(text) == (["xn--bcher-kva.de", "xn--bcher-kva.de", "example.com"], [])


def test_byte_order_mark_and_empty_text() -> None:
    assert parse_list_text("\ufeffa.com\n") == (["a.com"], [])
    assert parse_list_text("") == ([], [])
    assert parse_list_text("\n\n# only comments\n") == ([], [])


def test_large_list_with_one_error_keeps_every_other_name() -> None:
    good = [f"host{number}.example.com" for number in range(5000)]
    lines = [f"0.0.0.0 {name}" for name in good]
    lines.insert(3000, "0.0.0.0 bad..example.com")
    names, issues = parse_list_text("\n".join(lines))
    assert names == good
    assert issues == [
        ListIssue(3001, "'bad..example.com' is not a valid domain name (empty label)")
    ]


# ---- the batch check behind parse_list_text ----

CLEAN_NAMES = [
    "twitter.com",
    "a-b.c_d.example.org",
    "1.2.3.example.com",
    "a" * 63 + ".com",
    ".".join(["b" * 61] * 4) + ".io",
]


@pytest.mark.parametrize(
    "dirty",
    [
        "Twitter.com",
        "a.com\nb.com",
        "a.com b.com",
        "com",
        "a..com",
        ".a.com",
        "a.com.",
        "-a.com",
        "a-.com",
        "_a.com",
        "a_.com",
        "a.-com",
        "a.c_m",
        "a.1com",
        "a.b.c.4",
        "a" * 64 + ".com",
        ".".join(["b" * 62] * 4) + ".com",  # 255 characters
        "xn--bcher-kva.de",
        "localhost.localdomain",
        "a.localhost",
        "bücher.de",
        "a#.com",
        "",
    ],
)
def test_batch_check_refuses_each_kind_of_unclean_name(dirty: str) -> None:
    assert _all_clean(CLEAN_NAMES)
    for position in (0, 2, len(CLEAN_NAMES)):
        batch = [*CLEAN_NAMES]
        batch.insert(position, dirty)
        assert not _all_clean(batch), (position, dirty)


@given(st.lists(st.one_of(NEAR_NAMES, st.text(max_size=12)), max_size=20))
@settings(max_examples=1000)
def test_batch_check_vouches_only_for_clean_names(names: list[str]) -> None:
    if _all_clean(names):
        assert all(map(_is_clean, names))
    elif not any(word in name for name in names for word in ("xn--", "localhost", "localdomain")):
        # Only names worth a closer look may be refused in bulk although clean one by one.
        assert not all(map(_is_clean, names))



def test_a_label_mixing_scripts_is_named_as_a_homoglyph() -> None:
    from detoxd.core.domains import _script, mixed_scripts

    cyrillic_o = "\u043e"
    assert mixed_scripts(f"faceb{cyrillic_o}{cyrillic_o}k.com") == (
        f"'faceb{cyrillic_o}{cyrillic_o}k.com' mixes Cyrillic and Latin letters in "
        f"'faceb{cyrillic_o}{cyrillic_o}k': it is not the site it looks like (a homoglyph); "
        "write the name with the letters you mean")
    # Each label on its own: one script per label is fine, whatever the next label's is.
    assert mixed_scripts("пример.рф") is None and mixed_scripts("bücher.de") is None
    assert mixed_scripts("пример.com") is None and mixed_scripts("twitter.com") is None
    assert mixed_scripts("пример2024.рф") is None  # digits are no script
    # The ideographic full stop separates labels too.
    assert mixed_scripts("пример。com") is None
    assert mixed_scripts(f"x{cyrillic_o}。com") is not None
    assert _script("a") == "LATIN" and _script(cyrillic_o) == "CYRILLIC" and _script("\u0378") == "UNKNOWN"


def test_the_config_warns_of_a_homoglyph_and_says_what_it_blocks() -> None:
    from detoxd.core.config import parse_blocklist

    _, source = parse_blocklist("domains: ['x\u043e.com']\n", ())
    assert [str(issue) for issue in source.issues] == [
        "blocklist.yaml:1: domains[0]: warning: 'x\u043e.com' mixes Cyrillic and Latin letters in "
        "'x\u043e': it is not the site it looks like (a homoglyph); write the name with the letters you "
        "mean (blocking 'xn--x-1tb.com')"]

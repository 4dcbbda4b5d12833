"""Domain names: normalise and validate what users list, and expand it into the set to block.

Pure: values in, values out. Every name detoxd writes into ``/etc/hosts`` comes from here, so the
rules are strict and the accepted shape is tiny: lower-case ASCII labels of ``a-z``, ``0-9``, ``-``
and ``_`` separated by single dots. Nothing else (whitespace, ``#``, control characters, ``:``)
can pass, so no accepted name can add a line or a comment to the hosts file.

Decisions worth knowing:

- **IDNA 2003** (the standard library's ``idna`` codec) converts international names to punycode,
  because the ``idna`` package (IDNA 2008) is not a dependency. The two standards differ only for a
  few characters (``ß``, ``ς``, zero-width joiners) and for some symbols; those deviation characters
  are rejected with a hint to write the ``xn--`` form, since browsers now follow IDNA 2008 and a
  silent ``faß.de`` → ``fass.de`` would block the wrong site. Zero-width joiners are invisible and
  rejected like every other control or format character.
- **Underscores** are accepted inside a label (``ad_server.example.com``): glibc's hosts lookup and
  real blocklists have them. A label may not start or end with one: ``_dmarc``-style labels name DNS
  records, never websites.
- **The top-level label starts with a letter.** Every real TLD does, and it rules out each numeric
  address form ``inet_aton`` accepts (``127.1``, ``0x7f.1``), which glibc would read as an address.
- **Single-label names** (``localhost``, ``com``) and the names the system needs (``localhost``
  variants, anything under ``.localhost``) are refused. The machine's own host name is the shell's
  business: the core does not know it.
- **Surrounding whitespace** is stripped; whitespace inside is an error.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from encodings import idna
from itertools import chain, filterfalse
from urllib.parse import urlsplit

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

_LABEL = r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_TOP_LEVEL_LABEL = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = rf"(?:{_LABEL}\.)+{_TOP_LEVEL_LABEL}"
# The one shape an accepted name has; the careful path re-checks its result against it too.
_CLEAN_NAME = re.compile(_NAME)
_TOP_LEVEL = re.compile(_TOP_LEVEL_LABEL)
_LABEL_CHARACTER = re.compile(r"[a-z0-9_-]")
# Every numeric IPv4 form inet_aton accepts: 1 to 4 parts, decimal, octal or hex.
_NUMERIC_ADDRESS = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?")

# For parse_list_text: list files are read in batches, checked with string operations (_all_clean).
_BATCH_SIZE = 1024
_COMMENT = re.compile(r"#[^\n]*")


# Not mutated (scripts/mutation): it runs once at import, before mutmut picks a mutant, so none of
# its mutants could ever be killed; the tests compare _all_clean, which uses it, with _is_clean.
def _shape_table() -> bytes:  # pragma: no mutate block
    table = bytearray(b"!" * 256)
    for letter in b"abcdefghijklmnopqrstuvwxyz":
        table[letter] = ord("a")
    for digit in b"0123456789":
        table[digit] = ord("0")
    for separator, shape in ((b"-", b"-"), (b"_", b"-"), (b".", b"."), (b"\n", b".")):
        table[separator[0]] = shape[0]
    return bytes(table)


_SHAPE = _shape_table()
# In the shape of "\n"-joined names: a bad character, an empty label or name, a label that
# starts or ends with "-" or "_".
_BAD_SHAPES = (b"!", b"..", b".-", b"-.")
# Clean-shaped names _is_clean still refuses (punycode to verify, names the system needs).
_CAREFUL_WORDS = (b"xn--", b"localhost", b"localdomain")
_ALL_BUT_DOTS_AND_NEWLINES = bytes(byte for byte in range(256) if byte not in b".\n")
# A last label (no "." before the line ends) that starts with a digit, or that holds a "_".
# Two patterns, not one alternation: each starts with a literal, which the engine scans for fast.
_DIGIT_TOP_LEVEL = re.compile(rb"\.[0-9][a-z0-9_-]*+\n")
_UNDERSCORE_TOP_LEVEL = re.compile(rb"_[a-z0-9-]*+\n")

NEVER_BLOCKED = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
        "broadcasthost",
    }
)
"""Names the system itself resolves through the hosts file."""

# Names every distributed hosts file starts with: a list that includes them means no harm.
_HOSTS_BOILERPLATE = NEVER_BLOCKED | {"local"}
# Words a list file skips without a second look: the addresses hosts files use most, and the
# boilerplate. Any other address is found by the careful path and skipped too.
_SKIPPED_LIST_WORDS = _HOSTS_BOILERPLATE | {
    "0.0.0.0",  # noqa: S104 (an address read from a file, nothing binds to it)
    "127.0.0.1",
    "::",
    "::1",
    "255.255.255.255",
}

# IDNA 2003 maps these away, IDNA 2008 (and browsers) keep them: refuse rather than guess.
_IDNA_DEVIATIONS = ("ß", "ς")


@dataclass(frozen=True, slots=True)
class Normalized:
    """The outcome of :func:`normalize_domain`.

    Exactly one of ``name`` and ``error`` is set. ``warning`` may accompany a ``name`` when the
    input was accepted after a change the user should know about (a URL reduced to its host).
    """

    name: str | None
    error: str | None = None
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class ListIssue:
    """An invalid name on one line (1-based) of a list file: an error, the name is dropped."""

    line: int
    message: str
    summary: bool = False  # "and N more invalid names": the ones past the limit, only counted


# parse_list_text describes this many invalid words of a list and counts the rest: a list of
# millions of invalid names would otherwise cost a message (and memory) each.
MAX_LIST_ISSUES = 100


def mixed_scripts(raw: str) -> str | None:
    """A warning when a label of ``raw`` mixes letters of several scripts (``facebооk.com`` with
    Cyrillic o's): such a name is converted to punycode and blocks a *different* site than the
    one it looks like. None for ASCII and for labels written in one script."""
    if raw.isascii():
        return None
    for label in raw.replace("。", ".").split("."):
        scripts = sorted({_script(character) for character in label if character.isalpha()})
        if len(scripts) > 1:
            return (f"{_quote(raw)} mixes {' and '.join(script.title() for script in scripts)} "
                    f"letters in '{label}': it is not the site it looks like (a homoglyph); "
                    "write the name with the letters you mean")
    return None


def _script(character: str) -> str:
    try:
        return unicodedata.name(character).split(" ", 1)[0]
    except ValueError:
        return "UNKNOWN"


def normalize_domain(raw: str) -> Normalized:
    """Return ``raw`` as a host name safe to block, or why it is not one.

    Lower-cases, strips surrounding whitespace and one trailing dot, converts international names
    to punycode and reduces a URL to its host (with a warning). Everything else that is not a
    plain host name is an error phrased for the user.
    """
    if raw.isascii():
        candidate = raw.lower()
        if candidate.endswith("."):
            candidate = candidate[:-1]
        if _is_clean(candidate):
            return Normalized(candidate)
    return _normalize_carefully(raw)


def with_www(name: str) -> tuple[str, ...]:
    """``name`` (normalised) and its ``www.`` variant, which people reach just as often."""
    www = "www." + name
    if name.startswith("www.") or len(www) > MAX_NAME_LENGTH:
        return (name,)
    return (name, www)


def expand_in_order(
    *,
    domains: Iterable[str],
    presets: Iterable[str],
    lists: Iterable[str],
    allow: Iterable[str],
) -> tuple[str, ...]:
    """Every name to block, from names that are already normalised, each once, in the order
    the config gives them (presets, lists, domains): the same config always gives the same
    order, so the block needs no sort (a second of CPU at a million names) to be reproducible.

    ``domains`` are the user's own names and bring their ``www.`` variants; ``presets`` (the
    hosts of the chosen presets) and ``lists`` (the names from list files) are exact hosts
    already. An ``allow`` entry removes exactly that name and its ``www.`` variant, not its other
    subdomains: the hosts file blocks names one by one, so allowing ``example.com`` leaves a
    listed ``m.example.com`` blocked.
    """
    ordered = dict.fromkeys(chain(presets, lists, chain.from_iterable(map(with_www, domains))))
    for name in chain.from_iterable(map(with_www, allow)):
        ordered.pop(name, None)
    return tuple(ordered)


def parse_list_text(
    text: str, max_issues: int = MAX_LIST_ISSUES
) -> tuple[list[str], list[ListIssue]]:
    """Names from a list file: one name per line, or hosts format (``0.0.0.0 a.com b.com``).

    Each line, up to a ``#`` comment, is split into words. Addresses (the first column of hosts
    format; detoxd always blocks with its own) and hosts-file boilerplate (``localhost``,
    ``broadcasthost``, ``ip6-*``…) are skipped; every other word is a name to block, so a line
    may hold several. Each invalid word is an error with its 1-based line number; the valid names
    are still returned, in file order, possibly repeated. Past ``max_issues`` distinct invalid
    words, the rest are counted in one summary issue.
    """
    text = text.removeprefix("\ufeff")
    lowered = text.lower()
    if "#" in lowered:
        lowered = _COMMENT.sub("", lowered)
    words = list(filterfalse(_SKIPPED_LIST_WORDS.__contains__, lowered.split()))
    names: list[str] = []
    invalid: set[str] = set()
    unchecked = 0
    # Most lists are entirely clean: vouch for a batch at once, look closer only where that fails.
    for start in range(0, len(words), _BATCH_SIZE):
        batch = words[start : start + _BATCH_SIZE]
        if _all_clean(batch):
            names += batch
            continue
        for position, word in enumerate(batch):
            if _is_clean(word):
                names.append(word)
            elif not _is_skipped_carefully(word):
                result = normalize_domain(word)
                if result.name is not None and result.warning is None:
                    names.append(result.name)
                else:
                    invalid.add(word)
            if len(invalid) >= max_issues:
                # The list is invalid either way; checking millions more words only costs time.
                unchecked = len(words) - start - position - 1
                break
        if unchecked:
            break
    issues = _locate_invalid_words(text, invalid, max_issues) if invalid else []
    if unchecked:
        issues.append(ListIssue(0, f"and {unchecked} more words not checked (stopped after "
                                   f"{max_issues} invalid names)", summary=True))
    return names, issues


def _is_clean(name: str) -> bool:
    return _has_clean_shape(name) and _is_unremarkable(name)


def _has_clean_shape(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _CLEAN_NAME.fullmatch(name) is not None


def _is_unremarkable(clean_shaped: str) -> bool:
    """No punycode to verify and nothing the system needs."""
    return (
        "xn--" not in clean_shaped
        and clean_shaped not in NEVER_BLOCKED
        and not clean_shaped.endswith(".localhost")
    )


def _normalize_carefully(raw: str) -> Normalized:
    text = raw.strip(" \t")  # only what people type around a name; a newline is an error
    shown = _quote(text or raw)
    refusal = _refuse_unsafe_characters(text, shown)
    if refusal is not None:
        return Normalized(None, refusal)
    if not _looks_like_url(text) or _is_address(text):  # "::1" has colons but is no URL
        name, refusal = _normalize_host(text, shown)
        return Normalized(name, refusal)

    host = _url_host(text)
    if not host:
        return Normalized(None, f"{shown} looks like a URL but names no host")
    name, refusal = _normalize_host(host, _quote(host))
    if name is None:
        return Normalized(None, f"{shown} is a URL and its host is unusable: {refusal}")
    if name.startswith("www.") and name.count(".") >= 2:
        # The user meant the site: the bare name and (through with_www) its www. variant.
        bare = name.removeprefix("www.")
        return Normalized(bare, None, f"{shown} is a URL; blocking its host '{bare}' and 'www.{bare}'")
    return Normalized(name, None, f"{shown} is a URL; using its host '{name}'")


def _refuse_unsafe_characters(text: str, shown: str) -> str | None:
    """Why ``text`` is not even worth parsing as a name or a URL, if it is not."""
    if not text:
        return "an empty domain name is not valid"
    for character in text:
        if character.isspace():
            where = "" if character == " " else f" ({_code_point(character)})"
            return f"{shown} contains whitespace{where}; give one domain name per entry"
        if not character.isprintable():
            return f"{shown} contains the control or invisible character {_code_point(character)}"
        if character == "\\":  # browsers read it as "/", urlsplit does not: refuse to guess
            return f"{shown} is not a valid domain name (it contains a backslash)"
    return None


def _is_address(text: str) -> bool:
    """True for IPv4/IPv6 addresses in any notation the resolver would treat as an address."""
    unbracketed = text.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(unbracketed)
    except ValueError:
        return _NUMERIC_ADDRESS.fullmatch(text.lower()) is not None
    return True


def _looks_like_url(text: str) -> bool:
    return any(marker in text for marker in "/:@?")


def _url_host(text: str) -> str | None:
    """The host of a URL, with or without a scheme (``twitter.com/home``, ``x.com:443``)."""
    try:
        return urlsplit(text if "://" in text else "//" + text).hostname
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None


def _normalize_host(host: str, shown: str) -> tuple[str | None, str | None]:
    """The punycode ASCII form of ``host``, or the message explaining why it is invalid."""
    invalid = f"{shown} is not a valid domain name"
    if "#" in host:
        return None, f"{invalid} ('#' starts a comment in the hosts file)"
    if "*" in host:
        return None, (
            f"{shown} is a wildcard, which the hosts file cannot express: it blocks exact names"
            " only. List each host instead (the presets already list the hosts sites use)"
        )
    if _is_address(host):
        return None, f"{shown} is an IP address, not a domain name; the hosts file blocks names"
    if host.isascii():
        ascii_name = host.lower()
    else:
        folded = host.lower()
        for deviation in _IDNA_DEVIATIONS:
            if deviation in folded:
                return None, (
                    f"{invalid} ('{deviation}' is encoded differently by IDNA 2003 and 2008;"
                    " write the xn-- form of the site you mean)"
                )
        try:
            ascii_name = ".".join(_label_to_ascii(label) for label in idna.dots.split(host))
        except UnicodeError as exc:
            return None, f"{invalid} (it cannot be converted to punycode: {exc})"
    ascii_name = ascii_name.removesuffix(".")
    if ascii_name in NEVER_BLOCKED or ascii_name.endswith(".localhost"):
        return None, f"{shown} is a name the system itself needs; detoxd never blocks it"
    problem = _ascii_problem(ascii_name)
    if problem is not None:
        return None, f"{invalid} ({problem})"
    return ascii_name, None


def _label_to_ascii(label: str) -> str:
    if label.isascii():  # includes "": the ASCII checks then name the empty label
        return label.lower()
    if not idna.nameprep(label):
        raise UnicodeError("a label has only characters that IDNA removes")
    try:
        return idna.ToASCII(label).decode("ascii").lower()
    except UnicodeError as exc:
        if "empty or too long" in str(exc):  # the codec's wording, for a label > 63 as punycode
            raise UnicodeError("a label is longer than 63 characters as punycode") from exc
        raise


def _ascii_problem(name: str) -> str | None:
    """Why a lower-case ASCII name without trailing dot is not a host name to block, if it isn't."""
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters long, at most {MAX_NAME_LENGTH}"
    labels = name.split(".")
    if len(labels) == 1:
        return (
            "a single label: detoxd blocks full names such as 'example.com',"
            " never a top-level domain or a local name"
        )
    for label in labels:
        problem = _label_problem(label)
        if problem is not None:
            if not label and name.startswith("."):
                problem += "; a leading dot does not mean 'and subdomains': hosts files list names"
            return problem
    top_level = labels[-1]
    if _TOP_LEVEL.fullmatch(top_level) is None:
        return f"the top-level domain '{top_level}' must start with a letter and have no '_'"
    if not _has_clean_shape(name):  # the checks above should have said why; never let one slip
        return "it is not a plain host name"
    return None


def _label_problem(label: str) -> str | None:
    if not label:
        return "empty label"
    if len(label) > MAX_LABEL_LENGTH:
        return f"the label '{label[:20]}…' is {len(label)} characters long, at most 63"
    for character in label:
        if _LABEL_CHARACTER.fullmatch(character) is None:
            return f"it contains {character!r}; only letters, digits, '-' and '_' are allowed"
    for edge in (label[0], label[-1]):
        if edge in "-_":
            return f"the label '{label}' starts or ends with '{edge}'"
    if label.startswith("xn--"):
        try:
            codecs.decode(label[4:].encode("ascii"), "punycode")
        except UnicodeError:
            return f"the label '{label}' is not valid punycode"
    return None


def _all_clean(names: list[str]) -> bool:
    """True only if every name passes ``_is_clean``; False means: check them one by one.

    One pass of C-speed string operations over the joined batch instead of a regex per name:
    lists with a million names are applied on every change. Each check below rules out one way
    a name can differ from ``_CLEAN_NAME``; tests compare the verdict with ``_is_clean``.
    """
    if not names:
        return True
    joined = "\n" + "\n".join(names) + "\n"
    if not joined.isascii() or joined.count("\n") != len(names) + 1:  # no name may hold a "\n"
        return False
    longest = max(map(len, names), default=0)
    if longest > MAX_LABEL_LENGTH and not all(
        _labels_fit(name) for name in names if len(name) > MAX_LABEL_LENGTH
    ):
        return False
    raw = joined.encode("ascii")
    shape = raw.translate(_SHAPE)  # letters → a, digits → 0, "-" "_" → -, "." "\n" → .
    if any(pattern in shape for pattern in _BAD_SHAPES):
        return False
    if any(word in raw for word in _CAREFUL_WORDS):
        return False
    if b"\n\n" in raw.translate(None, _ALL_BUT_DOTS_AND_NEWLINES):  # a name without a dot
        return False
    if b"_" in raw and _UNDERSCORE_TOP_LEVEL.search(raw) is not None:
        return False
    return _DIGIT_TOP_LEVEL.search(raw) is None


def _labels_fit(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and max(map(len, name.split("."))) <= MAX_LABEL_LENGTH


def _is_skipped_carefully(word: str) -> bool:
    """Words of a list that are no names: any address, and the ``ip6-*`` boilerplate."""
    return (word.startswith("ip6-") and "." not in word) or _is_address(word)


def _locate_invalid_words(text: str, invalid: set[str], max_issues: int) -> list[ListIssue]:
    """One issue for each line holding invalid words, naming the first: only run on errors.
    Stops after ``max_issues`` lines (with a summary issue)."""
    issues: list[ListIssue] = []
    located: set[str] = set()
    start = 0
    number = 0
    # Split on "\n" only: str.splitlines also breaks at U+2028 and friends, which editors don't,
    # and line numbers must match what the user sees. Line by line: a list may be large.
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end]
        start = end + 1
        number += 1
        bad = [word for word in line.split("#", 1)[0].split() if word.lower() in invalid]
        if not bad:
            continue
        if len(issues) >= max_issues:
            issues.append(ListIssue(0, f"and more lines with invalid names from line {number} on",
                                    summary=True))
            return issues
        more = f" (and {len(bad) - 1} more invalid on this line)" if len(bad) > 1 else ""
        issues.append(ListIssue(number, _list_word_problem(bad[0]) + more))
        located.update(word.lower() for word in bad)
    # Never drop an invalid word silently, even if lower-casing made it impossible to find.
    issues += [ListIssue(0, _list_word_problem(word)) for word in sorted(invalid - located)]
    return issues


def _list_word_problem(word: str) -> str:
    result = normalize_domain(word)
    if result.name is None:
        return result.error or f"{_quote(word)} is not a valid domain name"
    # A URL: in a config entry it is reduced with a warning, but a list holding one is no host list.
    return f"{_quote(word)} is a URL, not a host name; write '{result.name}' instead"


def _code_point(character: str) -> str:
    return f"U+{ord(character):04X}"


def _quote(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message; repr escapes anything a terminal or log could misread."""
    shortened = text if len(text) <= limit else text[:limit] + "…"
    return repr(shortened)

"""detoxd's block in the hosts file: render it, find it, put it in, take it out.

Pure: bytes in, bytes out. The hosts file is handled as bytes so that every byte outside the
block (comments, tabs, CRLF, a missing final newline, bytes that are not UTF-8) comes back exactly.

The block, at the end of the file unless it already sits elsewhere intact::

    # BEGIN detoxd block: managed by detoxd, edits are reverted during a detox
    0.0.0.0 a.example
    0.0.0.0 b.example
    :: a.example
    :: b.example
    # END detoxd block

:func:`render_block` lower-cases, de-duplicates and sorts the names (so the same names always give
the same bytes); :func:`render_block_in_order` keeps a caller's reproducible order instead (the
daemon's: the config's), which saves the sort. All IPv4 entries come first, then all IPv6 ones,
which lets a million names render in two joins.
The block uses the file's newline style (:func:`newline_of`).

**The user's last line without a newline.** The block must start on a line of its own, so when
the user's text does not end with a newline, :func:`merge` adds one and says so in a variant of
the begin marker (:data:`BEGIN_MARKER_AFTER_UNTERMINATED_LINE`); :func:`strip` removes that
newline again when the block is still the last thing in the file. If the user has since added
text after the block, the newline stays: it now separates two of their lines.

**Markers** are recognised on a line of their own, ignoring surrounding spaces, tabs and a CR.
A line that only resembles a marker is the user's.

**Lines that override the block.** glibc's files backend takes the first line naming a host, and
an alias counts like a first name, so a line of the user's own such as ``104.244.42.1 twitter.com``
(above the block, below it, or ``104.244.42.1 foo twitter.com`` anywhere) would let a blocked name
through. :func:`apply` comments every such line out, whole (its other names too: simple, and
undone exactly), behind :data:`NEUTRALISED_MARKER`, keeping every byte of it::

    #detoxd-neutralised: 104.244.42.1 twitter.com

Which lines override is decided line by line as glibc reads them, by
:func:`detoxd.core.diagnosis.line_overrides` (doctor's reader). Comments and lines that already
say ``0.0.0.0``/``::`` are left alone. A neutralised line stays neutralised until :func:`strip`
(the end of the detox) takes the marker off again, also when its names are no longer blocked
meanwhile (an allowance, a config change): its bytes come back exactly then, never earlier.

**Damage** (a tamperer deleted a marker, edited inside the block, truncated the file):

- Everything between a begin marker and the next end marker is detoxd's, edited or not: the
  block is replaced whole. Every intact pair is removed (a duplicated block included).
- A marker without its partner is removed. Near it, detoxd removes only lines that are exactly
  one of its own entry lines (``0.0.0.0 name`` or ``:: name``, single space, a name from
  ``managed``, the names detoxd last wrote): from an orphan begin marker to the next marker or
  the end of the file, and from the previous marker or the start of the file to an orphan end
  marker. Every other line there is kept, comments and edited entries included.
- When there is no marker at all but detoxd manages names (both markers were deleted), its exact
  entry lines are removed wherever they are. A line of the user's own that is byte-for-byte one
  of detoxd's entries (say ``0.0.0.0 facebook.com`` written before the detox) is removed with them.
- A truncated file: after an orphan begin marker, an unterminated last line that is the start of
  one of detoxd's entry lines or of the end marker is removed; anywhere detoxd removes entries,
  an unterminated last line that starts like the begin marker, as far as ``# BEGIN detoxd``, is
  removed. A shorter piece of the begin marker (``# BEG``) stays, since it could be the user's.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, compress, islice
from operator import ne

from detoxd.core import diagnosis

BEGIN_MARKER = b"# BEGIN detoxd block: managed by detoxd, edits are reverted during a detox"
BEGIN_MARKER_AFTER_UNTERMINATED_LINE = (
    b"# BEGIN detoxd block (detoxd ended the line above, which had no newline):"
    b" managed by detoxd, edits are reverted during a detox"
)
END_MARKER = b"# END detoxd block"
# Put before a line of the user's that gave a blocked name another address (module notes).
NEUTRALISED_MARKER = b"#detoxd-neutralised: "

IPV4_ADDRESS = "0.0.0.0"  # noqa: S104 (an address to block with, not to bind)
IPV6_ADDRESS = "::"

# Every marker contains this; finding it is one C-level scan of the file.
_MARKER_NEEDLE = b" detoxd block"
_BEGIN, _BEGIN_AFTER_UNTERMINATED, _END = "begin", "begin-after-unterminated", "end"
_MARKER_KINDS = {
    BEGIN_MARKER: _BEGIN,
    BEGIN_MARKER_AFTER_UNTERMINATED_LINE: _BEGIN_AFTER_UNTERMINATED,
    END_MARKER: _END,
}
_MARKER_PADDING = b" \t\r"
# A truncated begin marker is detoxd's only once it names detoxd.
_SHORTEST_BEGIN_FRAGMENT = len(b"# BEGIN detoxd")
_ENTRY_PREFIXES = (IPV4_ADDRESS.encode() + b" ", IPV6_ADDRESS.encode() + b" ")
_NAME_CHARACTERS_AND_NEWLINE = b"abcdefghijklmnopqrstuvwxyz0123456789._-\n"
_NAME = re.compile(r"[a-z0-9._-]+")
_ENTRY_LINE = re.compile(rb"^(?:0\.0\.0\.0|::) ([^\s#]+)\r?$", re.MULTILINE)
# The same on the text (ASCII, undecodable bytes as surrogates): no decode per name.
_ENTRY_LINE_TEXT = re.compile(r"^(?:0\.0\.0\.0|::) ([^\s#]+)\r?$", re.MULTILINE | re.ASCII)
# A line that may give a name an address: not blank, not a comment, not a null entry. One regex
# scan skips the rest (a large list of 0.0.0.0 lines costs no Python per line).
_CANDIDATE_LINE = re.compile(rb"^[ \t]*+(?![#\r\n]|0\.0\.0\.0[ \t]|::[ \t])[^\n]+", re.MULTILINE)
_SCAN_PIECE = 1 << 20  # the user's text is searched for overriding lines this much at a time
_NEUTRALISED_LINE = re.compile(rb"^" + re.escape(NEUTRALISED_MARKER), re.MULTILINE)


# ---- rendering ----


def render_block(names: Iterable[str], newline: bytes = b"\n") -> bytes:
    """The block for these names: lower-cased, de-duplicated, sorted; ``newline`` ends each line.

    Raises ValueError for a name that could break out of its line (whitespace, ``#``, ``:``,
    non-ASCII, empty): :mod:`detoxd.core.domains` validates names properly; this is the last guard
    before root writes them into the hosts file.

    Built for a million names: the names are handled as one joined string wherever possible
    (lower-casing, checking, rendering are single C-level passes), and sorting runs on strings
    split from that joined string, which lie in memory in list order and sort about twice as
    fast as scattered ones.
    """
    if newline not in (b"\n", b"\r\n"):
        raise ValueError(f"newline must be LF or CRLF, not {newline!r}")
    names = names if isinstance(names, Collection) else list(names)
    if not names:
        return b"".join((BEGIN_MARKER, newline, END_MARKER, newline))
    joined = "\n".join(names)
    if isinstance(names, AbstractSet) and joined.islower():
        # The daemon's case: a set of validated names, already unique and lower-case.
        _check_joined_names(joined, names)
        del joined
        unique = sorted(names)
    else:
        unique = _sorted_unique_lower(joined, names)
    return _render("\n".join(unique).encode("ascii"), newline)


def render_block_in_order(names: Sequence[str], newline: bytes = b"\n") -> bytes:
    """The block with ``names`` in the given order: for a caller whose names are already
    unique, lower-case and in a reproducible order (the daemon's, from the config's order).

    Checked like :func:`render_block` (nothing that could break out of its line is written),
    but neither sorted nor de-duplicated: at a million names that saves most of the render.
    """
    if newline not in (b"\n", b"\r\n"):
        raise ValueError(f"newline must be LF or CRLF, not {newline!r}")
    if not names:
        return b"".join((BEGIN_MARKER, newline, END_MARKER, newline))
    joined = "\n".join(names)
    if not joined.islower() and joined.lower() != joined:  # (no lower-cased copy when it is)
        raise ValueError("names must be lower-case")
    _check_joined_names(joined, names)
    raw = joined.encode("ascii")
    del joined  # not held while the block is built: 20 MB of a million names' start-up peak
    return _render(raw, newline)


def _render(joined_names: bytes, newline: bytes) -> bytes:
    """The block around names joined by LF (IPv4 lines first, then IPv6)."""
    ipv4, ipv6 = (address.encode() + b" " for address in (IPV4_ADDRESS, IPV6_ADDRESS))
    return b"".join((
        BEGIN_MARKER, newline,
        ipv4, joined_names.replace(b"\n", newline + ipv4), newline,
        ipv6, joined_names.replace(b"\n", newline + ipv6), newline,
        END_MARKER, newline,
    ))


def _sorted_unique_lower(joined: str, names: Collection[str]) -> list[str]:
    joined = joined.lower()
    _check_joined_names(joined, names)
    lines = joined.split("\n")
    del joined
    lines.sort()
    # Sorted, so duplicates are neighbours: keep each name that differs from the next one.
    unique = list(compress(lines, map(ne, lines, islice(lines, 1, None))))
    unique.append(lines[-1])
    return unique


def _check_joined_names(joined: str, names: Collection[str]) -> None:
    """Every name: non-empty, no newline of its own, only characters a host name may have."""
    separated = joined.encode("ascii") if joined.isascii() else b"\n"
    well_formed = (
        joined.count("\n") == len(names) - 1
        and not separated.translate(None, _NAME_CHARACTERS_AND_NEWLINE)
        and separated != b""
        and not separated.startswith(b"\n")
        and not separated.endswith(b"\n")
        and b"\n\n" not in separated
    )
    if not well_formed:
        bad = next(name for name in names if not _NAME.fullmatch(name.lower()))
        raise ValueError(f"not a host name detoxd can write into the hosts file: {bad!r}")


def newline_of(text: bytes) -> bytes:
    """The newline style of the file: CRLF when its first line ends with CRLF, else LF."""
    first_newline = text.find(b"\n")
    return b"\r\n" if first_newline > 0 and text[first_newline - 1] == ord("\r") else b"\n"


# ---- placing ----


def merge(user_text: bytes, block: bytes) -> bytes:
    """The user's text with the block appended (on a line of its own, see the module notes)."""
    _require_rendered(block)
    if not user_text or user_text.endswith(b"\n"):
        return user_text + block
    return b"".join((user_text, _newline_of_block(block), _after_unterminated_line(block)))


def apply(text: bytes, block: bytes, managed: Collection[str] = (), *,
          blocked: AbstractSet[str] | None = None, max_user_bytes: int | None = None) -> bytes:
    """The file as it should be: ``text`` with exactly this block, none of detoxd's debris, and
    no line that gives a blocked name another address (neutralised: module notes).

    An intact block is replaced where it stands (so lines a user appended after it stay after
    it, where the block's entries win the lookup); otherwise the block is appended. Returns
    ``text`` itself when nothing needs to change. ``blocked``: the block's names, lower-case
    (read from ``block`` when not given); ``max_user_bytes``: see :func:`split`.
    """
    return desired(text, block, managed, blocked=blocked, max_user_bytes=max_user_bytes).text


@dataclass(frozen=True)
class Neutralised:
    """A line of the user's that :func:`apply` commented out, as it was (without its newline)."""

    line: bytes
    overrides: tuple[tuple[str, str], ...]  # (address, blocked name) it gave

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.overrides)

    def __str__(self) -> str:
        return self.line.rstrip(b"\r").decode("utf-8", "replace")


@dataclass(frozen=True)
class Desired:
    text: bytes  # the file as it should be (the same object as the input when unchanged)
    neutralised: tuple[Neutralised, ...]  # lines commented out by this change


def desired(text: bytes, block: bytes, managed: Collection[str] = (), *,
            blocked: AbstractSet[str] | None = None, max_user_bytes: int | None = None) -> Desired:
    """:func:`apply`, saying which lines it neutralised."""
    parsed = split(text, managed, max_user_bytes)
    user_text, at = parsed.user_text, parsed.block_at
    names = blocked if blocked is not None else _names_in(block)
    overriding = _overriding_lines(user_text, names)
    if overriding:  # no copy of the user's text when there is nothing to neutralise
        if at is not None:  # the block moves down by the markers put before it
            at += len(NEUTRALISED_MARKER) * sum(1 for start, _ in overriding if start < at)
        user_text = _with_markers(user_text, overriding)
    found = tuple(line for _, line in overriding)
    starts_a_line = at is not None and (at == 0 or user_text[at - 1:at] == b"\n")
    if at is None or at >= len(user_text) or not starts_a_line:
        result = merge(user_text, block)
    else:
        _require_rendered(block)
        old = parsed.block or b""
        # Keep the variant: should the user's text after the block go, the newline before it
        # is still detoxd's to remove. Only while its style matches the new block's, though.
        if (old.startswith(BEGIN_MARKER_AFTER_UNTERMINATED_LINE)
                and _newline_of_block(old) == _newline_of_block(block)):
            block = _after_unterminated_line(block)
        result = b"".join((user_text[:at], block, user_text[at:]))
    return Desired(text if result == text else result, found)


def neutralise(user_text: bytes, blocked: AbstractSet[str]) -> tuple[bytes, tuple[Neutralised, ...]]:
    """``user_text`` with every line that gives a name in ``blocked`` (lower-case) a real
    address behind :data:`NEUTRALISED_MARKER`, and those lines."""
    overriding = _overriding_lines(user_text, blocked)
    if not overriding:
        return user_text, ()
    return _with_markers(user_text, overriding), tuple(line for _, line in overriding)


def _overriding_lines(user_text: bytes, blocked: AbstractSet[str]) -> list[tuple[int, Neutralised]]:
    """Where each line giving a blocked name a real address starts, and the line."""
    found: list[tuple[int, Neutralised]] = []
    if not blocked:
        return found
    start = 0
    while start < len(user_text):  # a piece at a time: memory stays bounded
        end = user_text.find(b"\n", start + _SCAN_PIECE)
        end = len(user_text) if end == -1 else end + 1
        # Most pieces hold no line with a real address (a list of 0.0.0.0 lines), or name no
        # blocked host at all: a regex search, then one split of the piece (both in C) say so.
        # Python splits on every blank glibc does (and more), so no name escapes this test.
        if _CANDIDATE_LINE.search(user_text, start, end) is not None and not blocked.isdisjoint(
                user_text[start:end].replace(b"#", b" ").decode("ascii", "surrogateescape").lower().split()):
            for match in _CANDIDATE_LINE.finditer(user_text, start, end):
                line = match.group()
                overriding = diagnosis.line_overrides(line.decode("ascii", "surrogateescape"), blocked)
                if overriding:
                    found.append((match.start(), Neutralised(line, tuple(overriding))))
        start = end
    return found


def _with_markers(user_text: bytes, overriding: list[tuple[int, Neutralised]]) -> bytes:
    pieces: list[bytes] = []
    kept_from = 0
    for start, _ in overriding:
        pieces += (user_text[kept_from:start], NEUTRALISED_MARKER)
        kept_from = start
    pieces.append(user_text[kept_from:])
    return b"".join(pieces)


def restore_neutralised(user_text: bytes) -> bytes:
    """``user_text`` with every neutralised line as the user wrote it."""
    if NEUTRALISED_MARKER not in user_text:
        return user_text
    return _NEUTRALISED_LINE.sub(b"", user_text)


def _names_in(block: bytes) -> frozenset[str]:
    return frozenset(name.decode("ascii", "surrogateescape") for name in _ENTRY_LINE.findall(block))


def strip(text: bytes, managed: Collection[str] = (), *, max_user_bytes: int | None = None) -> bytes:
    """The user's text: ``text`` without detoxd's block or its debris (module notes), every
    neutralised line as the user wrote it."""
    return restore_neutralised(split(text, managed, max_user_bytes).user_text)


def _newline_of_block(block: bytes) -> bytes:
    first_line_end = block.find(b"\n")
    return b"\r\n" if block[first_line_end - 1:first_line_end] == b"\r" else b"\n"


def _after_unterminated_line(block: bytes) -> bytes:
    return BEGIN_MARKER_AFTER_UNTERMINATED_LINE + block[len(BEGIN_MARKER):]


def _require_rendered(block: bytes) -> None:
    if not block.startswith(BEGIN_MARKER) or not block.rstrip(b"\r\n").endswith(END_MARKER):
        raise ValueError("block must come from render_block()")


# ---- finding ----


@dataclass(frozen=True)
class Parsed:
    user_text: bytes
    block: bytes | None  # the first intact block as found, marker lines included
    block_at: int | None  # where in user_text that block stood

    @cached_property
    def names(self) -> frozenset[str]:
        """The names in the intact block's entry lines (empty without an intact block)."""
        if self.block is None:
            return frozenset()
        # A piece at a time: at a million names the whole block as text and every match at
        # once (each name twice) were 200 MB of a restart's peak.
        return frozenset(chain.from_iterable(map(_ENTRY_LINE_TEXT.findall, _text_pieces(self.block))))


def _text_pieces(block: bytes, size: int = 1 << 20) -> Iterator[str]:
    """``block`` as text (ASCII, other bytes as surrogates), in pieces of whole lines."""
    start = 0
    while start < len(block):
        end = block.find(b"\n", start + size)
        end = len(block) if end == -1 else end + 1
        yield block[start:end].decode("ascii", "surrogateescape")
        start = end


@dataclass(frozen=True)
class _Marker:
    kind: str
    start: int  # offset of the line
    end: int  # offset after its newline
    newline: bytes  # its own line ending

    @property
    def begins(self) -> bool:
        return self.kind != _END


class TooMuchUserText(ValueError):
    """The file holds more of the user's text than the caller allows (``size`` bytes)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes besides detoxd's block, more than {limit}")
        self.size = size
        self.limit = limit


def split(text: bytes, managed: Collection[str] = (), max_user_bytes: int | None = None) -> Parsed:
    """Separate the user's text from detoxd's block, repairing damage by the module's rules.

    ``max_user_bytes``: raise TooMuchUserText, before the user's text is copied, when it is
    longer (the daemon bounds the memory a hostile hosts file costs)."""
    markers = list(_find_markers(text))
    if not markers and not managed:
        _check_user_size(len(text), max_user_bytes)
        return Parsed(text, None, None)
    return _Splitter(text, managed, max_user_bytes).run(markers)


def _check_user_size(size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise TooMuchUserText(size, limit)


def _find_markers(text: bytes) -> Iterator[_Marker]:
    position = text.find(_MARKER_NEEDLE)
    while position != -1:
        start = text.rfind(b"\n", 0, position) + 1
        newline_at = text.find(b"\n", position)
        end = len(text) if newline_at == -1 else newline_at + 1
        kind = _MARKER_KINDS.get(text[start:end].strip(_MARKER_PADDING + b"\n"))
        if kind is not None:
            line_end = b"\r\n" if text[start:end].endswith(b"\r\n") else b"\n"
            yield _Marker(kind, start, end, line_end)
        position = text.find(_MARKER_NEEDLE, end)


class _Splitter:
    """One pass over the markers, collecting the user's pieces in order."""

    def __init__(self, text: bytes, managed: Collection[str], max_user_bytes: int | None = None) -> None:
        self.text = text
        self._managed_names = managed
        self._max_user_bytes = max_user_bytes
        self.pieces: list[memoryview] = []  # views into ``text``: no copy until the final join
        self.kept = 0
        self.block: bytes | None = None
        self.block_at: int | None = None
        # (piece index, newline) of the last begin marker that ended the user's last line
        self.added_newline: tuple[int, bytes] | None = None

    @cached_property
    def managed(self) -> frozenset[bytes]:
        """Encoded once, and only for damaged files: an intact block never needs the names."""
        return frozenset(name.encode("ascii", "surrogateescape") for name in self._managed_names)

    def run(self, markers: list[_Marker]) -> Parsed:
        text = self.text
        position = 0
        orphan_begin_before = False  # the previous marker was a begin without its end
        index = 0
        while index < len(markers):
            marker = markers[index]
            partner = markers[index + 1] if index + 1 < len(markers) else None
            paired = marker.begins and partner is not None and not partner.begins
            orphan_end = not marker.begins
            self._keep(position, marker.start, suspect=orphan_begin_before or orphan_end)
            if marker.kind == _BEGIN_AFTER_UNTERMINATED:
                self.added_newline = (len(self.pieces), marker.newline)
            if paired:
                assert partner is not None
                if self.block is None:
                    self.block, self.block_at = text[marker.start:partner.end], self.kept
                position = partner.end
                orphan_begin_before = False
                index += 2
            else:
                position = marker.end
                orphan_begin_before = marker.begins
                index += 1
        no_markers_at_all = not markers and bool(self._managed_names)
        self._keep(position, len(text), suspect=orphan_begin_before or no_markers_at_all,
                   truncated_block=orphan_begin_before)
        return self._result()

    def _keep(self, start: int, end: int, *, suspect: bool, truncated_block: bool = False) -> None:
        """Keep ``text[start:end]`` (whole lines, or the file's unterminated last line), as views:
        nothing is copied before the final join. A suspect stretch loses detoxd's debris."""
        view = self._view
        pieces = [view[start:end]] if not suspect else self._without_debris(start, end, truncated_block)
        for piece in pieces:
            if piece:
                self.pieces.append(piece)
                self.kept += len(piece)

    @cached_property
    def _view(self) -> memoryview:
        return memoryview(self.text)

    def _without_debris(self, start: int, end: int, truncated_block: bool) -> list[memoryview]:
        """``text[start:end]`` without detoxd's entry lines (found by one regex scan, so that a
        large stretch is never split into a list of lines) and without a fragment of one of its
        lines as the unterminated last line."""
        text, view = self.text, self._view
        pieces: list[memoryview] = []
        kept_from = start
        for match in _ENTRY_LINE.finditer(text, start, end):
            if match.group(1) not in self.managed:
                continue
            line_end = match.end() + 1 if match.end() < len(text) and text[match.end()] == 10 else match.end()
            if line_end > end:  # the stretch ends inside this line: it is the last one
                line_end = end
            pieces.append(view[kept_from:match.start()])
            kept_from = line_end
        last_line_start = text.rfind(b"\n", kept_from, end) + 1 or kept_from
        if not text.endswith(b"\n", start, end) and end > start:
            last = text[max(last_line_start, kept_from):end]
            if last and self._is_fragment(last, truncated_block):
                end = max(last_line_start, kept_from)
        pieces.append(view[kept_from:end])
        return pieces

    def _is_entry(self, line: bytes) -> bool:
        content = line.removesuffix(b"\r")
        for prefix in _ENTRY_PREFIXES:
            if content.startswith(prefix):
                return content[len(prefix):] in self.managed
        return False

    def _is_fragment(self, line: bytes, truncated_block: bool) -> bool:
        """An unterminated last line that is the start of one of detoxd's lines (truncation)."""
        content = line.strip(_MARKER_PADDING)
        if len(content) >= _SHORTEST_BEGIN_FRAGMENT and (
            BEGIN_MARKER.startswith(content)
            or BEGIN_MARKER_AFTER_UNTERMINATED_LINE.startswith(content)
        ):
            return True
        if not truncated_block:
            return False
        return END_MARKER.startswith(content) or self._is_entry_fragment(content)

    def _is_entry_fragment(self, content: bytes) -> bool:
        if not self.managed:
            return False
        for prefix in _ENTRY_PREFIXES:
            if prefix.startswith(content):
                return True
            if content.startswith(prefix):
                partial_name = content[len(prefix):]
                names = sorted(self.managed)
                found = bisect_left(names, partial_name)
                return found < len(names) and names[found].startswith(partial_name)
        return False

    def _result(self) -> Parsed:
        _check_user_size(self.kept, self._max_user_bytes)
        pieces = self.pieces
        if self.added_newline is not None:
            index, newline = self.added_newline
            if index == len(pieces):  # nothing of the user's after the block: its newline goes
                user_text = b"".join(pieces).removesuffix(newline)
                at = None if self.block_at is None else min(self.block_at, len(user_text))
                return Parsed(user_text, self.block, at)
        return Parsed(b"".join(pieces), self.block, self.block_at)

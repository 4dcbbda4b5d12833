"""The status window's image: UTF-8 text drawn as glyphs, wrapped and shortened to fit."""

from __future__ import annotations

from itertools import pairwise

from PIL import ImageChops

from detoxd.core import textimage
from detoxd.core.textimage import Style, layout, render


def test_text_is_wrapped_to_the_width_and_nothing_is_cut() -> None:
    text = "Day 1 of 14 — ends Tue 15 Dec 09:00\n" + "Open blocklist (read-only; edit with sudoedit) " * 3
    style = Style(max_width=300, max_height=400)
    image = render("detoxd status", text, style)
    assert image.width <= 300 and image.height <= 400
    lines = layout("detoxd status", text, style)
    assert " ".join(line for line, _bold in lines[1:]).split() == text.split(), "every word, in order"


def test_too_much_text_is_shortened_with_an_ellipsis_to_the_height() -> None:
    style = Style(max_width=300, max_height=120)
    image = render("detoxd status", "\n".join(f"line {n}" for n in range(50)), style)
    assert image.height <= 120
    assert layout("detoxd status", "\n".join(f"line {n}" for n in range(50)), style)[-1][0] == "…"


def test_an_em_dash_is_one_glyph_not_mojibake() -> None:
    """xmessage showed "â\\200\\224" for "—": here the dash is drawn, as narrow as one glyph."""
    dash = render("t", "a — b")
    mojibake = render("t", "a \u00e2\u0080\u0094 b")
    assert ImageChops.difference(dash, mojibake).getbbox() is not None
    replacement = render("t", "a \ufffd b")  # what a font without the glyph would show
    assert ImageChops.difference(dash, replacement).getbbox() is not None


def test_the_image_is_only_as_large_as_the_text() -> None:
    small = render("detoxd", "short")
    assert small.width < 200 and small.height < 120
    assert small.getpixel((0, 0)) == textimage.BACKGROUND


def regular(style: Style) -> object:
    return textimage._font(textimage.REGULAR, style.size)


def test_lines_are_filled_greedily_and_never_wider_than_the_width() -> None:
    style = Style(max_width=260, max_height=2000)
    width = style.max_width - 2 * textimage.MARGIN
    text = ("Notifications switched back on twice, silenced again; the block in /etc/hosts "
            "stays as it was while the daemon restarts")
    lines = [line for line, bold in layout("h", text, style) if not bold]
    assert len(lines) > 2 and " ".join(lines) == text
    assert all(textimage._width(line, regular(style)) <= width for line in lines)
    for line, following in pairwise(lines):
        # Greedy: the next line's first word would not have fitted on this one.
        assert textimage._width(f"{line} {following.split()[0]}", regular(style)) > width
    assert layout("h", "fits", style) == [("h", True), ("fits", False)]


def test_an_indented_paragraph_keeps_its_indent_on_every_line() -> None:
    style = Style(max_width=200, max_height=2000)
    lines = [line for line, bold in layout("h", "    " + "indented words " * 6, style) if not bold]
    assert len(lines) > 1 and all(line.startswith("    ") and line[4] != " " for line in lines)


def test_a_word_wider_than_a_line_is_cut_into_the_widest_pieces_that_fit() -> None:
    style = Style(max_width=120, max_height=2000)
    width = style.max_width - 2 * textimage.MARGIN
    word = "blocklist.yaml:3:domains[0]:" * 3
    lines = [line for line, bold in layout("h", f"a {word}", style) if not bold]
    assert lines[0] == "a" and "".join(lines[1:]) == word and len(lines) > 3
    assert all(textimage._width(piece, regular(style)) <= width for piece in lines)
    for piece, following in pairwise(lines[1:]):
        assert textimage._width(piece + following[0], regular(style)) > width  # no character to spare


def test_what_does_not_fit_the_height_ends_in_an_ellipsis_exactly_at_the_limit() -> None:
    style = Style(size=14, max_width=400, max_height=200)  # (200 - 24) // 22 = 8 lines, 2 for the footer
    room = (style.max_height - 2 * textimage.MARGIN) // (14 + 14 // 3 + textimage.LINE_GAP) - 2
    assert room == 6
    exactly = layout("h", "\n".join(f"line {n}" for n in range(room - 1)), style)
    assert len(exactly) == room and exactly[-1] == (f"line {room - 2}", False)
    over = layout("h", "\n".join(f"line {n}" for n in range(room)), style)
    assert len(over) == room and over[-1] == (textimage.ELLIPSIS, False) and over[-2] == ("line 3", False)
    tiny = layout("h", "a\nb", Style(size=14, max_width=400, max_height=30))
    assert tiny == [(textimage.ELLIPSIS, False)]  # never less than one line
    assert layout("h", "", style) == [("h", True), ("", False)]


def test_the_image_is_sized_to_its_lines_and_the_footer() -> None:
    style = Style(size=14, max_width=640, max_height=480)
    line_height = 14 + 14 // 3 + textimage.LINE_GAP
    image = render("detoxd", "short", style)
    footer = textimage._width(textimage.FOOTER, textimage._font(textimage.REGULAR, 11))
    widest = max(textimage._width("detoxd", textimage._font(textimage.BOLD, 14)),
                 textimage._width("short", regular(style)), footer)
    assert image.size == (widest + 2 * textimage.MARGIN,
                          3 * line_height + textimage.LINE_GAP + 2 * textimage.MARGIN)
    capped = render("detoxd", "x " * 400, Style(size=14, max_width=150, max_height=30))
    assert capped.size == (150, 30)

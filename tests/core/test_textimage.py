"""The status window's image: UTF-8 text drawn as glyphs, wrapped and shortened to fit."""

from __future__ import annotations

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

"""The status window's content as an image, drawn with Pillow: a pure function of the text.

xmessage (what the xorg tray used) draws with core X fonts, which garble UTF-8 ("â\\200\\224"
for "—") and cut long lines. Drawing the text with DejaVu Sans into an image sized to it
renders any Unicode the font has, and wraps and shortens the text to fit the screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"),
             Path("/usr/share/fonts/TTF"))
REGULAR, BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"
BACKGROUND = (246, 246, 244)
INK = (20, 20, 24)
MUTED = (96, 96, 104)
MARGIN = 12
LINE_GAP = 4
FOOTER = "Click or press any key to close"
ELLIPSIS = "…"


@dataclass(frozen=True)
class Style:
    size: int = 14
    max_width: int = 640
    max_height: int = 480


def layout(heading: str, text: str, style: Style) -> list[tuple[str, bool]]:
    """(line, bold) pairs: the heading, the text wrapped to the width, shortened to the height."""
    width = style.max_width - 2 * MARGIN
    lines = [(part, True) for part in _wrap(heading, _font(BOLD, style.size), width)]
    for paragraph in text.splitlines() or [""]:
        lines += [(part, False) for part in _wrap(paragraph, _font(REGULAR, style.size), width)]
    fits = max(1, (style.max_height - 2 * MARGIN) // _line_height(style) - 2)  # room for the footer
    if len(lines) > fits:
        lines = [*lines[:fits - 1], (ELLIPSIS, False)]
    return lines


def render(heading: str, text: str, style: Style = Style()) -> Image.Image:
    """An RGB image just large enough for the text (and never larger than the style allows)."""
    lines = layout(heading, text, style)
    footer_font = _font(REGULAR, max(8, style.size - 3))
    widths = [_width(line, _font(BOLD if bold else REGULAR, style.size)) for line, bold in lines]
    widths.append(_width(FOOTER, footer_font))
    width = min(style.max_width, max(widths) + 2 * MARGIN)
    height = min(style.max_height, (len(lines) + 1) * _line_height(style) + LINE_GAP + 2 * MARGIN)
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    y = MARGIN
    for line, bold in lines:
        draw.text((MARGIN, y), line, font=_font(BOLD if bold else REGULAR, style.size), fill=INK)
        y += _line_height(style)
    draw.text((MARGIN, y + LINE_GAP), FOOTER, font=footer_font, fill=MUTED)
    return image


def _wrap(paragraph: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Words onto lines no wider than ``width``; a word wider than a line is cut by characters.
    Leading spaces (indented lines) are kept on the first line."""
    if _width(paragraph, font) <= width:
        return [paragraph]
    indent = paragraph[:len(paragraph) - len(paragraph.lstrip(" "))]
    lines: list[str] = []
    current = indent
    for word in paragraph.split():
        candidate = f"{current} {word}" if current.strip() else current + word
        if _width(candidate, font) <= width:
            current = candidate
            continue
        if current.strip():
            lines.append(current)
        current = indent + word
        while _width(current, font) > width and len(current) > len(indent) + 1:
            cut = len(current) - 1
            while cut > len(indent) + 1 and _width(current[:cut], font) > width:
                cut -= 1
            lines.append(current[:cut])
            current = indent + current[cut:]
    if current.strip():
        lines.append(current)
    return lines


def _width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    return int(font.getlength(text)) + 1


def _line_height(style: Style) -> int:
    return style.size + style.size // 3 + LINE_GAP


@lru_cache(maxsize=16)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for directory in FONT_DIRS:
        if (directory / name).exists():
            return ImageFont.truetype(str(directory / name), size)
    return ImageFont.load_default(size=size)

"""The tray icon, drawn with Pillow: a pure function of what the agent knows.

One rounded badge whose colour says what kind of state it is and whose glyph says the rest:
the days left during a detox, a ring when idle, "?" when the daemon cannot be reached, "!"
for a config error (amber) or a hosts file that was tampered with or is out of sync (red).
A small blue dot in the corner marks a reminder or hot-seat handover the user has not yet
seen go by. Drawn four times larger and scaled down, so it stays crisp from 16 to 48 px.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from detoxd.core import statustext

if TYPE_CHECKING:
    from detoxd.protocol import Status

SUPERSAMPLE = 4
BOLD_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
)

RGB = tuple[int, int, int]


class Kind(enum.Enum):
    ACTIVE = "active"
    IDLE = "idle"
    UNREACHABLE = "unreachable"
    CONFIG_ERROR = "config_error"
    TAMPERED = "tampered"


@dataclass(frozen=True)
class Palette:
    background: RGB
    glyph: RGB


PALETTES: dict[Kind, Palette] = {
    Kind.ACTIVE: Palette(background=(21, 112, 56), glyph=(255, 255, 255)),
    Kind.IDLE: Palette(background=(92, 99, 112), glyph=(255, 255, 255)),
    Kind.UNREACHABLE: Palette(background=(30, 30, 36), glyph=(235, 235, 235)),
    Kind.CONFIG_ERROR: Palette(background=(250, 176, 5), glyph=(0, 0, 0)),
    Kind.TAMPERED: Palette(background=(200, 30, 30), glyph=(255, 255, 255)),
}
NOTICE_DOT: RGB = (40, 120, 255)
NOTICE_DOT_RING: RGB = (255, 255, 255)


@dataclass(frozen=True)
class Face:
    """What the icon shows: the kind of state, the text in it (or None for a ring), a notice dot."""

    kind: Kind
    text: str | None
    notice: bool = False


def face_for(status: Status | None, *, tampered: bool = False, notice: bool = False) -> Face:
    """The face for a daemon status; None means the daemon is unreachable.

    ``tampered`` is the agent's memory of a recent ``tamper`` event: the daemon restores the
    block at once, so the status alone would show it for an instant only.
    """
    if status is None:
        return Face(Kind.UNREACHABLE, "?", notice)
    if status.config_error:
        return Face(Kind.CONFIG_ERROR, "!", notice)
    if tampered or not status.hosts_in_sync or statustext.enforcement_problems(status):
        return Face(Kind.TAMPERED, "!", notice)
    if status.active:
        return Face(Kind.ACTIVE, days_text(status.days_left), notice)
    return Face(Kind.IDLE, None, notice)


def days_text(days_left: Any) -> str:
    if not isinstance(days_left, int) or isinstance(days_left, bool) or days_left < 0:
        return "?"
    return str(days_left) if days_left <= 99 else "99+"


def render(face: Face, size: int, *, rounded: bool = True) -> Image.Image:
    """An RGBA image, ``size`` px square; the corners outside the badge are transparent
    (``rounded=False``: a square badge, every pixel opaque)."""
    if size < 8:
        raise ValueError(f"icon size {size} is too small to read")
    big = size * SUPERSAMPLE
    palette = PALETTES[face.kind]
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=big // 5 if rounded else 0,
                           fill=palette.background)
    if face.text is None:
        _draw_ring(draw, big, palette.glyph)
    else:
        _draw_text(draw, big, face.text, palette.glyph)
    if face.notice:
        _draw_notice_dot(draw, big)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def render_opaque(face: Face, width: int, height: int) -> Image.Image:
    """An RGB image of exactly ``width`` x ``height`` for trays that cannot show transparency
    (XEmbed, as pystray's xorg back-end docks into trayer): the badge fills the whole window, so
    no corner turns black, and the glyph is drawn at the size of the centred square, so a
    window that is not square never stretches it."""
    side = min(width, height)
    canvas = Image.new("RGB", (width, height), PALETTES[face.kind].background)
    if side < 8:
        return canvas  # a window not docked yet (1x1): nothing to read at that size anyway
    square = render(face, side, rounded=False).convert("RGB")
    canvas.paste(square, ((width - side) // 2, (height - side) // 2))
    return canvas


def _draw_ring(draw: ImageDraw.ImageDraw, big: int, colour: RGB) -> None:
    margin = big * 0.24
    draw.ellipse((margin, margin, big - margin, big - margin), outline=colour, width=max(1, big // 8))


def _draw_text(draw: ImageDraw.ImageDraw, big: int, text: str, colour: RGB) -> None:
    """Centred, as large as fits in the badge with a small margin."""
    box = big * 0.84
    font_size = big
    while font_size > 4:
        font = _font(font_size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= box and bottom - top <= box * 0.8:
            break
        font_size -= max(1, font_size // 20)
    x = (big - (right - left)) / 2 - left
    y = (big - (bottom - top)) / 2 - top
    draw.text((x, y), text, font=font, fill=colour)


def _draw_notice_dot(draw: ImageDraw.ImageDraw, big: int) -> None:
    radius = big * 0.2
    centre_x, centre_y = big - radius, radius
    ring = radius + big * 0.04
    draw.ellipse((centre_x - ring, centre_y - ring, centre_x + ring, centre_y + ring), fill=NOTICE_DOT_RING)
    draw.ellipse((centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius),
                 fill=NOTICE_DOT)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in BOLD_FONTS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)

"""The icon is a pure function of the state: check what a user sees (colours, glyph, contrast)."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from detoxd.core.icon import NOTICE_DOT, PALETTES, Face, Kind, days_text, face_for, render, render_opaque
from detoxd.protocol import Status

SIZES = (16, 22, 24, 32, 48)
ACTIVE = {"state": "active", "days_left": 12, "hosts_in_sync": True, "config_error": None}


def luminance(rgb: tuple[int, ...]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return pixel[3] > 200 and all(abs(p - c) <= tolerance for p, c in zip(pixel[:3], colour))


def pixels(image: Image.Image) -> list[tuple[int, ...]]:
    data = image.convert("RGBA").tobytes()
    return [tuple(data[i:i + 4]) for i in range(0, len(data), 4)]


def dominant_colour(image: Image.Image) -> tuple[int, ...]:
    opaque = [p for p in pixels(image) if p[3] > 200]
    return max(set(opaque), key=opaque.count)


def glyph_box(image: Image.Image, kind: Kind) -> tuple[int, int, int, int] | None:
    """Bounding box of the pixels that are clearly glyph-coloured."""
    glyph = PALETTES[kind].glyph
    mask = Image.new("L", image.size)
    mask.putdata([255 if near(p, glyph, 60) else 0 for p in pixels(image)])
    return mask.getbbox()


@pytest.mark.parametrize("kind", list(Kind))
def test_every_palette_has_readable_contrast(kind: Kind) -> None:
    palette = PALETTES[kind]
    assert contrast(palette.background, palette.glyph) >= 4.5


@pytest.mark.parametrize(("kind", "size"), list(itertools.product(list(Kind), SIZES)))
def test_badge_fills_the_icon_with_a_readable_glyph(kind: Kind, size: int) -> None:
    text = {Kind.ACTIVE: "14", Kind.IDLE: None}.get(kind, "!")
    image = render(Face(kind, text), size)
    assert image.size == (size, size)
    assert image.mode == "RGBA"
    everything = pixels(image)
    background = sum(near(p, PALETTES[kind].background) for p in everything)
    assert background >= 0.3 * size * size, "the badge colour should dominate"
    box = glyph_box(image, kind)
    assert box is not None, "no glyph pixels at all"
    _left, top, _right, bottom = box
    assert bottom - top >= 0.35 * size, f"glyph only {bottom - top}px tall in a {size}px icon"
    assert image.getpixel((0, 0))[3] < 128, "corners outside the rounded badge are transparent"


@pytest.mark.parametrize("size", SIZES)
def test_kinds_look_different_from_each_other(size: int) -> None:
    faces = {kind: render(Face(kind, "5" if kind is Kind.ACTIVE else "!"), size) for kind in Kind}
    for a, b in itertools.combinations(Kind, 2):
        colour_a = dominant_colour(faces[a])
        colour_b = dominant_colour(faces[b])
        distance = sum(abs(x - y) for x, y in zip(colour_a[:3], colour_b[:3]))
        assert distance > 60, f"{a} and {b} are too alike at {size}px: {colour_a} vs {colour_b}"


def test_the_number_changes_the_image() -> None:
    assert render(Face(Kind.ACTIVE, "14"), 24).tobytes() != render(Face(Kind.ACTIVE, "3"), 24).tobytes()


def test_two_digits_stay_inside_the_badge_at_16px() -> None:
    image = render(Face(Kind.ACTIVE, "14"), 16)
    box = glyph_box(image, Kind.ACTIVE)
    assert box is not None
    left, _top, right, _bottom = box
    assert left >= 1 and right <= 15
    assert right - left >= 7, "two digits must be wide enough to read"


def test_notice_dot_is_blue_in_the_top_right_corner() -> None:
    size = 32
    with_dot = render(Face(Kind.ACTIVE, "3", notice=True), size)
    without = render(Face(Kind.ACTIVE, "3"), size)
    quarter = (size * 3 // 4, 0, size, size // 4)
    assert any(near(p, NOTICE_DOT, 50) for p in pixels(with_dot.crop(quarter)))
    assert not any(near(p, NOTICE_DOT, 50) for p in pixels(without.crop(quarter)))


def test_tiny_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        render(Face(Kind.IDLE, None), 4)


@pytest.mark.parametrize(("status", "tampered", "expected"), [
    (None, False, Face(Kind.UNREACHABLE, "?")),
    ({**ACTIVE, "config_error": "blocklist.yaml:3: bad"}, False, Face(Kind.CONFIG_ERROR, "!")),
    ({**ACTIVE, "hosts_in_sync": False}, False, Face(Kind.TAMPERED, "!")),
    (ACTIVE, True, Face(Kind.TAMPERED, "!")),
    (ACTIVE, False, Face(Kind.ACTIVE, "12")),
    ({"state": "idle", "hosts_in_sync": True, "config_error": None}, False, Face(Kind.IDLE, None)),
])
def test_face_for_status(status: dict[str, object] | None, tampered: bool, expected: Face) -> None:
    assert face_for(typed(status), tampered=tampered) == expected


@pytest.mark.parametrize(("days", "text"), [(14, "14"), (1, "1"), (0, "0"), (150, "99+"), (None, "?"),
                                            (True, "?"), (False, "?"), (-1, "?"), (99, "99"), (100, "99+"),
                                            (365, "99+"), (14.0, "?"), ("14", "?")])
def test_days_text(days: object, text: str) -> None:
    assert days_text(days) == text


@pytest.mark.parametrize("size", [16, 22, 24, 30])
def test_opaque_icon_has_no_black_corners_at_tray_sizes(size: int) -> None:
    """For XEmbed trays (trayer), which show no transparency: every pixel is the badge."""
    face = Face(Kind.ACTIVE, "14")
    image = render_opaque(face, size, size)
    assert image.mode == "RGB" and image.size == (size, size)
    background = PALETTES[Kind.ACTIVE].background
    for corner in ((0, 0), (size - 1, 0), (0, size - 1), (size - 1, size - 1)):
        assert image.getpixel(corner) == background


@pytest.mark.parametrize(("width", "height"), [(30, 24), (24, 30), (40, 22)])
def test_a_window_that_is_not_square_does_not_stretch_the_glyph(width: int, height: int) -> None:
    face = Face(Kind.ACTIVE, "14")
    side = min(width, height)
    image = render_opaque(face, width, height)
    assert image.size == (width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    assert square.tobytes() == render_opaque(face, side, side).tobytes(), "the square, centred, unscaled"
    outside = [image.getpixel((x, y)) for x in range(width) for y in range(height)
               if not (left <= x < left + side and top <= y < top + side)]
    assert set(outside) <= {PALETTES[Kind.ACTIVE].background}


def test_a_notice_dot_shows_on_every_face_and_only_when_asked() -> None:
    active = {"state": "active", "days_left": 3, "hosts_in_sync": True, "config_error": None}
    for document, kind in ((None, Kind.UNREACHABLE), ({**active, "config_error": "x"}, Kind.CONFIG_ERROR),
                           ({**active, "problems": ["p"]}, Kind.TAMPERED), (active, Kind.ACTIVE),
                           ({"state": "idle", "hosts_in_sync": True}, Kind.IDLE)):
        status = typed(document)
        assert face_for(status, notice=True) == Face(kind, face_for(status).text, True)
        assert face_for(status).notice is False
    assert face_for(typed(active)) == Face(Kind.ACTIVE, "3")  # not tampered unless the agent says so


def typed(document: dict[str, object] | None) -> Status | None:
    return None if document is None else Status.from_json(document)


@pytest.mark.parametrize("text", ["9", "99", "99+"])
def test_the_days_are_centred_and_as_large_as_the_badge_allows(text: str) -> None:
    size = 64
    box = glyph_box(render(Face(Kind.ACTIVE, text), size), Kind.ACTIVE)
    assert box is not None
    left, top, right, bottom = box  # right and bottom exclusive
    assert abs((left + right) / 2 - size / 2) <= 1.5 and abs((top + bottom) / 2 - size / 2) <= 1.5
    assert right - left <= 0.84 * size and bottom - top <= 0.84 * 0.8 * size + 1
    # Grown until one side reaches the margin: wide texts fill the width, a digit the height.
    assert right - left >= 0.7 * size if len(text) > 1 else bottom - top >= 0.6 * size


def test_a_failing_mail_server_does_not_turn_the_badge_red() -> None:
    mailing = typed({**ACTIVE, "problems": ["mail: smtp.example.com:587: connection refused; fix: …"]})
    assert face_for(mailing) == Face(Kind.ACTIVE, "12")

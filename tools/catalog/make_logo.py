#!/usr/bin/env python3
"""Draws __metadata__/logo.png, the connector's logo in OpenCTI's connector catalog: a 256x256 PNG.

A shield (what the feed is for) on a dark tile, crossed by a trail: a path of network hops, the last one red (the
malicious endpoint Maltrail lists). Drawn at 4x and scaled down, for smooth edges. Needs Pillow:

    python3 -m venv /tmp/logo-venv && /tmp/logo-venv/bin/pip install pillow
    /tmp/logo-venv/bin/python tools/catalog/make_logo.py [OUT.png]

The output is deterministic for a given Pillow version; commit the PNG it writes.
"""

import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
SCALE = 4
S = SIZE * SCALE

BACKGROUND = (17, 28, 48, 255)  # dark navy
SHIELD = (37, 62, 102, 255)
SHIELD_EDGE = (120, 170, 230, 255)
TRAIL = (236, 242, 250, 255)
HOP = (236, 242, 250, 255)
TARGET = (230, 57, 70, 255)  # red: the malicious end of the trail


def px(value: float) -> int:
    """A coordinate of the 256-pixel design, in the 4x canvas."""
    return round(value * SCALE)


def shield_outline() -> list[tuple[int, int]]:
    """A shield: straight top with rounded shoulders, sides curving into a point at the bottom."""
    points = []
    top, bottom, left, right, middle = 40, 222, 52, 204, 128
    # top edge, slightly dipped in the middle
    for i in range(0, 21):
        t = i / 20
        x = left + (right - left) * t
        y = top + 8 * (1 - (2 * t - 1) ** 2) * 0.6
        points.append((x, y))
    # right side: straight down, then a quadratic curve to the point
    side_end = 130
    points.append((right, side_end))
    for i in range(1, 31):
        t = i / 30
        # quadratic Bezier from (right, side_end) via (right, 190) to (middle, bottom)
        x = (1 - t) ** 2 * right + 2 * (1 - t) * t * right + t**2 * middle
        y = (1 - t) ** 2 * side_end + 2 * (1 - t) * t * 190 + t**2 * bottom
        points.append((x, y))
    for i in range(1, 31):
        t = i / 30
        x = (1 - t) ** 2 * middle + 2 * (1 - t) * t * left + t**2 * left
        y = (1 - t) ** 2 * bottom + 2 * (1 - t) * t * 190 + t**2 * side_end
        points.append((x, y))
    return [(px(x), px(y)) for x, y in points]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "__metadata__/logo.png"
    image = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)

    # The tile.
    draw.rounded_rectangle((0, 0, S - 1, S - 1), radius=px(44), fill=BACKGROUND)

    # The shield, with an edge.
    outline = shield_outline()
    draw.polygon(outline, fill=SHIELD)
    draw.line(outline + [outline[0]], fill=SHIELD_EDGE, width=px(5), joint="curve")

    # The trail: hops winding up from the lower left, the last one, in the middle, the target.
    hops = [(90, 162), (114, 134), (152, 152), (164, 112), (128, 90)]
    draw.line([(px(x), px(y)) for x, y in hops], fill=TRAIL, width=px(7), joint="curve")
    for x, y in hops[:-1]:
        r = 9
        draw.ellipse((px(x - r), px(y - r), px(x + r), px(y + r)), fill=HOP, outline=BACKGROUND, width=px(3))
    # The target: a red node with a ring.
    x, y = hops[-1]
    ring, core = 21, 12
    draw.ellipse((px(x - ring), px(y - ring), px(x + ring), px(y + ring)), outline=TARGET, width=px(5))
    draw.ellipse((px(x - core), px(y - core), px(x + core), px(y + core)), fill=TARGET)

    logo = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    logo.save(out, format="PNG", optimize=True)
    print(f"wrote {out} ({SIZE}x{SIZE})")


if __name__ == "__main__":
    main()

"""The vocabulary of ShapesWorld: shapes, named colors, sizes, regions, backgrounds.

Everything here is plain data so READMEs, captions, the renderer and the evaluator quote
one source of truth.

Design constraints (they are what makes the evaluator reach >=99% per attribute):

* Object colors are saturated or dark and pairwise far apart in RGB (minimum pairwise
  distance >= 0.35 on [0, 1] channels), so nearest-palette classification survives JPEG,
  noise and blur.
* Backgrounds are light, desaturated tones (every channel >= 0.80, chroma <= 0.10) and
  low-contrast textures, so no background can be confused with an object color: the
  lightest object color (yellow) still has its blue channel far below any background.
* Sizes are circumradii as a fraction of ``min(width, height)``; adjacent classes differ
  by a factor >= 1.3, and the smallest object still has a ~5.8 px circumradius at 64 px,
  where the evaluator's shape features (k-fold symmetry moments on anti-aliased masks)
  separate every pair of shapes (hexagon vs circle included).
"""

from __future__ import annotations

import math

# Shapes: every one is centrally placed on its area centroid (so "position" = centroid)
# and described with circumradius 1 in :mod:`arm_data.shapes.geometry`.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon", "ellipse")

# Named object colors (sRGB, 0-255).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (250, 125, 0),
    "yellow": (250, 225, 20),
    "green": (35, 155, 55),
    "cyan": (0, 185, 205),
    "blue": (30, 75, 215),
    "purple": (130, 45, 180),
    "pink": (240, 105, 185),
    "brown": (125, 75, 30),
    "black": (25, 25, 25),
}

# Size classes: circumradius as a fraction of min(width, height).
SIZES: dict[str, float] = {"small": 0.09, "medium": 0.125, "large": 0.165}

# The 3x3 grid of named regions, row-major (row 0 = top). Region of a point (x, y) in
# normalized coordinates: column = floor(3x), row = floor(3y).
REGIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)

BACKGROUND_KINDS: tuple[str, ...] = ("plain", "gradient", "texture")
TEXTURE_PATTERNS: tuple[str, ...] = ("noise", "stripes", "checker")

# Background tones: light and desaturated (checked by `is_background_tone`).
BACKGROUND_MIN_CHANNEL = 205
BACKGROUND_MAX_CHROMA = 26
# Peak-to-peak amplitude of a texture in 0-255 units (low contrast by construction).
TEXTURE_AMPLITUDE = 14

# Minimum gap between two objects' circumcircles, as a fraction of min(width, height),
# and the inner margin that keeps an object's center away from region borders (fraction
# of a region's width/height) so its named region is unambiguous.
MIN_GAP = 0.045
REGION_MARGIN = 0.14
# Minimum distance of any object point from the image border (fraction of min side).
BORDER_MARGIN = 0.02


def is_background_tone(rgb: tuple[int, int, int]) -> bool:
    """True when ``rgb`` is light and desaturated enough to be a ShapesWorld background."""
    return min(rgb) >= BACKGROUND_MIN_CHANNEL and max(rgb) - min(rgb) <= BACKGROUND_MAX_CHROMA


def region_index(x: float, y: float) -> int:
    """Index into :data:`REGIONS` of normalized point ``(x, y)`` (0 <= x, y <= 1)."""
    col = min(2, max(0, int(math.floor(x * 3))))
    row = min(2, max(0, int(math.floor(y * 3))))
    return row * 3 + col


def region_center(region: str) -> tuple[float, float]:
    """Normalized center of a named region."""
    k = REGIONS.index(region)
    return ((k % 3) + 0.5) / 3, ((k // 3) + 0.5) / 3


def check_choice(value: str, choices, what: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(map(str, choices))}")
    return value


def _min_pairwise_distance() -> float:
    vals = [tuple(c / 255 for c in v) for v in COLORS.values()]
    return min(math.dist(a, b) for i, a in enumerate(vals) for b in vals[i + 1:])


assert _min_pairwise_distance() >= 0.35, "palette colors must stay far apart"
assert not any(is_background_tone(c) for c in COLORS.values())

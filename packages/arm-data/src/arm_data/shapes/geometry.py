"""Shape outlines of ShapesWorld as polygons of circumradius 1 around their area centroid.

Every shape is a regular or centrally symmetric figure, so its area centroid, its
circumcenter and the spec's ``(x, y)`` coincide: the evaluator reads position back from
the centroid of the detected mask, and size from its area divided by the unit area below.

Coordinates follow the image convention (x right, y down); rotation is in degrees,
counter-clockwise as seen on screen.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from arm_data.shapes.palette import SHAPES, check_choice

# Smooth outlines are drawn as many-sided polygons; 96 sides are indistinguishable from a
# true curve up to 512 px with 4x supersampling.
_CURVE_SIDES = 96
# Star: 5 points, inner radius / outer radius. 0.45 (a bit fatter than the classic 0.38)
# keeps the arms several pixels wide at the smallest size.
STAR_INNER = 0.45
# Cross (plus sign): arm half-width / arm half-length.
CROSS_WIDTH = 0.35
# Ellipse: minor / major semi-axis.
ELLIPSE_RATIO = 0.5


def _regular(n: int, start_deg: float) -> np.ndarray:
    a = np.deg2rad(start_deg + 360.0 / n * np.arange(n))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


@cache
def unit_polygon(shape: str) -> np.ndarray:
    """Vertices (N, 2) of ``shape`` with circumradius 1, centered on its centroid, upright."""
    check_choice(shape, SHAPES, "shape")
    if shape == "circle":
        pts = _regular(_CURVE_SIDES, 0.0)
    elif shape == "ellipse":
        pts = _regular(_CURVE_SIDES, 0.0) * np.array([1.0, ELLIPSE_RATIO])
    elif shape == "square":
        pts = _regular(4, 45.0)
    elif shape == "triangle":
        pts = _regular(3, -90.0)  # apex up (y grows downwards)
    elif shape == "hexagon":
        pts = _regular(6, 0.0)
    elif shape == "star":
        a = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER)
        pts = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    else:  # cross
        half = 1.0 / math.sqrt(1.0 + CROSS_WIDTH**2)
        w = CROSS_WIDTH * half
        pts = np.array([(w, -half), (w, -w), (half, -w), (half, w), (w, w), (w, half),
                        (-w, half), (-w, w), (-half, w), (-half, -w), (-w, -w), (-w, -half)])
    pts.setflags(write=False)
    return pts


@cache
def unit_area(shape: str) -> float:
    """Area of the unit-circumradius polygon (shoelace formula)."""
    p = unit_polygon(shape)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def shape_vertices(shape: str, cx: float, cy: float, radius: float,
                   rotation: float = 0.0) -> np.ndarray:
    """Vertices (N, 2) in pixels of ``shape`` at center ``(cx, cy)``, circumradius ``radius``
    and ``rotation`` degrees (counter-clockwise on screen)."""
    t = math.radians(rotation)
    c, s = math.cos(t), math.sin(t)
    # Screen y points down, so a counter-clockwise turn on screen is (x, y) -> (xc + ys, -xs + yc).
    rot = np.array([[c, -s], [s, c]])
    return unit_polygon(shape) @ rot * radius + np.array([cx, cy])

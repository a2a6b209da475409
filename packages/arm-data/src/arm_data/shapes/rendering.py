"""Render a :class:`SceneSpec` to an RGB image with pillow (anti-aliased by supersampling).

Each object's coverage is rasterized at ``supersample`` x resolution inside its own
bounding box and box-filtered down, which gives exact area coverage (alpha) per output
pixel; objects are then alpha-composited over the background in float and rounded once.
The output is a pure function of ``(spec, width, height, supersample)``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from arm_data.shapes.geometry import shape_vertices
from arm_data.shapes.palette import COLORS, TEXTURE_AMPLITUDE
from arm_data.shapes.spec import Background, ObjectSpec, SceneSpec

MIN_SIDE, MAX_SIDE = 8, 2048


def _check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or not MIN_SIDE <= v <= MAX_SIDE:
            raise ValueError(f"render {name} must be an integer in [{MIN_SIDE}, {MAX_SIDE}], got {v!r}")


def _value_noise(seed: int, width: int, height: int, cells: int = 6) -> np.ndarray:
    """Smooth noise in [-0.5, 0.5]: a random (cells+1)^2 lattice, bilinearly interpolated."""
    rng = np.random.default_rng(seed)
    lattice = rng.random((cells + 1, cells + 1))
    gy = (np.arange(height) + 0.5) / height * cells
    gx = (np.arange(width) + 0.5) / width * cells
    y0 = np.minimum(gy.astype(int), cells - 1)
    x0 = np.minimum(gx.astype(int), cells - 1)
    fy = (gy - y0)[:, None]
    fx = (gx - x0)[None, :]
    # Smoothstep weights hide the lattice.
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    a = lattice[y0][:, x0]
    b = lattice[y0][:, x0 + 1]
    c = lattice[y0 + 1][:, x0]
    d = lattice[y0 + 1][:, x0 + 1]
    v = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    lo, hi = v.min(), v.max()
    return (v - lo) / max(hi - lo, 1e-9) - 0.5


def render_background(bg: Background, width: int, height: int) -> np.ndarray:
    """Background as float array (H, W, 3) in 0..255."""
    base = np.asarray(bg.color, dtype=np.float64)
    out = np.broadcast_to(base, (height, width, 3)).copy()
    if bg.kind == "plain":
        return out
    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    t = math.radians(bg.angle)
    proj = np.cos(t) * xs[None, :] + np.sin(t) * ys[:, None]  # (H, W)
    if bg.kind == "gradient":
        lo, hi = min(0.0, math.cos(t)) + min(0.0, math.sin(t)), max(0.0, math.cos(t)) + max(0.0, math.sin(t))
        u = (proj - lo) / max(hi - lo, 1e-9)
        c2 = np.asarray(bg.color2, dtype=np.float64)
        return out + u[..., None] * (c2 - base)
    if bg.pattern == "noise":
        pat = _value_noise(bg.seed, width, height)
    elif bg.pattern == "stripes":
        period = 1.0 / (4 + bg.seed % 5)
        pat = 0.5 * np.sin(2 * math.pi * proj / period)
    else:  # checker
        n = 4 + bg.seed % 4
        pat = ((np.floor(xs * n)[None, :] + np.floor(ys * n)[:, None]) % 2) - 0.5
    # Texture darkens only, so the background never leaves the light-tone range upwards.
    return out + (pat[..., None] - 0.5) * TEXTURE_AMPLITUDE


def object_coverage(obj: ObjectSpec, width: int, height: int,
                    supersample: int = 4) -> tuple[np.ndarray, int, int]:
    """Anti-aliased coverage of one object: ``(alpha (h, w) in [0, 1], x0, y0)`` where
    ``(x0, y0)`` is the top-left output pixel of the returned window."""
    r = obj.pixel_radius(width, height)
    cx, cy = obj.x * width, obj.y * height
    x0, y0 = max(0, int(math.floor(cx - r)) - 1), max(0, int(math.floor(cy - r)) - 1)
    x1, y1 = min(width, int(math.ceil(cx + r)) + 1), min(height, int(math.ceil(cy + r)) + 1)
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    s = supersample
    verts = shape_vertices(obj.shape, cx - x0, cy - y0, r, obj.rotation)
    # PIL fills the pixel whose *center* is inside; pixel i spans [i, i+1) in our continuous
    # coordinates, whose center is i + 0.5, hence the -0.5 shift.
    pts = [(float(px * s - 0.5), float(py * s - 0.5)) for px, py in verts]
    canvas = Image.new("L", (w * s, h * s), 0)
    ImageDraw.Draw(canvas).polygon(pts, fill=255)
    small = canvas.resize((w, h), Image.BOX) if s > 1 else canvas
    return np.asarray(small, dtype=np.float64) / 255.0, x0, y0


def render_array(spec: SceneSpec, width: int = 64, height: int = 64,
                 supersample: int = 4) -> np.ndarray:
    """Render to a uint8 array (H, W, 3)."""
    _check_size(width, height)
    if not isinstance(supersample, int) or not 1 <= supersample <= 8:
        raise ValueError(f"supersample must be an integer in [1, 8], got {supersample!r}")
    img = render_background(spec.background, width, height)
    for obj in spec.objects:
        alpha, x0, y0 = object_coverage(obj, width, height, supersample)
        h, w = alpha.shape
        color = np.asarray(COLORS[obj.color], dtype=np.float64)
        win = img[y0:y0 + h, x0:x0 + w]
        win += alpha[..., None] * (color - win)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render(spec: SceneSpec, width: int = 64, height: int = 64, supersample: int = 4) -> Image.Image:
    """Render ``spec`` as a PIL RGB image of ``width`` x ``height`` pixels.

    Args:
        spec: the scene.
        width, height: output size in pixels (any value in [8, 2048]; ShapesWorld is
            designed and evaluated for 32..512, square or not).
        supersample: per-axis supersampling factor for anti-aliasing (1 = aliased).
    """
    return Image.fromarray(render_array(spec, width, height, supersample), mode="RGB")

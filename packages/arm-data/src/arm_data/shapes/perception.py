"""Read an RGB image back into a ShapesWorld scene (the evaluator's eyes).

Pipeline (numpy + ``scipy.ndimage``; a few ms per 64-px image on one core):

1. **Background model.** Light, low-chroma pixels are background candidates; a linear
   model ``B(x, y) = a + b x + c y`` per channel is fit by least squares, then refit on
   the inliers. It is exact for plain and gradient backgrounds and within a few levels
   for the low-contrast textures.
2. **Foreground.** Pixels farther than ``fg_threshold`` (RGB distance on [0, 1]) from
   ``B`` are foreground; 8-connected components below ``min_area`` are dropped.
3. **Color.** The most saturated pixels of a component (its core) give its observed
   color ``C``; the name is the palette color whose segment ``[B, palette]`` passes
   closest to ``C`` (so a washed-out, anti-aliased or JPEG-bled red still reads red).
4. **Soft mask.** Each pixel of the component and its 1-px ring gets coverage
   ``alpha = <P - B, C - B> / |C - B|^2`` (anti-aliasing undone): area, centroid and
   moments are computed on alpha, which gives sub-pixel precision at 64 px.
5. **Shape** from rotation-invariant geometry of the soft mask: compactness
   ``2*pi*sum(alpha r^2) / area^2`` (1 for a disk) and the k-fold symmetry strengths
   ``a_k = |sum alpha z^k| / sum alpha |z|^k`` for k = 2..6 (complex moments about the
   centroid: a hexagon has a_6 ~ 0.23 where a disk has 0, a square a_4 ~ 0.42, a star
   a_5 ~ 0.8, a triangle a_3 ~ 0.65, an ellipse a_2 ~ 0.6, a cross a_4 ~ 0.5 with a far
   larger compactness than a square). Features are taken on a sharpened alpha (ramp
   steepened around 0.5, which undoes most of a blur), and the nearest prototype wins;
   prototypes are each shape rendered *at the object's own pixel radius* (pixels round
   small corners off), sharp and Gaussian-blurred (sigma 1 px), averaged over rotations.
6. **Size** from the area divided by the shape's unit area (circumradius), nearest size
   class on a log scale; **position** from the centroid, region from the 3x3 grid.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from arm_data.shapes.geometry import unit_area
from arm_data.shapes.palette import COLORS, REGIONS, SHAPES, SIZES, region_index
from arm_data.shapes.rendering import object_coverage
from arm_data.shapes.spec import ObjectSpec

_PALETTE_NAMES = tuple(COLORS)
_PALETTE = np.array([COLORS[c] for c in _PALETTE_NAMES], dtype=np.float64) / 255.0
_SIZE_NAMES = tuple(SIZES)
_LOG_SIZES = np.log(np.array([SIZES[s] for s in _SIZE_NAMES]))
# Per-feature scales for the nearest-prototype shape classifier: compactness, a2..a6.
_FEATURE_SCALE = np.array([0.03, 0.06, 0.06, 0.05, 0.06, 0.05])
_EIGHT = np.ones((3, 3), dtype=bool)
SHARPEN_GAIN = 2.0
# Gaussian blurs (sigma, px) of the shape prototypes: sharp renders and blurry generations.
PROTOTYPE_BLURS = (0.0, 1.0)


@dataclass
class DetectedObject:
    """One object read from an image. Coordinates are normalized like :class:`ObjectSpec`."""

    shape: str
    color: str
    size: str
    x: float
    y: float
    region: str
    area: float          # soft area in pixels
    radius: float        # estimated circumradius as a fraction of min(width, height)
    color_rgb: tuple[float, float, float]  # observed core color, [0, 1]
    color_error: float   # distance of the observed color to the named palette segment
    shape_distance: float  # distance to the winning shape prototype (feature units)
    features: tuple[float, ...]  # compactness, a2..a6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ParsedScene:
    """What :func:`parse_image` saw: the objects and the background model."""

    objects: list[DetectedObject]
    width: int
    height: int
    background: np.ndarray       # (H, W, 3) float model of the background, [0, 1]
    foreground: np.ndarray       # (H, W) bool: pixels assigned to any kept object

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height,
                "objects": [o.to_dict() for o in self.objects]}


def to_float_image(image: Any) -> np.ndarray:
    """Any RGB image -> float64 array (H, W, 3) in [0, 1].

    Accepts a PIL image (any mode), a uint8 array (H, W, 3), a float array (H, W, 3) in
    [0, 1], or a torch tensor (3, H, W) / (1, 3, H, W) in [-1, 1] (the library's pixel
    convention).
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    if type(image).__module__.startswith("torch"):
        t = image.detach().to("cpu").float()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch tensor of shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a tensor (3, H, W) in [-1, 1], got shape {tuple(t.shape)}")
        arr = ((t.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy().astype(np.float64)
        return arr
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image array (H, W, 3), got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if np.issubdtype(arr.dtype, np.floating):
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise ValueError("float image arrays must be (H, W, 3) in [0, 1]; "
                             "torch tensors (3, H, W) in [-1, 1] are also accepted")
        return arr.astype(np.float64)
    raise ValueError(f"unsupported image array dtype {arr.dtype}; use uint8 or float in [0, 1]")


@lru_cache(maxsize=16)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized pixel-center coordinates (H, W) x and y."""
    y, x = np.mgrid[0:h, 0:w]
    return (x + 0.5) / w, (y + 0.5) / h


def _linear_fit(img: np.ndarray, sel: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Least-squares ``a + b x + c y`` per channel on the selected pixels: coefficients (3, 3).

    Normal equations from masked sums (no gathering of the selected pixels).
    """
    m = sel.astype(np.float64)
    mx, my = m * gx, m * gy
    gram = np.array([[m.sum(), mx.sum(), my.sum()],
                     [mx.sum(), (mx * gx).sum(), (mx * gy).sum()],
                     [my.sum(), (my * gx).sum(), (my * gy).sum()]]) + 1e-9 * np.eye(3)
    flat = img.reshape(-1, 3)
    rhs = np.stack([m.ravel(), mx.ravel(), my.ravel()]) @ flat      # (3, 3)
    return np.linalg.solve(gram, rhs)


def fit_background(img: np.ndarray) -> np.ndarray:
    """Linear per-channel background model (H, W, 3) fit on light, low-chroma pixels,
    refit once on the inliers of the first fit. Large images are fit on a strided grid
    of about 4k pixels (a 3-parameter plane needs no more), then evaluated everywhere."""
    h, w, _ = img.shape
    stride = max(1, int(math.sqrt(h * w / 4096)))
    gx, gy = _grid(h, w)
    sub, sx, sy = img[::stride, ::stride], gx[::stride, ::stride], gy[::stride, ::stride]
    mn, mx = sub.min(axis=2), sub.max(axis=2)
    sel = (mn >= 0.55) & (mx - mn <= 0.25)
    if sel.sum() < max(16, 0.05 * sel.size):
        # No ShapesWorld-like background (e.g. a failed generation): use the border ring.
        sel = np.zeros(sel.shape, dtype=bool)
        sel[0, :] = sel[-1, :] = sel[:, 0] = sel[:, -1] = True
    coef = _linear_fit(sub, sel, sx, sy)
    diff = sub - (coef[0] + sx[..., None] * coef[1] + sy[..., None] * coef[2])
    inl = sel & ((diff * diff).sum(axis=2) < 0.12 ** 2)
    if inl.sum() >= 16:
        coef = _linear_fit(sub, inl, sx, sy)
    return coef[0] + gx[..., None] * coef[1] + gy[..., None] * coef[2]


def _name_color(core: np.ndarray, bg: np.ndarray) -> tuple[str, float]:
    """Palette color whose segment [bg, palette] passes closest to the observed ``core``."""
    d = _PALETTE - bg                      # (K, 3)
    v = core - bg
    t = np.clip((d @ v) / np.maximum((d * d).sum(axis=1), 1e-9), 0.0, 1.0)
    err = np.linalg.norm(bg + t[:, None] * d - core, axis=1) + 0.15 * (1.0 - t)
    k = int(np.argmin(err))
    return _PALETTE_NAMES[k], float(err[k])


def shape_features(alpha: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """``(area, cx, cy, features)`` of a soft mask given as weights at pixel indices.

    features = (compactness, a2, a3, a4, a5, a6), all rotation invariant.
    """
    area = float(alpha.sum())
    x = xs + 0.5
    y = ys + 0.5
    cx = float((alpha * x).sum() / area)
    cy = float((alpha * y).sum() / area)
    z = (x - cx) + 1j * (y - cy)
    r = np.abs(z)
    feats = np.empty(6)
    feats[0] = 2 * math.pi * float((alpha * r * r).sum()) / (area * area)
    zk = z.copy()
    rk = r.copy()
    for k in range(2, 7):
        zk = zk * z
        rk = rk * r
        feats[k - 1] = abs(complex((alpha * zk).sum())) / max(float((alpha * rk).sum()), 1e-9)
    return area, cx, cy, feats


def _features_of_coverage(alpha: np.ndarray, x0: int = 0, y0: int = 0) -> np.ndarray:
    sharp = np.clip(SHARPEN_GAIN * (alpha - 0.5) + 0.5, 0.0, 1.0)
    ys, xs = np.nonzero(sharp > 0)
    return shape_features(sharp[ys, xs], ys + y0, xs + x0)[3]


@lru_cache(maxsize=256)
def shape_prototypes(radius_px: float = 26.4) -> np.ndarray:
    """Features (n_blur, n_shapes, 6) of each shape rendered at circumradius ``radius_px``
    (anti-aliased, averaged over rotations), sharp and after each blur in
    :data:`PROTOTYPE_BLURS`: the classifier's prototypes.

    Small shapes lose corners to pixels and blur, so comparing an object with prototypes
    *of its own size* (and with blurred variants, for blurry generations) keeps hexagons
    apart from circles and crosses apart from squares.
    """
    # A large-size object in a side x side image has (almost exactly) this pixel radius.
    side = max(16, int(round(radius_px / SIZES["large"])))
    out = np.zeros((len(PROTOTYPE_BLURS), len(SHAPES), 6))
    rots = (0.0, 11.0, 23.0, 37.0, 52.0, 71.0)
    for k, shape in enumerate(SHAPES):
        for rot in rots:
            # Off-grid centers: prototypes average over pixel phase, like real objects.
            obj = ObjectSpec(shape=shape, color="black", size="large", x=0.5 + 0.13 / side,
                             y=0.5 + 0.29 / side, rotation=rot)
            alpha, _, _ = object_coverage(obj, side, side)
            pad = np.pad(alpha, 4)
            for b, sigma in enumerate(PROTOTYPE_BLURS):
                cov = ndimage.gaussian_filter(pad, sigma, mode="constant") if sigma > 0 else pad
                out[b, k] += _features_of_coverage(cov) / len(rots)
    return out


def _radius_bin(radius_px: float) -> float:
    """Prototype size bins: 0.5 px while pixels matter (< 16 px), then quarter octaves up
    to 32 px, where features no longer depend on size."""
    if radius_px < 16.0:
        return float(max(2.0, round(radius_px * 2) / 2))
    return float(min(32.0, 16.0 * 2 ** (round(math.log2(radius_px / 16.0) * 4) / 4)))


def classify_shape(feats: np.ndarray, radius_px: float = 26.4) -> tuple[str, float]:
    """Nearest prototype (over shapes and blur levels) of size ``radius_px``."""
    r = _radius_bin(radius_px)
    protos = shape_prototypes(r)
    d = np.sqrt((((protos - feats) / _FEATURE_SCALE) ** 2).sum(axis=2)).min(axis=0)
    k = int(np.argmin(d))
    return SHAPES[k], float(d[k])


def size_class(radius_frac: float) -> str:
    k = int(np.argmin(np.abs(_LOG_SIZES - math.log(max(radius_frac, 1e-6)))))
    return _SIZE_NAMES[k]


def min_object_area(width: int, height: int) -> float:
    """Smallest area (px) kept as an object: 30% of the smallest ShapesWorld object."""
    smallest = min(unit_area(s) for s in SHAPES) * (min(SIZES.values()) * min(width, height)) ** 2
    return 0.3 * smallest


def parse_image(image: Any, fg_threshold: float = 0.2, min_area: float | None = None) -> ParsedScene:
    """Detect the objects of an image (see the module docstring for the method).

    Args:
        image: PIL image, uint8/float array (H, W, 3) or tensor (3, H, W) in [-1, 1].
        fg_threshold: RGB distance (on [0, 1]) from the background model above which a
            pixel is foreground.
        min_area: smallest soft area in pixels kept as an object (default: 30% of the
            smallest ShapesWorld object at this resolution).
    """
    img = to_float_image(image)
    h, w, _ = img.shape
    bg = fit_background(img)
    diff = img - bg
    dist = np.sqrt((diff * diff).sum(axis=2))
    fg = dist > fg_threshold
    labels, n = ndimage.label(fg, structure=_EIGHT)
    min_area = min_object_area(w, h) if min_area is None else float(min_area)
    side = min(w, h)
    objects: list[DetectedObject] = []
    kept = np.zeros((h, w), dtype=bool)
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        # A window one pixel larger than the component, for its anti-aliased ring.
        y0, y1 = max(0, sl[0].start - 1), min(h, sl[0].stop + 1)
        x0, x1 = max(0, sl[1].start - 1), min(w, sl[1].stop + 1)
        lab = labels[y0:y1, x0:x1]
        member = lab == k
        if member.sum() < 0.5 * min_area:
            continue
        ring = ndimage.binary_dilation(member, structure=_EIGHT) & (lab == 0)
        win_img, win_bg, win_d = img[y0:y1, x0:x1], bg[y0:y1, x0:x1], dist[y0:y1, x0:x1]
        dm = win_d[member]
        core_sel = member & (win_d >= 0.85 * np.percentile(dm, 90))
        core = np.median(win_img[core_sel], axis=0)
        bg_c = np.median(win_bg[member], axis=0)
        color, color_err = _name_color(core, bg_c)
        # Soft coverage of every pixel of the component and its ring.
        region = member | ring
        ys, xs = np.nonzero(region)
        cb = core - win_bg[ys, xs]                            # (N, 3)
        pb = win_img[ys, xs] - win_bg[ys, xs]
        alpha = (pb * cb).sum(axis=1) / np.maximum((cb * cb).sum(axis=1), 1e-9)
        alpha = np.where(member[ys, xs], np.clip(alpha, 0.0, 1.0), np.clip(alpha, -0.25, 1.0))
        area, cx, cy, _ = shape_features(alpha, ys + y0, xs + x0)
        if area < min_area:
            continue
        # Shape features on a sharpened mask: blur (and JPEG ringing) spreads alpha outwards,
        # which inflates compactness and washes out corners at small sizes; the 0.5
        # iso-contour of a blurred edge stays put, so steepening the ramp around 0.5 undoes
        # most of it while area and centroid above use the unbiased raw alpha.
        sharp = np.clip(SHARPEN_GAIN * (alpha - 0.5) + 0.5, 0.0, 1.0)
        keep = sharp > 0
        feats = shape_features(sharp[keep], ys[keep] + y0, xs[keep] + x0)[3]
        # Two passes: a first guess gives the pixel radius, whose prototypes decide.
        guess, _ = classify_shape(feats)
        shape, shape_d = classify_shape(feats, math.sqrt(area / unit_area(guess)))
        radius = math.sqrt(area / unit_area(shape)) / side
        nx, ny = cx / w, cy / h
        objects.append(DetectedObject(
            shape=shape, color=color, size=size_class(radius), x=nx, y=ny,
            region=REGIONS[region_index(nx, ny)], area=area, radius=radius,
            color_rgb=tuple(float(c) for c in core), color_error=color_err,
            shape_distance=shape_d, features=tuple(float(f) for f in feats)))
        kept[y0:y1, x0:x1] |= region
    return ParsedScene(objects=objects, width=w, height=h, background=bg, foreground=kept)

"""ShapesWorld splits and the held-out compositions; the random scene generator.

Splits (every one is an infinite, deterministic stream: sample ``i`` of split ``s`` with
seed ``k`` uses only ``random.Random`` streams seeded from ``blake2b(k|s|i|purpose)``):

* ``train``: 1-3 objects; no object is one of :data:`HELDOUT_PAIRS`.
* ``val``: same distribution as ``train``, disjoint sample streams (different hashes).
* ``heldout``: held-out compositions. Every scene contains at least one (color, shape)
  pair of :data:`HELDOUT_PAIRS`, and object counts range over 1-4, so scenes with
  :data:`HELDOUT_COUNTS` (4 objects) appear here only.

Held-out (color, shape) pairs, never in ``train``/``val`` scenes, captions, QA or edit
targets: red triangle, blue star, green circle, yellow square, purple cross, orange
hexagon, pink ellipse. Every shape and every color still appears in ``train`` with
other partners, so the split measures compositional generalization. Held-out object
count: 4.

These are the rules of the ``full`` world (the default); a
:class:`~arm_data.shapes.difficulty.Difficulty` narrows shapes, colors, sizes, backgrounds,
counts and held-out pairs, and every function here takes one (``difficulty=``).

Placement: each object gets its own 3x3 region; its center lies in that region at least
``REGION_MARGIN`` of a cell away from the region borders (so its region is unambiguous),
the whole shape stays ``BORDER_MARGIN`` inside the image and circumcircles keep
``MIN_GAP`` apart (non-overlapping), all measured relative to ``min(width, height)``
in a square frame, which makes the scene valid at every aspect ratio.
"""

from __future__ import annotations

import hashlib
import random

from arm_data.shapes.difficulty import FULL, Difficulty
from arm_data.shapes.palette import (
    BORDER_MARGIN,
    MIN_GAP,
    REGION_MARGIN,
    REGIONS,
    SIZES,
    TEXTURE_PATTERNS,
)
from arm_data.shapes.spec import Background, ObjectSpec, SceneSpec

SPLITS: tuple[str, ...] = ("train", "val", "heldout")

# The full world's rules under their historical names (the values live in ``FULL``).
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = FULL.heldout_pairs
TRAIN_COUNTS: tuple[int, ...] = FULL.train_counts
HELDOUT_SPLIT_COUNTS: tuple[int, ...] = FULL.heldout_counts
HELDOUT_COUNTS: tuple[int, ...] = tuple(n for n in FULL.heldout_counts if n not in FULL.train_counts)
TRAIN_PAIRS: tuple[tuple[str, str], ...] = FULL.train_pairs
BACKGROUND_WEIGHTS = {"plain": 0.4, "gradient": 0.3, "texture": 0.3}
# Probability that a multi-object scene repeats an existing (color, shape) pair, so that
# captions exercise counts and plurals ("two red circles").
DUPLICATE_PROB = 0.2


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def sample_rng(seed: int, split: str, index: int, purpose: str = "scene") -> random.Random:
    """The private random stream of sample ``index`` of ``split`` for ``purpose``.

    A hash (not ``seed + index``) so that streams of different splits, seeds and
    purposes never overlap, and no global RNG is touched.
    """
    check_split(split)
    if not isinstance(index, int) or index < 0:
        raise IndexError(f"sample index must be a non-negative integer, got {index!r}")
    key = f"shapesworld|{int(seed)}|{split}|{index}|{purpose}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


def allowed_counts(split: str, difficulty: Difficulty = FULL) -> tuple[int, ...]:
    return difficulty.heldout_counts if check_split(split) == "heldout" else difficulty.train_counts


def pair_allowed(color: str, shape: str, split: str, difficulty: Difficulty = FULL) -> bool:
    """May an object of this (color, shape) appear in ``split``?"""
    if color not in difficulty.colors or shape not in difficulty.shapes:
        return False
    return split == "heldout" or (color, shape) not in difficulty.heldout_pairs


def scene_allowed(spec: SceneSpec, split: str, difficulty: Difficulty = FULL) -> bool:
    """Does ``spec`` obey ``split``'s composition rules (counts and pairs)?"""
    if spec.count not in allowed_counts(split, difficulty):
        return False
    if not all(pair_allowed(c, s, "heldout", difficulty) for c, s in spec.pairs()):
        return False  # a color or shape this world does not have
    held = set(difficulty.heldout_pairs)
    if split == "heldout":
        return any(p in held for p in spec.pairs())
    return not any(p in held for p in spec.pairs())


def sample_background(rng: random.Random, difficulty: Difficulty = FULL) -> Background:
    kinds = [k for k in BACKGROUND_WEIGHTS if k in difficulty.backgrounds]
    kind = rng.choices(kinds, weights=[BACKGROUND_WEIGHTS[k] for k in kinds])[0]

    def tone() -> tuple[int, int, int]:
        base = rng.randint(218, 246)
        return tuple(min(255, base + rng.randint(-10, 10)) for _ in range(3))  # type: ignore[return-value]

    c1 = tone()
    c2 = tone() if kind == "gradient" else c1
    return Background(kind=kind, color=c1, color2=c2, angle=float(rng.randrange(0, 360, 15)),
                      pattern=rng.choice(TEXTURE_PATTERNS), seed=rng.randrange(2**31))


def fits(obj: ObjectSpec, others: list[ObjectSpec]) -> bool:
    """Does ``obj`` stay inside the image and clear of ``others`` (square frame)?"""
    r = obj.radius
    if not (r + BORDER_MARGIN <= obj.x <= 1 - r - BORDER_MARGIN
            and r + BORDER_MARGIN <= obj.y <= 1 - r - BORDER_MARGIN):
        return False
    for o in others:
        if (obj.x - o.x) ** 2 + (obj.y - o.y) ** 2 < (r + o.radius + MIN_GAP) ** 2:
            return False
    return True


def place_in_region(rng: random.Random, region: str, radius: float) -> tuple[float, float] | None:
    """A random center inside ``region`` (margins respected) or None if none fits."""
    k = REGIONS.index(region)
    col, row = k % 3, k // 3
    spans = []
    for cell in (col, row):
        lo = cell / 3 + REGION_MARGIN / 3
        hi = (cell + 1) / 3 - REGION_MARGIN / 3
        lo = max(lo, radius + BORDER_MARGIN)
        hi = min(hi, 1 - radius - BORDER_MARGIN)
        if lo > hi:
            return None
        spans.append((lo, hi))
    return rng.uniform(*spans[0]), rng.uniform(*spans[1])


def random_object(rng: random.Random, color: str, shape: str, region: str,
                  others: list[ObjectSpec], size: str | None = None,
                  tries: int = 12, difficulty: Difficulty = FULL) -> ObjectSpec | None:
    """An object of the given kind placed in ``region``, clear of ``others``, or None."""
    sizes = [size] if size else list(difficulty.sizes)
    for t in range(tries):
        # after half the tries, only the two smallest sizes (they fit more often)
        sz = sizes[0] if size else rng.choice(sizes if t < tries // 2 else sizes[:2])
        pos = place_in_region(rng, region, SIZES[sz])
        if pos is None:
            continue
        obj = ObjectSpec(shape=shape, color=color, size=sz, x=round(pos[0], 4),
                         y=round(pos[1], 4), rotation=float(rng.randrange(0, 360)))
        if fits(obj, others):
            return obj
    return None


def _random_pair(rng: random.Random, split: str, objects: list[ObjectSpec],
                 difficulty: Difficulty = FULL) -> tuple[str, str]:
    if objects and rng.random() < DUPLICATE_PROB:
        o = rng.choice(objects)
        return o.color, o.shape
    while True:
        c, s = rng.choice(list(difficulty.colors)), rng.choice(difficulty.shapes)
        if pair_allowed(c, s, split, difficulty):
            return c, s


def sample_scene(rng: random.Random, split: str = "train", allow_overlap: bool = False,
                 difficulty: Difficulty = FULL) -> SceneSpec:
    """A random scene obeying ``split``'s rules and ``difficulty``, drawn from ``rng`` only.

    ``allow_overlap=True`` drops the gap between objects (each still has its own region,
    so large neighbours may overlap; the evaluator's figures hold for the default only).
    """
    check_split(split)
    while True:
        n = rng.choice(allowed_counts(split, difficulty))
        regions = rng.sample(REGIONS, n)
        objects: list[ObjectSpec] = []
        for k, region in enumerate(regions):
            if split == "heldout" and k == 0:
                color, shape = rng.choice(difficulty.heldout_pairs)
            else:
                color, shape = _random_pair(rng, split, objects, difficulty)
            obj = random_object(rng, color, shape, region, [] if allow_overlap else objects,
                                difficulty=difficulty)
            if obj is None:
                break
            objects.append(obj)
        if len(objects) != n:
            continue  # crowded draw: try again (still deterministic in rng)
        rng.shuffle(objects)  # the held-out object is not always first
        spec = SceneSpec(objects=tuple(objects), background=sample_background(rng, difficulty))
        assert scene_allowed(spec, split, difficulty)
        return spec

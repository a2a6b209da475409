"""Scene specs: the ground truth behind every ShapesWorld sample (JSON round trip).

A :class:`SceneSpec` is 1-4 :class:`ObjectSpec` on a :class:`Background`. Positions are
normalized to [0, 1] (fraction of width / height), sizes are named classes, so one spec
renders at any resolution or aspect ratio. ``spec.to_json()`` is canonical (sorted keys,
compact), so equal specs give equal strings and ``SceneSpec.from_json(s.to_json()) == s``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from arm_data.shapes.palette import (
    BACKGROUND_KINDS,
    COLORS,
    REGIONS,
    SHAPES,
    SIZES,
    TEXTURE_PATTERNS,
    check_choice,
    is_background_tone,
    region_index,
)

MAX_OBJECTS = 4

#: How the evaluations group scenes by object count: crowded scenes are where a model must
#: bind an attribute to the right object, and where single-object scores hide failures.
COUNT_GROUPS: tuple[str, ...] = ("single", "two", "three_plus")


def count_group(n_objects: int) -> str:
    """``single`` / ``two`` / ``three_plus``: the :data:`COUNT_GROUPS` entry for a scene of
    ``n_objects`` objects (empty scenes count as ``single``: nothing to confuse)."""
    return COUNT_GROUPS[min(max(n_objects, 1), 3) - 1]


def region_of(x: float, y: float) -> str:
    """Named 3x3 region of normalized point ``(x, y)``."""
    return REGIONS[region_index(x, y)]


def _rgb(value: Any, where: str) -> tuple[int, int, int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in value)):
        raise ValueError(f"{where} must be three integers in 0..255, got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


@dataclass(frozen=True)
class ObjectSpec:
    """One shape in a scene.

    Args:
        shape: one of :data:`~arm_data.shapes.palette.SHAPES`.
        color: one of :data:`~arm_data.shapes.palette.COLORS`.
        size: ``small`` / ``medium`` / ``large`` (circumradius classes, :data:`SIZES`).
        x: center, fraction of the image width (0 = left edge).
        y: center, fraction of the image height (0 = top edge).
        rotation: degrees counter-clockwise (visual only; captions never mention it).
    """

    shape: str
    color: str
    size: str
    x: float
    y: float
    rotation: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.shape, SHAPES, "shape")
        check_choice(self.color, COLORS, "color")
        check_choice(self.size, SIZES, "size")
        for name in ("x", "y"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0) or math.isnan(v):
                raise ValueError(f"object {name} must be a number in [0, 1], got {v!r}")
        if not isinstance(self.rotation, (int, float)) or math.isnan(self.rotation):
            raise ValueError(f"object rotation must be a number of degrees, got {self.rotation!r}")

    @property
    def region(self) -> str:
        """Named 3x3 region of the center."""
        return region_of(self.x, self.y)

    @property
    def radius(self) -> float:
        """Circumradius as a fraction of min(width, height)."""
        return SIZES[self.size]

    def pixel_radius(self, width: int, height: int) -> float:
        return SIZES[self.size] * min(width, height)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObjectSpec:
        if not isinstance(d, dict):
            raise ValueError(f"an object spec must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {"shape", "color", "size", "x", "y", "rotation"}
        if unknown:
            raise ValueError(f"unknown object spec field(s) {sorted(unknown)}; "
                             "allowed: shape, color, size, x, y, rotation")
        missing = {"shape", "color", "size", "x", "y"} - set(d)
        if missing:
            raise ValueError(f"object spec misses field(s) {sorted(missing)}")
        return cls(shape=d["shape"], color=d["color"], size=d["size"], x=float(d["x"]),
                   y=float(d["y"]), rotation=float(d.get("rotation", 0.0)))


@dataclass(frozen=True)
class Background:
    """The scene background: always light and desaturated (never an object color).

    Args:
        kind: ``plain`` (one tone), ``gradient`` (linear from ``color`` to ``color2``
            along ``angle``) or ``texture`` (``color`` plus a low-contrast ``pattern``).
        color: base tone (RGB 0-255), must satisfy ``palette.is_background_tone``.
        color2: second gradient tone (ignored unless ``kind == "gradient"``).
        angle: gradient direction / stripe orientation in degrees.
        pattern: texture pattern, one of ``noise``, ``stripes``, ``checker``.
        seed: seed of the texture noise (pixels are a pure function of the spec).
    """

    kind: str = "plain"
    color: tuple[int, int, int] = (236, 236, 232)
    color2: tuple[int, int, int] = (236, 236, 232)
    angle: float = 0.0
    pattern: str = "noise"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.kind, BACKGROUND_KINDS, "background kind")
        check_choice(self.pattern, TEXTURE_PATTERNS, "texture pattern")
        for name in ("color", "color2"):
            rgb = _rgb(getattr(self, name), f"background {name}")
            object.__setattr__(self, name, rgb)
            if not is_background_tone(rgb):
                raise ValueError(f"background {name} {rgb} is not a light desaturated tone "
                                 "(it could be confused with an object color)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["color"], d["color2"] = list(self.color), list(self.color2)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Background:
        if not isinstance(d, dict):
            raise ValueError(f"a background spec must be a JSON object, got {type(d).__name__}")
        allowed = {"kind", "color", "color2", "angle", "pattern", "seed"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown background field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        kw = dict(d)
        for name in ("color", "color2"):
            if name in kw:
                kw[name] = tuple(kw[name]) if isinstance(kw[name], list) else kw[name]
        return cls(**kw)


@dataclass(frozen=True)
class SceneSpec:
    """A whole scene: ``objects`` (1-4 :class:`ObjectSpec`) on a ``background``."""

    objects: tuple[ObjectSpec, ...]
    background: Background = field(default_factory=Background)

    def __post_init__(self) -> None:
        objs = tuple(self.objects)
        if not 0 <= len(objs) <= MAX_OBJECTS:
            raise ValueError(f"a scene holds 0..{MAX_OBJECTS} objects, got {len(objs)}")
        for o in objs:
            if not isinstance(o, ObjectSpec):
                raise TypeError(f"scene objects must be ObjectSpec, got {type(o).__name__}")
        object.__setattr__(self, "objects", objs)

    # --- convenience -----------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.objects)

    def pairs(self) -> list[tuple[str, str]]:
        """(color, shape) of every object."""
        return [(o.color, o.shape) for o in self.objects]

    def with_objects(self, objects) -> SceneSpec:
        return replace(self, objects=tuple(objects))

    # --- serialization ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"objects": [o.to_dict() for o in self.objects],
                "background": self.background.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SceneSpec:
        if not isinstance(d, dict) or "objects" not in d:
            raise ValueError("a scene spec must be a JSON object with an 'objects' list")
        unknown = set(d) - {"objects", "background"}
        if unknown:
            raise ValueError(f"unknown scene spec field(s) {sorted(unknown)}; allowed: objects, background")
        objs = d["objects"]
        if not isinstance(objs, list):
            raise ValueError("scene spec 'objects' must be a list")
        bg = Background.from_dict(d["background"]) if "background" in d else Background()
        return cls(objects=tuple(ObjectSpec.from_dict(o) for o in objs), background=bg)

    @classmethod
    def from_json(cls, s: str | bytes) -> SceneSpec:
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"scene spec is not valid JSON: {e}") from e
        return cls.from_dict(d)

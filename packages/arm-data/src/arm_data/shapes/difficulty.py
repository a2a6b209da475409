"""How hard a ShapesWorld is: which shapes, colors, sizes, backgrounds and object counts.

``Difficulty`` is plain data that every part of ShapesWorld reads: the scene sampler
(:mod:`arm_data.shapes.splits`), the questions (:mod:`arm_data.shapes.qa`) and the edits
(:mod:`arm_data.shapes.edits`). Resolution is not part of it: it is the world's
``width`` / ``height``, as everywhere else. Named presets (:data:`DIFFICULTIES`):

* ``full`` (the default everywhere): 7 shapes x 10 colors, three sizes, plain, gradient
  and textured backgrounds, 1-3 objects in ``train``/``val`` and 1-4 in ``heldout``,
  seven held-out (color, shape) pairs.
* ``demo``: the world ``make demo`` trains on in minutes on a CPU: 4 shapes (circle,
  square, triangle, star) x 4 colors (red, green, blue, yellow), medium and large objects,
  plain backgrounds, 1-2 objects in every split, and 4 held-out pairs (red triangle, blue
  star, green circle, yellow square: a Latin square, so every shape and every color is
  held out once and still seen with three partners).

The ``full`` preset draws exactly the scenes ShapesWorld drew before difficulties existed
(same random calls in the same order), so seeds and recorded figures keep their meaning.
A custom world is ``Difficulty(shapes=..., colors=..., ...)``; in YAML or on a command
line, a preset name or a mapping of these fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from arm_data.shapes.palette import BACKGROUND_KINDS, COLORS, SHAPES, SIZES
from arm_data.shapes.spec import MAX_OBJECTS

# The full world's held-out pairs (also :data:`arm_data.shapes.splits.HELDOUT_PAIRS`).
FULL_HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("blue", "star"),
    ("green", "circle"),
    ("yellow", "square"),
    ("purple", "cross"),
    ("orange", "hexagon"),
    ("pink", "ellipse"),
)


def _ordered(values: Any, universe: tuple[str, ...], field: str) -> tuple[str, ...]:
    """``values`` as a tuple in ``universe``'s order (so random draws do not depend on how a
    user listed them), checked to be a non-empty subset without repeats."""
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise ValueError(f"Difficulty {field} must be a list of names, e.g. {list(universe[:2])}, "
                         f"got {values!r}")
    values = list(values)
    unknown = [v for v in values if v not in universe]
    if unknown:
        raise ValueError(f"Difficulty {field}: unknown {unknown}; choose from {', '.join(universe)}")
    if not values or len(set(values)) != len(values):
        raise ValueError(f"Difficulty {field} must name at least one value, each once; got {values}")
    return tuple(v for v in universe if v in values)


def _counts(values: Any, field: str) -> tuple[int, ...]:
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise ValueError(f"Difficulty {field} must be a list of object counts, e.g. [1, 2], got {values!r}")
    out = sorted(set(values))
    if not out or any(not isinstance(n, int) or not 1 <= n <= MAX_OBJECTS for n in out):
        raise ValueError(f"Difficulty {field} must hold integers in 1..{MAX_OBJECTS}, got {list(values)}")
    return tuple(out)


@dataclass(frozen=True)
class Difficulty:
    """The content of a ShapesWorld (see the module docstring).

    Args:
        shapes: the shapes objects may have (a subset of ``palette.SHAPES``).
        colors: the colors objects may have (a subset of ``palette.COLORS``).
        sizes: the size classes objects may have (a subset of ``small``/``medium``/``large``).
        backgrounds: the background kinds (a subset of ``plain``/``gradient``/``texture``).
        train_counts: object counts of ``train`` and ``val`` scenes.
        heldout_counts: object counts of ``heldout`` scenes (counts not in ``train_counts``
            are held-out counts).
        heldout_pairs: (color, shape) pairs that appear only in ``heldout`` scenes; by
            default the full world's pairs that fall inside ``colors`` x ``shapes``.
        name: a label for reports (the preset's name, or ``custom``).
    """

    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = tuple(COLORS)
    sizes: tuple[str, ...] = tuple(SIZES)
    backgrounds: tuple[str, ...] = BACKGROUND_KINDS
    train_counts: tuple[int, ...] = (1, 2, 3)
    heldout_counts: tuple[int, ...] = (1, 2, 3, 4)
    heldout_pairs: tuple[tuple[str, str], ...] | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        set_("shapes", _ordered(self.shapes, SHAPES, "shapes"))
        set_("colors", _ordered(self.colors, tuple(COLORS), "colors"))
        set_("sizes", _ordered(self.sizes, tuple(SIZES), "sizes"))
        set_("backgrounds", _ordered(self.backgrounds, BACKGROUND_KINDS, "backgrounds"))
        set_("train_counts", _counts(self.train_counts, "train_counts"))
        set_("heldout_counts", _counts(self.heldout_counts, "heldout_counts"))
        if self.heldout_pairs is None:
            pairs = tuple(p for p in FULL_HELDOUT_PAIRS if p[0] in self.colors and p[1] in self.shapes)
        else:
            pairs = tuple(tuple(p) for p in self.heldout_pairs)  # type: ignore[misc]
            bad = [p for p in pairs if len(p) != 2 or p[0] not in self.colors or p[1] not in self.shapes]
            if bad:
                raise ValueError(f"Difficulty heldout_pairs: {bad} are not (color, shape) pairs of "
                                 f"colors {list(self.colors)} x shapes {list(self.shapes)}")
        if not pairs:
            raise ValueError("Difficulty: no held-out (color, shape) pair lies inside these colors x "
                             "shapes; give heldout_pairs, e.g. [[red, circle]]")
        set_("heldout_pairs", pairs)
        # Every color and shape must still be seen in training with some partner, or the
        # held-out split would measure an unseen word, not an unseen composition.
        seen = self.train_pairs
        unseen = ([c for c in self.colors if not any(p[0] == c for p in seen)]
                  + [s for s in self.shapes if not any(p[1] == s for p in seen)])
        if unseen:
            raise ValueError(f"Difficulty: {unseen} appear only in held-out pairs; every color and "
                             f"shape needs a training partner")

    @property
    def train_pairs(self) -> tuple[tuple[str, str], ...]:
        held = set(self.heldout_pairs)
        return tuple((c, s) for c in self.colors for s in self.shapes if (c, s) not in held)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: [list(p) for p in v] if k == "heldout_pairs" else (list(v) if isinstance(v, tuple) else v)
                for k, v in d.items()}


DIFFICULTIES: dict[str, Difficulty] = {
    "full": Difficulty(heldout_pairs=FULL_HELDOUT_PAIRS, name="full"),
    "demo": Difficulty(shapes=("circle", "square", "triangle", "star"),
                       colors=("red", "green", "blue", "yellow"),
                       sizes=("medium", "large"), backgrounds=("plain",),
                       train_counts=(1, 2), heldout_counts=(1, 2), name="demo"),
}
FULL = DIFFICULTIES["full"]


def get_difficulty(value: str | Difficulty | dict[str, Any] | None) -> Difficulty:
    """A :class:`Difficulty` from a preset name, a mapping of its fields, or itself (None: ``full``)."""
    if value is None:
        return FULL
    if isinstance(value, Difficulty):
        return value
    if isinstance(value, str):
        if value not in DIFFICULTIES:
            raise ValueError(f"unknown ShapesWorld difficulty {value!r}; choose one of "
                             f"{', '.join(DIFFICULTIES)} or give its fields")
        return DIFFICULTIES[value]
    if isinstance(value, dict):
        known = {f.name for f in fields(Difficulty)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"ShapesWorld difficulty: unknown field(s) {unknown}; fields are {sorted(known)}")
        return Difficulty(**value)
    raise TypeError(f"ShapesWorld difficulty must be a preset name ({', '.join(DIFFICULTIES)}), a "
                    f"mapping of Difficulty fields or a Difficulty, got {type(value).__name__}")

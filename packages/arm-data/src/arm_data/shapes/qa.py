"""Question-answer pairs about ShapesWorld scenes (for understanding / VQA training).

Kinds: ``color`` ("What color is the star?"), ``shape`` ("What shape is the red
object?"), ``count`` ("How many shapes are there?", "How many blue objects are
there?"), ``position`` ("Where is the red star?" -> "top left"), ``size``, ``existence``
("Is there a green circle?" yes/no, with absent pairs as negatives), ``attribute_yesno``
("Is the star red?") and ``relation_yesno`` ("Is the star to the left of the circle?").
Answers are canonical single words or region names (numbers as words), so exact match
is a fair metric.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from arm_data.shapes.captions import (
    COLOR_WORDS,
    NUMBER_WORDS,
    SHAPE_WORDS,
    plural,
    referring_expression,
)
from arm_data.shapes.difficulty import FULL, Difficulty
from arm_data.shapes.palette import COLORS as ALL_COLORS
from arm_data.shapes.palette import REGIONS
from arm_data.shapes.palette import SHAPES as ALL_SHAPES
from arm_data.shapes.palette import SIZES as ALL_SIZES
from arm_data.shapes.spec import SceneSpec

QA_KINDS: tuple[str, ...] = ("color", "shape", "count", "position", "size", "existence",
                             "attribute_yesno", "relation_yesno")


@dataclass(frozen=True)
class QAPair:
    """One question about a scene with its canonical ``answer`` and its ``kind``."""

    question: str
    answer: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _others(world: tuple[str, ...], palette: Any, value: str) -> list[str]:
    """Values other than ``value`` for a "no" answer: the world's own, or the palette's when
    the world has only this one (a one-size world may still be asked "is it small?")."""
    return [v for v in world if v != value] or [v for v in palette if v != value]


def _one(spec: SceneSpec, kind: str, rng: random.Random, difficulty: Difficulty = FULL) -> QAPair | None:
    # distractors (absent colors, shapes, sizes) come from the world's own sets
    COLORS, SHAPES, SIZES = difficulty.colors, difficulty.shapes, difficulty.sizes  # noqa: N806
    objs = spec.objects
    i = rng.randrange(len(objs))
    o = objs[i]
    if kind == "color":
        ref = referring_expression(spec, i, rng)
        if o.color in ref.split() or any(w in ref for w in COLOR_WORDS[o.color]):
            # The referent names its color: ask about a shape-only reference if possible.
            if sum(p.shape == o.shape for p in objs) != 1:
                return None
            ref = f"the {rng.choice(SHAPE_WORDS[o.shape])}"
        q = rng.choice(("What color is {r}?", "Which color does {r} have?", "What is the color of {r}?"))
        return QAPair(_cap(q.format(r=ref)), o.color, kind)
    if kind == "shape":
        if sum(p.color == o.color for p in objs) != 1:
            return None
        c = rng.choice(COLOR_WORDS[o.color])
        q = rng.choice(("What shape is the {c} object?", "Which shape is {c}?", "What is the {c} shape?"))
        return QAPair(q.format(c=c), o.shape, kind)
    if kind == "count":
        mode = rng.random()
        if mode < 0.4:
            q = rng.choice(("How many shapes are there?", "How many objects are in the image?",
                            "Count the shapes."))
            return QAPair(q, NUMBER_WORDS[len(objs)], kind)
        if mode < 0.7:
            color = rng.choice(list(COLORS))
            n = sum(p.color == color for p in objs)
            return QAPair(f"How many {rng.choice(COLOR_WORDS[color])} shapes are there?", NUMBER_WORDS[n], kind)
        shape = rng.choice(SHAPES)
        n = sum(p.shape == shape for p in objs)
        return QAPair(f"How many {plural(rng.choice(SHAPE_WORDS[shape]))} are there?", NUMBER_WORDS[n], kind)
    if kind == "position":
        ref = referring_expression(spec, i, rng)
        if " in the " in ref or " at the " in ref or " on the " in ref:
            return None  # the referent already gives the answer away
        q = rng.choice(("Where is {r}?", "In which part of the image is {r}?", "Where is {r} located?"))
        return QAPair(_cap(q.format(r=ref)), o.region, kind)
    if kind == "size":
        ref = referring_expression(spec, i, rng)
        q = rng.choice(("What size is {r}?", "How big is {r}?", "Is {r} small, medium or large?"))
        return QAPair(_cap(q.format(r=ref)), o.size, kind)
    if kind == "existence":
        present = rng.random() < 0.5
        if present:
            color, shape = o.color, o.shape
        else:
            pairs = set(spec.pairs())
            absent = ([(c, s) for c in COLORS for s in SHAPES if (c, s) not in pairs]
                      or [(c, s) for c in ALL_COLORS for s in ALL_SHAPES if (c, s) not in pairs])
            color, shape = rng.choice(absent)
        c, s = rng.choice(COLOR_WORDS[color]), rng.choice(SHAPE_WORDS[shape])
        q = rng.choice(("Is there a {c} {s}?", "Does the image contain a {c} {s}?", "Can you see a {c} {s}?"))
        return QAPair(q.format(c=c, s=s), "yes" if present else "no", kind)
    if kind == "attribute_yesno":
        if sum(p.shape == o.shape for p in objs) != 1:
            return None
        s = rng.choice(SHAPE_WORDS[o.shape])
        if rng.random() < 0.5:
            attr, truth = (o.color, True) if rng.random() < 0.5 else (
                rng.choice(_others(COLORS, ALL_COLORS, o.color)), False)
            q = f"Is the {s} {rng.choice(COLOR_WORDS[attr])}?"
        else:
            attr, truth = (o.size, True) if rng.random() < 0.5 else (
                rng.choice(_others(SIZES, ALL_SIZES, o.size)), False)
            q = f"Is the {s} {attr}?"
        return QAPair(q, "yes" if truth else "no", kind)
    if kind == "relation_yesno":
        if len(objs) < 2:
            return None
        j = rng.choice([k for k in range(len(objs)) if k != i])
        a, b = REGIONS.index(o.region), REGIONS.index(objs[j].region)
        (ra, ca), (rb, cb) = divmod(a, 3), divmod(b, 3)
        rel = rng.choice(("left", "right", "above", "below"))
        truth = {"left": ca < cb, "right": ca > cb, "above": ra < rb, "below": ra > rb}[rel]
        phrase = {"left": "to the left of", "right": "to the right of", "above": "above",
                  "below": "below"}[rel]
        ri, rj = referring_expression(spec, i, rng), referring_expression(spec, j, rng)
        return QAPair(f"Is {ri} {phrase} {rj}?", "yes" if truth else "no", kind)
    raise ValueError(f"unknown QA kind {kind!r}; choose one of {', '.join(QA_KINDS)}")


def make_qa(spec: SceneSpec, rng: random.Random, n: int = 4,
            kinds: tuple[str, ...] = QA_KINDS, difficulty: Difficulty = FULL) -> list[QAPair]:
    """Up to ``n`` distinct questions about ``spec`` of the given ``kinds``; absent colors,
    shapes and sizes (negatives) are drawn from ``difficulty``'s sets."""
    for k in kinds:
        if k not in QA_KINDS:
            raise ValueError(f"unknown QA kind {k!r}; choose one of {', '.join(QA_KINDS)}")
    if not spec.objects:
        return [QAPair("How many shapes are there?", "zero", "count")]
    out: list[QAPair] = []
    seen: set[str] = set()
    for _ in range(n * 6):
        if len(out) >= n:
            break
        qa = _one(spec, rng.choice(kinds), rng, difficulty)
        if qa is not None and qa.question not in seen:
            seen.add(qa.question)
            out.append(qa)
    return out

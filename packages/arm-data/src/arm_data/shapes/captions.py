"""Captions for ShapesWorld scenes from many templates.

Variation: attribute order ("a small red circle" / "a red circle that is small"),
synonyms (oval/ellipse, plus sign/cross, big/large, violet/purple, ...), counts and plural
forms ("two red circles"), region phrases ("in the top left corner"), and spatial
relations between two objects ("a red circle to the left of a blue square", "above").

Every caption names every object's color and shape (and so the object count); whether it
also states sizes, regions or a relation is returned in :attr:`Caption.attributes`, which
is exactly the set of clauses a text-to-image evaluation should check
(:func:`arm_data.shapes.evaluator.evaluate_t2i` ``check=``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from arm_data.shapes.palette import REGIONS
from arm_data.shapes.spec import ObjectSpec, SceneSpec

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "circle", "disk"),
    "square": ("square",),
    "triangle": ("triangle",),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "hexagon": ("hexagon",),
    "ellipse": ("ellipse", "oval"),
}
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",), "orange": ("orange",), "yellow": ("yellow",), "green": ("green",),
    "cyan": ("cyan", "turquoise"), "blue": ("blue",), "purple": ("purple", "violet"),
    "pink": ("pink",), "brown": ("brown",), "black": ("black",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium-sized", "mid-sized", "medium"),
    "large": ("large", "big"),
}
REGION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "in the upper left", "at the top left"),
    "top": ("at the top", "in the top middle", "at the top center"),
    "top right": ("in the top right corner", "in the upper right", "at the top right"),
    "left": ("on the left", "on the left side", "at the middle left"),
    "center": ("in the center", "in the middle", "at the center"),
    "right": ("on the right", "on the right side", "at the middle right"),
    "bottom left": ("in the bottom left corner", "in the lower left", "at the bottom left"),
    "bottom": ("at the bottom", "in the bottom middle", "at the bottom center"),
    "bottom right": ("in the bottom right corner", "in the lower right", "at the bottom right"),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
BACKGROUND_PHRASES = {
    "plain": ("on a plain background", "on a light background", "on a blank background"),
    "gradient": ("on a gradient background", "on a softly shaded background"),
    "texture": ("on a textured background", "on a faintly patterned background"),
}
SCENE_TEMPLATES = (
    "{list}.", "{list}", "A picture of {list}.", "An image showing {list}.",
    "An image with {list}.", "This image contains {list}.", "A drawing of {list}.",
    "There is {list}.", "Here we see {list}.", "A simple scene with {list}.",
)
COUNT_TEMPLATES = (
    "{count} {shapes}: {list}.", "There are {count} {shapes}: {list}.",
    "An image of {count} {shapes}: {list}.",
)


@dataclass(frozen=True)
class Caption:
    """A caption, the attributes it states (subset of
    ``{"count", "shape", "color", "size", "region", "relation"}``) and the spatial
    relations it states as ``(i, j, axis)`` (object i vs object j along ``x`` or ``y``;
    pass them as ``relations=`` to ``evaluate_t2i`` so only stated relations are checked)."""

    text: str
    attributes: frozenset[str]
    relations: tuple[tuple[int, int, str], ...] = ()


def plural(word: str) -> str:
    """English plural of a shape word ("cross" -> "crosses", "plus sign" -> "plus signs")."""
    if word.endswith(("s", "x", "sh", "ch")):
        return word + "es"
    return word + "s"


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def object_phrase(rng: random.Random, color: str, shape: str, size: str | None = None,
                  count: int = 1) -> str:
    """"a small red circle", "two red circles", "a circle that is red", ..."""
    c = rng.choice(COLOR_WORDS[color])
    s = rng.choice(SHAPE_WORDS[shape])
    z = rng.choice(SIZE_WORDS[size]) if size else None
    if count > 1:
        noun = plural(s)
        head = NUMBER_WORDS[count]
        return f"{head} {z} {c} {noun}" if z else f"{head} {c} {noun}"
    form = rng.random()
    if z:
        if form < 0.7:
            return article(f"{z} {c} {s}")
        if form < 0.85:
            return article(f"{z} {s} that is {c}")
        return article(f"{c} {s}") + f" of {z} size" if z not in ("medium-sized", "mid-sized") \
            else article(f"{z} {c} {s}")
    if form < 0.8:
        return article(f"{c} {s}")
    if form < 0.9:
        return article(f"{s} that is {c}")
    return article(f"{c}-colored {s}")


def join_list(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def relation_phrase(a: ObjectSpec, b: ObjectSpec, rng: random.Random) -> tuple[str, str] | None:
    """("to the left of", "x") / ("above", "y") ... when a and b are in different columns
    / rows; None when they share their region's row and column."""
    ca, ra = divmod(_cell(a), 3)[1], divmod(_cell(a), 3)[0]
    cb, rb = divmod(_cell(b), 3)[1], divmod(_cell(b), 3)[0]
    options = []
    if ca < cb:
        options.append((rng.choice(("to the left of", "left of")), "x"))
    elif ca > cb:
        options.append((rng.choice(("to the right of", "right of")), "x"))
    if ra < rb:
        options.append((rng.choice(("above", "over")), "y"))
    elif ra > rb:
        options.append((rng.choice(("below", "under")), "y"))
    return rng.choice(options) if options else None


def _cell(o: ObjectSpec) -> int:
    return REGIONS.index(o.region)


def make_caption(spec: SceneSpec, rng: random.Random) -> Caption:
    """A random caption of ``spec`` drawn from ``rng`` (see module docstring)."""
    objs = list(spec.objects)
    if not objs:
        return Caption("An empty scene.", frozenset({"count"}))
    attrs = {"count", "shape", "color"}
    style = rng.random()
    with_size = rng.random() < 0.35
    if with_size:
        attrs.add("size")
    bg = (" " + rng.choice(BACKGROUND_PHRASES[spec.background.kind])) if rng.random() < 0.2 else ""
    if len(objs) == 2 and style < 0.3:
        ia, ib = (0, 1) if rng.random() < 0.5 else (1, 0)
        a, b = objs[ia], objs[ib]
        found = relation_phrase(a, b, rng)
        if found:
            rel, axis = found
            attrs.add("relation")
            pa = object_phrase(rng, a.color, a.shape, a.size if with_size else None)
            pb = object_phrase(rng, b.color, b.shape, b.size if with_size else None)
            text = f"{pa} {rel} {pb}{bg}."
            return Caption(text[0].upper() + text[1:], frozenset(attrs),
                           ((min(ia, ib), max(ia, ib), axis),))
    if style < 0.55:
        # Every object with its region.
        attrs.add("region")
        order = objs[:]
        rng.shuffle(order)
        items = [f"{object_phrase(rng, o.color, o.shape, o.size if with_size else None)} "
                 f"{rng.choice(REGION_PHRASES[o.region])}" for o in order]
    else:
        # Grouped by identical (color, shape[, size]): counts and plurals.
        keyf = (lambda o: (o.color, o.shape, o.size)) if with_size else (lambda o: (o.color, o.shape, None))
        groups = Counter(keyf(o) for o in objs)
        keys = list(groups)
        rng.shuffle(keys)
        items = [object_phrase(rng, c, s, z, groups[(c, s, z)]) for c, s, z in keys]
    listing = join_list(items)
    if len(objs) > 1 and rng.random() < 0.3:
        text = rng.choice(COUNT_TEMPLATES).format(
            count=NUMBER_WORDS[len(objs)], shapes=rng.choice(("shapes", "objects")),
            list=listing)
        text = text[:-1] + bg + "." if bg else text
    else:
        tpl = rng.choice(SCENE_TEMPLATES)
        if tpl.startswith("There is") and len(objs) > 1:
            tpl = "There are" + tpl[len("There is"):]
        text = tpl.format(list=listing)
        if bg:
            text = text.rstrip(".") + bg + "."
    return Caption(text[0].upper() + text[1:], frozenset(attrs))


def referring_expression(spec: SceneSpec, index: int, rng: random.Random) -> str:
    """A noun phrase that picks out object ``index`` of ``spec`` uniquely:
    "the star", "the red star", or "the red star in the top left corner"."""
    o = spec.objects[index]
    same_shape = sum(p.shape == o.shape for p in spec.objects)
    same_pair = sum(p.shape == o.shape and p.color == o.color for p in spec.objects)
    c, s = rng.choice(COLOR_WORDS[o.color]), rng.choice(SHAPE_WORDS[o.shape])
    options = []
    if same_shape == 1:
        options.append(f"the {s}")
    if same_pair == 1:
        options += [f"the {c} {s}"] * 2
    if not options:
        return f"the {c} {s} {rng.choice(REGION_PHRASES[o.region])}"
    return rng.choice(options)

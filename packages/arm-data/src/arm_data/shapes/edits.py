"""Edit triplets: (source scene, instruction, target scene) for instruction-guided editing.

Kinds (:data:`EDIT_KINDS`): ``recolor`` (one object gets a new color), ``move`` (one object
moves to a free region), ``remove``, ``add`` (a new object in a free region), ``resize``
(one object gets a new size class) and ``swap`` (two different objects exchange places).
An :class:`EditSpec` states the change as data; :func:`apply_edit` turns a source spec
into the target spec deterministically (``remove`` deletes ``index``, ``add`` appends),
and :func:`describe_edit` writes the instruction from templates with referring
expressions that are unique in the source scene ("the red star", "the star in the top
left corner"). Edits respect the split: in ``train``/``val`` no target contains a
held-out pair or more than 3 objects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from arm_data.shapes.captions import COLOR_WORDS, SIZE_WORDS, object_phrase, referring_expression
from arm_data.shapes.difficulty import FULL, Difficulty
from arm_data.shapes.palette import COLORS, REGIONS, SIZES, check_choice, region_index
from arm_data.shapes.spec import MAX_OBJECTS, ObjectSpec, SceneSpec
from arm_data.shapes.splits import allowed_counts, fits, pair_allowed, random_object, scene_allowed

EDIT_KINDS: tuple[str, ...] = ("recolor", "move", "remove", "add", "resize", "swap")

REGION_TARGETS: dict[str, tuple[str, ...]] = {
    "top left": ("to the top left corner", "to the upper left"),
    "top": ("to the top", "to the top middle"),
    "top right": ("to the top right corner", "to the upper right"),
    "left": ("to the left side", "to the middle left"),
    "center": ("to the center", "to the middle"),
    "right": ("to the right side", "to the middle right"),
    "bottom left": ("to the bottom left corner", "to the lower left"),
    "bottom": ("to the bottom", "to the bottom middle"),
    "bottom right": ("to the bottom right corner", "to the lower right"),
}
REGION_AT: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner",), "top": ("at the top",),
    "top right": ("in the top right corner",), "left": ("on the left",),
    "center": ("in the center",), "right": ("on the right",),
    "bottom left": ("in the bottom left corner",), "bottom": ("at the bottom",),
    "bottom right": ("in the bottom right corner",),
}


@dataclass(frozen=True)
class EditSpec:
    """A requested change, as data.

    Args:
        kind: one of :data:`EDIT_KINDS`.
        index: the edited object (source index); -1 for ``add``.
        other: the second object of a ``swap``; -1 otherwise.
        color: new color (``recolor``).
        size: new size class (``resize``).
        x, y: new normalized center (``move``).
        obj: the added object (``add``).
    """

    kind: str
    index: int = -1
    other: int = -1
    color: str | None = None
    size: str | None = None
    x: float | None = None
    y: float | None = None
    obj: ObjectSpec | None = None

    def __post_init__(self) -> None:
        check_choice(self.kind, EDIT_KINDS, "edit kind")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "index": self.index, "other": self.other}
        for k in ("color", "size", "x", "y"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.obj is not None:
            d["obj"] = self.obj.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EditSpec:
        d = dict(d)
        if "obj" in d and d["obj"] is not None:
            d["obj"] = ObjectSpec.from_dict(d["obj"])
        allowed = {"kind", "index", "other", "color", "size", "x", "y", "obj"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown edit field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)


def _check_index(spec: SceneSpec, i: int, edit: EditSpec) -> None:
    if not 0 <= i < spec.count:
        raise ValueError(f"{edit.kind} edit refers to object {i}, but the scene has {spec.count}")


def apply_edit(spec: SceneSpec, edit: EditSpec) -> SceneSpec:
    """The target scene: ``spec`` with ``edit`` applied (raises on an invalid edit)."""
    objs = list(spec.objects)
    k = edit.kind
    if k == "add":
        if edit.obj is None:
            raise ValueError("an add edit needs 'obj'")
        if len(objs) >= MAX_OBJECTS:
            raise ValueError(f"cannot add to a scene that already has {MAX_OBJECTS} objects")
        return spec.with_objects(objs + [edit.obj])
    _check_index(spec, edit.index, edit)
    o = objs[edit.index]
    if k == "recolor":
        objs[edit.index] = replace(o, color=check_choice(edit.color, COLORS, "color"))
    elif k == "resize":
        objs[edit.index] = replace(o, size=check_choice(edit.size, SIZES, "size"))
    elif k == "move":
        if edit.x is None or edit.y is None:
            raise ValueError("a move edit needs 'x' and 'y'")
        objs[edit.index] = replace(o, x=edit.x, y=edit.y)
    elif k == "remove":
        del objs[edit.index]
    elif k == "swap":
        _check_index(spec, edit.other, edit)
        p = objs[edit.other]
        objs[edit.index], objs[edit.other] = replace(o, x=p.x, y=p.y), replace(p, x=o.x, y=o.y)
    return spec.with_objects(objs)


def changed_indices(edit: EditSpec, target: SceneSpec) -> set[int]:
    """Indices (in the target) of objects the edit changed or created."""
    if edit.kind == "add":
        return {target.count - 1}
    if edit.kind == "remove":
        return set()
    if edit.kind == "swap":
        return {edit.index, edit.other}
    return {edit.index}


def describe_edit(spec: SceneSpec, edit: EditSpec, rng: random.Random) -> str:
    """An instruction for ``edit`` on source scene ``spec`` from random templates."""
    k = edit.kind
    if k == "add":
        o = edit.obj
        assert o is not None
        what = object_phrase(rng, o.color, o.shape, o.size if rng.random() < 0.5 else None)
        where = rng.choice(REGION_AT[o.region])
        tpl = rng.choice(("Add {w} {r}.", "Put {w} {r}.", "Draw {w} {r}.", "Insert {w} {r}."))
        return tpl.format(w=what, r=where)
    ref = referring_expression(spec, edit.index, rng)
    if k == "recolor":
        c = rng.choice(COLOR_WORDS[edit.color])
        tpl = rng.choice(("Make {r} {c}.", "Change the color of {r} to {c}.", "Paint {r} {c}.",
                          "Recolor {r} to {c}.", "Turn {r} {c}."))
        return tpl.format(r=ref, c=c)
    if k == "move":
        region = REGIONS[region_index(edit.x, edit.y)]
        tpl = rng.choice(("Move {r} {t}.", "Shift {r} {t}.", "Place {r} {t}.", "Drag {r} {t}."))
        return tpl.format(r=ref, t=rng.choice(REGION_TARGETS[region]))
    if k == "remove":
        tpl = rng.choice(("Remove {r}.", "Delete {r}.", "Take away {r}.", "Erase {r}.", "Get rid of {r}."))
        return tpl.format(r=ref)
    if k == "resize":
        old = spec.objects[edit.index].size
        z = rng.choice(SIZE_WORDS[edit.size])
        verb = "Enlarge" if list(SIZES).index(edit.size) > list(SIZES).index(old) else "Shrink"
        tpl = rng.choice(("Make {r} {z}.", "Resize {r} to {z}.", "Change the size of {r} to {z}.",
                          verb + " {r} to {z}."))
        return tpl.format(r=ref, z=z)
    # swap
    ref2 = referring_expression(spec, edit.other, rng)
    tpl = rng.choice(("Swap {a} and {b}.", "Swap the positions of {a} and {b}.",
                      "Exchange the places of {a} and {b}.", "Let {a} and {b} trade places."))
    return tpl.format(a=ref, b=ref2)


def _propose(spec: SceneSpec, kind: str, rng: random.Random, split: str,
             difficulty: Difficulty = FULL) -> EditSpec | None:
    d = difficulty
    objs = list(spec.objects)
    n = len(objs)
    if kind == "add":
        if n + 1 not in allowed_counts(split, d) or n >= MAX_OBJECTS:
            return None
        free = [r for r in REGIONS if r not in {o.region for o in objs}]
        for _ in range(4):
            c, s = rng.choice(list(d.colors)), rng.choice(d.shapes)
            if pair_allowed(c, s, split, d):
                o = random_object(rng, c, s, rng.choice(free), objs, difficulty=d)
                if o is not None:
                    return EditSpec("add", obj=o)
        return None
    if n == 0:
        return None
    i = rng.randrange(n)
    o, others = objs[i], objs[:i] + objs[i + 1:]
    if kind == "recolor":
        colors = [c for c in d.colors if c != o.color and pair_allowed(c, o.shape, split, d)]
        return EditSpec("recolor", index=i, color=rng.choice(colors)) if colors else None
    if kind == "resize":
        sizes = [z for z in d.sizes if z != o.size and fits(replace(o, size=z), others)]
        return EditSpec("resize", index=i, size=rng.choice(sizes)) if sizes else None
    if kind == "move":
        free = [r for r in REGIONS if r not in {p.region for p in objs}]
        rng.shuffle(free)
        for region in free[:4]:
            p = random_object(rng, o.color, o.shape, region, others, size=o.size, difficulty=d)
            if p is not None:
                return EditSpec("move", index=i, x=p.x, y=p.y)
        return None
    if kind == "remove":
        return EditSpec("remove", index=i) if n - 1 in allowed_counts(split, d) else None
    if kind == "swap":
        cands = [j for j in range(n) if j != i and (objs[j].color, objs[j].shape) != (o.color, o.shape)]
        rng.shuffle(cands)
        for j in cands:
            a, b = replace(o, x=objs[j].x, y=objs[j].y), replace(objs[j], x=o.x, y=o.y)
            rest = [p for k, p in enumerate(objs) if k not in (i, j)]
            if fits(a, rest + [b]) and fits(b, rest):
                return EditSpec("swap", index=i, other=j)
        return None
    raise ValueError(f"unknown edit kind {kind!r}; choose one of {', '.join(EDIT_KINDS)}")


def make_edit(spec: SceneSpec, rng: random.Random, split: str = "train",
              kinds: tuple[str, ...] = EDIT_KINDS,
              difficulty: Difficulty = FULL) -> tuple[EditSpec, SceneSpec, str]:
    """A random valid edit of ``spec`` within ``difficulty``: ``(edit, target_spec, instruction)``.

    Kinds are tried in random order until one is possible (``recolor`` nearly always is).
    """
    for k in kinds:
        check_choice(k, EDIT_KINDS, "edit kind")
    order = list(kinds)
    rng.shuffle(order)
    for kind in order + ["recolor"]:
        edit = _propose(spec, kind, rng, split, difficulty)
        if edit is None:
            continue
        target = apply_edit(spec, edit)
        if split != "heldout" and not scene_allowed(target, split, difficulty):
            continue
        return edit, target, describe_edit(spec, edit, rng)
    raise ValueError(f"no edit of kinds {kinds} is possible on this scene")

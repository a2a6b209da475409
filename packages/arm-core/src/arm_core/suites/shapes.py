"""The ``shapes`` suite: ShapesWorld prompts in GenEval's own format, scored offline.

GenEval's six tags are built from ShapesWorld scene specs (drawn by the world's own sampler,
so the scenes obey a split's held-out rules and a :class:`~arm_data.shapes.Difficulty`), with
object phrases from the world's caption vocabulary. Each line is a valid GenEval metadata
line (``tag``, ``include`` with ``class`` / ``count`` / ``color`` / ``position``, ``prompt``)
plus a ``shapes`` field holding the scene spec and the clause kinds the tag checks, which
the ``shapes`` scorer (:mod:`.scorers.shapes`) evaluates with the rule evaluator:

============  =========================================  ==============================
tag           scene                                      clauses checked
============  =========================================  ==============================
single_object one object                                 count, presence
two_object    two objects of different shapes            count, presence
counting      two objects of the same color and shape    count, presence
colors        one object                                 count, presence, color
position      two objects in different rows / columns    count, presence, relation
color_attr    two objects, different colors and shapes   count, presence, color
============  =========================================  ==============================

Generation and output layout are GenEval's (:class:`.geneval.GenEvalSuite`).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from arm_data.shapes.captions import join_list, object_phrase, relation_phrase
from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.spec import SceneSpec
from arm_data.shapes.splits import sample_scene

from arm_core.suites.base import PromptItem, SuiteError, SuiteFormatError
from arm_core.suites.geneval import TAGS, GenEvalSuite

#: clause kinds each tag checks (see the module docstring)
TAG_CHECKS: dict[str, tuple[str, ...]] = {
    "single_object": ("count", "presence"),
    "two_object": ("count", "presence"),
    "counting": ("count", "presence"),
    "colors": ("count", "presence", "color"),
    "position": ("count", "presence", "relation"),
    "color_attr": ("count", "presence", "color"),
}
# GenEval's relation words, by (axis, first object before the second)
_GENEVAL_RELATION = {("x", True): "right of", ("x", False): "left of",
                     ("y", True): "below", ("y", False): "above"}
MAX_DRAWS = 5000


def _fits(tag: str, spec: Any) -> bool:
    objs = spec.objects
    if tag in ("single_object", "colors"):
        return len(objs) == 1
    if len(objs) != 2:
        return False
    a, b = objs
    if tag == "two_object":
        return a.shape != b.shape
    if tag == "counting":
        return (a.color, a.shape) == (b.color, b.shape)
    if tag == "color_attr":
        return a.shape != b.shape and a.color != b.color
    if tag == "position":
        return a.region != b.region and (a.shape, a.color) != (b.shape, b.color)
    raise ValueError(tag)


def _line(tag: str, spec: Any, rng: random.Random) -> dict[str, Any]:
    objs = list(spec.objects)
    relations: list[list[Any]] = []
    if tag == "counting":
        o = objs[0]
        text = object_phrase(rng, o.color, o.shape, count=2)
        include = [{"class": o.shape, "count": 2, "color": o.color}]
    elif tag == "position":
        a, b = objs
        rel, axis = relation_phrase(a, b, rng)  # type: ignore[misc]  # _fits: different cells
        text = f"{object_phrase(rng, a.color, a.shape)} {rel} {object_phrase(rng, b.color, b.shape)}"
        relations = [[0, 1, axis]]
        # GenEval states the second object's place relative to the first: b is <rel> of a
        ab = (a.x < b.x) if axis == "x" else (a.y < b.y)
        include = [{"class": a.shape, "count": 1},
                   {"class": b.shape, "count": 1, "position": [_GENEVAL_RELATION[(axis, ab)], 0]}]
    else:
        text = join_list([object_phrase(rng, o.color, o.shape) for o in objs])
        include = [{"class": o.shape, "count": 1,
                    **({"color": o.color} if "color" in TAG_CHECKS[tag] else {})} for o in objs]
    prompt = text[0].upper() + text[1:] + "."
    return {"tag": tag, "include": include, "prompt": prompt,
            "shapes": {"spec": spec.to_dict(), "check": list(TAG_CHECKS[tag]), "relations": relations}}


def make_prompts(per_tag: int = 8, split: str = "val", difficulty: str = "demo", seed: int = 0,
                 tags: tuple[str, ...] = TAGS) -> list[dict[str, Any]]:
    """``per_tag`` GenEval-format lines per tag, from ShapesWorld scenes of ``split``.

    Args:
        per_tag: prompts per tag.
        split: the ShapesWorld split whose rules the scenes obey (``val``: training
            compositions; ``heldout``: held-out pairs and counts).
        difficulty: the world's difficulty preset (``demo``, ``full``).
        seed: the draw's seed (the same arguments give the same file).
        tags: which of GenEval's tags to build.
    """
    diff = get_difficulty(difficulty)
    if per_tag < 1:
        raise SuiteError(f"per_tag must be >= 1, got {per_tag}")
    unknown = [t for t in tags if t not in TAG_CHECKS]
    if unknown:
        raise SuiteError(f"unknown shapes tag(s) {unknown}; choose from {', '.join(TAG_CHECKS)}")
    lines = []
    for tag in tags:
        rng = random.Random(f"arm-shapes-suite:{seed}:{split}:{tag}")
        found = 0
        for _ in range(MAX_DRAWS):
            spec = sample_scene(rng, split, difficulty=diff)
            if _fits(tag, spec):
                lines.append(_line(tag, spec, rng))
                found += 1
                if found == per_tag:
                    break
        else:
            raise SuiteError(f"the {diff.name} world's {split} split gave only {found} scenes for tag "
                             f"{tag!r} in {MAX_DRAWS} draws (its object counts: "
                             f"{list(diff.train_counts if split != 'heldout' else diff.heldout_counts)})")
    return lines


def write_prompts(path: str | os.PathLike, lines: list[dict[str, Any]]) -> Path:
    """Write lines as a GenEval ``evaluation_metadata.jsonl`` (atomically)."""
    # deferred: checkpoint imports torch; reading and checking prompt files stays torch-free
    from arm_tokenizer.framework.checkpoint import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, "".join(json.dumps(x) + "\n" for x in lines).encode())
    return path


class ShapesSuite(GenEvalSuite):
    """GenEval's format and layout, with the scene spec each line carries (see the module docstring)."""

    name = "shapes"

    def read(self, path: str | os.PathLike) -> list[PromptItem]:
        # deferred: the ShapesWorld evaluator imports scipy, needed only to read the checks
        from arm_data.shapes.evaluator import normalize_check

        items = super().read(path)
        for it in items:
            file, _, where = it.where.rpartition(":")
            extra = it.record.get("shapes")
            if not isinstance(extra, dict) or "spec" not in extra:
                raise SuiteFormatError(file, where, "no 'shapes' field with the scene spec: a plain GenEval "
                                       "line? Use --suite geneval for GenEval's own prompts, or write "
                                       "shapes prompts with `arm-lm suite prompts`")
            try:
                SceneSpec.from_dict(extra["spec"])
                normalize_check(extra.get("check"))
            except (ValueError, TypeError) as exc:
                raise SuiteFormatError(file, where, f"bad 'shapes' field: {exc}") from None
        return items

"""ShapesWorld: the embedded procedural data set and its rule-based evaluator.

Images of 1-4 flat shapes in named colors, sizes and 3x3 regions on light
backgrounds, with captions, question/answer pairs and edit triplets, and an
evaluator that reads any image back into a scene and scores it against a spec
clause by clause (GenEval-style). Nothing is downloaded: sample ``i`` of a split
is a pure function of ``(seed, split, i)``, so two machines produce identical
pixels.

Public API (stable; other packages code against it)::

    from arm_data.shapes import (SceneSpec, ObjectSpec, Background, render,
                                 ShapesWorld, evaluate_t2i, evaluate_edit, parse_image)

    spec = SceneSpec.from_json(s)          # / spec.to_json(), spec.to_dict()
    img = render(spec, width=64, height=64)               # PIL.Image RGB
    world = ShapesWorld(split="heldout", seed=0, width=64, height=64)
    s = world[3]        # ShapesSample: .spec .image .caption .caption_attributes .qa .edit
    r = evaluate_t2i(img, spec, check=s.caption_attributes,   # T2IResult: .score .strict .clauses
                     relations=s.caption_relations)
    e = evaluate_edit(out_img, s.edit.source, s.edit.target, edit=s.edit.edit,
                      source_image=s.edit.source_image)      # EditResult: .adherence .consistency

Splits (``train``, ``val``, ``heldout``) and the held-out compositions are data in
:mod:`arm_data.shapes.splits` (``HELDOUT_PAIRS``, ``HELDOUT_COUNTS``, ``SPLITS``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Everything loads lazily: ``import arm_data.shapes`` is instant, the evaluator (an RL
# reward) pulls in numpy/scipy only, and torch/lightning load only for the datasets.
_EXPORTS: dict[str, str] = {
    "BACKGROUND_KINDS": "arm_data.shapes.palette",
    "COLORS": "arm_data.shapes.palette",
    "REGIONS": "arm_data.shapes.palette",
    "SHAPES": "arm_data.shapes.palette",
    "SIZES": "arm_data.shapes.palette",
    "Background": "arm_data.shapes.spec",
    "ObjectSpec": "arm_data.shapes.spec",
    "SceneSpec": "arm_data.shapes.spec",
    "region_of": "arm_data.shapes.spec",
    "render": "arm_data.shapes.rendering",
    "render_array": "arm_data.shapes.rendering",
    "DIFFICULTIES": "arm_data.shapes.difficulty",
    "Difficulty": "arm_data.shapes.difficulty",
    "get_difficulty": "arm_data.shapes.difficulty",
    "HELDOUT_COUNTS": "arm_data.shapes.splits",
    "HELDOUT_PAIRS": "arm_data.shapes.splits",
    "SPLITS": "arm_data.shapes.splits",
    "TRAIN_COUNTS": "arm_data.shapes.splits",
    "sample_rng": "arm_data.shapes.splits",
    "sample_scene": "arm_data.shapes.splits",
    "scene_allowed": "arm_data.shapes.splits",
    "Caption": "arm_data.shapes.captions",
    "make_caption": "arm_data.shapes.captions",
    "referring_expression": "arm_data.shapes.captions",
    "QA_KINDS": "arm_data.shapes.qa",
    "QAPair": "arm_data.shapes.qa",
    "make_qa": "arm_data.shapes.qa",
    "EDIT_KINDS": "arm_data.shapes.edits",
    "EditSpec": "arm_data.shapes.edits",
    "apply_edit": "arm_data.shapes.edits",
    "describe_edit": "arm_data.shapes.edits",
    "make_edit": "arm_data.shapes.edits",
    "EditTriplet": "arm_data.shapes.world",
    "ShapesSample": "arm_data.shapes.world",
    "ShapesWorld": "arm_data.shapes.world",
    "DetectedObject": "arm_data.shapes.perception",
    "ParsedScene": "arm_data.shapes.perception",
    "parse_image": "arm_data.shapes.perception",
    "CLAUSE_KINDS": "arm_data.shapes.evaluator",
    "Clause": "arm_data.shapes.evaluator",
    "EditResult": "arm_data.shapes.evaluator",
    "T2IResult": "arm_data.shapes.evaluator",
    "evaluate_edit": "arm_data.shapes.evaluator",
    "evaluate_t2i": "arm_data.shapes.evaluator",
    "ShapesEditDataset": "arm_data.shapes.dataset",
    "ShapesImageDataset": "arm_data.shapes.dataset",
    "ShapesVQADataset": "arm_data.shapes.dataset",
    "ShapesWorldDataModule": "arm_data.shapes.datamodule",
    "export_split": "arm_data.shapes.export",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arm_data.shapes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from arm_data.shapes.captions import Caption, make_caption, referring_expression  # noqa: F401
    from arm_data.shapes.datamodule import ShapesWorldDataModule  # noqa: F401
    from arm_data.shapes.dataset import ShapesEditDataset, ShapesImageDataset, ShapesVQADataset  # noqa: F401
    from arm_data.shapes.difficulty import DIFFICULTIES, Difficulty, get_difficulty  # noqa: F401
    from arm_data.shapes.edits import EDIT_KINDS, EditSpec, apply_edit, describe_edit, make_edit  # noqa: F401
    from arm_data.shapes.evaluator import (  # noqa: F401
        CLAUSE_KINDS,
        Clause,
        EditResult,
        T2IResult,
        evaluate_edit,
        evaluate_t2i,
    )
    from arm_data.shapes.export import export_split  # noqa: F401
    from arm_data.shapes.palette import BACKGROUND_KINDS, COLORS, REGIONS, SHAPES, SIZES  # noqa: F401
    from arm_data.shapes.perception import DetectedObject, ParsedScene, parse_image  # noqa: F401
    from arm_data.shapes.qa import QA_KINDS, QAPair, make_qa  # noqa: F401
    from arm_data.shapes.rendering import render, render_array  # noqa: F401
    from arm_data.shapes.spec import Background, ObjectSpec, SceneSpec, region_of  # noqa: F401
    from arm_data.shapes.splits import (  # noqa: F401
        HELDOUT_COUNTS,
        HELDOUT_PAIRS,
        SPLITS,
        TRAIN_COUNTS,
        sample_rng,
        sample_scene,
        scene_allowed,
    )
    from arm_data.shapes.world import EditTriplet, ShapesSample, ShapesWorld  # noqa: F401

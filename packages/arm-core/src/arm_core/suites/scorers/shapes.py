"""The ``shapes`` scorer: GenEval's table for the ``shapes`` suite, by the ShapesWorld rules.

Each image of a ``shapes`` suite item is read back into a scene by the rule evaluator
(:func:`arm_data.shapes.evaluate_t2i`: colour segmentation, shapes by geometry, positions by
centroid) and checked against the line's scene spec on the clause kinds its tag names (see
:mod:`arm_core.suites.shapes`). As in GenEval, an image is ``correct`` when every checked
clause holds; the per-tag score is the fraction of correct images and the overall score the
mean over tags. ``scores`` holds the partial credit (fraction of clauses passed).
"""

from __future__ import annotations

from collections.abc import Sequence

from arm_core.suites.scorers.base import Scorer, ScoreRecord, ScorerError, SuiteItem


class ShapesScorer(Scorer):
    """Rule-based GenEval-style scorer of ShapesWorld scenes (no model, no download).

    Args:
        name: label for tables and errors.
        device: unused (the rule evaluator runs on the CPU); kept for the common interface.
    """

    suites = ("shapes",)
    metric = "accuracy"

    def __init__(self, name: str | None = "shapes", device: str = "cpu") -> None:
        super().__init__(name=name, device=device)

    def score(self, items: Sequence[SuiteItem]) -> list[ScoreRecord]:
        # deferred: the ShapesWorld evaluator imports scipy, needed only when scoring
        from arm_data.shapes import SceneSpec, evaluate_t2i

        out = []
        for it in items:
            extra = it.record.get("shapes")
            if not isinstance(extra, dict) or "spec" not in extra:
                raise ScorerError(f"scorer {self.name!r}: item {it.item_id!r} has no 'shapes' scene spec "
                                  "in its record (was it generated from a shapes suite file?)")
            spec = SceneSpec.from_dict(extra["spec"])
            relations = [tuple(r) for r in extra.get("relations") or []] or None
            scores, correct, details = [], [], []
            for im in it.load_images():
                r = evaluate_t2i(im, spec, check=extra.get("check"), relations=relations)
                scores.append(float(r.score))
                correct.append(bool(r.strict))
                details.append({"by_kind": r.by_kind,
                                "failed": [c.name for c in r.clauses if not c.passed]})
            out.append(ScoreRecord(it.item_id, it.tag, scores, correct, details))
        return out

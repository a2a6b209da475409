"""The ``shapes`` suite and scorer: GenEval-format prompts from ShapesWorld specs, scored by
the rule evaluator into GenEval's per-tag table (true renders score 1, wrong ones 0)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from arm_core.suites.geneval import TAGS, GenEvalSuite
from arm_core.suites.score import score_suite
from arm_core.suites.scorers.base import Scorer, ScoreRecord, ScorerError, SuiteItem
from arm_core.suites.shapes import TAG_CHECKS, ShapesSuite, make_prompts, write_prompts
from arm_data.shapes import SceneSpec, render
from arm_tokenizer.framework import registry
from PIL import Image


def test_prompts_are_geneval_lines_with_specs(tmp_path) -> None:
    lines = make_prompts(per_tag=3, split="val", difficulty="demo", seed=0)
    assert [x["tag"] for x in lines] == [t for t in TAGS for _ in range(3)]
    assert lines == make_prompts(per_tag=3, split="val", difficulty="demo", seed=0)   # deterministic
    assert lines != make_prompts(per_tag=3, split="val", difficulty="demo", seed=1)
    path = write_prompts(tmp_path / "evaluation_metadata.jsonl", lines)
    assert len(GenEvalSuite().read(path)) == len(lines)   # GenEval's own format
    for x in lines:
        spec = SceneSpec.from_dict(x["shapes"]["spec"])
        assert x["shapes"]["check"] == list(TAG_CHECKS[x["tag"]])
        assert sum(c["count"] for c in x["include"]) == spec.count
        assert {c["class"] for c in x["include"]} == {o.shape for o in spec.objects}
        if x["tag"] == "counting":
            assert spec.count == 2 and len({(o.color, o.shape) for o in spec.objects}) == 1
            assert x["prompt"].startswith("Two ")
        if x["tag"] == "position":
            (i, j, axis), = x["shapes"]["relations"]
            a, b = spec.objects
            rel = x["include"][1]["position"][0]
            after = (b.x > a.x) if axis == "x" else (b.y > a.y)
            assert rel == {("x", True): "right of", ("x", False): "left of",
                           ("y", True): "below", ("y", False): "above"}[(axis, after)]
        for o in spec.objects:   # the demo world: its colors, shapes
            assert o.color in ("red", "green", "blue", "yellow") and o.shape in ("circle", "square", "triangle", "star")


def _layout(tmp_path, draw) -> tuple:
    """Write the shapes suite's GenEval layout with ``draw(spec)`` as each of 2 samples."""
    path = write_prompts(tmp_path / "shapes.jsonl", make_prompts(per_tag=2, split="val", difficulty="demo"))
    suite = ShapesSuite(samples=2)
    out = tmp_path / "out"
    for it in suite.read(path):
        im = draw(SceneSpec.from_dict(it.record["shapes"]["spec"]))
        suite.write(it, [im, im], out)
    return path, out


def test_true_renders_score_one_blank_zero(tmp_path) -> None:
    path, out = _layout(tmp_path / "a", lambda s: render(s, width=64, height=64))
    table, js = score_suite("shapes", "shapes", out, prompts=path)
    assert table.overall == 1.0 and set(table.per_tag) == set(TAGS)
    assert all(v == 1.0 for v in table.per_tag.values()) and table.images_per_tag["counting"] == 4
    data = json.loads(js.read_text())
    assert data["table"]["overall"] == 1.0 and len(data["records"]) == 12
    md = js.with_suffix(".md").read_text()
    assert "| color_attr | 4 | 1.000 |" in md and "**overall**" in md
    _, out = _layout(tmp_path / "b", lambda s: Image.new("RGB", (64, 64), (240, 240, 240)))
    table, _ = score_suite("shapes", "shapes", out, prompts=path)
    assert table.overall == 0.0


def test_wrong_colors_fail_only_the_color_tags(tmp_path) -> None:
    other = {"red": "green", "green": "blue", "blue": "yellow", "yellow": "red"}

    def recolor(spec):
        return render(spec.with_objects(replace(o, color=other[o.color]) for o in spec.objects), width=64, height=64)

    path, out = _layout(tmp_path, recolor)
    table, _ = score_suite("shapes", "shapes", out, prompts=path)
    assert table.per_tag["colors"] == 0.0 and table.per_tag["color_attr"] == 0.0
    assert table.per_tag["single_object"] == 1.0 and table.per_tag["two_object"] == 1.0
    assert table.per_tag["counting"] == 1.0
    assert math.isclose(table.overall, 4 / 6)


class _NaN(Scorer):
    def score(self, items):
        return [ScoreRecord(it.item_id, it.tag, [float("nan")] * len(it.images)) for it in items]


def test_scorer_contract() -> None:
    items = [SuiteItem("shapes", "00003", "a red circle", [Image.new("RGB", (8, 8))], tag="colors")]
    with pytest.raises(ScorerError, match=r"item '00003', image 0: score nan is not a finite number"):
        _NaN(name="nan")(items)
    assert registry.base_class("scorer") is Scorer
    assert registry.find("scorer", "shapes").target == "arm_core.suites.scorers.shapes:ShapesScorer"
    shapes = registry.create("scorer", "shapes")
    with pytest.raises(ScorerError, match="scores the suites shapes, not geneval"):
        shapes([replace(items[0], suite="geneval")])
    # unweighted mean over tags, as GenEval's summary
    table = Scorer().summarize([ScoreRecord("0", "a", [1.0, 0.0], [True, False]),
                                ScoreRecord("1", "b", [1.0], [True])])
    assert table.per_tag == {"a": 0.5, "b": 1.0} and table.overall == 0.75

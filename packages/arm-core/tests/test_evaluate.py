"""ShapesWorld evaluation: oracle pipelines score ~1, broken ones low; JSON + CLI."""

from __future__ import annotations

import json

import pytest
import torch
from arm_core.evaluate import (
    evaluate_edit_split,
    evaluate_pipelines,
    evaluate_t2i_split,
    evaluate_vqa_split,
    normalize_answer,
    write_metrics,
)
from arm_core.pipelines import Edit, TextToImage, Understand
from arm_data.shapes import ShapesWorld
from PIL import Image


class _Vis:
    image_size = 64


def _oracle_world(split: str, n: int = 6):
    return [ShapesWorld(split, 0, 64, 64, length=n)[i] for i in range(n)]


class OracleT2I(TextToImage):
    """Returns the true render of each caption (or a blank image when ``blank``)."""

    def __init__(self, blank: bool = False) -> None:
        self.visual_tokenizer, self.blank = _Vis(), blank
        self.by_caption = {s.caption: s.image for sp in ("heldout", "val") for s in _oracle_world(sp)}
        self.calls = []

    def __call__(self, prompts, **kw):
        self.calls.append(kw)
        return [Image.new("RGB", (64, 64), "white") if self.blank else self.by_caption[p]
                for p in prompts]


class OracleUnd(Understand):
    def __init__(self) -> None:
        self.visual_tokenizer = _Vis()
        self.answers = {}
        for sp in ("heldout", "val"):
            for s in _oracle_world(sp):
                for qa in s.qa:
                    self.answers[qa.question] = qa.answer

    def __call__(self, images, questions, **kw):
        assert len(images) == len(questions) and kw["temperature"] == 0.0
        return [f"The {self.answers[q].upper()}." for q in questions]


class OracleEdit(Edit):
    """Returns the true target (``mode='target'``) or the unchanged source (``'copy'``)."""

    def __init__(self, mode: str = "target") -> None:
        self.visual_tokenizer, self.mode = _Vis(), mode
        self.targets = {s.edit.instruction: s.edit.target_image
                        for sp in ("heldout", "val") for s in _oracle_world(sp)}
        self.calls = []

    def __call__(self, images, instructions, **kw):
        self.calls.append(kw)
        if self.mode == "copy":
            return list(images)
        return [self.targets[t] for t in instructions]


def test_normalize_answer() -> None:
    assert normalize_answer("The Red!") == "red"
    assert normalize_answer("  top   left. ") == "top left"
    assert normalize_answer("an ellipse") == "ellipse"


def test_t2i_oracle_vs_blank() -> None:
    good = evaluate_t2i_split(OracleT2I(), "heldout", 6, 1.5)
    bad = evaluate_t2i_split(OracleT2I(blank=True), "heldout", 6, 1.5)
    assert good["overall"] > 0.95 and good["strict"] > 0.8
    assert bad["overall"] < 0.3
    assert set(good["by_clause"]) >= {"count", "color"}
    assert sum(g["n"] for g in good["by_objects"].values()) == 6
    assert set(good["by_objects"]) <= {"single", "two", "three_plus"}


def test_vqa_and_edit_oracles() -> None:
    v = evaluate_vqa_split(OracleUnd(), "heldout", 6, questions_per_image=2, keep_examples=2)
    assert v["accuracy"] == 1.0 and v["n"] == 12 and len(v["examples"]) == 2
    e = evaluate_edit_split(OracleEdit(), "heldout", 6, 1.5, 1.25)
    c = evaluate_edit_split(OracleEdit("copy"), "heldout", 6, 1.5, 1.25)
    assert e["adherence"] > 0.9 and e["consistency"] > 0.9
    assert c["adherence"] < e["adherence"]       # copying the source ignores the instruction
    assert sum(d["n"] for d in e["by_kind"].values()) == 6


def test_vqa_accuracy_by_object_count() -> None:
    """An answerer right only in one-object scenes shows up as such in ``by_objects``."""
    scenes = [ShapesWorld("heldout", 0, 64, 64, length=12)[i] for i in range(12)]
    truth = [(qa.answer, s.spec.count) for s in scenes for qa in s.qa[:2]]

    class OnlySingle(OracleUnd):
        def __call__(self, images, questions, **kw):
            return [a if count == 1 else "wrong" for a, count in truth]

    v = evaluate_vqa_split(OnlySingle(), "heldout", 12, questions_per_image=2)
    n_single = sum(c == 1 for _, c in truth)
    assert 0 < n_single < len(truth), "the fixture needs scenes of both kinds"
    assert v["by_objects"]["single"] == {"n": n_single, "accuracy": 1.0}
    assert all(g["accuracy"] == 0.0 for k, g in v["by_objects"].items() if k != "single")
    assert sum(g["n"] for g in v["by_objects"].values()) == v["n"] == len(truth)
    assert v["accuracy"] == pytest.approx(n_single / len(truth))
    kinds = [qa.kind for s in scenes for qa in s.qa[:2]]
    for kind, by_g in v["by_kind_objects"].items():
        assert sum(g["n"] for g in by_g.values()) == kinds.count(kind)
        for name, g in by_g.items():
            assert g["accuracy"] == (1.0 if name == "single" else 0.0)


def test_full_report_and_json(tmp_path) -> None:
    t2i, edit = OracleT2I(), OracleEdit()

    class _LM:
        directory = "oracle"

    t2i.lm = _LM()
    m = evaluate_pipelines(t2i, edit, OracleUnd(), split="heldout", seen_split="val", n=4,
                           guidance_scales=[1.0, 2.0], progress=False)
    assert set(m["t2i"]) == {"heldout", "val"} and set(m["t2i"]["heldout"]) == {"cfg=1", "cfg=2"}
    # guidance scales reach the pipelines; edit at cfg 1 turns image guidance off too
    assert [c["guidance_scale"] for c in t2i.calls] == [1.0, 2.0, 1.0, 2.0]
    assert [(c["guidance_scale"], c["image_guidance_scale"]) for c in edit.calls][:2] == [
        (1.0, 1.0), (2.0, 1.25)]
    s = m["summary"]
    assert s["t2i"]["cfg1"] > 0.95 and s["t2i"]["best_scale"] in ("cfg=1", "cfg=2")
    assert s["vqa"] == {"heldout": 1.0, "val": 1.0}
    assert s["edit"]["best"]["adherence"] > 0.9
    out = write_metrics(m, tmp_path / "m" / "metrics.json")
    back = json.loads(out.read_text())
    assert back["summary"]["vqa"]["heldout"] == 1.0
    with pytest.raises(ValueError, match="unknown evaluation task"):
        evaluate_pipelines(t2i, edit, OracleUnd(), tasks=["t2i", "caption"])


def test_cli_end_to_end(tmp_path, monkeypatch) -> None:
    """``arm-lm evaluate`` on a (random) exported tiny LM: runs and writes numbers in range."""
    from arm_core.cli import EXTRA_COMMANDS
    from arm_core.testing import save_tiny_export

    torch.manual_seed(0)
    world = ShapesWorld("train", 0, 64, 64)
    texts = [t for i in range(20) for t in (world[i].caption, world[i].edit.instruction,
                                            *[q.question for q in world[i].qa])]
    save_tiny_export(tmp_path, texts)
    rc = EXTRA_COMMANDS["evaluate"](["--lm", str(tmp_path / "lm"), "--n", "2", "--guidance-scale", "1", "2",
                                     "--out", str(tmp_path / "metrics.json"), "--seen-split", ""])
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["t2i"]) == {"heldout"}
    for r in m["t2i"]["heldout"].values():
        assert 0.0 <= r["overall"] <= 1.0
    assert 0.0 <= m["vqa"]["heldout"]["accuracy"] <= 1.0
    for r in m["edit"]["heldout"].values():
        assert 0.0 <= r["adherence"] <= 1.0 and 0.0 <= r["consistency"] <= 1.0


def test_edit_image_scale_sweep() -> None:
    """Several image scales: each text scale above 1 runs with each, keyed ``cfg=T,img=I``;
    text scale 1 stays the single unguided run, and the summary picks among all of them."""
    t2i, edit = OracleT2I(), OracleEdit()

    class _LM:
        directory = "oracle"

    t2i.lm = _LM()
    m = evaluate_pipelines(t2i, edit, OracleUnd(), split="heldout", seen_split=None, n=3,
                           guidance_scales=[1.0, 2.0], image_guidance_scales=[1.25, 3.0], tasks=["edit"],
                           progress=False)
    assert list(m["edit"]["heldout"]) == ["cfg=1", "cfg=2,img=1.25", "cfg=2,img=3"]
    assert [(c["guidance_scale"], c["image_guidance_scale"]) for c in edit.calls] == [
        (1.0, 1.0), (2.0, 1.25), (2.0, 3.0)]
    assert m["settings"]["edit_image_scale"] == [1.25, 3.0]
    assert m["summary"]["edit"]["best_scale"] in m["edit"]["heldout"]
    with pytest.raises(ValueError, match="image_guidance_scales"):
        evaluate_pipelines(t2i, edit, OracleUnd(), n=1, image_guidance_scales=[], tasks=["edit"])
    with pytest.raises(ValueError, match="image_guidance_scales"):
        evaluate_pipelines(t2i, edit, OracleUnd(), n=1, image_guidance_scales=0.0, tasks=["edit"])


def test_tasks_name_their_evaluation() -> None:
    """``--tasks`` dispatches through each task's ``evaluator``: record and task names alike,
    once each, in the metrics' order; a task without one is told what to run instead."""
    from arm_core.evaluate import evaluators_for

    assert [ev.key for ev in evaluators_for(["edit", "und", "vqa", "t2i"])] == ["t2i", "vqa", "edit"]
    assert [ev.pipeline for ev in evaluators_for(["pair", "vqa"])] == ["t2i", "und"]
    with pytest.raises(ValueError, match=r"task 'text' has no ShapesWorld evaluation.*--loss-tasks text"):
        evaluators_for(["t2i", "text"])
    with pytest.raises(ValueError, match="unknown evaluation task 'captions'.*Install the package"):
        evaluators_for(["captions"])


def test_old_scale_argument_names_warn_and_give_the_same_metrics() -> None:
    """``cfg_scales`` / ``edit_image_scale`` (evaluate_pipelines), ``scale``
    (evaluate_t2i_split) and ``text_scale`` / ``image_scale`` (evaluate_edit_split): the
    deprecated names of ``guidance_scales`` / ``image_guidance_scales`` / ``guidance_scale`` /
    ``image_guidance_scale`` (issue 32). Output keys stay as before."""

    class _LM:
        directory = "oracle"

    def run(**kw):
        t2i, edit = OracleT2I(), OracleEdit()
        t2i.lm = _LM()
        m = evaluate_pipelines(t2i, edit, OracleUnd(), split="heldout", seen_split=None, n=2,
                               tasks=["t2i", "edit"], progress=False, **kw)
        m.pop("seconds")
        return m, t2i.calls, edit.calls

    new = run(guidance_scales=[1.0, 2.0], image_guidance_scales=[1.25, 3.0])
    with pytest.warns(DeprecationWarning, match="evaluate_pipelines: cfg_scales= is deprecated, use guidance_scales="):
        with pytest.warns(DeprecationWarning, match="edit_image_scale= is deprecated, use image_guidance_scales="):
            old = run(cfg_scales=[1.0, 2.0], edit_image_scale=[1.25, 3.0])
    assert old == new
    assert new[0]["settings"]["cfg_scales"] == [1.0, 2.0] and new[0]["settings"]["edit_image_scale"] == [1.25, 3.0]
    with pytest.raises(TypeError, match="both guidance_scales= and its deprecated name cfg_scales="):
        run(guidance_scales=[1.0], cfg_scales=[1.0])

    with pytest.warns(DeprecationWarning, match="evaluate_t2i_split: scale= is deprecated, use guidance_scale="):
        old_t2i = evaluate_t2i_split(OracleT2I(), "heldout", 2, scale=1.5)
    assert old_t2i == evaluate_t2i_split(OracleT2I(), "heldout", 2, 1.5)
    with pytest.raises(TypeError, match="evaluate_t2i_split: missing the argument guidance_scale="):
        evaluate_t2i_split(OracleT2I(), "heldout", 2)
    with pytest.warns(DeprecationWarning, match="evaluate_edit_split: text_scale= is deprecated"):
        with pytest.warns(DeprecationWarning, match="image_scale= is deprecated, use image_guidance_scale="):
            old_edit = evaluate_edit_split(OracleEdit(), "heldout", 2, text_scale=1.5, image_scale=1.25)
    new_edit = evaluate_edit_split(OracleEdit(), "heldout", 2, guidance_scale=1.5, image_guidance_scale=1.25)
    assert old_edit == new_edit and (new_edit["text_scale"], new_edit["image_scale"]) == (1.5, 1.25)


def test_evaluate_cli_old_flags_warn_and_pass_the_same_scales(monkeypatch, tmp_path) -> None:
    """`arm-lm evaluate --cfg / --edit-image-scale`: hidden aliases of --guidance-scale /
    --image-guidance-scale (and --cfg of the own-data path)."""
    import arm_core.evaluate as ev
    import arm_core.evaluate_data as evd

    seen = []

    def fake(*args, **kw):
        seen.append({k: v for k, v in kw.items() if "scale" in k})
        return {"summary": {}, "seconds": 0.0}

    monkeypatch.setattr(ev, "evaluate_lm", fake)
    monkeypatch.setattr(evd, "evaluate_data", fake)
    out = ["--lm", "x", "--out", str(tmp_path / "m.json")]
    assert ev.cli_evaluate(out + ["--guidance-scale", "1", "2", "--image-guidance-scale", "1.25", "3"]) == 0
    with pytest.warns(DeprecationWarning) as caught:
        assert ev.cli_evaluate(out + ["--cfg", "1", "2", "--edit-image-scale", "1.25", "3"]) == 0
    assert seen[0] == seen[1] == {"guidance_scales": [1.0, 2.0], "image_guidance_scales": [1.25, 3.0]}
    said = " | ".join(str(w.message) for w in caught)
    assert "--cfg is deprecated, use --guidance-scale" in said
    assert "--edit-image-scale is deprecated, use --image-guidance-scale" in said
    # own data (--data): the same flag
    assert ev.cli_evaluate(out + ["--data", "d", "--guidance-scale", "1.5"]) == 0
    with pytest.warns(DeprecationWarning, match="--cfg is deprecated"):
        assert ev.cli_evaluate(out + ["--data", "d", "--cfg", "1.5"]) == 0
    assert seen[2] == seen[3] == {"guidance_scales": [1.5]}

"""``siglip_score`` and ``vlm_judge`` on tiny random transformers checkpoints (SigLIP, SigLIP2,
CLIP, Qwen2-VL) loaded through the same Auto* code as real weights: registry, scores in range,
agreement with transformers' own forward, batching, VIEScore arithmetic, offline errors."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("transformers")

from arm_core.suites.scorers.base import ScorerError, SuiteItem  # noqa: E402
from arm_core.suites.scorers.siglip_score import SiglipScorer  # noqa: E402
from arm_core.suites.scorers.tiny_hf import build_tiny_qwen2_vl, build_tiny_siglip  # noqa: E402
from arm_core.suites.scorers.vlm_judge import VIESCORE_QUESTIONS, VLMJudgeScorer, _Query  # noqa: E402
from PIL import Image  # noqa: E402

RED = Image.new("RGB", (64, 64), (230, 20, 20))
BLUE = Image.new("RGB", (48, 64), (20, 20, 230))
# a striped image: not a flat colour, so towers see spatial structure too
STRIPES = Image.frombytes("RGB", (64, 64), bytes((255 if (i // 3) % 16 < 8 else 0) for i in range(64 * 64 * 3)))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"siglip": build_tiny_siglip(root / "siglip"), "clip": build_tiny_siglip(root / "clip", "clip"),
            "siglip2": build_tiny_siglip(root / "siglip2", "siglip2"),
            "qwen": build_tiny_qwen2_vl(root / "qwen")}


def _items():
    return [SuiteItem("geneval", "00000", "a red circle", [RED, BLUE, STRIPES], tag="colors"),
            SuiteItem("geneval", "00001", "a blue square", [BLUE], tag="single_object")]


def test_registered_as_scorers(ckpts):
    from arm_tokenizer.framework import registry

    s = registry.create("scorer", "siglip_score", name_or_path=str(ckpts["siglip"]))
    j = registry.create("scorer", "vlm_judge", name_or_path=str(ckpts["qwen"]))
    assert isinstance(s, SiglipScorer) and isinstance(j, VLMJudgeScorer)
    assert s._model is None and j._model is None          # lazy: nothing loaded yet


@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_siglip_score_is_the_models_own_sigmoid_probability(ckpts, family):
    from transformers import AutoModel, AutoProcessor

    s = SiglipScorer(str(ckpts[family]), batch_size=2)
    recs = s(_items())
    assert s.head == "sigmoid" and s.memory_bytes > 0
    flat = [v for r in recs for v in r.scores]
    assert len(recs[0].scores) == 3 and all(0.0 < v < 1.0 for v in flat)
    assert len({round(v, 6) for v in recs[0].scores}) == 3       # the score changes with the image
    # transformers' own forward: logits_per_image = exp(logit_scale) * cos + logit_bias
    model, proc = AutoModel.from_pretrained(ckpts[family]), AutoProcessor.from_pretrained(ckpts[family])
    inp = {**proc.tokenizer(["a red circle"], padding="max_length", max_length=16, return_tensors="pt"),
           **proc.image_processor(images=[RED, BLUE, STRIPES], return_tensors="pt")}
    with torch.no_grad():
        ref = torch.sigmoid(model(**inp).logits_per_image[:, 0])
    torch.testing.assert_close(torch.tensor(recs[0].scores), ref, rtol=1e-4, atol=1e-5)
    table = s.summarize(recs, "geneval")
    assert set(table.per_tag) == {"colors", "single_object"} and 0 < table.overall < 1


def test_clip_head_and_edit_text(ckpts):
    s = SiglipScorer(str(ckpts["clip"]))
    recs = s(_items())
    assert s.head == "clip" and all(0.0 <= v <= 100.0 for r in recs for v in r.scores)
    # an edit item is scored against its target caption, not its instruction
    edit = SuiteItem("gedit", "k", "make it blue", [BLUE], source_image=RED, record={"target_caption": "a blue square"})
    assert SiglipScorer.text_of(edit) == "a blue square"
    torch.testing.assert_close(torch.tensor(s([edit])[0].scores), torch.tensor(recs[1].scores))


def test_judge_yes_probability_matches_a_manual_forward_and_batching(ckpts):
    j = VLMJudgeScorer(str(ckpts["qwen"]), batch_size=3)
    items = _items()
    items[0].record = {"questions": [["Is there a red circle?", "yes"], ["Is there a blue square?", "no"]]}
    recs = j(items)
    d = recs[0].details[0]["questions"]
    assert [q["expected"] for q in d] == ["yes", "no"]
    assert recs[0].scores[0] == pytest.approx((d[0]["p_yes"] + 1 - d[1]["p_yes"]) / 2)
    assert all(0 <= v <= 1 for r in recs for v in r.scores) and recs[0].correct is not None
    assert len({round(v, 9) for v in recs[0].scores}) == 3          # changes with the image
    # the default T2I question, and one (image, question) alone equals it inside a padded batch
    q = _Query((0, 0), [BLUE], "Does this image show a blue square? Answer yes or no.", "yn:0")
    alone = j.p_yes([q])
    torch.testing.assert_close(alone, torch.tensor(recs[1].scores), rtol=1e-4, atol=1e-5)
    # and the number is P(yes) among yes/no tokens from transformers' own logits
    proc, model = j._processor, j._model
    inp = proc(text=[j._prompt(1, q.text)], images=[BLUE], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inp).logits[0, -1]
    p = logits[j._yes + j._no].softmax(-1)[: len(j._yes)].sum()
    torch.testing.assert_close(alone[0], p, rtol=1e-4, atol=1e-5)


def test_viescore_expected_ratings_and_overall(ckpts):
    j = VLMJudgeScorer(str(ckpts["qwen"]), batch_size=4)
    item = SuiteItem("gedit", "key1", "make the circle blue", [BLUE, RED], tag="color_alter", source_image=RED)
    rec = j([item])[0]
    assert rec.correct is None and len(rec.scores) == 2
    for score, d in zip(rec.scores, rec.details, strict=True):
        assert set(VIESCORE_QUESTIONS) <= set(d)
        assert all(0.0 <= d[k] <= 10.0 for k in VIESCORE_QUESTIONS)
        assert d["SC"] == min(d["success"], d["overediting"]) and d["PQ"] == min(d["naturalness"], d["artifacts"])
        assert score == pytest.approx(math.sqrt(d["SC"] * d["PQ"]))
    assert rec.scores[0] != rec.scores[1]
    # Qwen-style digits: "10" is "1" then "0", read in the same forward from the next-token logits
    assert j._numerals["split_ten"]
    ids = j._numerals["ids"]
    q = _Query((0, 0), [BLUE], VIESCORE_QUESTIONS["naturalness"][1], "naturalness")
    proc, model = j._processor, j._model
    inp = proc(text=[j._prompt(1, q.text)], images=[BLUE], return_tensors="pt")
    with torch.no_grad():
        first = model(**inp).logits[0, -1]
        inp["input_ids"] = torch.cat([inp["input_ids"], torch.tensor([[ids[1]]])], 1)
        inp["attention_mask"] = torch.cat([inp["attention_mask"], torch.ones(1, 1, dtype=torch.long)], 1)
        inp["mm_token_type_ids"] = torch.cat([inp["mm_token_type_ids"], torch.zeros(1, 1, dtype=torch.long)], 1)
        nxt = model(**inp).logits[0, -1]
    p = first[ids].softmax(-1)
    p0 = nxt[[ids[0]] + j._stop_ids()].softmax(-1)[0]
    probs = torch.cat([p[:1], (p[1] * (1 - p0))[None], p[2:], (p[1] * p0)[None]])
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    expected = (probs * torch.arange(11.0)).sum()
    torch.testing.assert_close(j.expected_rating([q])[0], expected, rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_one_line_errors(ckpts, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ScorerError, match="HF_HUB_OFFLINE") as e:
        SiglipScorer("someone/not-cached-anywhere").load()
    assert "\n" not in str(e.value) and "siglip_score" in str(e.value)
    with pytest.raises(ScorerError, match="does not exist"):
        VLMJudgeScorer(str(tmp_path / "missing" / "dir")).load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScorerError, match="no config.json"):
        SiglipScorer(str(tmp_path / "empty")).load()
    with pytest.raises(ScorerError, match="not a dual encoder|cannot load"):
        SiglipScorer(str(ckpts["qwen"])).load()
    with pytest.raises(ScorerError, match="dtype 'float8'"):
        SiglipScorer(str(ckpts["siglip"]), dtype="float8").load()
    with pytest.raises(ScorerError, match=r"\{prompt\}"):
        VLMJudgeScorer(str(ckpts["qwen"]), t2i_question="Is it good?")
    j = VLMJudgeScorer(str(ckpts["qwen"]))
    bad = SuiteItem("dpg", "7", "x", [RED], record={"questions": [["Is it red?", "maybe"]]})
    with pytest.raises(ScorerError, match=r"dpg item '7': questions\[0\]"):
        j([bad])


def test_suite_score_runs_both_scorers_on_written_layouts(ckpts, tmp_path):
    """`arm-lm suite score`'s Python path: GenEval's folders scored by siglip_score, DPG's 2x2
    grids by vlm_judge (their own layouts, written here by hand)."""
    import json

    from arm_core.suites.dpg import grid_2x2
    from arm_core.suites.score import score_suite

    lines = [{"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a red circle"},
             {"tag": "single_object", "include": [{"class": "square", "count": 1}], "prompt": "a square"}]
    meta = tmp_path / "evaluation_metadata.jsonl"
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "geneval"
    for i, line in enumerate(lines):
        (out / f"{i:05d}" / "samples").mkdir(parents=True)
        (out / f"{i:05d}" / "metadata.jsonl").write_text(json.dumps(line) + "\n")
        for k, im in enumerate([RED, BLUE, STRIPES, RED]):
            im.save(out / f"{i:05d}" / "samples" / f"{k:04d}.png")
    table, path = score_suite("siglip_score", "geneval", out, prompts=meta,
                              scorer_args={"name_or_path": str(ckpts["siglip"])})
    saved = json.loads(path.read_text())
    assert set(table.per_tag) == {"colors", "single_object"} and 0 < table.overall < 1
    assert len(saved["records"]) == 2 and all(len(r["scores"]) == 4 for r in saved["records"])
    assert (out / "scores-siglip_score.md").read_text().count("|") > 10

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a1.txt").write_text("a red circle")
    dpg = tmp_path / "dpg"
    dpg.mkdir()
    grid_2x2([RED, BLUE, STRIPES, RED]).save(dpg / "a1.png")
    table, path = score_suite("vlm_judge", "dpg", dpg, prompts=tmp_path / "prompts",
                              scorer_args={"name_or_path": str(ckpts["qwen"])})
    rec = json.loads(path.read_text())["records"][0]
    assert len(rec["scores"]) == 4 and all(0 <= s <= 1 for s in rec["scores"]) and 0 <= table.overall <= 1

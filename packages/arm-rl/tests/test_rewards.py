"""Rewards: rule-based ShapesWorld rewards on true/wrong images, validation, composite,
dual-encoder alignment with a plugged model, and judges (oracle and an arm-core LM)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from arm_data.tasks import Task
from arm_rl.prompts import ShapesPromptDataset
from arm_rl.rewards.alignment import DualEncoderAlignmentReward, ImageTextModel, _text_for
from arm_rl.rewards.base import Reward, RewardError, as_tensor
from arm_rl.rewards.composite import CompositeReward
from arm_rl.rewards.judge import ARMJudge, Judge, JudgeReward, questions_for
from arm_rl.rewards.scorer import record_to_item
from arm_rl.rewards.shapes import ShapesEditReward, ShapesT2IReward
from PIL import Image


def _recs(task, n=4):
    ds = ShapesPromptDataset(60, {task: 1.0}, seed=0)
    return [ds[i] for i in range(n)]


def _render(spec):
    from arm_data.shapes import render

    return render(spec, 64, 64)


def test_shapes_t2i_scores_true_renders_high_and_blank_low():
    recs = _recs("t2i")
    good = ShapesT2IReward()([_render(r.spec) for r in recs], recs)
    blank = ShapesT2IReward()([Image.new("RGB", (64, 64), "white")] * 4, recs)
    assert good.shape == (4,) and good.dtype == torch.float32
    assert good.mean() > 0.8 and blank.mean() < 0.3
    # tensors in [-1, 1] are accepted too
    torch.testing.assert_close(ShapesT2IReward()(as_tensor([_render(r.spec) for r in recs]), recs), good)
    with pytest.raises(RewardError, match="scores tasks"):
        ShapesT2IReward()([_render(r.spec) for r in _recs("edit", 1)], _recs("edit", 1))


def test_shapes_edit_weights_adherence_and_consistency():
    recs = _recs("edit")
    target = [_render(r.target) for r in recs]
    source = [_render(r.spec) for r in recs]
    r = ShapesEditReward(adherence_weight=1.0, consistency_weight=0.0)
    adh_target, adh_source = r(target, recs), r(source, recs)
    assert adh_target.mean() > 0.8 and adh_source.mean() < adh_target.mean()
    both = ShapesEditReward(0.5, 0.5)
    v = both(source, recs)
    parts = both.last_parts
    torch.testing.assert_close(v, 0.5 * parts["adherence"] + 0.5 * parts["consistency"])
    assert parts["consistency"].mean() > 0.8           # copying the source keeps everything else
    with pytest.raises(ValueError, match="weights"):
        ShapesEditReward(0.0, 0.0)


class _Const(Reward):
    def __init__(self, value, shape=None, name="const"):
        super().__init__(name=name)
        self.value, self.shape = value, shape

    def compute(self, images, records, codes=None):
        return torch.full(self.shape or (len(records),), self.value)


def test_validation_names_the_reward_and_composite_sums():
    recs = _recs("t2i", 3)
    imgs = [Image.new("RGB", (64, 64))] * 3
    with pytest.raises(RewardError, match="'bad_nan'.*non-finite.*t2i prompt #"):
        _Const(float("nan"), name="bad_nan")(imgs, recs)
    with pytest.raises(RewardError, match=r"'bad_shape' returned shape \(2,\)"):
        _Const(1.0, shape=(2,), name="bad_shape")(imgs, recs)
    with pytest.raises(RewardError, match="3 images for 2"):
        _Const(1.0)(imgs, recs[:2])
    comp = CompositeReward([_Const(1.0, name="a"), _Const(0.25, name="b")], weights=[0.5, 2.0])
    torch.testing.assert_close(comp(imgs, recs), torch.full((3,), 1.0))
    assert set(comp.last_values) == {"a", "b"}
    with pytest.raises(RewardError, match="'inner'"):
        CompositeReward([_Const(float("inf"), name="inner")])(imgs, recs)
    with pytest.raises(ValueError, match="unique"):
        CompositeReward([_Const(1.0), _Const(2.0)])
    with pytest.raises(ValueError, match="share no task"):
        CompositeReward([ShapesT2IReward(), ShapesEditReward()])


class _ColorModel(ImageTextModel):
    """A toy dual encoder: images -> mean RGB; texts -> the RGB of the first color word."""

    COLORS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}

    def embed_images(self, images):
        return images.mean(dim=(2, 3))

    def embed_texts(self, texts):
        out = []
        for t in texts:
            word = next(w for w in t.lower().split() if w in self.COLORS)
            out.append(torch.tensor(self.COLORS[word]))
        return torch.stack(out)


def test_alignment_reward_with_a_plugged_dual_encoder():
    from arm_rl.prompts import PromptRecord

    recs = [PromptRecord("t2i", "a red thing"), PromptRecord("t2i", "a blue thing")]
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    r = DualEncoderAlignmentReward(model=_ColorModel())
    match, swap = r([red, blue], recs), r([blue, red], recs)
    assert (match > 0.99).all() and (swap < match).all()


class _Oracle(Judge):
    def __init__(self, answers):
        self.answers = answers

    def p_yes(self, images, questions, codes=None):
        return torch.tensor([1.0 if self.answers.get(q, "yes") == "yes" else 0.0 for q in questions])


def test_judge_questions_and_reward():
    t2i, edit = _recs("t2i"), _recs("edit", 8)
    qs = questions_for(t2i[0])
    assert qs and all(q.endswith("?") and a in ("yes", "no") for q, a in qs)
    for c, s in t2i[0].spec.pairs():
        assert (f"Is there a {c} {s}?", "yes") in qs
    answers = {q: a for r in t2i + edit for q, a in questions_for(r)}
    imgs = [Image.new("RGB", (64, 64))] * 4
    assert (JudgeReward(_Oracle(answers))(imgs, t2i) == 1.0).all()
    # an always-yes judge misses the "was it removed?" questions of edits that remove/recolor
    has_no = [r for r in edit if any(a == "no" for _, a in questions_for(r))]
    assert has_no
    v = JudgeReward(_Oracle({}))([Image.new("RGB", (64, 64))] * len(has_no), has_no)
    assert (v < 1.0).all()


class StyledT2I(Task):
    """A plugin task reading t2i records (all a reward asks of it: its schema)."""

    name = "styled_t2i"
    reads = "t2i"


class StyledEdit(Task):
    """A plugin task reading edit records."""

    name = "styled_edit"
    reads = "edit"


def test_a_plugin_task_reading_t2i_or_edit_records_is_scored_like_them(arm_register):
    arm_register(f"task:styled_t2i={__name__}:StyledT2I,task:styled_edit={__name__}:StyledEdit")
    for task, plugin in (("t2i", "styled_t2i"), ("edit", "styled_edit")):
        recs = _recs(task, 6)
        mine = [dataclasses.replace(r, task=plugin) for r in recs]
        assert [questions_for(r) for r in mine] == [questions_for(r) for r in recs]
        assert [_text_for(r) for r in mine] == [_text_for(r) for r in recs]
        images = [_render(r.spec) for r in recs]
        for r, m, im in zip(recs, mine, images, strict=True):
            item = record_to_item(m, [im], "0")
            assert dataclasses.replace(item, tag=task) == record_to_item(r, [im], "0")
            assert item.tag == plugin


def test_arm_judge_on_a_tiny_lm(tiny_lm):
    from arm_core.checkpoint import load_lm

    recs = _recs("t2i", 3)
    imgs = [_render(r.spec) for r in recs]
    judge = ARMJudge(checkpoint=str(tiny_lm / "lm"))
    v = JudgeReward(judge)(imgs, recs)
    assert v.shape == (3,) and ((v > 0) & (v < 1)).all()
    # self-judging: bound to a policy; codes given, so nothing is re-encoded
    lm = load_lm(tiny_lm / "lm")
    self_judge = ARMJudge()
    with pytest.raises(RewardError, match="no policy was bound"):
        JudgeReward(self_judge)(imgs, recs)
    vis = lm.load_visual_tokenizer()
    self_judge.bind(policy=lm.model, layout=lm.layout, text_tokenizer=lm.load_text_tokenizer(),
                    visual_tokenizer=vis)
    codes = vis.encode(imgs)
    torch.testing.assert_close(JudgeReward(self_judge)(imgs, recs, codes), v)  # same weights


def test_judge_agreement_with_an_oracle_judge():
    from arm_rl.recipes import auroc, judge_agreement, pearson

    class RuleJudge(Judge):
        """Answers "is there a C S?" from the scene it was asked about (a perfect judge)."""

        def p_yes(self, images, questions, codes=None):
            from arm_data.shapes import parse_image

            out = []
            for im, q in zip(images, questions, strict=True):
                seen = {(o.color, o.shape) for o in parse_image(im).objects}
                words = q.rstrip("?").split()
                out.append(1.0 if q.startswith("Is there") and (words[-2], words[-1]) in seen else 0.0)
            return torch.tensor(out)

    res = judge_agreement(JudgeReward(RuleJudge()), split="heldout", n=6)
    assert res["matched"]["rule"] > res["mismatched"]["rule"]
    assert res["matched"]["judge"] > res["mismatched"]["judge"]
    assert res["auroc_matched_vs_mismatched"]["judge"] > 0.8 and res["pearson_all"] > 0.5
    assert auroc(torch.tensor([1.0]), torch.tensor([0.0])) == 1.0
    assert pearson(torch.ones(3), torch.arange(3.0)) is None


def test_every_registered_reward_is_a_documented_reward_subclass():
    import inspect

    from arm_tokenizer.framework import registry

    names = {c.name for c in registry.list_components("reward")}
    assert {"shapes_t2i", "shapes_edit", "dual_encoder_alignment", "judge", "composite"} <= names
    for name in names:
        cls = registry.get("reward", name)
        assert issubclass(cls, Reward), name
        doc = inspect.getdoc(cls) or ""
        for arg in inspect.signature(cls.__init__).parameters:
            if arg != "self":
                assert f"{arg}:" in doc, f"{name}: constructor arg {arg!r} is not documented"

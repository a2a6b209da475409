"""Rollouts: prompts in ARM's format, visual-token masks, and log-probs that match sampling."""

from __future__ import annotations

import pytest
import torch
from arm_rl.prompts import PromptRecord, ShapesPromptDataset
from arm_rl.rollout import RolloutSampler, TaskSampling


def _sampler(tiny_lm, mode, cfg=1.0, image_cfg=1.0, top_k=8):
    from arm_core.checkpoint import load_lm

    lm = load_lm(tiny_lm / "lm")
    vis = lm.load_visual_tokenizer()
    s = {"t2i": TaskSampling(0.7, top_k, cfg), "edit": TaskSampling(1.0, top_k, cfg, image_cfg)}
    return lm, RolloutSampler(lm.layout, lm.load_text_tokenizer(), vis, s, mode)


def _records():
    ds = ShapesPromptDataset(8, {"t2i": 0.5, "edit": 0.5}, seed=0)
    recs = [ds[i] for i in range(8)]
    return [r for r in recs if r.task == "t2i"][:2], [r for r in recs if r.task == "edit"][:2]


@pytest.mark.parametrize("mode,cfg,image_cfg", [("guided", 2.0, 1.0), ("guided", 1.5, 1.25),
                                                ("unguided", 2.0, 1.5), ("guided", 1.0, 1.0)])
def test_old_logprobs_equal_recomputed_logprobs(tiny_lm, mode, cfg, image_cfg):
    from arm_core.generation import Engine

    lm, sampler = _sampler(tiny_lm, mode, cfg, image_cfg)
    t2i, edit = _records()
    assert t2i and edit
    engine = Engine(lm.model)
    for task, recs in (("t2i", t2i), ("edit", edit)):
        b = sampler.rollout(engine, task, recs, 3, generator=torch.Generator().manual_seed(1))
        h, w = sampler.grid
        assert b.tokens.shape == (6, h * w + 1) and b.codes.shape == (6, h * w)
        assert b.mask[:, : h * w].all() and not b.mask[:, -1].any()        # <eoi> not in the loss
        assert (b.tokens[:, -1] == lm.layout.eoi_id).all()
        assert [r.index for r in b.records] == [r.index for r in recs for _ in range(3)]
        if task == "edit":
            n_br = 1 if b.guidance is None else b.guidance.n_branches
            assert n_br == (3 if image_cfg != 1.0 else 2 if cfg != 1.0 else 1)
        new, untruncated = sampler.logprobs(lm.model, b)
        torch.testing.assert_close(sampler.kl_logprobs(lm.model, b), untruncated)   # the reference's
        torch.testing.assert_close(new[b.mask], b.old_logp[b.mask], atol=2e-4, rtol=1e-4)
        # the KL's log-probs: the same distribution without top-k, never below the truncated one's mass
        assert torch.isfinite(untruncated[b.mask]).all()
        assert (untruncated[b.mask] <= new[b.mask] + 1e-5).all()
        assert (b.old_logp[b.mask] < 0).any()
        imgs = sampler.decode(b)
        assert len(imgs) == 6 and imgs[0].size == (64, 64)


def test_prompts_only_from_train_split_and_empty_set():
    with pytest.raises(ValueError, match="train split only"):
        ShapesPromptDataset(4, {"t2i": 1.0}, split="heldout")
    with pytest.raises(ValueError, match="empty"):
        ShapesPromptDataset(0, {"t2i": 1.0})
    with pytest.raises(ValueError, match="unknown task"):
        ShapesPromptDataset(4, {"vqa": 1.0})
    ds = ShapesPromptDataset(40, {"t2i": 0.25, "edit": 0.75}, seed=3)
    tasks = [ds[i].task for i in range(40)]
    assert 0 < tasks.count("t2i") < tasks.count("edit")
    assert ds[5].text == ShapesPromptDataset(40, {"t2i": 0.25, "edit": 0.75}, seed=3)[5].text
    with pytest.raises(ValueError, match="needs a source"):
        PromptRecord("edit", "make it red")

"""GRPOTrainer end to end on a tiny random LM: it learns a reward, exports a loadable LM,
keeps no reference at beta = 0, and refuses bad references, NaN rewards and NaN losses."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from arm_rl.lightning_module import GRPOTrainer, ReferenceMismatchError, RLNumericsError
from arm_rl.prompts import ShapesPromptDataModule
from arm_rl.rewards.base import Reward, RewardError
from arm_rl.rl_task import RLTask

TARGET_CODE = 3


class CodeReward(Reward):
    """Fraction of the image's codes equal to TARGET_CODE (learnable by a tiny random LM)."""

    def __init__(self, name="code", value=None):
        super().__init__(name=name)
        self.value = value

    def compute(self, images, records, codes=None):
        if self.value is not None:
            return torch.full((len(records),), self.value)
        return (codes == TARGET_CODE).float().mean(1)


def tasks(t2i=None, edit=None, **sampling):
    """``tasks`` of the given rewards, each sampled with ``sampling`` (RLTask fields)."""
    return {name: RLTask(reward=r, **sampling) for name, r in (("t2i", t2i), ("edit", edit)) if r is not None}


def _fit(module, dm, steps, tmp_path):
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=pl.loggers.CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=1, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    return trainer


# test_grpo_raises_reward_and_exports: the reward must rise by GAIN; 16 steps (one fit) are
# usually enough (measured gain 0.33-0.94 over seeds 0-24); a run that lands lower trains on
# in further fits of 16 steps, up to MAX_FITS, rather than fail on where one run happened to land.
GAIN = 0.2
MAX_FITS = 4


def test_grpo_raises_reward_and_exports(tiny_lm, tmp_path, arm_test_seed):
    from arm_core.checkpoint import load_lm
    from arm_core.generation import Engine

    torch.manual_seed(arm_test_seed)
    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"),
                         tasks=tasks(CodeReward(), CodeReward(), temperature=1.0, top_k=None),
                         group_size=4, beta=0.01, lr=3e-2, ppo_epochs=2, sample_every_n_steps=5,
                         export_dir=str(tmp_path / "policy"), seed=arm_test_seed)
    dm = ShapesPromptDataModule({"t2i": 0.5, "edit": 0.5}, prompts_per_step=2, num_prompts=64)
    trainer = _fit(module, dm, 16, tmp_path / "fit1")  # 8 rollout batches x 2 ppo epochs
    assert module.reference is not None
    assert all(not p.requires_grad for p in module.reference.parameters())
    assert not any(k.startswith("_reference") for k in module.state_dict())
    exported = load_lm(tmp_path / "policy")
    assert exported.metadata["global_step"] == 16
    logged = trainer.logged_metrics
    for k in ("train/reward/mean", "train/reward/t2i/mean", "train/reward/edit/std",
              "train/reward/edit/group_std", "train/kl",
              "train/clip_fraction", "train/entropy", "train/response_length", "train/loss"):
        assert k in logged, sorted(logged)
    assert logged["train/response_length"] == 16
    # a grid every 5 rollout batches (each is 2 optimizer steps): batches 0 and 5
    steps = {p.name.split("-")[0] for p in (tmp_path / "fit1").rglob("samples/step*.png")}
    assert steps == {"step000000", "step000010"}, steps

    start = load_lm(tiny_lm / "lm")

    def score(model):
        b = module._sampler.rollout(Engine(model), "t2i", [dm.dataset[i] for i in range(4)], 8,
                                    generator=torch.Generator().manual_seed(5))
        return (b.codes == TARGET_CODE).float().mean().item()

    before, after, fits = score(start.model), score(exported.model), 1
    while after <= before + GAIN and fits < MAX_FITS:     # the exported policy, re-exported each fit
        fits += 1
        _fit(module, dm, 16, tmp_path / f"fit{fits}")
        after = score(load_lm(tmp_path / "policy").model)
    print(f"GRPO: seed {arm_test_seed}, {fits} x 16 steps, target-code rate {before:.3f} -> {after:.3f}")
    assert after > before + GAIN, (
        f"GRPO raised the target-code rate from {before:.3f} to {after:.3f} in {fits} x 16 steps "
        f"(the cap, seed {arm_test_seed}); needs a gain above {GAIN}")


def test_beta_zero_builds_no_reference_and_dynamic_sampling_skips(tiny_lm, tmp_path):
    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks=tasks(CodeReward(value=0.5)),
                         group_size=2, beta=0.0, dynamic_sampling=True, export_dir="")
    dm = ShapesPromptDataModule({"t2i": 1.0}, prompts_per_step=1, num_prompts=4)
    before = {k: v.clone() for k, v in module.state_dict().items()} if module.policy else None
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert module.reference is None and before is None
    assert trainer.global_step == 0                     # every group had zero variance: no step
    logged = trainer.logged_metrics
    assert logged["train/skipped"] == 1 and torch.isnan(logged["train/loss"])   # not a stale value


def test_top_k_policy_moving_off_its_samples_keeps_the_kl_finite(tiny_lm):
    # A strong update with top-k 4 pushes sampled tokens out of the policy's (and the
    # reference's) top-k between ppo epochs: their truncated log-prob is -inf. The KL uses
    # untruncated log-probs, so training goes on.
    torch.manual_seed(0)
    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks=tasks(CodeReward(), top_k=4), group_size=4,
                         beta=0.01, ppo_epochs=4, lr=0.05, export_dir="")
    dm = ShapesPromptDataModule({"t2i": 1.0}, prompts_per_step=2, num_prompts=64)
    trainer = pl.Trainer(max_steps=16, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 16
    assert all(torch.isfinite(p).all() for p in module.policy.parameters())


def test_resume_draws_the_same_rollouts_as_an_uninterrupted_run(tiny_lm, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(steps, root, ckpt=None):
        torch.manual_seed(0)
        module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"),
                             tasks=tasks(CodeReward(), CodeReward(), temperature=1.0, top_k=None),
                             group_size=2, beta=0.01, lr=1e-2, export_dir="", seed=3)
        dm = ShapesPromptDataModule({"t2i": 0.5, "edit": 0.5}, prompts_per_step=2, num_prompts=12)
        cb = ModelCheckpoint(dirpath=root, save_last=True, every_n_train_steps=1, save_top_k=0)
        trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, callbacks=[cb],
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
        torch.manual_seed(123)                        # a different global RNG must not matter
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
        return module.policy.state_dict()

    straight = run(8, tmp_path / "a")                 # 12 prompts / 2 = 6 batches: crosses an epoch
    run(4, tmp_path / "b")
    resumed = run(8, tmp_path / "b", ckpt=str(tmp_path / "b" / "last.ckpt"))
    for k, v in straight.items():
        torch.testing.assert_close(resumed[k], v, rtol=0, atol=1e-6, msg=k)


def test_reference_mismatch_and_bad_arguments(tiny_lm):
    m = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), reference_checkpoint=str(tiny_lm / "other"))
    with pytest.raises(ReferenceMismatchError, match="n_layer"):
        m.configure_model()
    with pytest.raises(ValueError, match="group_size"):
        GRPOTrainer(group_size=1)
    with pytest.raises(ValueError, match="policy_mode"):
        GRPOTrainer(policy_mode="cfg")
    with pytest.raises(ValueError, match="choose one of"):
        GRPOTrainer(aggregation="mean")
    with pytest.raises(ValueError, match="scores only"):
        from arm_rl.rewards.shapes import ShapesT2IReward

        GRPOTrainer(tasks={"edit": RLTask(reward=ShapesT2IReward())})
    with pytest.raises(ValueError, match="empty"):
        ShapesPromptDataModule(num_prompts=0)
    with pytest.raises(ValueError, match="task_weights is empty"):
        ShapesPromptDataModule(task_weights={})
    with pytest.warns(UserWarning, match="ignored: beta = 0"):
        GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), reference_checkpoint=str(tiny_lm / "other"),
                    beta=0.0).configure_model()


def test_nan_reward_and_nan_loss_stop_the_step(tiny_lm, tmp_path):
    dm = ShapesPromptDataModule({"t2i": 1.0}, prompts_per_step=1, num_prompts=4)
    bad = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks=tasks(CodeReward("nanny", float("nan"))),
                      group_size=2, export_dir="")
    with pytest.raises(RewardError, match="batch 0, task t2i: reward 'nanny'"):
        _fit(bad, dm, 1, tmp_path)

    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks=tasks(CodeReward()),
                         group_size=4, beta=0.1, export_dir="")
    module.configure_model()
    with torch.no_grad():                               # a corrupted reference -> NaN KL
        next(module.reference.parameters()).fill_(float("nan"))
    before = {k: v.clone() for k, v in module.policy.state_dict().items()}
    with pytest.raises(RLNumericsError, match="reference log-probs.*NOT stepped"):
        _fit(module, dm, 1, tmp_path)
    after = module.policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_speculative_rollouts_train_and_refuse_a_negative_window(tiny_lm, tmp_path):
    """`speculative: N` decodes rollouts with speculative Jacobi decoding (fewer forwards than
    codes) and the step still trains; a negative window is refused at construction."""
    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks=tasks(CodeReward()),
                         group_size=2, beta=0.0, speculative=4, export_dir="")
    dm = ShapesPromptDataModule({"t2i": 1.0}, prompts_per_step=1, num_prompts=4)
    before = [p.detach().clone() for p in module.policy.parameters()] if module.policy else None
    trainer = _fit(module, dm, 1, tmp_path)
    engine = module.__dict__["_engine"]
    assert engine.speculative == 4 and trainer.global_step == 1
    if before is not None:
        assert any(not torch.equal(a, b) for a, b in zip(before, module.policy.parameters(), strict=True))
    with pytest.raises(ValueError, match="speculative must be >= 0"):
        GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), speculative=-1)

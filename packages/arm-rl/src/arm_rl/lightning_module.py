"""``GRPOTrainer``: GRPO-family RL of an arm-core LM on text-to-image and editing (model ``grpo``).

The tasks trained, and how each is sampled and scored, are ``tasks: {name: RLTask}``
(:mod:`arm_rl.rl_task`): any registered task whose class builds prompts from prompt records,
with a reward; by default ARM's ``t2i`` and ``edit`` with the ShapesWorld rule rewards.

One training step (manual optimization)::

    prompts (ShapesWorld train split, tasks mixed by the tasks' weights)
      -> G rollouts per prompt per task (arm-core engine, constrained image spans, CFG)
      -> decode with the visual tokenizer -> rewards per task (validated)
      -> group-relative advantages (optional dynamic sampling drops zero-variance groups)
      -> reference log-probs (frozen copy; only when beta > 0)
      -> ppo_epochs x minibatches: recompute log-probs, GRPO loss on the visual tokens,
         backward, clip, optimizer step (never on a non-finite loss or gradient)

``trainer.max_steps`` counts optimizer steps (``ppo_epochs`` x minibatches per rollout
batch). The policy is loaded from an exported arm-core LM directory and, at fit end,
exported again in the same format (``export_dir``), so ``arm-lm evaluate``, the pipelines
and the next stage of a staged recipe (T2I -> Edit -> Joint: each run's
``policy_checkpoint`` is the previous run's ``export_dir``) load it unchanged.

Defaults are ARM's: group 16, KL beta 0.01, clip eps 0.2, temperature 0.7 (T2I) / 1.0
(editing), top-k 1000; the loss covers only visual tokens. ``policy_mode`` (guided vs
unguided policy under CFG) is documented in :mod:`arm_rl.rollout`.

Logged (``train/...``): ``loss``, ``policy_loss``, ``kl``, ``clip_fraction``,
``ratio_mean``, ``entropy`` (Monte-Carlo estimate: mean negative log-prob of the sampled
visual tokens under the policy's ``old_logp``; with ``policy_mode: unguided`` and CFG the
samples come from the guided sampler, so this is the conditional policy's cross-entropy on
them rather than its own entropy), ``response_length`` (visual tokens per
rollout), ``reward/mean`` and per task ``reward/<task>/mean|std|group_std`` and
``reward/<task>/<part>/mean|std|group_std`` for each sub-reward (``group_std``: the mean
within-group std, the only variation GRPO learns from; a part with a batch std but no
group std is fixed by the prompt), ``groups_kept`` (dynamic sampling)
and ``skipped`` (1 on a rollout batch with no group left to learn from; its optimization
figures are logged as NaN, not carried over). Sample grids every ``sample_every_n_steps``
rollout batches go to TensorBoard (when that logger is used) and to
``<log_dir>/samples/step<global step>-<task>.png``.

A data module whose training loader produces no batches at all (an empty prompt set) is
an error (:class:`NoTrainingBatchesError`, naming the data module) rather than a run that
ends at step 0 and exports the unchanged policy; nothing is exported then.

Rollouts of rollout batch ``k`` on rank ``r`` are sampled from a generator seeded by
``(seed, r, k)`` (:func:`rollout_seed`), and the prompt order is a pure function of the data
module's seed (``ShapesPromptDataModule`` is resumable and rank-aware), so resuming from a
Lightning checkpoint (``ckpt_path``) draws, on every rank, the rollouts an uninterrupted run
would have drawn.

**On N devices** (``--trainer.devices=N``, Lightning's DDP, or ``--trainer.strategy=fsdp2``
for a policy sharded with FSDP2: :mod:`arm_rl.fsdp`): each rank
rolls out its own ``prompts_per_step`` prompts (:mod:`arm_rl.sharding`: distinct per rank, a
prompt's whole group on one rank) and the ranks agree on every optimizer step
(:mod:`arm_rl.distributed`), so one step on N ranks is one step on the union of their
rollouts. Only the policy is wrapped for gradient sync: the reference, the visual tokenizer
and the rewards are kept out of the module's registry (frozen, never all-reduced), one copy
per rank. ``reward/mean`` and ``groups_kept`` are over all ranks; the per-task figures are
rank 0's. Sample grids and the export are written by rank 0 only. Lightning's FSDP1
strategies (``fsdp``) and a tensor-parallel ``ModelParallelStrategy`` are refused in one line
(:meth:`GRPOTrainer.check_trainer` says why).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from arm_core.checkpoint import load_lm, save_lm
from arm_core.generation import Engine
from arm_tokenizer import callbacks
from arm_tokenizer.framework.deprecation import moved_names
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from PIL import Image
from torch import Tensor

from arm_rl.distributed import StepPlan, gather_objects, is_distributed, ranks_flagging
from arm_rl.fsdp import (
    clip_grad_norm,
    full_state_dict,
    gathered,
    is_sharded,
    model_parallel_sizes,
    shard_policy,
)
from arm_rl.grpo import (
    check_aggregation,
    default_normalize_std,
    group_advantages,
    group_std,
    grpo_loss,
    zero_variance_groups,
)
from arm_rl.rewards.base import Reward, RewardError
from arm_rl.rl_task import LEGACY_TOP_K, RLTask, check_tasks, resolve_tasks
from arm_rl.rollout import POLICY_MODES, RolloutBatch, RolloutSampler, TaskSampling

__all__ = ["GRPOTrainer", "RLNumericsError", "ReferenceMismatchError", "NoTrainingBatchesError",
           "rollout_seed"]

# make_grid (PIL images) is now arm_tokenizer.callbacks.make_grid (PIL or tensors; ncol=, an array)
__getattr__ = moved_names(__name__, {"make_grid": "arm_tokenizer.callbacks"})


class RLNumericsError(FloatingPointError):
    """A non-finite loss or gradient; the optimizer was not stepped (says which batch/reward)."""


class NoTrainingBatchesError(ValueError):
    """The data module's training loader produced no batches: nothing was trained (or exported)."""


class ReferenceMismatchError(ValueError):
    """The reference checkpoint is not the same model shape/vocabulary as the policy."""


# Lightning's ModelCheckpoint warns, at every save under manual optimization, that the
# checkpoint holds the state *after* the optimizer step. That is the state a resume needs
# here (the rollout stream and prompt order continue from it), so the advice it prints
# (stash a pre-step copy of the weights) would be wrong for this module.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")

# The figures _optimize logs each rollout batch (NaN on a skipped one).
_OPT_STATS = ("loss", "policy_loss", "kl", "clip_fraction", "ratio_mean", "grad_norm")


def rollout_seed(seed: int, rank: int, rollout_batch: int) -> int:
    """Seed of the rollout generator for rollout batch ``rollout_batch`` on rank ``rank``: a
    pure function, so resuming needs no generator state and ranks never share a stream."""
    digest = hashlib.sha256(f"arm-rl-rollout:{seed}:{rank}:{rollout_batch}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{k}: policy {a.get(k)!r} vs reference {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class GRPOTrainer(pl.LightningModule):
    """GRPO on T2I and editing for an arm-core LM (see the module docstring).

    Args:
        policy_checkpoint: exported arm-core LM directory the policy starts from (the SFT
            model, or the previous stage's export in a staged recipe).
        reference_checkpoint: frozen reference LM directory; None = a frozen copy of
            ``policy_checkpoint``. Must match the policy's config and vocabulary.
        visual_tokenizer: visual tokenizer directory; None = the one the LM references.
        tasks: the tasks to train, ``{name: RLTask}`` (weight, temperature, top_k,
            guidance_scale, image_guidance_scale, reward; :mod:`arm_rl.rl_task`); the
            weights are the prompt mix the data module draws. None = ARM's ``t2i``
            (temperature 0.7, ``shapes_t2i``) and ``edit`` (1.0, ``shapes_edit``), mixed as
            the data module's ``task_weights`` say.
        group_size: rollouts per prompt ``G`` (ARM: 16).
        beta: KL coefficient to the reference (ARM: 0.01); 0 = no reference model is built.
        eps_low: lower clip range (ARM: 0.2).
        eps_high: upper clip range (ARM: 0.2; DAPO's clip-higher uses 0.28).
        aggregation: ``grpo`` | ``dr_grpo`` | ``token`` (``dapo``): see :mod:`arm_rl.grpo`.
        normalize_std: divide advantages by the group std; None = yes except for ``dr_grpo``.
        policy_mode: ``guided`` (the CFG-guided sampler is the policy, Janus-Pro-R1) or
            ``unguided`` (the conditional model scored on guided samples, T2I-R1).
        top_k: deprecated (write ``tasks.<name>.top_k``): top-k of the default tasks (ARM:
            1000); None = no truncation.
        speculative: rollouts decode image spans with speculative Jacobi decoding, this many
            draft codes verified per forward (0 = off; :mod:`arm_core.speculative`). The
            images follow the same distribution and the log-probs are the target's, so the
            policy gradient is unchanged; it pays off at small rollout batches on a GPU.
        ppo_epochs: optimization epochs over each rollout batch.
        minibatch_size: rollouts per optimizer step; None = the whole rollout batch (all
            tasks) in one step per epoch.
        dynamic_sampling: drop groups whose rewards are all equal (DAPO); a step whose
            groups are all dropped is skipped (logged as ``groups_kept = 0``).
        lr: AdamW learning rate.
        betas: AdamW betas.
        weight_decay: AdamW weight decay.
        grad_clip: max gradient norm (0 = no clipping; the norm is still checked finite).
        sample_every_n_steps: write a sample grid every this many rollout batches (0 =
            never); with ``ppo_epochs`` or minibatches a rollout batch takes several
            optimizer steps.
        sample_grid_size: images in a sample grid (per task).
        export_dir: where the policy is exported at fit end (arm-core LM format); None =
            ``<default_root_dir>/policy``; "" = no export.
        seed: seed of the rollout sampler's generator.
        t2i_reward: deprecated: ``tasks.t2i.reward``.
        edit_reward: deprecated: ``tasks.edit.reward``.
        t2i_temperature: deprecated: ``tasks.t2i.temperature``.
        edit_temperature: deprecated: ``tasks.edit.temperature``.
        t2i_cfg_scale: deprecated: ``tasks.t2i.guidance_scale``.
        edit_cfg_scale: deprecated: ``tasks.edit.guidance_scale``.
        edit_image_cfg_scale: deprecated: ``tasks.edit.image_guidance_scale``.
    """

    def __init__(
        self,
        policy_checkpoint: str = "runs/lm",
        reference_checkpoint: str | None = None,
        visual_tokenizer: str | None = None,
        tasks: dict[str, RLTask] | None = None,
        group_size: int = 16,
        beta: float = 0.01,
        eps_low: float = 0.2,
        eps_high: float = 0.2,
        aggregation: str = "grpo",
        normalize_std: bool | None = None,
        policy_mode: str = "guided",
        top_k: int | None = LEGACY_TOP_K,
        speculative: int = 0,
        ppo_epochs: int = 1,
        minibatch_size: int | None = None,
        dynamic_sampling: bool = False,
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        sample_every_n_steps: int = 0,
        sample_grid_size: int = 8,
        export_dir: str | None = None,
        seed: int = 0,
        # the per-task spellings of earlier releases (None = not given), mapped onto `tasks`
        t2i_reward: Reward | None = None,
        edit_reward: Reward | None = None,
        t2i_temperature: float | None = None,
        edit_temperature: float | None = None,
        t2i_cfg_scale: float | None = None,
        edit_cfg_scale: float | None = None,
        edit_image_cfg_scale: float | None = None,
    ) -> None:
        super().__init__()
        # rewards hold models (judges, encoders): never pickled into checkpoints
        self.save_hyperparameters(ignore=["tasks", "t2i_reward", "edit_reward"])
        self.automatic_optimization = False
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 (GRPO's baseline is the group mean), got {group_size}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if policy_mode not in POLICY_MODES:
            raise ValueError(f"policy_mode must be one of {list(POLICY_MODES)}, got {policy_mode!r}")
        if ppo_epochs < 1:
            raise ValueError(f"ppo_epochs must be >= 1, got {ppo_epochs}")
        if speculative < 0:
            raise ValueError(f"speculative must be >= 0 (draft codes per forward; 0 = off), got {speculative}")
        if minibatch_size is not None and minibatch_size < 1:
            raise ValueError(f"minibatch_size must be >= 1 or None, got {minibatch_size}")
        self.aggregation = check_aggregation(aggregation)
        self.normalize_std = default_normalize_std(aggregation) if normalize_std is None else normalize_std
        legacy = dict(t2i_reward=t2i_reward, edit_reward=edit_reward, t2i_temperature=t2i_temperature,
                      edit_temperature=edit_temperature, t2i_cfg_scale=t2i_cfg_scale,
                      edit_cfg_scale=edit_cfg_scale, edit_image_cfg_scale=edit_image_cfg_scale)
        self.tasks, self.task_mix_given = resolve_tasks(tasks, legacy, top_k)
        self.sampling: dict[str, TaskSampling] = check_tasks(self.tasks)
        self.rewards: dict[str, Reward] = {name: t.reward for name, t in self.tasks.items()}
        self.policy: torch.nn.Module | None = None
        # Kept out of nn.Module's registry: never optimized, never in the state dict.
        self.__dict__.update(_reference=None, _visual=None, _lm=None, _sampler=None, _engine=None,
                             _generator=None)
        self._rollout_batches = 0        # rollout batches done (sample-grid interval, resume)
        self._fit_batches = 0            # training batches seen in this fit
        self._epoch_batches = 0          # ... in the current epoch
        self._empty_epochs = 0           # consecutive epochs without a batch

    # ------------------------------------------------------------------ building
    @property
    def reference(self) -> torch.nn.Module | None:
        return self.__dict__["_reference"]

    def configure_model(self) -> None:
        """Load the policy, the reference (when ``beta > 0``) and the visual tokenizer; under
        ``ModelParallelStrategy`` (``--trainer.strategy=fsdp2``) shard the policy with FSDP2
        over the data-parallel mesh (:mod:`arm_rl.fsdp`). The reference and the visual
        tokenizer stay whole, frozen, outside the optimizer."""
        if self.policy is not None:
            return
        hp = self.hparams
        lm = load_lm(hp.policy_checkpoint)
        if lm.layout is None:
            raise ValueError(f"{hp.policy_checkpoint}: the LM has no vocabulary layout; RL needs an "
                             "ARM LM exported with save_lm(layout=...)")
        self.policy = lm.model
        self.policy.train()
        for p in self.policy.parameters():
            p.requires_grad_(True)
        if hp.beta == 0 and hp.reference_checkpoint:
            warnings.warn(f"reference_checkpoint={hp.reference_checkpoint!r} is ignored: beta = 0 "
                          "keeps no reference model", stacklevel=2)
        if hp.beta > 0:
            ref_dir = hp.reference_checkpoint or hp.policy_checkpoint
            ref = load_lm(ref_dir)
            diff = _config_diff({"lm": lm.lm_name, **lm.config.to_dict()},
                                {"lm": ref.lm_name, **ref.config.to_dict()})
            if ref.layout is None or ref.layout.to_dict() != lm.layout.to_dict():
                diff.append("vocabulary layouts differ")
            if diff:
                raise ReferenceMismatchError(
                    f"reference checkpoint {ref_dir} does not match the policy {hp.policy_checkpoint}: "
                    f"{'; '.join(diff[:6])}. The reference must be the policy's starting model "
                    "(leave reference_checkpoint empty to use a frozen copy of the policy)")
            for p in ref.model.parameters():
                p.requires_grad_(False)
            self.__dict__["_reference"] = ref.model.eval()
        visual = lm.load_visual_tokenizer(hp.visual_tokenizer)
        for p in visual.parameters():
            p.requires_grad_(False)
        self.__dict__.update(_visual=visual, _lm=lm)
        self.__dict__["_sampler"] = RolloutSampler(lm.layout, lm.load_text_tokenizer(), visual,
                                                   self.sampling, hp.policy_mode)
        if self.device_mesh is not None:
            shard_policy(self.policy, self.device_mesh["data_parallel"])

    def task_weights(self) -> dict[str, float]:
        """The tasks' weights, normalised: the prompt mix."""
        total = sum(t.weight for t in self.tasks.values())
        return {name: t.weight / total for name, t in self.tasks.items()}

    @staticmethod
    def check_strategy(strategy: Any) -> None:
        """Refuse Lightning's FSDP1 strategies (a name such as ``fsdp`` or an ``FSDPStrategy``)
        in one line that names the FSDP that works, ``fsdp2``. ``arm-rl fit`` asks before it
        builds the trainer (so a CPU run is not told that FSDP needs CUDA), and
        :meth:`check_trainer` asks again.

        Lightning's ``FSDPStrategy`` (``fsdp``, ``arm_core.lightning_module.BlockFSDPStrategy``)
        wraps this LightningModule as FSDP1's root unit and runs ``training_step`` inside the
        root's forward; GRPO's manual optimization calls backward there, and FSDP1's
        post-backward hook asserts "Expects `BACKWARD_PRE` or `BACKWARD_POST` state but got
        HandleTrainingState.FORWARD" (``torch/distributed/fsdp/_runtime_utils.py``,
        ``_post_backward_hook``) at the first backward, on any device.
        """
        if isinstance(strategy, str) and strategy in FSDPStrategy.get_registered_strategies():
            name = strategy
        elif isinstance(strategy, FSDPStrategy):
            name = type(strategy).__name__
        else:
            return
        raise ValueError(
            f"GRPOTrainer cannot train under {name} (FSDP1): Lightning runs training_step inside the "
            "FSDP root module's forward, and GRPO's manual backward there fails FSDP's state check at the "
            "first step. For a sharded policy use --trainer.strategy=fsdp2 (FSDP2 on Lightning's "
            "ModelParallelStrategy, on GPUs or a CPU); for full replicas --trainer.strategy=ddp "
            "(packages/arm-rl/README.md, 'On N devices')")

    @staticmethod
    def check_trainer(trainer: Any) -> None:
        """Refuse, in one line, the strategies this module cannot train under (``arm-rl fit``
        asks before launching any rank; :meth:`setup` asks again for a ``Trainer`` built in
        Python). Single-device, DDP and FSDP2 (``fsdp2``: :class:`arm_rl.fsdp.FSDP2Strategy`, or
        a ``ModelParallelStrategy`` whose every device is data-parallel) pass.

        - Lightning's FSDP1 strategies: :meth:`check_strategy`.
        - ``ModelParallelStrategy`` with tensor parallelism (its default on a node of several
          devices: ``tensor_parallel_size`` = the node's devices) or a data-parallel mesh smaller
          than the world: ``configure_model`` applies FSDP2 over the data-parallel mesh only, so
          the ranks of a tensor-parallel group would train unsynchronised copies.
        """
        strategy = trainer.strategy
        GRPOTrainer.check_strategy(strategy)
        if isinstance(strategy, ModelParallelStrategy):
            dp, tp = model_parallel_sizes(strategy)
            if tp != 1 or dp != strategy.num_nodes * max(strategy.num_processes, 1):
                raise ValueError(
                    f"GRPOTrainer cannot train under {type(strategy).__name__} with data_parallel_size={dp} "
                    f"and tensor_parallel_size={tp}: it shards the policy with FSDP2 over the data-parallel "
                    "mesh and applies no tensor parallelism. Use --trainer.strategy=fsdp2 (every device "
                    "data-parallel)")

    def setup(self, stage: str) -> None:
        """Hand the tasks' mix to the prompt data module (``follow_task_weights``) and have it
        check it draws only tasks this module trains."""
        if self._trainer is not None:
            self.check_trainer(self.trainer)
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        follow = getattr(dm, "follow_task_weights", None)
        if follow is not None:
            follow(self.task_weights() if self.task_mix_given else None, list(self.tasks))

    def on_fit_start(self) -> None:
        self._fit_batches = self._epoch_batches = self._empty_epochs = 0

        dev = self.device
        if self.reference is not None:
            self.reference.to(dev)
        self.__dict__["_visual"].to(dev)
        self.__dict__["_engine"] = Engine(self.policy, speculative=self.hparams.speculative)
        # reseeded for every rollout batch (make_rollouts, rollout_seed)
        self.__dict__["_generator"] = torch.Generator(device=dev if dev.type != "mps" else "cpu")
        sampler = self.__dict__["_sampler"]
        for r in self.rewards.values():
            r.bind(policy=self.policy, layout=sampler.layout, text_tokenizer=sampler.formatter.text,
                   visual_tokenizer=self.__dict__["_visual"])

    # ------------------------------------------------------------------ exact resume
    # The rollout generator is a function of (seed, rank, rollout batch): the count is the
    # whole state, the same on every rank, so rank 0's checkpoint resumes every rank.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["arm_rl"] = {"rollout_batches": self._rollout_batches}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("arm_rl")
        if state is not None:
            self._rollout_batches = int(state["rollout_batches"])

    def configure_optimizers(self) -> Any:
        if self.policy is None:
            self.configure_model()
        hp = self.hparams
        return torch.optim.AdamW([p for p in self.policy.parameters() if p.requires_grad], lr=hp.lr,
                                 betas=tuple(hp.betas), weight_decay=hp.weight_decay)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch      # prompt records (specs, PIL images) stay host objects

    # ------------------------------------------------------------------ rollouts
    def make_rollouts(self, records: list[Any], batch_idx: int = 0) -> list[RolloutBatch]:
        """Sample, decode and score the rollouts of one prompt batch (no gradient). An
        FSDP2-sharded policy is gathered once for all of it (:func:`arm_rl.fsdp.gathered`):
        the engine's prefill and decode steps bypass FSDP2's forward hooks, and the ranks'
        task mixes (so their decode steps) differ."""
        with gathered(self.policy):
            return self._sample_and_score(records, batch_idx)

    def _sample_and_score(self, records: list[Any], batch_idx: int) -> list[RolloutBatch]:
        if not records:
            raise ValueError(f"batch {batch_idx} has no prompts (an empty prompt set?)")
        sampler: RolloutSampler = self.__dict__["_sampler"]
        by_task: dict[str, list[Any]] = defaultdict(list)
        for r in records:
            by_task[r.task].append(r)
        strangers = [t for t in by_task if t not in self.tasks]
        if strangers:
            t = strangers[0]
            raise ValueError(f"batch {batch_idx} has {len(by_task[t])} {t!r} prompt(s) (e.g. {by_task[t][0].describe()}), "
                             f"but the model trains only {list(self.tasks)}: add tasks.{t} (a reward and sampling "
                             "settings) or give the data module no such prompts")
        out = []
        G = self.hparams.group_size
        generator = self.__dict__["_generator"]
        generator.manual_seed(rollout_seed(self.hparams.seed, self.global_rank, self._rollout_batches))
        for task in self.tasks:         # the config's order: the rollout stream depends on it
            if not by_task.get(task):
                continue
            batch = sampler.rollout(self.__dict__["_engine"], task, by_task[task], G, generator=generator)
            self.__dict__["_engine"].release()
            images = sampler.decode(batch)
            reward = self.rewards[task]
            try:
                batch.rewards = reward(images, batch.records, batch.codes)
            except RewardError as e:
                raise RewardError(f"batch {batch_idx}, task {task}: {e}") from e
            parts = dict(getattr(reward, "last_values", {}))
            parts.update(getattr(reward, "last_parts", {}))
            for sub in reward.components().values():
                parts.update({f"{sub.name}/{k}": v for k, v in getattr(sub, "last_parts", {}).items()})
            batch.reward_parts = parts
            batch.images = images
            out.append(batch)
        return out

    # ------------------------------------------------------------------ training
    def _log(self, name: str, value: Any, bs: int) -> None:
        self.log(f"train/{name}", float(value), on_step=True, on_epoch=False, batch_size=bs)

    def on_train_epoch_start(self) -> None:
        self._epoch_batches = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_batches:
            self._empty_epochs = 0
            return
        # An iterable loader that yields nothing ends every epoch at once; with max_steps set
        # (max_epochs unlimited) Lightning would start empty epochs forever. One empty epoch
        # can be legitimate (a resume exactly at an epoch's end); two in a row are not.
        self._empty_epochs += 1
        if self._empty_epochs >= 2:
            raise NoTrainingBatchesError(self._no_batches_message(
                f"yielded no batch in {self._empty_epochs} consecutive epochs"))

    def _data_source_name(self) -> str:
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return "the train_dataloaders given to Trainer.fit"
        cls = type(dm)
        return f"data module {cls.__module__}.{cls.__qualname__}"

    def _export_target(self) -> str | None:
        if self.hparams.export_dir == "":
            return None
        return self.hparams.export_dir or os.path.join(self.trainer.default_root_dir, "policy")

    def _no_batches_message(self, detail: str) -> str:
        target = self._export_target()
        export = (f"no policy was exported (export_dir {target} left as it was)" if target
                  else "nothing was exported")
        return (f"the {self._data_source_name()} produced no training batches (its train_dataloader() "
                f"{detail}): GRPO trained nothing and {export}. Give it prompts: check its "
                "prompt source, num_prompts / prompts_per_step and any filter that may drop every "
                "prompt")

    def _check_trained_on_something(self) -> None:
        """At fit end: a loader that produced no batch is an error, not a step-0 export."""
        if self._fit_batches:
            return
        fit_loop = self.trainer.fit_loop
        if fit_loop.max_batches == 0:                     # a sized loader of length 0
            raise NoTrainingBatchesError(self._no_batches_message("has length 0"))
        if self._empty_epochs:                            # an iterable that yielded nothing
            raise NoTrainingBatchesError(self._no_batches_message(
                f"yielded no batch in {self._empty_epochs} epoch(s)"))

    def training_step(self, batch: list[Any], batch_idx: int) -> None:
        self._fit_batches += 1
        self._epoch_batches += 1
        hp = self.hparams
        G = hp.group_size
        rollouts = self.make_rollouts(batch, batch_idx)
        all_rewards = torch.cat([b.rewards for b in rollouts])
        n_all = len(all_rewards)
        kept, adv = [], []
        n_groups = n_kept = 0
        for b in rollouts:
            self._log(f"reward/{b.task}/mean", b.rewards.mean(), len(b))
            self._log(f"reward/{b.task}/std", b.rewards.std() if len(b) > 1 else 0.0, len(b))
            self._log(f"reward/{b.task}/group_std", group_std(b.rewards, G), len(b))
            for name, v in b.reward_parts.items():
                v = v.float()
                self._log(f"reward/{b.task}/{name}/mean", v.mean(), len(b))
                self._log(f"reward/{b.task}/{name}/std", v.std() if v.numel() > 1 else 0.0, len(b))
                if v.numel() == len(b):           # per-rollout parts only (a plugin may log scalars)
                    self._log(f"reward/{b.task}/{name}/group_std", group_std(v, G), len(b))
            a = group_advantages(b.rewards, G, self.normalize_std)
            n_groups += len(b) // G
            if hp.dynamic_sampling:
                keep_groups = ~zero_variance_groups(b.rewards, G)
                rows = keep_groups.repeat_interleave(G).nonzero().flatten()
                if len(rows) == 0:
                    continue
                b, a = b.select(rows), a[rows]
            n_kept += len(b) // G
            kept.append(b)
            adv.append(a)
        chunks = self._chunks(kept, adv)
        # One exchange per rollout batch (nothing without a process group): every rank's
        # step plan and totals, so that all ranks step, skip and stop together.
        mine: dict[str, Any] = {"plan": [[len(b) for b, _ in step] for step in chunks],
                                "reward": (float(all_rewards.double().sum()), n_all),
                                "groups": (n_kept, n_groups)}
        if self._fit_batches == 1 and is_distributed():
            mine["prompts"] = sorted(r.describe() for r in batch)
        views = gather_objects(mine)
        if "prompts" in mine:
            self._check_ranks_drew_distinct_prompts([v["prompts"] for v in views])
        plan = StepPlan.agree([v["plan"] for v in views])
        self._log("reward/mean", sum(v["reward"][0] for v in views) / sum(v["reward"][1] for v in views), n_all)
        self._log("groups_kept", sum(v["groups"][0] for v in views) / max(sum(v["groups"][1] for v in views), 1),
                  n_all)
        self._log("response_length", torch.cat([b.mask.sum(1) for b in rollouts]).float().mean(), n_all)
        self._log("entropy", -torch.cat([b.old_logp[b.mask] for b in rollouts]).mean(), n_all)
        self.maybe_write_samples(rollouts)
        self._rollout_batches += 1
        self._log("skipped", float(plan.empty), n_all)
        if plan.empty:
            # Nothing to learn from on any rank (every group had equal rewards). Log the
            # optimization figures as NaN: Lightning would otherwise repeat the last values.
            for k in _OPT_STATS:
                self._log(k, float("nan"), n_all)
            return None
        sampler: RolloutSampler = self.__dict__["_sampler"]
        if self.reference is not None:
            with torch.no_grad():
                for b in kept:
                    b.ref_logp = sampler.kl_logprobs(self.reference, b)   # untruncated: see logprobs
        # one of this rank's rollouts, for the zero-weighted backwards that pad its steps
        pad = rollouts[0].select(torch.arange(1))
        self._optimize(chunks, plan, batch_idx, pad)
        return None

    def _check_ranks_drew_distinct_prompts(self, per_rank: list[list[str]]) -> None:
        """A data module that knows nothing of ranks feeds every rank the same prompts: N
        devices then do one device's work N times. Said once, at the fit's first batch."""
        if len(per_rank) > 1 and all(p == per_rank[0] for p in per_rank[1:]):
            warnings.warn(f"all {len(per_rank)} ranks drew the same prompts at the first batch: the "
                          f"{self._data_source_name()} is not rank-aware, so every device rolls out the "
                          "same prompts. Shard them by trainer.global_rank / world_size (see "
                          "arm_rl.sharding)", stacklevel=2)

    def _chunks(self, kept: list[RolloutBatch], adv: list[Tensor]) -> list[list[tuple[RolloutBatch, Tensor]]]:
        """Optimizer steps of one epoch, each a list of (rollouts, advantages) chunks."""
        mb = self.hparams.minibatch_size
        if mb is None:
            return [list(zip(kept, adv, strict=True))] if kept else []
        steps = []
        for b, a in zip(kept, adv, strict=True):
            for s in range(0, len(b), mb):
                rows = torch.arange(s, min(s + mb, len(b)))
                steps.append([(b.select(rows), a[rows])])
        return steps

    def _optimize(self, chunks: list[list[tuple[RolloutBatch, Tensor]]], plan: StepPlan,
                  batch_idx: int, pad: RolloutBatch) -> None:
        hp = self.hparams
        opt = self.optimizers()
        sampler: RolloutSampler = self.__dict__["_sampler"]
        stats: dict[str, list[float]] = defaultdict(list)
        stepped = 0
        for epoch in range(hp.ppo_epochs):
            for step in range(len(plan)):
                mine = chunks[step] if step < len(chunks) else []
                opt.zero_grad(set_to_none=True)
                # plan.backwards[step] >= len(mine): the calls past ours are zero-weighted
                # backwards (one rollout through the policy, as DDP and FSDP both need) that
                # keep this rank in the step's gradient all-reduce.
                for c in range(plan.backwards[step]):
                    out = None
                    if c < len(mine):
                        b, a = mine[c]
                        logp, kl_logp = sampler.logprobs(self.policy, b)
                        out = grpo_loss(logp, b.old_logp, a.to(logp.device), b.mask, ref_logp=b.ref_logp,
                                        beta=hp.beta, eps_low=hp.eps_low, eps_high=hp.eps_high,
                                        aggregation=self.aggregation, max_len=b.tokens.shape[1],
                                        kl_logp=kl_logp)
                        loss = out.loss * plan.weight(step, len(b))
                    else:       # untruncated log-probs: finite, so 0 * loss has zero gradients
                        loss = sampler.kl_logprobs(self.policy, pad)[pad.mask].sum() * 0.0
                    bad = ranks_flagging(out is not None and not bool(torch.isfinite(out.loss)), self.device)
                    if bad:
                        opt.zero_grad(set_to_none=True)
                        if out is not None and not torch.isfinite(out.loss):
                            report = self._nan_report(b, a, logp, batch_idx, epoch, "loss", stepped)
                        else:
                            report = self._other_ranks_report(bad, batch_idx, epoch, "loss", stepped)
                        raise RLNumericsError(report)
                    self.manual_backward(loss)
                    if out is not None:
                        for k in ("loss", "policy_loss", "kl", "clip_fraction", "ratio_mean"):
                            stats[k].append(float(getattr(out, k).detach()))
                # all-reduced gradients: the same norm, and the same verdict, on every rank
                norm = self._clip_grad_norm()
                if not torch.isfinite(norm):
                    opt.zero_grad(set_to_none=True)
                    if mine:
                        b, a = mine[0]
                        raise RLNumericsError(self._nan_report(b, a, None, batch_idx, epoch, "gradient", stepped))
                    raise RLNumericsError(self._other_ranks_report(None, batch_idx, epoch, "gradient", stepped))
                stats["grad_norm"].append(float(norm))
                opt.step()
                stepped += 1
        n = sum(len(b) for step in chunks for b, _ in step)
        for k in _OPT_STATS:           # NaN for figures of chunks this rank did not have
            v = stats.get(k)
            self._log(k, sum(v) / len(v) if v else float("nan"), max(n, 1))

    def _clip_grad_norm(self) -> Tensor:
        """Clip to ``grad_clip`` (never, at 0) and return the total norm over all ranks' grads."""
        max_norm = self.hparams.grad_clip if self.hparams.grad_clip > 0 else float("inf")
        return clip_grad_norm(self.policy.parameters(), max_norm)     # FSDP2: over every rank's shard

    def _other_ranks_report(self, ranks: list[int] | None, batch_idx: int, epoch: int, what: str,
                            stepped: int) -> str:
        where = f"on rank(s) {ranks}" if ranks else "on another rank"
        return (f"non-finite {what} {where} at batch {batch_idx} (global step {self.global_step}, ppo "
                f"epoch {epoch}; this is rank {self.global_rank}: see that rank's message for the task, "
                "reward and suspects). " + self._not_stepped(stepped))

    @staticmethod
    def _not_stepped(stepped: int) -> str:
        return ("The optimizer was NOT stepped; weights are unchanged by this batch" if not stepped else
                f"This optimizer step was NOT taken; the {stepped} earlier step(s) on this rollout "
                "batch (ppo epochs / minibatches) were applied")

    def _nan_report(self, b: RolloutBatch, a: Tensor, logp: Tensor | None, batch_idx: int,
                    epoch: int, what: str, stepped: int) -> str:
        suspects = []
        if not torch.isfinite(b.rewards).all():
            suspects.append(f"reward {self.rewards[b.task].name!r}")
        if not torch.isfinite(a).all():
            suspects.append("advantages")
        if logp is not None and torch.isnan(logp[b.mask]).any():
            suspects.append("policy log-probs (a diverged policy)")
        if not torch.isfinite(b.old_logp[b.mask]).all():
            suspects.append("old log-probs")
        if b.ref_logp is not None and not torch.isfinite(b.ref_logp[b.mask]).all():
            suspects.append("reference log-probs")
        prompts = "; ".join(r.describe() for r in b.records[:: self.hparams.group_size][:4])
        return (f"non-finite {what} at batch {batch_idx} (global step {self.global_step}, ppo epoch "
                f"{epoch}), task {b.task!r}, reward {self.rewards[b.task].name!r}; suspects: "
                f"{', '.join(suspects) or 'the loss itself (overflow in the ratio?)'}; prompts: {prompts}. "
                + (f"(rank {self.global_rank}) " if is_distributed() else "") + self._not_stepped(stepped))

    # ------------------------------------------------------------------ samples + export
    def maybe_write_samples(self, rollouts: list[RolloutBatch]) -> None:
        every = self.hparams.sample_every_n_steps
        if not every or self._rollout_batches % every:
            return
        # trainer.log_dir is a collective under DDP: every rank asks, rank 0 alone writes
        root = Path(self.trainer.log_dir or self.trainer.default_root_dir) if self._trainer else Path(".")
        if self._trainer is not None and not self.trainer.is_global_zero:
            return
        for b in rollouts:
            imgs = (b.images or [])[: self.hparams.sample_grid_size]
            if not imgs:
                continue
            grid = Image.fromarray(callbacks.make_grid(imgs, ncol=min(len(imgs), self.hparams.group_size, 8), pad=0))
            out = root / "samples"
            out.mkdir(parents=True, exist_ok=True)
            grid.save(out / f"step{self.global_step:06d}-{b.task}.png")
            for lg in self.loggers:
                exp = getattr(lg, "experiment", None)
                if hasattr(exp, "add_image"):
                    exp.add_image(f"samples/{b.task}", np.asarray(grid), self.global_step, dataformats="HWC")

    def export(self, directory: str | os.PathLike, metadata: dict[str, Any] | None = None,
               state_dict: dict[str, Tensor] | None = None) -> Path:
        """Write the policy as an arm-core LM checkpoint directory (``arm_core.checkpoint.save_lm``).

        ``state_dict``: the policy's full weights (default: ``self.policy.state_dict()``; under
        FSDP pass :meth:`policy_state_dict`'s, gathered from the shards).
        """
        lm = self.__dict__["_lm"]
        if lm is None or self.policy is None:
            raise RuntimeError("GRPOTrainer.export: the policy is not loaded (call configure_model)")
        vis = self.hparams.visual_tokenizer or lm.visual_tokenizer_dir
        state = self.policy.state_dict() if state_dict is None else state_dict
        return save_lm(directory, state, lm.config, layout=lm.layout,
                       text_tokenizer=lm.text_tokenizer_path, visual_tokenizer_dir=vis,
                       metadata=metadata, lm=lm.lm_name)

    def policy_state_dict(self) -> dict[str, Tensor]:
        """The policy's full weights (under FSDP2 a collective that gathers the shards: every
        rank must call it; rank 0 gets the weights, the others an empty dict)."""
        if is_sharded(self.policy):
            return full_state_dict(self.policy)
        full = self.trainer.strategy.lightning_module_state_dict()
        return {k[len("policy."):]: v for k, v in full.items() if k.startswith("policy.")}

    def on_fit_end(self) -> None:
        self._check_trained_on_something()
        target = self._export_target()
        if target is None:
            return
        state = self.policy_state_dict()
        if self.trainer.is_global_zero:
            meta = {"global_step": int(self.trainer.global_step), "stage": "grpo",
                    "started_from": str(self.hparams.policy_checkpoint),
                    "hparams": json.loads(json.dumps(dict(self.hparams), default=str)),
                    "tasks": {name: t.summary() for name, t in self.tasks.items()}}
            self.export(target, metadata=meta, state_dict=state)
        self.trainer.strategy.barrier("arm_rl_export")     # no rank leaves before the export is written

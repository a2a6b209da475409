"""Group rollouts of image-generating tasks, and the log-probs the GRPO loss needs.

For ``P`` prompt records and group size ``G``, :class:`RolloutSampler` asks the record's task
(``arm_data.tasks``, the registered ``task`` kind) for its prompt: the images it conditions
on (:meth:`~arm_data.tasks.Task.prompt_images`, encoded by the visual tokenizer), the
condition (:meth:`~arm_data.tasks.Task.prompt_condition`), the generation prompts
(:meth:`~arm_data.tasks.Task.prompts`: T2I ``<bos> <t2i> caption <h> <w> <boi>``; editing
``<bos> <edit> IMG(src) <user> instruction <assistant> <h> <w> <boi>``) and the guidance
branches (:meth:`~arm_data.tasks.Task.branches`). It repeats each prompt ``G`` times and
samples the image span with arm-core's :class:`~arm_core.generation.Engine` (constrained to
exactly ``h*w`` codes then ``<eoi>``; temperature per task — ARM: 0.7 T2I, 1.0 editing — and
top-k).

**Which distribution is the policy (with CFG).** ``policy_mode`` decides, and the old
log-probs, the new log-probs and the reference log-probs all use the same choice:

- ``"guided"`` (Janus-Pro-R1 style): the policy *is* the guided sampler — logits combined
  over the CFG branches (T2I: ``[cond; uncond]``; edit: ``[full; image; uncond]``), then
  constraint, temperature and top-k. Old log-probs are the ones the engine sampled with
  (``GenerationOutput.logprobs``); new log-probs are recomputed with the same guidance by
  teacher forcing every branch (:func:`arm_core.generation.score_guided`), so the
  importance ratio is exactly 1 on the first epoch, and the gradient flows through all
  branches (the unconditional branch is the same network).
- ``"unguided"`` (T2I-R1 style): the policy is the conditional model alone (constrained,
  temperature-scaled, not truncated); samples still come from the guided sampler, and
  their log-probs under the conditional branch are scored (the engine's
  ``unguided_logprobs``; recomputed by ``score_guided(guidance=None, top_k=None)``, which
  computes the same quantity). The ratio is then an importance weight between the
  conditional policy's old and new versions on off-policy (guided) samples.

Without CFG (``guidance_scale == 1``) both modes coincide except for top-k truncation.

The loss mask selects the visual tokens only (ARM optimizes visual-token prediction):
``<eoi>`` (forced by the constraint) and padding are excluded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Guidance, score_guided
from arm_core.pipelines import task_guidance
from arm_data.formats import ImageTokens, TaskFormatter
from arm_data.tasks import get_task
from arm_tokenizer.framework.deprecation import renamed_attribute
from torch import Tensor

__all__ = ["POLICY_MODES", "TaskSampling", "RolloutBatch", "RolloutSampler", "concat_rollouts"]

POLICY_MODES = ("guided", "unguided")


@dataclass
class TaskSampling:
    """Sampling settings of one task.

    Args:
        temperature: sampling temperature (ARM: 0.7 T2I, 1.0 editing).
        top_k: keep the ``k`` most likely tokens (ARM: 1000); None = all.
        guidance_scale: (text) guidance scale; 1 = no guidance.
        image_guidance_scale: image guidance scale of tasks that condition on an image
            (editing's three-branch guidance); 1 = two branches (text guidance only).
    """

    temperature: float = 1.0
    top_k: int | None = 1000
    guidance_scale: float = 1.0
    image_guidance_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"RL sampling needs temperature > 0 (log-probs of greedy samples are "
                             f"degenerate), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.guidance_scale <= 0 or self.image_guidance_scale <= 0:
            raise ValueError(f"guidance scales must be > 0, got guidance_scale={self.guidance_scale}, "
                             f"image_guidance_scale={self.image_guidance_scale}")

    # the old field names, for one release
    cfg_scale = renamed_attribute("TaskSampling", "cfg_scale", "guidance_scale")
    image_cfg_scale = renamed_attribute("TaskSampling", "image_cfg_scale", "image_guidance_scale")


@dataclass
class RolloutBatch:
    """``N = P * G`` rollouts of one task (rows of a group consecutive).

    Attributes:
        task: the task's registered name (``t2i``, ``edit``, a plugin's).
        records: ``N`` prompt records (each repeated ``G`` times).
        prompts: ``N`` conditional prompts (token ids).
        guidance: the ``arm_core.generation.Guidance`` used (None: no CFG).
        sampling: the task's :class:`TaskSampling`.
        tokens: ``(N, h*w + 1)`` generated ids (codes, then ``<eoi>``).
        mask: ``(N, h*w + 1)`` bool, True on the visual tokens (the loss mask).
        old_logp: ``(N, h*w + 1)`` log-probs under the sampling policy (per ``policy_mode``).
        codes: ``(N, h*w)`` image codes (0-based, for the visual tokenizer).
        grid: ``(h, w)``.
        ref_logp: the reference's log-probs, filled by the trainer when ``beta > 0``.
        rewards: ``(N,)`` filled by the trainer.
        reward_parts: per-reward values, for logging.
        images: the decoded images, filled by the trainer (sample grids).
    """

    task: str
    records: list[Any]
    prompts: list[list[int]]
    guidance: Any
    sampling: TaskSampling
    tokens: Tensor
    mask: Tensor
    old_logp: Tensor
    codes: Tensor
    grid: tuple[int, int]
    ref_logp: Tensor | None = None
    rewards: Tensor | None = None
    reward_parts: dict[str, Tensor] = field(default_factory=dict)
    images: list[Any] | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, rows: Tensor) -> RolloutBatch:
        """The sub-batch of the given row indices (e.g. groups kept by dynamic sampling)."""
        idx = rows.tolist()
        g = self.guidance
        if g is not None:
            g = Guidance(uncond_prompts=[g.uncond_prompts[i] for i in idx], guidance_scale=g.guidance_scale,
                         image_prompts=None if g.image_prompts is None else [g.image_prompts[i] for i in idx],
                         image_guidance_scale=g.image_guidance_scale)
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return RolloutBatch(self.task, [self.records[i] for i in idx], [self.prompts[i] for i in idx],
                            g, self.sampling, self.tokens[rows], self.mask[rows], self.old_logp[rows],
                            self.codes[rows], self.grid, pick(self.ref_logp), pick(self.rewards),
                            {k: v[rows] for k, v in self.reward_parts.items()},
                            None if self.images is None else [self.images[i] for i in idx])


def _cat_optional(parts: list[Tensor | None]) -> Tensor | None:
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts):
        raise ValueError("cannot concatenate rollout batches where only some have this field")
    return torch.cat(parts)  # type: ignore[arg-type]


def concat_rollouts(batches: Sequence[RolloutBatch]) -> RolloutBatch:
    """One batch of the rows of ``batches`` (same task, sampling and grid), in order; groups
    stay whole. E.g. the union of several ranks' rollouts of one task."""
    if not batches:
        raise ValueError("concat_rollouts: no batches")
    first = batches[0]
    for b in batches[1:]:
        if (b.task, b.grid, b.sampling) != (first.task, first.grid, first.sampling):
            raise ValueError(f"cannot concatenate {b.task} rollouts ({b.grid}, {b.sampling}) with "
                             f"{first.task} rollouts ({first.grid}, {first.sampling})")
        if (b.guidance is None) != (first.guidance is None):
            raise ValueError("cannot concatenate guided with unguided rollouts")
    g = first.guidance
    if g is not None:
        img = [b.guidance.image_prompts for b in batches]
        g = Guidance(uncond_prompts=[p for b in batches for p in b.guidance.uncond_prompts],
                     guidance_scale=g.guidance_scale,
                     image_prompts=None if img[0] is None else [p for ps in img for p in ps],
                     image_guidance_scale=g.image_guidance_scale)
    parts = {k for b in batches for k in b.reward_parts}
    return RolloutBatch(
        first.task, [r for b in batches for r in b.records], [p for b in batches for p in b.prompts], g,
        first.sampling, torch.cat([b.tokens for b in batches]), torch.cat([b.mask for b in batches]),
        torch.cat([b.old_logp for b in batches]), torch.cat([b.codes for b in batches]), first.grid,
        _cat_optional([b.ref_logp for b in batches]), _cat_optional([b.rewards for b in batches]),
        {k: torch.cat([b.reward_parts[k] for b in batches]) for k in parts
         if all(k in b.reward_parts for b in batches)},
        None if any(b.images is None for b in batches) else [im for b in batches for im in b.images])


class RolloutSampler:
    """Builds prompts, samples groups and scores log-probs (see the module docstring).

    Args:
        layout: the LM's ``VocabLayout``.
        text_tokenizer: its text tokenizer.
        visual_tokenizer: the ``VisualTokenizer`` (encodes edit sources; gives the grid).
        sampling: per-task :class:`TaskSampling`.
        policy_mode: ``guided`` or ``unguided``.
    """

    def __init__(self, layout: Any, text_tokenizer: Any, visual_tokenizer: Any,
                 sampling: dict[str, TaskSampling], policy_mode: str = "guided") -> None:
        if policy_mode not in POLICY_MODES:
            raise ValueError(f"policy_mode must be one of {list(POLICY_MODES)}, got {policy_mode!r}")
        self.layout, self.visual = layout, visual_tokenizer
        self.formatter = TaskFormatter(layout, text_tokenizer)
        self.sampling = sampling
        self.policy_mode = policy_mode
        self.constraint = ImageSpanConstraint.from_layout(layout)
        self.grid: tuple[int, int] = tuple(visual_tokenizer.grid)  # type: ignore[assignment]

    # ------------------------------------------------------------------ prompts
    def _encode_images(self, images: list[Any]) -> list[Any]:
        """PIL images as :class:`~arm_data.formats.ImageTokens`, one visual-tokenizer batch."""
        if not images:
            return []
        with torch.no_grad():
            codes = self.visual.encode(images).cpu()
        h, w = self.grid
        return [ImageTokens(c.tolist(), h, w) for c in codes]

    def build_prompts(self, task: str, records: Sequence[Any]) -> tuple[list[list[int]], Any]:
        """Conditional prompts and the :class:`Guidance` (None without CFG) for ``records``:
        everything task-specific is the task's (see the module docstring)."""
        s = self.sampling[task]
        owner = get_task(task, aliases=False)
        size = tuple(self.visual.image_size)
        wanted = [owner.prompt_images(r, size) for r in records]
        encoded = iter(self._encode_images([im for ims in wanted for im in ims]))
        conditions = [owner.prompt_condition(r, [next(encoded) for _ in ims])
                      for r, ims in zip(records, wanted, strict=True)]
        rows = [self.formatter.prompts(task, c, self.grid) for c in conditions]
        # the task says what guidance's branches drop (the pipelines ask the same method)
        return [r["full"] for r in rows], task_guidance(task, rows, s.guidance_scale, s.image_guidance_scale)

    # ------------------------------------------------------------------ sampling
    def rollout(self, engine: Any, task: str, records: Sequence[Any], group_size: int,
                generator: torch.Generator | None = None) -> RolloutBatch:
        """Sample ``group_size`` images per record (rows of a group consecutive)."""
        if not records:
            raise ValueError(f"no {task} prompts to roll out")
        rows = [r for r in records for _ in range(group_size)]
        prompts, guidance = self.build_prompts(task, rows)
        s = self.sampling[task]
        h, w = self.grid
        out = engine.generate(prompts, h * w + 1, temperature=s.temperature, top_k=s.top_k,
                              eos_ids=[self.layout.eoi_id], constraint=self.constraint,
                              guidance=guidance, generator=generator,
                              return_unguided_logprobs=self.policy_mode == "unguided",
                              pad_id=self.layout.pad_id)
        tokens = out.tokens
        visual = out.mask & self.layout.is_image_id(tokens)
        if not bool(visual[:, : h * w].all()):
            raise RuntimeError("the constrained sampler produced a non-image token inside the image "
                               "span (arm_core.constraints bug)")
        old = out.logprobs if self.policy_mode == "guided" else out.unguided_logprobs
        codes = self.layout.id_to_image_code(tokens[:, : h * w])
        return RolloutBatch(task, rows, prompts, guidance, s, tokens, visual, old.float(),
                            codes, (h, w))

    def logprobs(self, model: Any, batch: RolloutBatch) -> tuple[Tensor, Tensor]:
        """Differentiable ``(N, h*w + 1)`` log-probs of ``batch.tokens`` under ``model``, per
        ``policy_mode``, as a pair from one forward:

        - the policy's log-probs, under the distribution ``old_logp`` came from (the
          importance ratio's);
        - the same without top-k truncation, for the KL to the reference. Once the policy
          moves, a sampled token can fall outside its top-k (log-prob ``-inf``: ratio 0,
          which the clipped objective handles), but a k3 estimate on it would be infinite.
          Both models' KL log-probs use the untruncated distribution. In ``unguided`` mode
          the two are the same tensor.
        """
        if self.policy_mode == "guided":
            return self._score(model, batch, batch.sampling.top_k, return_untruncated=True)
        logp = self._score(model, batch, None)
        return logp, logp

    def kl_logprobs(self, model: Any, batch: RolloutBatch) -> Tensor:
        """The second of :meth:`logprobs` alone (untruncated; what the frozen reference
        contributes to the KL), without the truncated pass."""
        return self._score(model, batch, None)

    def _score(self, model: Any, batch: RolloutBatch, top_k: int | None,
               return_untruncated: bool = False) -> Any:
        valid = batch.mask | (batch.tokens == self.layout.eoi_id)
        guidance = batch.guidance if self.policy_mode == "guided" else None
        return score_guided(model, batch.prompts, batch.tokens, valid, guidance=guidance,
                            temperature=batch.sampling.temperature, top_k=top_k,
                            constraint=self.constraint, return_untruncated=return_untruncated)

    def decode(self, batch: RolloutBatch) -> list[Any]:
        """The generated images as PIL (the visual tokenizer's decoder)."""
        with torch.no_grad():
            return self.visual.decode_to_pil(batch.codes.to(self.visual_device), grid=batch.grid)

    @property
    def visual_device(self) -> torch.device:
        return next(self.visual.parameters()).device

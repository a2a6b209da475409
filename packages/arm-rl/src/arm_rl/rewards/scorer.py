"""``scorer``: any registered suite scorer (kind ``scorer``) as an RL reward.

The benchmark scorers of :mod:`arm_core.suites.scorers` — ``shapes`` (rules),
``siglip_score`` (a dual encoder), ``vlm_judge`` (a vision-language judge), and any plugin —
become rewards by name, with their own constructor arguments::

    tasks:
      t2i:
        reward:
          class_path: scorer
          init_args:
            scorer: siglip_score
            args: {name_or_path: /models/siglip2-so400m-patch14-384, dtype: bfloat16}
            device: cuda:1      # the reward model's memory lives there, not beside the policy

**Where it runs.** ``device`` is the scorer's device (default ``cpu``); ``device: policy``
puts it on the policy's device (asked for explicitly: never by default). The scorer keeps
its own ``dtype`` and ``batch_size`` (its ``args``); its model is loaded on the first call
and never registered in the policy's LightningModule, its optimizer or its checkpoints.

**What it scores.** The rollouts of one prompt (``G`` consecutive rows that share a record)
become one :class:`~arm_core.suites.scorers.base.SuiteItem` with ``G`` images, so each
prompt's text is embedded or formatted once. The item carries what scorers read:
``record["questions"]`` (the record's explicit questions, or for ShapesWorld records the
judge reward's questions), ``record["target_caption"]`` for edits (the file's, or a caption
of the ShapesWorld target scene), ``record["shapes"]`` (the scene spec, for the ``shapes``
scorer), the source image of edits, and the file's own record. The reward is the scorer's
per-image score times ``scale`` plus ``shift`` (``vlm_judge`` edits score 0–10; GRPO's
group normalisation makes the scale matter only for the KL balance and logging).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from arm_core.suites.scorers.base import ScorerError, SuiteItem
from arm_data.shapes.rendering import render
from arm_tokenizer.framework.registry import RegistryError
from torch import Tensor

from arm_rl.rewards.alignment import _text_for
from arm_rl.rewards.base import Reward, RewardError, as_pil, task_schema
from arm_rl.rewards.judge import questions_for

__all__ = ["ScorerReward", "record_to_item"]


def _shapes_record(record: Any) -> dict[str, Any] | None:
    if task_schema(record.task) != "t2i" or getattr(record, "spec", None) is None:
        return None
    return {"spec": record.spec.to_dict(), "check": sorted(record.check) if record.check else None,
            "relations": [list(r) for r in record.relations or ()]}


def _questions(record: Any) -> list[list[str]] | None:
    if getattr(record, "questions", None):
        return [[q, a] for q, a in record.questions]
    if getattr(record, "spec", None) is None:
        return None
    return [[q, a] for q, a in questions_for(record)] or None


def record_to_item(record: Any, images: list[Any], item_id: str) -> Any:
    """A :class:`~arm_core.suites.scorers.base.SuiteItem` of one prompt record and its images."""
    meta = dict(getattr(record, "meta", None) or {})
    extra: dict[str, Any] = dict(meta.get("record") or {})
    qs = _questions(record)
    if qs:
        extra["questions"] = qs
    shapes = _shapes_record(record)
    if shapes is not None:
        extra["shapes"] = shapes
    source = None
    if task_schema(record.task) == "edit":
        source = record.source_image
        if source is None:                         # a ShapesWorld edit: render its source scene
            w, h = images[0].size
            source = render(record.spec, w, h)
        target = _text_for(record)
        if target != record.text:
            extra["target_caption"] = target
    suite = meta.get("suite") or ("shapes" if shapes is not None else "rl")
    return SuiteItem(suite, item_id, record.text, list(images), tag=str(meta.get("tag", record.task)),
                     source_image=source, record=extra)


class ScorerReward(Reward):
    """A registered scorer as a reward (``scorer``; see the module docstring).

    Args:
        scorer: the scorer's registry name (``arm-tokenizer list scorer``): ``shapes``,
            ``siglip_score``, ``vlm_judge``, or a plugin's.
        args: the scorer's constructor arguments (without ``device``).
        device: where the scorer's model runs (``cpu``, ``cuda:1``, ...); ``policy`` = the
            policy's device.
        scale: the reward is ``scale * score + shift``.
        shift: added after scaling.
        name: label in logs and errors; None = the scorer's name.
    """

    def __init__(self, scorer: str, args: dict[str, Any] | None = None, device: str = "cpu",
                 scale: float = 1.0, shift: float = 0.0, name: str | None = None) -> None:
        super().__init__(name=name or scorer, device="cpu" if device == "policy" else device)
        args = dict(args or {})
        if "device" in args:
            raise ValueError(f"reward {self.name!r}: give the scorer's device as the reward's device=, "
                             "not inside args")
        self.scorer_name, self.args = scorer, args
        self.device_option, self.scale, self.shift = device, float(scale), float(shift)
        self._scorer: Any = None

    def bind(self, **context: Any) -> None:
        policy = context.get("policy")
        if self.device_option == "policy" and policy is not None and self._scorer is None:
            self.device = next(policy.parameters()).device

    @property
    def scorer(self) -> Any:
        """The scorer, built on first use (its model loads on its first call)."""
        if self._scorer is None:
            # deferred: suites.score imports lightning (via suites.generate), only to build the scorer
            from arm_core.suites.score import load_scorer

            try:
                self._scorer = load_scorer(self.scorer_name, device=str(self.device), **self.args)
            except (RegistryError, TypeError, ValueError) as exc:
                raise RewardError(f"reward {self.name!r}: cannot build scorer {self.scorer_name!r} with "
                                  f"{self.args}: {exc}") from exc
        return self._scorer

    def compute(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        pil = as_pil(images)
        items, rows = [], []
        start = 0
        for i in range(1, len(records) + 1):     # a prompt's G rollouts share one record object
            if i == len(records) or records[i] is not records[start]:
                items.append(record_to_item(records[start], pil[start:i], f"{records[start].index}@{start}"))
                rows.append((start, i))
                start = i
        try:
            scored = self.scorer(items)
        except ScorerError as exc:
            raise RewardError(f"reward {self.name!r}: {exc}") from exc
        out = torch.empty(len(records))
        for (a, b), rec in zip(rows, scored, strict=True):
            out[a:b] = torch.tensor(rec.scores, dtype=torch.float32)
        return self.scale * out + self.shift

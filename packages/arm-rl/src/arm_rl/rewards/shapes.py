"""ShapesWorld rule-based rewards: ``shapes_t2i`` and ``shapes_edit``.

Both wrap arm-data's evaluator (:mod:`arm_data.shapes.evaluator`), the same code that
benchmarks the model, so RL optimizes exactly what is measured (GenEval-style
clause-level partial credit; cf. T2I-R1 / Flow-GRPO using GenEval's detector as reward).

- ``shapes_t2i``: the fraction of the caption's clauses (count, presence, color, size,
  region, relation — only those the caption states) that the generated image satisfies.
- ``shapes_edit``: ``w_adh * adherence + w_con * consistency`` (normalised by the weights'
  sum): adherence = the instruction's clauses hold in the edited image; consistency =
  everything else (other objects, background) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from arm_data.shapes.evaluator import evaluate_edit, evaluate_t2i
from arm_data.shapes.rendering import render
from torch import Tensor

from arm_rl.rewards.base import Reward, RewardError, as_pil

__all__ = ["ShapesT2IReward", "ShapesEditReward"]


def _need(record: Any, attr: str, reward: str) -> Any:
    v = getattr(record, attr, None)
    if v is None:
        raise RewardError(f"reward {reward!r} needs {attr!r} on every prompt record (a ShapesWorld "
                          f"scene spec); {record.describe() if hasattr(record, 'describe') else record} "
                          "has none. Use a reward without specs (dual_encoder_alignment, judge)")
    return v


class ShapesT2IReward(Reward):
    """Clause-level partial credit of the ShapesWorld evaluator (``shapes_t2i``).

    Args:
        strict_bonus: added when every clause passes (0 = plain partial credit).
        check_all: score every clause kind, not only those the caption states.
        name: label in logs and errors.
    """

    tasks = ("t2i",)

    def __init__(self, strict_bonus: float = 0.0, check_all: bool = False,
                 name: str = "shapes_t2i") -> None:
        super().__init__(name=name)
        self.strict_bonus = float(strict_bonus)
        self.check_all = bool(check_all)

    def compute(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        out = []
        for im, rec in zip(as_pil(images), records, strict=True):
            spec = _need(rec, "spec", self.name)
            r = evaluate_t2i(im, spec, check=None if self.check_all else rec.check,
                             relations=None if self.check_all else rec.relations)
            out.append(r.score + (self.strict_bonus if r.strict else 0.0))
        return torch.tensor(out, dtype=torch.float32)


class ShapesEditReward(Reward):
    """Weighted edit adherence and consistency from the ShapesWorld evaluator (``shapes_edit``).

    Args:
        adherence_weight: weight of instruction adherence.
        consistency_weight: weight of consistency (the rest of the scene unchanged).
        name: label in logs and errors.
    """

    tasks = ("edit",)

    def __init__(self, adherence_weight: float = 0.5, consistency_weight: float = 0.5,
                 name: str = "shapes_edit") -> None:
        super().__init__(name=name)
        if adherence_weight < 0 or consistency_weight < 0 or adherence_weight + consistency_weight <= 0:
            raise ValueError(f"shapes_edit weights must be >= 0 with a positive sum, got "
                             f"adherence={adherence_weight}, consistency={consistency_weight}")
        total = adherence_weight + consistency_weight
        self.w_adh, self.w_con = adherence_weight / total, consistency_weight / total
        self.last_parts: dict[str, Tensor] = {}

    def compute(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        adh, con = [], []
        for im, rec in zip(as_pil(images), records, strict=True):
            src, tgt = _need(rec, "spec", self.name), _need(rec, "target", self.name)
            source_image = rec.source_image
            if source_image is None or source_image.size != im.size:
                source_image = render(src, im.size[0], im.size[1])
            r = evaluate_edit(im, src, tgt, edit=rec.edit, source_image=source_image)
            adh.append(r.adherence)
            con.append(r.consistency)
        a, c = torch.tensor(adh), torch.tensor(con)
        self.last_parts = {"adherence": a, "consistency": c}   # logged by the trainer
        return self.w_adh * a + self.w_con * c

"""``composite``: a weighted sum of rewards, each one's values kept for logging.

``r = sum_k w_k * r_k``; every sub-reward is validated on its own (so a NaN names the
sub-reward that produced it), and :attr:`CompositeReward.last_values` holds each one's
``(B,)`` values from the latest call, which the trainer logs as ``reward/<task>/<name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from arm_rl.rewards.base import Reward, RewardError

__all__ = ["CompositeReward"]


class CompositeReward(Reward):
    """Weighted sum of rewards (``composite``).

    Args:
        rewards: the sub-rewards (each with a unique ``name``).
        weights: one weight per reward; None = all 1.
        name: label in logs and errors.
    """

    def __init__(self, rewards: list[Reward], weights: list[float] | None = None,
                 name: str = "composite") -> None:
        super().__init__(name=name)
        if not rewards:
            raise ValueError("composite reward needs at least one sub-reward")
        weights = [1.0] * len(rewards) if weights is None else [float(w) for w in weights]
        if len(weights) != len(rewards):
            raise ValueError(f"composite reward: {len(weights)} weights for {len(rewards)} rewards")
        names = [r.name for r in rewards]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"composite reward: sub-reward names must be unique, {dup} repeat; "
                             "give each a distinct name=")
        self.rewards, self.weights = list(rewards), weights
        self.last_values: dict[str, Tensor] = {}
        tasks = [set(r.tasks) for r in rewards if r.tasks is not None]
        self.tasks = tuple(sorted(set.intersection(*tasks))) if tasks else None
        if self.tasks == ():
            raise ValueError(f"composite reward: sub-rewards {names} share no task they can all score")

    def bind(self, **context: Any) -> None:
        for r in self.rewards:
            r.bind(**context)

    def components(self) -> dict[str, Reward]:
        return {r.name: r for r in self.rewards}

    def compute(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        total = torch.zeros(len(records))
        self.last_values = {}
        for r, w in zip(self.rewards, self.weights, strict=True):
            v = r(images, records, codes)          # validated, names the sub-reward
            self.last_values[r.name] = v
            total = total + w * v
        if not torch.isfinite(total).all():
            raise RewardError(f"reward {self.name!r}: the weighted sum is not finite "
                              f"(weights {self.weights})")
        return total

"""Learning-rate schedules shared by the ARM trainers (tokenizer, LM, RL)."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int | None, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from ``1 / warmup_steps`` to 1 over ``warmup_steps``, then
    cosine to ``min_ratio`` at ``total_steps`` (constant after warm-up when ``total_steps`` is
    unknown or not past the warm-up)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if not total_steps or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

"""Codebook usage over an epoch as a torchmetrics ``Metric`` (sum-reduced, so DDP syncs it).

DESIGN.md records an FSQ collapse to a single code that only codebook-usage logging from
step 0 revealed. The per-batch ``usage``/``perplexity`` in :class:`QuantizerOutput.stats`
are noisy and, for large codebooks (FSQ 2^16), bounded by the batch's token count; this
metric accumulates a histogram of every code id seen over an epoch (across all ranks: the
histogram state is ``dist_reduce_fx="sum"``) and reports:

- ``usage``: fraction of the codebook used at least once (mean over codebooks);
- ``perplexity``: ``exp(entropy)`` of the accumulated code distribution;
- ``tokens``: number of token ids counted.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

__all__ = ["CodebookUsage"]


class CodebookUsage(Metric):
    """Histogram of code ids over an epoch.

    Args:
        codebook_size: codes per codebook.
        num_codebooks: number of codebooks Q (indices ``(..., Q)`` when Q > 1).
        prefix: prefix of the keys :meth:`compute` returns (e.g. ``"val/codebook_"``).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, codebook_size: int, num_codebooks: int = 1, prefix: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        if codebook_size < 1 or num_codebooks < 1:
            raise ValueError(f"codebook_size and num_codebooks must be >= 1, got {codebook_size}, {num_codebooks}")
        self.codebook_size = int(codebook_size)
        self.num_codebooks = int(num_codebooks)
        self.prefix = prefix
        self.add_state("counts", torch.zeros(num_codebooks, codebook_size, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, indices: torch.Tensor) -> None:  # type: ignore[override]
        """Count ``indices``: ``(...)`` for one codebook, ``(..., Q)`` for Q codebooks."""
        idx = indices.detach().long()
        if self.num_codebooks > 1:
            if idx.shape[-1] != self.num_codebooks:
                raise ValueError(
                    f"CodebookUsage expects indices (..., {self.num_codebooks}), got {tuple(idx.shape)}"
                )
            idx = idx.reshape(-1, self.num_codebooks)
        else:
            idx = idx.reshape(-1, 1)
        if idx.numel() and int(idx.max()) >= self.codebook_size:
            raise ValueError(f"code id {int(idx.max())} out of range for codebook_size {self.codebook_size}")
        valid = (idx >= 0).to(self.counts.dtype)
        self.counts.scatter_add_(1, idx.clamp(min=0).t(), valid.t())

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        counts = self.counts
        total = counts.sum(-1, keepdim=True)
        probs = counts / total.clamp(min=1.0)
        entropy = -(probs * probs.clamp(min=1e-30).log()).sum(-1)
        return {
            f"{self.prefix}usage": (counts > 0).double().mean(-1).mean().float(),
            f"{self.prefix}perplexity": entropy.exp().mean().float(),
            f"{self.prefix}tokens": total.sum().float() / self.num_codebooks,
        }

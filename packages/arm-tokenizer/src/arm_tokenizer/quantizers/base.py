"""The quantizer contract: one :class:`QuantizerOutput` for every quantizer.

vector-quantize-pytorch returns tuples of 2, 3 or 4 elements or namedtuples depending on
the class; our adapters translate each into this one type, so the tokenizer, the losses and
the contract tests never care which quantizer is plugged in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from arm_tokenizer.configurable import Configurable


@dataclass
class QuantizerOutput:
    """What every quantizer returns.

    quantized: ``(B, N, D)`` quantized features (straight-through gradients to the input).
    indices: ``(B, N)`` long codes, or ``(B, N, Q)`` for ``Q`` residual/grouped codebooks.
    aux_loss: scalar auxiliary loss (commitment, entropy...), ``0.`` where there is none;
        the tokenizer adds it to the total automatically.
    stats: extra scalars to log (e.g. ``perplexity``), detached.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Quantizer(Configurable, nn.Module):
    """Base class of ``arm.quantizers``.

    Subclasses set ``dim`` (D, the code width they take), ``codebook_size`` (codes per
    codebook) and ``num_codebooks`` (Q; 1 for a flat codebook) and implement
    :meth:`forward` and :meth:`indices_to_codes`.
    """

    dim: int
    codebook_size: int
    num_codebooks: int = 1

    def forward(self, x: torch.Tensor) -> QuantizerOutput:  # (B, N, D)
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, N, D)`` for indices as returned by :meth:`forward` (round trip)."""
        raise NotImplementedError

    def check_indices(self, indices: torch.Tensor) -> None:
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"token indices must be integers, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"token indices must be in [0, {self.codebook_size}) for {type(self).__name__}; "
                f"got min {int(indices.min())}, max {int(indices.max())}"
            )


def usage_stats(indices: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Detached batch statistics of code usage, averaged over codebooks.

    ``perplexity`` = exp(entropy of the empirical code distribution) (1 = collapse to one
    code, ``codebook_size`` = uniform use); ``usage`` = fraction of codes hit in the batch.
    Negative indices (dropped residual levels) are ignored. Static shapes (scatter into a
    ``codebook_size`` histogram, no ``bincount``) keep it ``torch.compile``-friendly.
    """
    with torch.no_grad():
        idx = indices.detach().long()
        idx = idx.reshape(-1, idx.shape[-1]) if idx.ndim == 3 else idx.reshape(-1, 1)
        valid = idx >= 0
        counts = torch.zeros(idx.shape[1], codebook_size, device=idx.device, dtype=torch.float32)
        counts.scatter_add_(1, idx.clamp(min=0).t(), valid.t().float())
        probs = counts / counts.sum(-1, keepdim=True).clamp(min=1.0)
        entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1)
        return {
            "perplexity": entropy.exp().mean(),
            "usage": (counts > 0).float().mean(),
        }

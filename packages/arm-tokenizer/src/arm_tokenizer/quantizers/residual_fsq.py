"""Residual finite scalar quantization (RFSQ), via vector-quantize-pytorch.

FSQ (Mentzer et al., https://arxiv.org/abs/2309.15505) applied residually as in
SoundStream's RVQ (Zeghidour et al., https://arxiv.org/abs/2107.03312, Algorithm 1): level
``q`` quantizes the residual scaled by ``levels ** q``, so later levels refine finer
detail. Codebook-free, nothing to sync under DDP. Indices are ``(B, N, Q)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from vector_quantize_pytorch import ResidualFSQ

from arm_tokenizer.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    check_int,
    check_levels,
    usage_stats,
)

__all__ = ["ResidualFSQQuantizer"]


class ResidualFSQQuantizer(Quantizer):
    """``num_quantizers`` residual FSQ levels over the same ``levels`` grid.

    Args:
        levels: FSQ levels per code dimension (codes per level = their product).
        num_quantizers: residual levels Q (ids per token).
        dim: input width D; None = ``len(levels)`` (else linear maps are added).
    """

    def __init__(self, levels: Sequence[int] = (8, 5, 5, 5), num_quantizers: int = 2,
                 dim: int | None = None) -> None:
        super().__init__()
        levels = check_levels(levels, "ResidualFSQQuantizer", example="[8, 5, 5, 5]")
        num_quantizers = check_int(num_quantizers, "num_quantizers", "ResidualFSQQuantizer", minimum=1, example=2)
        dim = check_int(dim, "dim", "ResidualFSQQuantizer", minimum=1, example=len(levels), optional=True)
        self.levels = levels
        self.dim = int(dim) if dim is not None else len(levels)
        self.num_codebooks = int(num_quantizers)
        self.rfsq = ResidualFSQ(levels=levels, num_quantizers=self.num_codebooks, dim=self.dim)
        self.codebook_size = int(self.rfsq.codebook_size)

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"levels": [4, 3, 3], "num_quantizers": 2, "dim": 3}

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        quantized, indices = self.rfsq(x)
        indices = indices.long()
        return QuantizerOutput(quantized, indices, x.new_zeros(()), usage_stats(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.rfsq.get_output_from_indices(indices.long())

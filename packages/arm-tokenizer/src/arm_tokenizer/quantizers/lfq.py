"""Lookup-Free Quantization (LFQ, MAGVIT-v2), via vector-quantize-pytorch.

Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation",
ICLR 2024, https://arxiv.org/abs/2310.05737. Each of the ``log2(K)`` code dimensions is
quantized to its sign (-1 or +1): the index is the bit pattern, so there is no codebook to
look up. An entropy loss (low per-sample entropy, high batch entropy) keeps codes
confident and the codebook used; a commitment loss is optional. Both are in ``aux_loss``.
"""

from __future__ import annotations

from typing import Any

import torch
from vector_quantize_pytorch import LFQ

from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput, check_int, usage_stats

__all__ = ["LFQQuantizer"]


class LFQQuantizer(Quantizer):
    """Sign quantization of ``log2(codebook_size)`` dimensions.

    Args:
        dim: input width D; None = ``log2(codebook_size)`` (else LFQ adds linear maps).
        codebook_size: number of codes, a power of 2.
        entropy_loss_weight: weight of the entropy loss in ``aux_loss``.
        commitment_loss_weight: weight of the commitment loss in ``aux_loss``.
        diversity_gamma: weight of the batch (codebook) entropy term inside the entropy loss.
        spherical: L2-normalize inputs and codes (BSQ, https://arxiv.org/abs/2406.07548).
    """

    def __init__(
        self,
        dim: int | None = None,
        codebook_size: int = 1024,
        entropy_loss_weight: float = 0.1,
        commitment_loss_weight: float = 0.25,
        diversity_gamma: float = 1.0,
        spherical: bool = False,
    ) -> None:
        super().__init__()
        codebook_size = check_int(codebook_size, "codebook_size", "LFQQuantizer", minimum=2, example=1024)
        dim = check_int(dim, "dim", "LFQQuantizer", minimum=1, example=10, optional=True)
        bits = int(codebook_size).bit_length() - 1
        if codebook_size < 2 or 2**bits != codebook_size:
            raise ValueError(f"LFQ codebook_size must be a power of 2 (>= 2), got {codebook_size}")
        self.dim = int(dim) if dim is not None else bits
        self.codebook_size = int(codebook_size)
        self.num_codebooks = 1
        self.lfq = LFQ(
            dim=self.dim,
            codebook_size=self.codebook_size,
            entropy_loss_weight=entropy_loss_weight,
            commitment_loss_weight=commitment_loss_weight,
            diversity_gamma=diversity_gamma,
            spherical=spherical,
        )

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"codebook_size": 16, "dim": 6}

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        out = self.lfq(x)
        indices = out.indices.long()
        return QuantizerOutput(out.quantized, indices, out.entropy_aux_loss.sum(),
                               usage_stats(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.lfq.indices_to_codes(indices.long())

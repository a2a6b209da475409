"""Finite Scalar Quantization (FSQ), ARM's quantizer, via vector-quantize-pytorch.

Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024,
https://arxiv.org/abs/2309.15505. Each of the D code dimensions is bounded with ``tanh``
and rounded to one of ``levels[i]`` values; the implicit codebook is the product grid
(``prod(levels)`` codes), so there is no codebook to learn, collapse or sync under DDP.
ARM uses 16 dimensions of 2 levels: 2^16 = 65,536 codes (our default).

Level 2 needs the symmetry-preserving bound of Zhang et al. (https://arxiv.org/abs/2411.19842,
section 3.2); ``preserve_symmetry=None`` turns it on automatically when a level is 2.

Pitfall recorded in DESIGN.md: FSQ collapsed to one code when its inputs grew until
``tanh`` saturated (images in [0, 1]). Our projections feed FSQ unbounded features and FSQ
bounds them; ``stats["saturation"]`` (fraction of inputs with ``|z| > 3``, where
``tanh > 0.995``) and ``stats["perplexity"]``/``["usage"]`` expose that failure from step 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from vector_quantize_pytorch import FSQ

from arm_tokenizer.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    check_int,
    check_levels,
    usage_stats,
)

__all__ = ["FSQQuantizer"]

ARM_LEVELS = (2,) * 16  # 16 dims x 2 levels = 65,536 codes (ARM)


class FSQQuantizer(Quantizer):
    """FSQ: bound with tanh, round each dimension to ``levels[i]`` values.

    Args:
        levels: levels per code dimension; codebook size is their product
            (ARM: ``[2] * 16`` = 65,536). FSQ paper recommendations: [8,5,5,5] (1000),
            [8,8,8,6,5] (15,360), [8,8,8,5,5,5] (64,000).
        dim: input width D; None = ``len(levels)``. Otherwise FSQ adds its own linear
            maps D -> len(levels) -> D (prefer an explicit projection component).
        preserve_symmetry: symmetry-preserving bound; None = on iff some level is 2
            (required there by the library).
        noise_dropout: probability of replacing the rounding by uniform noise while
            training (Zhang et al. 2024); 0 disables it.
    """

    def __init__(
        self,
        levels: Sequence[int] = ARM_LEVELS,
        dim: int | None = None,
        preserve_symmetry: bool | None = None,
        noise_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        levels = check_levels(levels, "FSQQuantizer", example="[8, 5, 5, 5]")
        dim = check_int(dim, "dim", "FSQQuantizer", minimum=1, example=len(levels), optional=True)
        if preserve_symmetry is None:
            preserve_symmetry = 2 in levels
        self.levels = levels
        self.dim = int(dim) if dim is not None else len(levels)
        self.num_codebooks = 1
        self.fsq = FSQ(levels=levels, dim=self.dim, preserve_symmetry=preserve_symmetry,
                       noise_dropout=noise_dropout)
        self.codebook_size = int(self.fsq.codebook_size)

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"levels": [3, 2, 4], "dim": 3}

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        quantized, indices = self.fsq(x)
        indices = indices.long()
        stats = usage_stats(indices, self.codebook_size)
        with torch.no_grad():
            z = self.fsq.project_in(x.detach())
            stats["saturation"] = (z.abs() > 3.0).float().mean()
        return QuantizerOutput(quantized, indices, x.new_zeros(()), stats)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.fsq.indices_to_codes(indices.long())

"""Residual vector quantization (RVQ), via vector-quantize-pytorch.

Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021,
https://arxiv.org/abs/2107.03312 (Algorithm 1); as an image tokenizer in Lee et al.,
"Autoregressive Image Generation using Residual Quantization" (RQ-VAE), CVPR 2022,
https://arxiv.org/abs/2203.01941. ``num_quantizers`` EMA codebooks quantize the input, then
the residual of the previous level, and so on; the output is the sum of the chosen codes.
Indices are ``(B, N, Q)``. EMA statistics sync under DDP exactly as in :mod:`.vq`.
"""

from __future__ import annotations

from typing import Any

import torch
from vector_quantize_pytorch import ResidualVQ

from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput, check_int, usage_stats
from arm_tokenizer.quantizers.ddp_sync import CodebookSyncMixin

__all__ = ["ResidualVQQuantizer"]


class ResidualVQQuantizer(CodebookSyncMixin, Quantizer):
    """``num_quantizers`` residual levels of EMA vector quantization.

    Args:
        dim: input/output feature width D.
        num_quantizers: residual levels Q (ids per token).
        codebook_size: codes per level.
        decay: EMA decay of the codebook statistics.
        commitment_weight: commitment loss weight (summed over levels into ``aux_loss``).
        use_cosine_sim: cosine-similarity lookup.
        kmeans_init: k-means initialization of each level's codebook on its first batch.
        threshold_ema_dead_code: dead-code expiry threshold (0 disables it).
        shared_codebook: one codebook for all levels.
        sync_codebook: all-reduce EMA statistics across DDP ranks; None = auto at forward time.
        sync_kmeans: also sync k-means init and dead-code sampling.
    """

    def __init__(
        self,
        dim: int = 64,
        num_quantizers: int = 4,
        codebook_size: int = 1024,
        decay: float = 0.9,
        commitment_weight: float = 0.25,
        use_cosine_sim: bool = False,
        kmeans_init: bool = False,
        threshold_ema_dead_code: int = 2,
        shared_codebook: bool = False,
        sync_codebook: bool | None = None,
        sync_kmeans: bool = True,
    ) -> None:
        super().__init__()
        num_quantizers = check_int(num_quantizers, "num_quantizers", "ResidualVQQuantizer", minimum=1, example=4)
        codebook_size = check_int(codebook_size, "codebook_size", "ResidualVQQuantizer", minimum=2, example=1024)
        dim = check_int(dim, "dim", "ResidualVQQuantizer", minimum=1, example=64)
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.num_codebooks = int(num_quantizers)
        self.sync_codebook = sync_codebook
        self.sync_kmeans = sync_kmeans
        self._codebook_sync_active = False
        self.rvq = ResidualVQ(
            dim=self.dim,
            num_quantizers=self.num_codebooks,
            codebook_size=self.codebook_size,
            decay=decay,
            commitment_weight=commitment_weight,
            use_cosine_sim=use_cosine_sim,
            kmeans_init=kmeans_init,
            threshold_ema_dead_code=threshold_ema_dead_code,
            shared_codebook=shared_codebook,
            sync_codebook=False,
            sync_kmeans=sync_kmeans,
        )

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"dim": 8, "num_quantizers": 2, "codebook_size": 16}

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        self._maybe_sync_codebooks()
        quantized, indices, losses = self.rvq(x)
        indices = indices.long()
        return QuantizerOutput(quantized, indices, losses.sum(), usage_stats(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.rvq.get_output_from_indices(indices.long())

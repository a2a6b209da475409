"""Vector quantization with an EMA-updated codebook (VQ-VAE), via vector-quantize-pytorch.

van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017,
https://arxiv.org/abs/1711.00937 (EMA codebook updates in its appendix); cosine-similarity
codebooks and k-means init as in Yu et al., "Vector-quantized Image Modeling with Improved
VQGAN", https://arxiv.org/abs/2110.04627; the rotation trick from Fifty et al.,
https://arxiv.org/abs/2410.06424.

The adapter wraps ``vector_quantize_pytorch.VectorQuantize`` and returns one
:class:`QuantizerOutput`. Under DDP its codebook statistics are all-reduced; the decision is
taken at forward time (see :mod:`arm_tokenizer.quantizers.ddp_sync` for why the library's
own construction-time default is wrong under Lightning).
"""

from __future__ import annotations

from typing import Any

import torch
from vector_quantize_pytorch import VectorQuantize

from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput, check_int, usage_stats
from arm_tokenizer.quantizers.ddp_sync import CodebookSyncMixin

__all__ = ["VQQuantizer"]


class VQQuantizer(CodebookSyncMixin, Quantizer):
    """Nearest-neighbour codebook lookup with EMA codebook updates.

    Args:
        dim: input/output feature width D.
        codebook_size: number of codes K.
        codebook_dim: width of the codes if smaller than ``dim`` (adds in/out linear maps,
            the "factorized codes" of ViT-VQGAN); None = ``dim``.
        decay: EMA decay of the codebook statistics (lower adapts faster).
        commitment_weight: weight of the commitment loss ``||z - sg(q)||^2`` in ``aux_loss``.
        use_cosine_sim: L2-normalize inputs and codes (cosine-similarity lookup).
        kmeans_init: initialize the codebook by k-means on the first batch.
        kmeans_iters: k-means iterations for ``kmeans_init``.
        threshold_ema_dead_code: codes whose EMA cluster size falls below this are replaced
            by random batch vectors (dead-code expiry); 0 disables it.
        rotation_trick: propagate gradients through the quantizer with the rotation trick
            instead of the plain straight-through estimator.
        sync_codebook: all-reduce the EMA statistics across DDP ranks. None (default) = auto:
            on exactly when a process group with world size > 1 exists at forward time.
        sync_kmeans: also sync k-means init and dead-code sampling across ranks.
    """

    def __init__(
        self,
        dim: int = 64,
        codebook_size: int = 1024,
        codebook_dim: int | None = None,
        decay: float = 0.9,
        commitment_weight: float = 0.25,
        use_cosine_sim: bool = False,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: int = 2,
        rotation_trick: bool = True,
        sync_codebook: bool | None = None,
        sync_kmeans: bool = True,
    ) -> None:
        super().__init__()
        codebook_size = check_int(codebook_size, "codebook_size", "VQQuantizer", minimum=2, example=1024)
        dim = check_int(dim, "dim", "VQQuantizer", minimum=1, example=64)
        codebook_dim = check_int(codebook_dim, "codebook_dim", "VQQuantizer", minimum=1, example=8, optional=True)
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.num_codebooks = 1
        self.sync_codebook = sync_codebook
        self.sync_kmeans = sync_kmeans
        self._codebook_sync_active = False
        # Built local-only: the sync decision is made in forward (ddp_sync.py).
        self.vq = VectorQuantize(
            dim=self.dim,
            codebook_size=self.codebook_size,
            codebook_dim=codebook_dim,
            decay=decay,
            commitment_weight=commitment_weight,
            use_cosine_sim=use_cosine_sim,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=threshold_ema_dead_code,
            rotation_trick=rotation_trick and self.dim > 1,
            sync_codebook=False,
            sync_kmeans=sync_kmeans,
        )

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"dim": 8, "codebook_size": 32}

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook ``(K, codebook_dim)`` (a buffer updated by EMA, not a parameter)."""
        return self.vq.codebook

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        self._maybe_sync_codebooks()
        quantized, indices, loss = self.vq(x)
        indices = indices.long()
        return QuantizerOutput(quantized, indices, loss.sum(), usage_stats(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.get_output_from_indices(indices.long())

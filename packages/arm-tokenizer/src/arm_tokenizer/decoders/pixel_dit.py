"""The Pixel DiT decoder: rectified flow in pixel space conditioned on the tokenizer's tokens.

ARM ("ARM: An AutoRegressive Large Multimodal Model with Unified Discrete Representations",
arXiv 2606.11188) trains its tokenizer's reconstruction loss ``L_pix`` through a 24-layer
Pixel DiT: the image ``x1`` is noised to ``x_t = t * x1 + (1 - t) * x0`` (``x0`` Gaussian,
``t ~ U[0, 1]``) and the DiT, conditioned on the de-quantized tokens, predicts ``x1 - x0``.
The layer count of the full-scale config is ARM's; every other size is our choice. The loss
is :class:`arm_tokenizer.losses.flow.FlowMatchingLoss`; sampling is ``decode(..., steps=N)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from arm_tokenizer.decoders.dit import DiTBackbone, FlowDecoder, check_cfg_args


class PixelDiTDecoder(FlowDecoder):
    """Diffusion transformer over ``(B, 3, H, W)`` pixels, conditioned on ``(B, h*w, in_dim)`` tokens."""

    def __init__(
        self,
        in_dim: int = 256,
        patch_size: int = 8,
        dit_patch_size: int | None = None,
        hidden_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        cond_dropout: float = 0.0,
        sample_steps: int = 25,
        cfg_scale: float = 1.0,
    ) -> None:
        """
        Args:
            in_dim: width C of the de-quantized tokens that condition the DiT.
            patch_size: pixels per *token* side (the encoder's patch size): fixes the output
                size ``(h * patch_size, w * patch_size)`` for a token grid ``(h, w)``.
            dit_patch_size: pixels per DiT patch side; ``None`` = ``patch_size`` (each DiT
                patch then sits exactly under one token). Otherwise the token map is
                resized to the DiT's patch grid.
            hidden_dim: transformer width.
            depth: number of DiT blocks (ARM: 24).
            num_heads: attention heads (``hidden_dim`` must be divisible by it).
            mlp_ratio: MLP hidden width / ``hidden_dim``.
            cond_dropout: probability of replacing a sample's tokens by a learned null token
                in training, enabling classifier-free guidance at sampling.
            sample_steps: default number of Euler steps of :meth:`decode`.
            cfg_scale: default guidance scale of :meth:`decode` (1.0 = no guidance).
        """
        super().__init__()
        if in_dim < 1 or patch_size < 1 or depth < 1 or hidden_dim < 4:
            raise ValueError(
                f"PixelDiTDecoder: in_dim, patch_size, depth must be >= 1 and hidden_dim >= 4; got "
                f"in_dim={in_dim}, patch_size={patch_size}, depth={depth}, hidden_dim={hidden_dim}"
            )
        check_cfg_args("PixelDiTDecoder", cond_dropout, cfg_scale)
        self.in_dim = in_dim
        self.patch_size = patch_size
        self.dit_patch_size = dit_patch_size or patch_size
        self.cond_dropout = float(cond_dropout)
        self.sample_steps = int(sample_steps)
        self.cfg_scale = float(cfg_scale)
        self.backbone = DiTBackbone(3, in_dim, self.dit_patch_size, hidden_dim, depth, num_heads, mlp_ratio)
        self.null_cond = nn.Parameter(torch.zeros(in_dim)) if cond_dropout > 0 else None

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        """Tiny sizes for contract tests."""
        return {"in_dim": 8, "patch_size": 4, "hidden_dim": 16, "depth": 1, "num_heads": 2, "sample_steps": 2}

    def field_shape(self, grid: tuple[int, int]) -> tuple[int, int, int]:
        H, W = self.output_size(grid)
        if H % self.dit_patch_size or W % self.dit_patch_size:
            raise ValueError(
                f"PixelDiTDecoder: output {H}x{W} (grid {tuple(grid)} x patch_size {self.patch_size}) "
                f"is not a multiple of dit_patch_size {self.dit_patch_size}"
            )
        return 3, H, W

    def from_field(self, x: torch.Tensor) -> torch.Tensor:
        return x

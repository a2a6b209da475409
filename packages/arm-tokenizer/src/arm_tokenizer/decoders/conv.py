"""A convolutional pixel decoder: tokens on an (h, w) grid -> residual conv upsampling -> image.

The fast, deterministic decoder for quick runs on a CPU (the ARM paper decodes with a Pixel
DiT, see ``pixel_dit.py``). The token map is upsampled by ``log2(patch_size)`` stages of
``[ResBlock x num_res_blocks, nearest x2, conv 3x3]`` (the VQGAN decoder's layout, without
attention; residual blocks at the full output resolution are optional because they cost
most of the time on a CPU), halving the width each stage down to ``min_channels``; a patch size that is not
a power of two gets a final bilinear resize to the exact output size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arm_tokenizer.decoders.base import Decoder, grid_to_map


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class ResBlock(nn.Module):
    """Pre-norm residual block: GN -> SiLU -> conv3x3 -> GN -> SiLU -> conv3x3, + skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class ConvDecoder(Decoder):
    """Tokens ``(B, h*w, in_dim)`` -> images ``(B, 3, h*patch_size, w*patch_size)``.

    ``forward`` returns the raw (unclamped) prediction that reconstruction losses see;
    ``decode`` clamps it to [-1, 1].
    """

    def __init__(
        self,
        in_dim: int = 256,
        patch_size: int = 8,
        channels: int = 128,
        min_channels: int = 32,
        num_res_blocks: int = 1,
        final_res_blocks: int = 0,
        out_channels: int = 3,
    ) -> None:
        """
        Args:
            in_dim: width C of the incoming de-quantized tokens.
            patch_size: pixels per token side (must match the encoder's patch size).
            channels: width of the first (lowest-resolution) stage; halves every upsampling.
            min_channels: the width never drops below this.
            num_res_blocks: residual blocks at each resolution below the output's.
            final_res_blocks: residual blocks at the output resolution (VQGAN's decoder has
                them; 0 by default because full-resolution convolutions dominate CPU time).
            out_channels: image channels (3 for RGB).
        """
        super().__init__()
        if (in_dim < 1 or patch_size < 1 or channels < 1 or min_channels < 1 or num_res_blocks < 0
                or final_res_blocks < 0):
            raise ValueError(
                f"ConvDecoder: in_dim, patch_size, channels, min_channels must be >= 1 and "
                f"num_res_blocks, final_res_blocks >= 0; got in_dim={in_dim}, patch_size={patch_size}, "
                f"channels={channels}, min_channels={min_channels}, num_res_blocks={num_res_blocks}"
            )
        self.in_dim = in_dim
        self.patch_size = patch_size
        self.num_stages = int(math.floor(math.log2(patch_size))) if patch_size > 1 else 0
        self.conv_in = nn.Conv2d(in_dim, channels, 3, padding=1)
        stages = []
        ch = channels
        for _ in range(self.num_stages):
            nxt = max(min_channels, ch // 2)
            stages.append(nn.Sequential(
                *[ResBlock(ch) for _ in range(num_res_blocks)],
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(ch, nxt, 3, padding=1),
            ))
            ch = nxt
        self.stages = nn.ModuleList(stages)
        self.out_blocks = nn.Sequential(*[ResBlock(ch) for _ in range(final_res_blocks)])
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        """Tiny sizes for contract tests."""
        return {"in_dim": 8, "patch_size": 4, "channels": 16, "min_channels": 8}

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Raw image prediction ``(B, 3, H, W)`` (not clamped)."""
        self.check_features(features, grid)
        x = self.conv_in(grid_to_map(features, grid))
        for stage in self.stages:
            x = stage(x)
        x = self.conv_out(F.silu(self.norm_out(self.out_blocks(x))))
        size = self.output_size(grid)
        if tuple(x.shape[-2:]) != size:  # patch size not a power of two
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def decode(self, features: torch.Tensor, grid: tuple[int, int], **kwargs) -> torch.Tensor:
        """Images in [-1, 1]. Extra keyword args (e.g. a sampler's ``steps``) are ignored so
        that callers can treat every decoder alike."""
        return self.forward(features, grid).clamp(-1.0, 1.0)

    def last_layer(self) -> torch.Tensor:
        return self.conv_out.weight

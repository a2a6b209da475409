"""A small convolutional encoder trained from scratch, for quick runs on a CPU.

The pixel-reconstruction baseline of the tokenizer ablations (and a fast stand-in for the
frozen SigLIP tower in smoke tests). Layout as the VQGAN encoder (Esser et al., "Taming
Transformers for High-Resolution Image Synthesis", https://arxiv.org/abs/2012.09841) without
attention: a 3x3 stem, then ``log2(patch_size)`` stages of ``[ResBlock x num_res_blocks,
stride-2 conv]`` doubling the width (capped at ``max_width``), a final ResBlock and
GroupNorm-SiLU, and a 1x1 conv to ``out_dim``. Output: patch tokens ``(B, N, out_dim)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arm_tokenizer.encoders.base import Encoder

__all__ = ["CNNEncoder"]


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class CNNEncoder(Encoder):
    """Conv net images ``(B, 3, H, W)`` in [-1, 1] -> tokens ``(B, (H/p)*(W/p), out_dim)``.

    Args:
        patch_size: pixels per token side, a power of two (4 or 8 for 64x64 images).
        width: channels of the first stage (doubled at each downsampling).
        max_width: cap on the channel count.
        num_res_blocks: residual blocks per stage.
        out_dim: token width C.
        frozen: freeze the weights (e.g. a pre-trained CNN used as a feature target).
    """

    def __init__(
        self,
        patch_size: int = 8,
        width: int = 32,
        max_width: int = 128,
        num_res_blocks: int = 1,
        out_dim: int = 64,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"CNNEncoder patch_size must be a power of two, got {patch_size}")
        if width < 1 or out_dim < 1 or num_res_blocks < 0:
            raise ValueError("CNNEncoder width/out_dim must be >= 1 and num_res_blocks >= 0")
        self.patch_size = int(patch_size)
        self.out_dim = int(out_dim)
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
        ch = width
        for _ in range(self.patch_size.bit_length() - 1):
            nxt = min(ch * 2, max_width)
            layers += [_ResBlock(ch, ch) for _ in range(num_res_blocks)]
            layers.append(nn.Conv2d(ch, nxt, 3, stride=2, padding=1))
            ch = nxt
        layers += [_ResBlock(ch, ch), nn.GroupNorm(_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, self.out_dim, 1)]
        self.net = nn.Sequential(*layers)
        if frozen:
            self.freeze()

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"patch_size": 4, "width": 8, "max_width": 16, "out_dim": 12}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self.check_images(images)
        return self.net(images).flatten(2).transpose(1, 2)

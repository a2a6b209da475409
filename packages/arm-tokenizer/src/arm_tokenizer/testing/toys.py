"""Tiny stand-in components the contract checks use to exercise a component's neighbours.

A loss check needs a decoder to call; a decoder-free test needs one to build a
:class:`~arm_tokenizer.tokenizer.VisualTokenizer`. These are minimal but real (trainable,
differentiable, init-args recorded), not registered, and deliberately small. Beside them, the
tiny tokenizers the tests of arm-tokenizer and of the packages above it train or load.
"""

from __future__ import annotations

import torch
from torch import nn

from arm_tokenizer.decoders.base import Decoder
from arm_tokenizer.decoders.conv import ConvDecoder
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.tokenizer import VisualTokenizer

__all__ = ["TINY_TOKENIZER_MODEL_YAML", "ToyDecoder", "ToyFlowDecoder", "tiny_projected_tokenizer", "tiny_random_tokenizer"]

#: The ``model:`` section of a YAML config training a tiny tokenizer (CNN, FSQ [5, 5, 5], conv
#: decoder: 12-wide features, 3-wide codes), for the fit tests of arm-tokenizer and arm-data:
#: substitute it whole (e.g. ``{model}``) and add ``image_size`` and other init_args lines below.
TINY_TOKENIZER_MODEL_YAML = """\
model:
  class_path: tokenizer_trainer
  init_args:
    encoder: {class_path: cnn, init_args: {patch_size: 8, width: 8, max_width: 16, out_dim: 12}}
    proj_in: {class_path: linear, init_args: {in_dim: 12, out_dim: 3}}
    quantizer: {class_path: fsq, init_args: {levels: [5, 5, 5]}}
    proj_out: {class_path: linear, init_args: {in_dim: 3, out_dim: 12}}
    decoder: {class_path: conv_decoder, init_args: {in_dim: 12, patch_size: 8, channels: 16, min_channels: 8}}"""


def _to_map(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    b, _, c = features.shape
    return features.transpose(1, 2).reshape(b, c, int(grid[0]), int(grid[1]))


class ToyDecoder(Decoder):
    """Direct decoder: a linear map per token to a ``patch_size x patch_size`` RGB patch.

    Args:
        in_dim: token width.
        patch_size: pixels per token side.
    """

    def __init__(self, in_dim: int = 8, patch_size: int = 4) -> None:
        super().__init__()
        self.in_dim, self.patch_size = int(in_dim), int(patch_size)
        self.to_pixels = nn.Linear(self.in_dim, 3 * self.patch_size**2)

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        p = self.patch_size
        x = _to_map(self.to_pixels(features), grid)  # (B, 3*p*p, h, w)
        return nn.functional.pixel_shuffle(x, p)  # (B, 3, h*p, w*p)

    def decode(self, features: torch.Tensor, grid: tuple[int, int], **kwargs) -> torch.Tensor:
        return self(features, grid).clamp(-1.0, 1.0)

    def last_layer(self) -> torch.Tensor | None:
        return self.to_pixels.weight


class ToyFlowDecoder(Decoder):
    """Generative decoder: velocity ``v(x_t, t | tokens)`` from a 3x3 conv on the noisy image
    plus the upsampled token features; Euler sampler in :meth:`decode`.

    Args:
        in_dim: token width.
        patch_size: pixels per token side.
        steps: default number of Euler steps.
    """

    generative = True

    def __init__(self, in_dim: int = 8, patch_size: int = 4, steps: int = 4) -> None:
        super().__init__()
        self.in_dim, self.patch_size, self.steps = int(in_dim), int(patch_size), int(steps)
        self.cond = nn.Linear(self.in_dim, 8)
        self.net = nn.Conv2d(3 + 8 + 1, 3, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, features: torch.Tensor,
                grid: tuple[int, int]) -> torch.Tensor:
        cond = _to_map(self.cond(features), grid)
        cond = nn.functional.interpolate(cond, size=x_t.shape[-2:], mode="nearest")
        tmap = t.view(-1, 1, 1, 1).expand(x_t.shape[0], 1, *x_t.shape[-2:]).to(x_t)
        return self.net(torch.cat([x_t, cond, tmap], 1))

    def decode(self, features: torch.Tensor, grid: tuple[int, int], steps: int | None = None,
               **kwargs) -> torch.Tensor:
        n = steps or self.steps
        h, w = self.output_size(grid)
        x = torch.randn(features.shape[0], 3, h, w, device=features.device, dtype=features.dtype)
        for i in range(n):
            t = torch.full((features.shape[0],), i / n, device=x.device, dtype=x.dtype)
            x = x + self(x, t, features, grid) / n
        return x.clamp(-1.0, 1.0)


def tiny_random_tokenizer(image_size: int = 32) -> VisualTokenizer:
    """An untrained tokenizer: CNN, FSQ [4, 4, 4] (64 codes), conv decoder, one token per 8 px
    (seed torch first for a reproducible draw)."""
    return VisualTokenizer(CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=3), FSQQuantizer([4, 4, 4]),
                           ConvDecoder(in_dim=3, patch_size=8, channels=16, min_channels=8), image_size=image_size)


def tiny_projected_tokenizer(image_size: int = 32, patch_size: int = 8) -> VisualTokenizer:
    """An untrained tokenizer with projections: CNN (16 wide), linear 16 -> 4, FSQ [2, 2, 2, 2]
    (16 codes), linear 4 -> 16, :class:`ToyDecoder` (seed torch first for a reproducible draw)."""
    return VisualTokenizer(CNNEncoder(patch_size=patch_size, width=8, max_width=16, out_dim=16),
                           FSQQuantizer(levels=[2, 2, 2, 2]), ToyDecoder(in_dim=16, patch_size=patch_size),
                           proj_in=LinearProjection(16, 4), proj_out=LinearProjection(4, 16),
                           image_size=image_size)

"""The decoder contract: de-quantized tokens back to pixels.

Two flavours share one base:

- *direct* decoders (``generative = False``, e.g. the conv decoder) map tokens to an image
  in one pass: ``forward(features, grid)`` returns the raw prediction (what the
  reconstruction loss sees) and ``decode(features, grid)`` the same clamped to [-1, 1].
- *generative* decoders (``generative = True``, e.g. the Pixel/Latent DiT) model the image
  given the tokens by rectified flow: ``forward(x_t, t, features, grid)`` predicts the
  velocity ``x1 - x0`` at ``x_t = t * x1 + (1 - t) * x0`` (``x1`` = data, ``x0`` = noise),
  ``flow_target(images)`` says what the flow models (the pixels themselves, or a VAE's
  latents), and ``decode(features, grid, steps=...)`` samples with an N-step solver. The
  flow-matching loss lives in a loss component (``arm_tokenizer.losses.flow``), not here.

Images are ``(B, 3, H, W)`` in ``[-1, 1]`` with ``H = h * patch_size``, ``W = w * patch_size``.
"""

from __future__ import annotations

import torch
from torch import nn

from arm_tokenizer.framework.configurable import Configurable


class Decoder(Configurable, nn.Module):
    """Base class of ``arm.decoders``. Subclasses set ``in_dim`` (token width C) and
    ``patch_size`` (pixels per token side)."""

    in_dim: int
    patch_size: int
    generative: bool = False

    def output_size(self, grid: tuple[int, int]) -> tuple[int, int]:
        """Image ``(H, W)`` produced for a token grid ``(h, w)``."""
        return grid[0] * self.patch_size, grid[1] * self.patch_size

    def check_features(self, features: torch.Tensor, grid: tuple[int, int]) -> None:
        """Raise a clear error when ``features`` is not ``(B, h*w, in_dim)``."""
        if not isinstance(features, torch.Tensor) or features.ndim != 3:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{type(self).__name__} expects features (B, N, {self.in_dim}), got {shape}")
        h, w = int(grid[0]), int(grid[1])
        if features.shape[1] != h * w or features.shape[2] != self.in_dim:
            raise ValueError(
                f"{type(self).__name__} expects features (B, {h}*{w}={h * w}, {self.in_dim}) for grid "
                f"{(h, w)}, got {tuple(features.shape)}"
            )

    def decode(self, features: torch.Tensor, grid: tuple[int, int], **kwargs) -> torch.Tensor:
        """``(B, N, C)`` tokens on an ``(h, w)`` grid -> images ``(B, 3, H, W)`` in [-1, 1]."""
        raise NotImplementedError

    def flow_target(self, images: torch.Tensor) -> torch.Tensor:
        """What a generative decoder's flow models for these images (``x1``): the pixels by
        default; a latent decoder returns the VAE latents."""
        if not self.generative:
            raise TypeError(f"{type(self).__name__} is not a generative (flow) decoder")
        return images

    def last_layer(self) -> torch.Tensor | None:
        """The weight of the layer producing the output, for VQGAN's adaptive GAN weight
        (ratio of gradient norms at this layer); ``None`` when the decoder has none."""
        return None


def grid_to_map(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, C)`` tokens in raster order -> a ``(B, C, h, w)`` feature map."""
    b, n, c = features.shape
    h, w = int(grid[0]), int(grid[1])
    return features.transpose(1, 2).reshape(b, c, h, w)


def map_to_grid(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, h*w, C)`` tokens in raster order."""
    return x.flatten(2).transpose(1, 2)

"""The encoder contract: images in, patch tokens out.

Every encoder takes images as float tensors ``(B, 3, H, W)`` in ``[-1, 1]`` (the tokenizer's
one pixel convention; FSQ collapses with ``[0, 1]`` inputs, see DESIGN.md) and applies its
own normalization (a pretrained backbone's mean/std) inside ``forward``. It returns patch
tokens ``(B, N, C)`` with ``N = h * w`` for the grid given by :meth:`grid_shape`.
"""

from __future__ import annotations

import torch
from torch import nn

from arm_tokenizer.framework.configurable import Configurable


class Encoder(Configurable, nn.Module):
    """Base class of ``arm.encoders``.

    Subclasses set ``out_dim`` (C) and ``patch_size`` (pixels per token side) and implement
    :meth:`forward`. ``frozen`` encoders have ``requires_grad=False`` and stay in eval mode.
    """

    out_dim: int
    patch_size: int
    frozen: bool = False

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(h, w)`` for an image of ``height x width`` pixels."""
        return height // self.patch_size, width // self.patch_size

    def check_images(self, images: torch.Tensor) -> None:
        """Raise a clear error for inputs the encoder cannot take."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__} expects images of shape (B, 3, H, W), got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(
                f"{type(self).__name__} expects float images in [-1, 1], got dtype {images.dtype}; "
                "convert uint8 with images.float() / 127.5 - 1"
            )
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"{type(self).__name__}: image size {h}x{w} is not a multiple of the patch size "
                f"{self.patch_size}"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, N, C)
        raise NotImplementedError

    def train(self, mode: bool = True) -> Encoder:
        # A frozen encoder never leaves eval mode (dropout, BN statistics stay fixed).
        return super().train(False if self.frozen else mode)

    def freeze(self) -> Encoder:
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

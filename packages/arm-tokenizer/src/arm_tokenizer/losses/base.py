"""The tokenizer-loss contract: each loss term is a component with its own weight.

The training module builds one :class:`LossInputs` per step and calls every loss; each
returns an unweighted scalar (and optional extra logs). The module multiplies by
``weight``, logs each term separately as ``train/loss_<name>``, and adds the quantizer's
auxiliary loss automatically.

A loss that trains an adversary (the PatchGAN of the pixel loss) returns it from
:meth:`TokenizerLoss.adversary` and implements :meth:`TokenizerLoss.discriminator_loss`; the module then
switches to manual optimization with a second optimizer for the discriminator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from arm_tokenizer.framework.configurable import Configurable


@dataclass
class LossInputs:
    """Everything a tokenizer loss may need from one forward pass.

    images: ``(B, 3, H, W)`` targets in [-1, 1].
    grid: the token grid ``(h, w)``.
    encoder_features: ``(B, N, C)`` output of the (frozen) encoder: the L_feat target.
    pre_quant: ``(B, N, D)`` projection output fed to the quantizer.
    quantized: ``(B, N, D)`` quantizer output (straight-through).
    features: ``(B, N, C)`` de-quantized features after the output projection.
    indices: the quantizer's indices.
    captions: one text per image, where the data has them (L_sig, L_cap).
    decoder: the decoder module (reconstruction and flow-matching losses call it).
    encoder: the encoder module (perceptual/feature losses may re-encode).
    reconstruction: ``(B, 3, H, W)`` raw output of a direct (non-generative) decoder,
        computed once by the module and shared by every loss; ``None`` for DiT decoders.
    step: the global optimizer step (GAN warm-up schedules read it).
    extra: anything else a plugin loss needs (the module passes the batch's extra keys).
    """

    images: torch.Tensor
    grid: tuple[int, int]
    encoder_features: torch.Tensor
    pre_quant: torch.Tensor
    quantized: torch.Tensor
    features: torch.Tensor
    indices: torch.Tensor
    decoder: nn.Module
    encoder: nn.Module | None = None
    captions: list[str] | None = None
    reconstruction: torch.Tensor | None = None
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossOutput:
    """An unweighted scalar loss plus detached extras to log (e.g. ``psnr``)."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


def direct_reconstruction(inputs: LossInputs, loss_name: str) -> torch.Tensor:
    """The direct decoder's reconstruction ``(B, 3, H, W)``: the module's shared one when it
    computed it, else ``decoder(features, grid)``. Generative (flow) decoders have none."""
    if inputs.reconstruction is not None:
        return inputs.reconstruction
    decoder = inputs.decoder
    if getattr(decoder, "generative", False):
        raise TypeError(
            f"{loss_name} needs a direct decoder, but {type(decoder).__name__} is generative "
            "(a DiT trained by flow matching): use the `flow_matching` loss instead"
        )
    return decoder(inputs.features, inputs.grid)


class TokenizerLoss(Configurable, nn.Module):
    """Base class of ``arm.tokenizer_losses``.

    Args:
        weight: multiplier in the total loss (ARM: 1 cap, 5 pix, 5 sig, 1 feat).
        name: the log key (``train/loss_<name>``); defaults to the class's ``default_name``.
    """

    default_name: str = "loss"
    #: True when the loss needs captions in the batch (the module checks before training).
    needs_captions: bool = False

    def __init__(self, weight: float = 1.0, name: str | None = None) -> None:
        super().__init__()
        self.weight = float(weight)
        self.name = name or self.default_name

    def forward(self, inputs: LossInputs) -> LossOutput:
        raise NotImplementedError

    def adversary(self) -> nn.Module | None:
        """The adversary this loss trains with its own optimizer (e.g. a PatchGAN), or None.
        (A method, not a class attribute: ``nn.Module`` keeps submodules out of ``__dict__``,
        so a class-level ``None`` would shadow them.)"""
        return None

    def discriminator_loss(self, inputs: LossInputs) -> LossOutput | None:
        """The adversary's loss for this step (real = ``inputs.images``, fake = the detached
        reconstruction), or ``None`` when it is not trained at this step. Only called when
        :meth:`adversary` returns a module."""
        return None

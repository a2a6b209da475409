"""A penalty on pre-quantization activations.

Bounded quantizers (FSQ's ``tanh``) saturate when the projection's outputs grow: every
input then maps to one corner code and the codebook collapses (seen on ShapesWorld with
[0, 1] inputs; DESIGN.md). This loss keeps the activations' RMS near a target.
"""

from __future__ import annotations

import torch

from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss


class PreQuantPenalty(TokenizerLoss):
    """``mean(relu(rms(pre_quant) - target) ** 2)`` over tokens.

    Args:
        weight: multiplier in the total loss.
        target_rms: activations with a per-token RMS below this are not penalized.
        name: log key (``train/loss_<name>``).
    """

    default_name = "prequant"

    def __init__(self, weight: float = 0.1, target_rms: float = 1.0, name: str | None = None) -> None:
        super().__init__(weight=weight, name=name)
        self.target_rms = target_rms

    def forward(self, inputs: LossInputs) -> LossOutput:
        rms = inputs.pre_quant.pow(2).mean(-1).sqrt()
        loss = torch.relu(rms - self.target_rms).pow(2).mean()
        return LossOutput(loss, {"prequant_rms": rms.mean().detach()})

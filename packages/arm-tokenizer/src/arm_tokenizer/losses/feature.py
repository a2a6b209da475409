"""L_feat: the de-quantized features reconstruct the frozen encoder's features.

ARM (arXiv 2606.11188) adds a feature-reconstruction term: after FSQ and the output
projection, the token features should match the frozen SigLIP2 patch features they came
from, measured by cosine distance. It keeps the discrete tokens in the encoder's semantic
space (the paper's ablation: +feat lifts PSNR and zero-shot accuracy over cap+pix alone).

``cosine``: ``mean_n (1 - cos(f_n, e_n))`` over all tokens; ``l2``: mean squared error;
``smooth_l1``: Huber. The target is detached: the encoder is frozen and gets no gradient
even when it is trainable elsewhere.

``channels=[start, stop]`` compares only those channels. An encoder with ``extra_layers``
appends low-level maps (folded stems, earlier stages) to its semantic features; the paper's
L_feat targets the semantic tower alone, and asking the few code dimensions to also rebuild
the appended maps spends them twice (the pixel loss already asks for the detail).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss

__all__ = ["FEATURE_DISTANCES", "FeatureLoss", "check_feature_distance", "check_feature_shapes", "feature_distance"]

FEATURE_DISTANCES = ("cosine", "l2", "smooth_l1")


def check_feature_distance(distance: str, owner: str) -> str:
    """``distance`` if :func:`feature_distance` knows it, else a ValueError naming ``owner``."""
    if distance not in FEATURE_DISTANCES:
        raise ValueError(f"{owner}.distance must be one of {FEATURE_DISTANCES}, got {distance!r}")
    return distance


def check_feature_shapes(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Raise, naming both shapes, unless predicted and target features have the same shape."""
    if pred.shape != target.shape:
        raise ValueError(
            f"feature loss: features {tuple(pred.shape)} and encoder features {tuple(target.shape)} "
            "differ in shape; the output projection must map back to the encoder width"
        )


def feature_distance(pred: torch.Tensor, target: torch.Tensor, distance: str = "cosine") -> torch.Tensor:
    """Mean distance between ``(B, N, C)`` predicted and target token features."""
    check_feature_shapes(pred, target)
    if distance == "cosine":
        return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()
    if distance == "l2":
        return F.mse_loss(pred, target)
    if distance == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    raise ValueError(f"feature loss: unknown distance {distance!r}; choose one of {FEATURE_DISTANCES}")


class FeatureLoss(TokenizerLoss):
    """L_feat: distance between ``inputs.features`` and ``inputs.encoder_features``.

    Args:
        weight: multiplier in the total loss (ARM: 1).
        distance: ``"cosine"`` (ARM's choice), ``"l2"`` (MSE) or ``"smooth_l1"``.
        name: log key (``train/loss_<name>``), default ``feat``.
        channels: ``[start, stop]``, Python-style (negative counts from the end, ``null``
            for open): only these feature channels are compared. None: all of them.
    """

    default_name = "feat"

    def __init__(
        self,
        weight: float = 1.0,
        distance: Literal["cosine", "l2", "smooth_l1"] = "cosine",
        name: str | None = None,
        channels: list[int | None] | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        self.distance = check_feature_distance(distance, "FeatureLoss")
        if channels is not None and (len(channels) != 2 or not all(c is None or isinstance(c, int) for c in channels)):
            raise ValueError(f"FeatureLoss.channels must be [start, stop] (integers or null), got {channels!r}")
        self.channels = slice(*channels) if channels is not None else slice(None)

    def forward(self, inputs: LossInputs) -> LossOutput:
        check_feature_shapes(inputs.features, inputs.encoder_features)  # before slicing hides a width mismatch
        pred, target = inputs.features[..., self.channels], inputs.encoder_features.detach()[..., self.channels]
        if target.shape[-1] == 0:
            raise ValueError(f"FeatureLoss.channels {self.channels.start, self.channels.stop} selects none of the "
                             f"{inputs.encoder_features.shape[-1]} feature channels")
        loss = feature_distance(pred, target, self.distance)
        with torch.no_grad():
            cos = F.cosine_similarity(pred, target, dim=-1).mean()
        return LossOutput(loss=loss, logs={"cosine": cos})

"""A perceptual loss in the tokenizer's own encoder space: the reconstruction, re-encoded,
should give the encoder features of the image it came from.

LPIPS (Zhang et al., https://arxiv.org/abs/1801.03924) measures how far apart two images
look to an ImageNet network. This loss asks the same of the encoder the tokens came from:
``d(encoder(decode(tokens)), encoder(image))``. Why it helps a semantic tokenizer:

- The tokens keep what the encoder sees (an object is a star) and drop what it does not
  (the star's rotation, a faint background pattern). A decoder trained by L1 alone outputs
  the mean over what the tokens leave open, and a star averaged over its rotations is a
  disc.
- A disc does not look like a star to the encoder, so this term pulls the decoder towards
  drawing *a* star, whichever rotation, where L1 pulls it to the blurred mean.
- It needs no weights beyond the encoder, so it works where LPIPS's ImageNet backbone is
  not available, and on images far from ImageNet.

The target is ``inputs.encoder_features`` (computed once per step for L_feat; detached).
The reconstruction is encoded with the encoder's parameters detached, so this term trains
only the decoder side, even when the encoder is trainable elsewhere. Only direct decoders
have a reconstruction to re-encode (generative decoders train by flow matching).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.func import functional_call

from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss, direct_reconstruction
from arm_tokenizer.losses.feature import check_feature_distance, feature_distance

__all__ = ["EncoderPerceptualLoss"]

class EncoderPerceptualLoss(TokenizerLoss):
    """Distance between the encoder's features of the reconstruction and of the image.

    Logs ``cosine``: the mean cosine similarity of the two feature sets.
    """

    default_name = "perc"

    def __init__(
        self,
        weight: float = 1.0,
        distance: Literal["cosine", "l2", "smooth_l1"] = "cosine",
        name: str | None = None,
    ) -> None:
        """
        Args:
            weight: multiplier in the total loss (our choice; not in the paper).
            distance: ``"cosine"`` (per token, as L_feat), ``"l2"`` (MSE) or ``"smooth_l1"``.
            name: log key (``train/loss_<name>``), default ``perc``.
        """
        super().__init__(weight=weight, name=name)
        self.distance = check_feature_distance(distance, "EncoderPerceptualLoss")

    def forward(self, inputs: LossInputs) -> LossOutput:
        encoder = inputs.encoder
        if encoder is None:
            raise ValueError("EncoderPerceptualLoss needs the tokenizer's encoder in LossInputs.encoder "
                             "to re-encode the reconstruction; the training module passes it")
        recon = direct_reconstruction(inputs, "EncoderPerceptualLoss")
        # Detached parameters: gradients reach the reconstruction (the decoder), never the encoder.
        params = {k: v.detach() for k, v in encoder.named_parameters()}
        buffers = dict(encoder.named_buffers())
        feats = functional_call(encoder, (params, buffers), (recon,))
        target = inputs.encoder_features.detach()
        if feats.shape != target.shape:
            raise ValueError(f"EncoderPerceptualLoss: the encoder gives {tuple(feats.shape)} for the "
                             f"reconstruction but {tuple(target.shape)} for the images")
        loss = feature_distance(feats, target, self.distance)
        with torch.no_grad():
            cos = torch.nn.functional.cosine_similarity(feats, target, dim=-1).mean()
        return LossOutput(loss=loss, logs={"cosine": cos})

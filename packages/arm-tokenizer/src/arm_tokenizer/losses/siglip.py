"""L_sig: the SigLIP sigmoid contrastive loss between tokens and a frozen text encoder.

Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"
(https://arxiv.org/abs/2303.15343). For L2-normalized image embeddings ``x_i`` and text
embeddings ``y_j`` of one batch of ``B`` pairs::

    L = -1/B * sum_i sum_j log sigmoid( z_ij * (t * x_i . y_j + b) ),   t = exp(t')

with ``z_ij = 1`` for matching pairs and ``-1`` otherwise, a learnable log-temperature
``t'`` (initialised to ``log 10``) and bias ``b`` (initialised to ``-10``, so the many
negatives start near zero loss and do not swamp the few positives). When the text tower
carries the scale and bias its own image tower was trained with (``hf_text`` reads a
checkpoint's ``logit_scale`` / ``logit_bias``), :class:`SigLIPLoss` starts from those
instead: the tokenizer's features are trained towards that image tower's (L_feat).

ARM applies it to the *quantized* image embedding against a frozen SigLIP2 text encoder,
so the discrete tokens stay aligned with language. :class:`SigLIPLoss` mean-pools the
de-quantized token features, maps them with a small learnable head to the text
embedding width and scores them against ``text_encoder.encode_text(captions)``.
The same function :func:`sigmoid_contrastive_loss` (in :mod:`arm_tokenizer.losses.contrastive`,
re-exported here) trains the ShapesWorld teacher.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss
from arm_tokenizer.losses.contrastive import caption_match_labels, sigmoid_contrastive_loss
from arm_tokenizer.teachers.base import TextEncoder

__all__ = ["sigmoid_contrastive_loss", "caption_match_labels", "SigLIPLoss"]

# SigLIP's initialisation (Zhai et al. 2023): t' = log 10, b = -10.
DEFAULT_LOG_TEMPERATURE = math.log(10.0)
DEFAULT_BIAS = -10.0


class SigLIPLoss(TokenizerLoss):
    """L_sig: sigmoid contrastive loss of pooled token features vs a frozen text encoder.

    Args:
        text_encoder: the frozen text tower (any ``arm.text_encoders`` component, e.g.
            ``teacher_text`` for the ShapesWorld teacher). It is frozen here: its parameters
            never get gradients and it stays in eval mode.
        in_dim: width C of the token features the loss reads (the tokenizer's feature width,
            i.e. the encoder width after ``proj_out``).
        weight: multiplier in the total loss (ARM: 5).
        source: which tensor of :class:`LossInputs` to pool: ``"features"`` (de-quantized,
            after ``proj_out``; ARM's choice) or ``"quantized"`` (the raw codes; ``in_dim``
            must then be the code width).
        head: the learnable map from pooled features to the text width: ``"linear"`` or
            ``"mlp"`` (LayerNorm, Linear, GELU, Linear).
        init_log_temperature: initial ``t'``; None = the text encoder's own (below), else
            SigLIP's ``log 10``. A number given here always wins.
        init_bias: initial ``b``; None = the text encoder's own (below), else SigLIP's ``-10``.
        init_from_teacher: start from what the text encoder was trained with: a
            ``teacher_text`` carrying its image-side head (``image_head``, ``log_temperature``,
            ``bias``) gives all three when the shapes fit a linear head (the tokens then start
            out aligned as far as they reproduce the encoder's features); a tower with scale
            and bias but no image head (``hf_text``: the checkpoint's ``logit_scale`` and
            ``logit_bias``) gives those two, whatever the ``head``.
        dedupe_captions: count identical caption strings in a batch as positives.
        name: log key (``train/loss_<name>``), default ``sig``.
    """

    default_name = "sig"
    needs_captions = True

    def __init__(
        self,
        text_encoder: TextEncoder,
        in_dim: int = 128,
        weight: float = 5.0,
        source: Literal["features", "quantized"] = "features",
        head: Literal["linear", "mlp"] = "linear",
        init_log_temperature: float | None = None,
        init_bias: float | None = None,
        init_from_teacher: bool = True,
        dedupe_captions: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        if not isinstance(text_encoder, TextEncoder):
            raise TypeError(
                f"SigLIPLoss.text_encoder must be a TextEncoder (arm.text_encoders), got "
                f"{type(text_encoder).__name__}"
            )
        if source not in ("features", "quantized"):
            raise ValueError(f"SigLIPLoss.source must be 'features' or 'quantized', got {source!r}")
        if head not in ("linear", "mlp"):
            raise ValueError(f"SigLIPLoss.head must be 'linear' or 'mlp', got {head!r}")
        self.text_encoder = text_encoder
        text_encoder.requires_grad_(False)
        text_encoder.eval()
        self.source = source
        self.in_dim = int(in_dim)
        self.embed_dim = int(text_encoder.embed_dim)
        self.dedupe_captions = dedupe_captions
        if head == "linear":
            self.head: nn.Module = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, self.embed_dim))
        else:
            self.head = nn.Sequential(
                nn.LayerNorm(in_dim), nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, self.embed_dim)
            )
        self.log_temperature = nn.Parameter(torch.tensor(DEFAULT_LOG_TEMPERATURE))
        self.bias = nn.Parameter(torch.tensor(DEFAULT_BIAS))
        self.initialized_from_teacher = False  # the teacher's image head (and its scale, bias) copied
        self.scale_bias_from_text_encoder = False  # the tower's own logit scale and bias copied
        if init_from_teacher:
            if head == "linear":
                self._init_from_teacher()
            if not self.initialized_from_teacher:
                self._init_scale_bias_from_tower()
        with torch.no_grad():  # explicit values win over any copied ones
            if init_log_temperature is not None:
                self.log_temperature.fill_(float(init_log_temperature))
            if init_bias is not None:
                self.bias.fill_(float(init_bias))

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        # deferred: the teacher imports timm (seconds), needed only to build an example
        from arm_tokenizer.teachers.frozen import TeacherTextEncoder

        return {"text_encoder": TeacherTextEncoder(**TeacherTextEncoder.example_args()), "in_dim": 8}

    def _init_from_teacher(self) -> None:
        teacher_head = getattr(self.text_encoder, "image_head", None)
        if not isinstance(teacher_head, nn.Sequential) or len(teacher_head) != 2:
            return
        own = self.head.state_dict()
        theirs = teacher_head.state_dict()
        if own.keys() != theirs.keys() or any(own[k].shape != theirs[k].shape for k in own):
            return  # different widths: keep the random init
        self.head.load_state_dict(theirs)
        with torch.no_grad():
            self.log_temperature.copy_(self.text_encoder.log_temperature.detach().reshape(()))
            self.bias.copy_(self.text_encoder.bias.detach().reshape(()))
        self.initialized_from_teacher = True

    def _init_scale_bias_from_tower(self) -> None:
        # Only a tower without an image head of its own: a teacher's scale and bias belong
        # to its head, and are taken with it or not at all.
        if getattr(self.text_encoder, "image_head", None) is not None:
            return
        scale = getattr(self.text_encoder, "log_temperature", None)
        bias = getattr(self.text_encoder, "bias", None)
        if not (isinstance(scale, torch.Tensor) and isinstance(bias, torch.Tensor)
                and scale.numel() == 1 and bias.numel() == 1):
            return
        with torch.no_grad():
            self.log_temperature.copy_(scale.detach().float().reshape(()))
            self.bias.copy_(bias.detach().float().reshape(()))
        self.scale_bias_from_text_encoder = True

    def train(self, mode: bool = True) -> SigLIPLoss:
        super().train(mode)
        self.text_encoder.eval()  # frozen teacher: never in training mode
        return self

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` token features -> ``(B, E)`` L2-normalized image embeddings."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.in_dim:
            raise ValueError(
                f"SigLIPLoss expects {self.source} of shape (B, N, {self.in_dim}); got "
                f"{tuple(tokens.shape)} (set in_dim to the tokenizer's feature width)"
            )
        return F.normalize(self.head(tokens.mean(dim=1)), dim=-1)

    def forward(self, inputs: LossInputs) -> LossOutput:
        if inputs.captions is None:
            raise ValueError("SigLIPLoss needs captions: the batch has no 'captions' key")
        tokens = inputs.features if self.source == "features" else inputs.quantized
        if len(inputs.captions) != tokens.shape[0]:
            raise ValueError(
                f"SigLIPLoss: {len(inputs.captions)} captions for a batch of {tokens.shape[0]} images"
            )
        image_emb = self.embed_tokens(tokens)
        with torch.no_grad():
            text_emb = self.text_encoder.encode_text(list(inputs.captions)).to(image_emb)
        labels = caption_match_labels(list(inputs.captions), self.dedupe_captions)
        loss = sigmoid_contrastive_loss(image_emb, text_emb, self.log_temperature, self.bias, labels)
        with torch.no_grad():
            pred = (image_emb @ text_emb.t()).argmax(dim=1).cpu()
            r1 = labels[torch.arange(len(pred)), pred].mean()
        return LossOutput(
            loss=loss,
            logs={"temperature": self.log_temperature.detach().exp(), "bias": self.bias.detach(),
                  "batch_r1": r1},
        )

"""L_cap: a frozen language model captions the image from the quantized tokens.

ARM (arXiv 2606.11188) feeds the quantized tokens, through a learnable adapter, as a prefix
to a frozen Qwen2.5-0.5B and minimises the caption's next-token NLL, so the tokens must
carry what a language model needs to describe the image. Here the LM is any
``arm.caption_lms`` component (:class:`~arm_tokenizer.teachers.base.CaptionLM`): the
ShapesWorld teacher ``teacher_caption_lm``, or arm-core's LM, which registers itself under
that kind without arm-tokenizer importing it.

Gradients flow through the frozen LM into the adapter and the tokenizer; the LM's own
parameters never receive any and it stays in eval mode (a caption LM built with
``frozen=False``, e.g. ``hf_causal_lm``, is left trainable instead).

The paper's 32x32 = 1,024-token grid can be shortened before the adapter
(``prefix_pooling``: ``avg`` k x k grid pooling or a learned ``resampler``; see
:mod:`arm_tokenizer.losses.prefix_pooling`): the teacher LM holds at most ``max_prefix``
(256) tokens, and a full prefix on Qwen2.5-0.5B costs about 1 GB of activations per image.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss
from arm_tokenizer.losses.prefix_pooling import PrefixPooling
from arm_tokenizer.teachers.base import CaptionLM

__all__ = ["CaptionLoss"]


class CaptionLoss(TokenizerLoss):
    """L_cap: caption NLL of a frozen LM given the token features as a prefix.

    Args:
        caption_lm: the frozen captioning LM (e.g. ``teacher_caption_lm``).
        in_dim: width C of the token features the adapter reads.
        weight: multiplier in the total loss (ARM: 1).
        source: ``"features"`` (de-quantized, after ``proj_out``) or ``"quantized"`` (codes;
            ``in_dim`` must then be the code width).
        adapter: ``"linear"`` (LayerNorm + Linear) or ``"mlp"`` (LayerNorm, Linear, GELU,
            Linear) from ``in_dim`` to the LM's ``hidden_size``.
        init_from_teacher: when the LM carries the prefix adapter it was trained with
            (``prefix_adapter`` of ``teacher_caption_lm``) and the shapes fit, start from it.
        prefix_pooling: shorten the prefix before the adapter: ``"none"`` (all N = h*w
            tokens), ``"avg"`` (``prefix_pool`` x ``prefix_pool`` average pooling on the
            token grid: ceil(h/k) * ceil(w/k) tokens, 32x32 -> 256 with k=2) or
            ``"resampler"`` (``prefix_queries`` learned queries cross-attending to all tokens).
        prefix_pool: window/stride k of ``avg`` pooling.
        prefix_queries: prefix length of the ``resampler``.
        prefix_heads: attention heads of the ``resampler`` (must divide ``in_dim``).
        name: log key (``train/loss_<name>``), default ``cap``.
    """

    default_name = "cap"
    needs_captions = True

    def __init__(
        self,
        caption_lm: CaptionLM,
        in_dim: int = 128,
        weight: float = 1.0,
        source: Literal["features", "quantized"] = "features",
        adapter: Literal["linear", "mlp"] = "linear",
        init_from_teacher: bool = True,
        prefix_pooling: Literal["none", "avg", "resampler"] = "none",
        prefix_pool: int = 2,
        prefix_queries: int = 64,
        prefix_heads: int = 8,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        if not isinstance(caption_lm, CaptionLM):
            raise TypeError(
                f"CaptionLoss.caption_lm must be a CaptionLM (arm.caption_lms), got {type(caption_lm).__name__}"
            )
        if source not in ("features", "quantized"):
            raise ValueError(f"CaptionLoss.source must be 'features' or 'quantized', got {source!r}")
        if adapter not in ("linear", "mlp"):
            raise ValueError(f"CaptionLoss.adapter must be 'linear' or 'mlp', got {adapter!r}")
        self.caption_lm = caption_lm
        # frozen by default (ARM trains the tokenizer through a frozen LM); an LM built
        # with frozen=False opts into training with the tokenizer
        self.lm_frozen = bool(getattr(caption_lm, "frozen", True))
        if self.lm_frozen:
            caption_lm.requires_grad_(False)
            caption_lm.eval()
        self.source = source
        self.in_dim = int(in_dim)
        self.pooling = PrefixPooling(self.in_dim, prefix_pooling, prefix_pool, prefix_queries, prefix_heads)
        hidden = int(caption_lm.hidden_size)
        if adapter == "linear":
            self.adapter: nn.Module = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden))
        else:
            self.adapter = nn.Sequential(
                nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden)
            )
        self.initialized_from_teacher = False
        if init_from_teacher and adapter == "linear":
            self._init_from_teacher()

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        # deferred: the teacher imports timm (seconds), needed only to build an example
        from arm_tokenizer.teachers.frozen import TeacherCaptionLM

        return {"caption_lm": TeacherCaptionLM(**TeacherCaptionLM.example_args()), "in_dim": 8}

    def _init_from_teacher(self) -> None:
        theirs_mod = getattr(self.caption_lm, "prefix_adapter", None)
        if not isinstance(theirs_mod, nn.Module):
            return
        own, theirs = self.adapter.state_dict(), theirs_mod.state_dict()
        if own.keys() != theirs.keys() or any(own[k].shape != theirs[k].shape for k in own):
            return
        self.adapter.load_state_dict(theirs)
        self.initialized_from_teacher = True

    def train(self, mode: bool = True) -> CaptionLoss:
        super().train(mode)
        if self.lm_frozen:
            self.caption_lm.eval()  # frozen teacher: never in training mode
        return self

    def prefix(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """``(B, N, C)`` token features on the token ``grid`` (None: square) -> ``(B, N',
        hidden_size)`` LM prefix, N' = N after ``prefix_pooling``."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.in_dim:
            raise ValueError(
                f"CaptionLoss expects {self.source} of shape (B, N, {self.in_dim}); got "
                f"{tuple(tokens.shape)} (set in_dim to the tokenizer's feature width)"
            )
        n = tokens.shape[1]
        limit = getattr(self.caption_lm, "max_prefix", None)
        if limit is not None and self.pooling.output_length(n, grid) > limit:
            raise ValueError(
                f"CaptionLoss: a prefix of {n} tokens (prefix_pooling {self.pooling.mode!r}) exceeds the caption "
                f"LM {type(self.caption_lm).__name__}'s max_prefix {limit}; set prefix_pooling: avg with "
                f"prefix_pool: {_pool_for(n, int(limit))} or prefix_pooling: resampler with prefix_queries <= {limit}"
            )
        return self.adapter(self.pooling(tokens, grid))

    def forward(self, inputs: LossInputs) -> LossOutput:
        if inputs.captions is None:
            raise ValueError("CaptionLoss needs captions: the batch has no 'captions' key")
        tokens = inputs.features if self.source == "features" else inputs.quantized
        if len(inputs.captions) != tokens.shape[0]:
            raise ValueError(
                f"CaptionLoss: {len(inputs.captions)} captions for a batch of {tokens.shape[0]} images"
            )
        loss = self.caption_lm.caption_loss(self.prefix(tokens, inputs.grid), list(inputs.captions))
        return LossOutput(loss=loss, logs={"ppl": loss.detach().exp()})


def _pool_for(n: int, limit: int) -> int:
    """The smallest avg-pooling stride that brings a square-ish grid of ``n`` tokens to ``limit``."""
    k = 1
    while (n + k * k - 1) // (k * k) > limit:
        k += 1
    return k

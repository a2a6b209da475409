"""Interfaces of the frozen teachers the semantic losses use.

ARM trains its tokenizer against a frozen SigLIP2 text encoder (L_sig) and a frozen LLM
that captions the image from the quantized tokens (L_cap). These interfaces let any model
serve: the small teachers arm-tokenizer trains on ShapesWorld, a real SigLIP2/Qwen where
the weights exist, or arm-core's LM (registered by arm-core as a ``caption_lm``;
arm-tokenizer never imports arm-core).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from arm_tokenizer.framework.configurable import Configurable


class TextEncoder(Configurable, nn.Module):
    """Base class of ``arm.text_encoders``: texts -> L2-normalized embeddings ``(B, embed_dim)``."""

    embed_dim: int

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError


def cached_text_embeddings(cache: OrderedDict[str, torch.Tensor], texts: list[str],
                           encode: Callable[[list[str]], torch.Tensor], cache_size: int,
                           device: torch.device) -> torch.Tensor:
    """Embeddings of ``texts`` from a frozen text tower, through an LRU ``cache`` of at most
    ``cache_size`` texts: each new text is encoded once, without gradient (captions repeat
    across a run, so the tower mostly runs on the few it has not seen)."""
    todo = sorted({t for t in texts if t not in cache})
    if todo:
        with torch.no_grad():
            for text, emb in zip(todo, encode(todo), strict=True):
                cache[text] = emb.detach()
    out = torch.stack([cache[t].to(device) for t in texts])
    for t in texts:
        cache.move_to_end(t)
    while len(cache) > cache_size:
        cache.popitem(last=False)
    return out


class CaptionLM(Configurable, nn.Module):
    """Base class of ``arm.caption_lms``: a language model that takes a prefix of visual
    embeddings ``(B, N, hidden_size)`` and returns the mean token NLL of the captions.

    ``max_prefix``: the longest prefix the LM takes (None: no limit of its own);
    :class:`~arm_tokenizer.losses.caption.CaptionLoss` checks it and names the pooling
    that fits. ``frozen`` (default True): the loss freezes the LM unless it says False.
    """

    hidden_size: int
    max_prefix: int | None = None
    frozen: bool = True

    def caption_loss(self, prefix: torch.Tensor, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

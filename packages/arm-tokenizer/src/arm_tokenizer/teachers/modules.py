"""The networks of the small ShapesWorld teachers.

- the **image tower** is any timm model returning patch tokens (:func:`build_image_tower`;
  default a 3-block ViT of width 128 with 8-pixel patches at 64 px, no class token, so its
  ``forward_features`` is exactly the ``(B, 64, 128)`` patch grid the tokenizer's
  ``TimmEncoder`` reads). Inputs are images in ``[-1, 1]``, normalized with the timm
  model's pretrained-config mean/std, as ``TimmEncoder`` does;
- :class:`TextTower`: a small pre-norm transformer over sentencepiece ids, mean-pooled over
  the non-pad tokens and projected to the joint embedding (SigLIP's text side);
- :class:`CaptionDecoder`: a small decoder-only LM that reads a prefix of visual embeddings
  (bidirectional among themselves) followed by ``BOS caption`` (causal), and predicts
  ``caption EOS`` — a miniature of ARM's frozen captioning LLM.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from arm_tokenizer.teachers.spm import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "DEFAULT_IMAGE_TOWER",
    "DEFAULT_IMAGE_TOWER_KWARGS",
    "build_image_tower",
    "image_tower_mean_std",
    "normalize_images",
    "TextTower",
    "CaptionDecoder",
]

DEFAULT_IMAGE_TOWER = "vit_tiny_patch16_224"
DEFAULT_IMAGE_TOWER_KWARGS: dict[str, Any] = {
    "img_size": 64, "patch_size": 8, "embed_dim": 128, "depth": 3, "num_heads": 4,
    "class_token": False, "global_pool": "",
}


def build_image_tower(model_name: str, model_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A randomly initialised timm model (``pretrained=False``) with ``model_kwargs``."""
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault("num_classes", 0)
    try:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    except RuntimeError as err:  # timm's "Unknown model" is a RuntimeError
        raise ValueError(f"image tower: timm cannot build {model_name!r} with {kwargs}: {err}") from err


def image_tower_mean_std(model: nn.Module) -> tuple[list[float], list[float]]:
    """The normalization of the model's pretrained config (what ``TimmEncoder`` applies)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = list(cfg.get("mean", (0.5, 0.5, 0.5)))
    std = list(cfg.get("std", (0.5, 0.5, 0.5)))
    return [float(m) for m in mean], [float(s) for s in std]


def normalize_images(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """Images in ``[-1, 1]`` -> ``(x01 - mean) / std`` as the backbone expects."""
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return ((images + 1.0) * 0.5 - m) / s


def patch_tokens(model: nn.Module, images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, N, C)`` patch tokens (prefix tokens dropped)."""
    feats = model.forward_features(normalize_images(images, mean, std))
    if feats.ndim == 4:  # ConvNets: (B, C, h, w) -> (B, h*w, C)
        feats = feats.flatten(2).transpose(1, 2)
    n_prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    return feats[:, n_prefix:] if n_prefix else feats


def _encoder_stack(dim: int, depth: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=dim, nhead=heads, dim_feedforward=4 * dim, dropout=dropout, activation="gelu",
        batch_first=True, norm_first=True,
    )
    # nested tensors are off: the same input gives the same output in train and eval paths
    return nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)


class TextTower(nn.Module):
    """Text side of the dual encoder: ids ``(B, L)`` -> embeddings ``(B, embed_dim)``.

    Args:
        vocab_size: rows of the token embedding (>= the sentencepiece vocabulary).
        dim: transformer width.
        depth: transformer blocks.
        heads: attention heads.
        max_len: maximum ids per text (BOS/EOS excluded; longer texts are truncated).
        embed_dim: joint embedding width.
    """

    def __init__(self, vocab_size: int = 256, dim: int = 128, depth: int = 2, heads: int = 4,
                 max_len: int = 32, embed_dim: int = 128) -> None:
        super().__init__()
        self.vocab_size, self.max_len, self.embed_dim = vocab_size, max_len, embed_dim
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.blocks = _encoder_stack(dim, depth, heads, 0.0)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, embed_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` ids (``PAD_ID`` padded) -> ``(B, embed_dim)`` L2-normalized."""
        if ids.shape[1] > self.max_len:
            raise ValueError(f"TextTower: {ids.shape[1]} ids exceed max_len {self.max_len}")
        if int(ids.max()) >= self.vocab_size:
            raise ValueError(f"TextTower: id {int(ids.max())} >= vocab_size {self.vocab_size}")
        pad = ids == PAD_ID
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]
        x = self.norm(self.blocks(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return F.normalize(self.proj(pooled), dim=-1)


class CaptionDecoder(nn.Module):
    """A prefix LM: visual prefix ``(B, P, dim)`` + ``BOS caption`` -> next-token logits.

    Args:
        vocab_size: output vocabulary (>= the sentencepiece vocabulary).
        dim: hidden size (the ``CaptionLM.hidden_size`` the prefix must have).
        depth: transformer blocks.
        heads: attention heads.
        max_len: maximum caption ids (BOS/EOS included).
        max_prefix: maximum prefix length (visual tokens).
    """

    def __init__(self, vocab_size: int = 256, dim: int = 128, depth: int = 2, heads: int = 4,
                 max_len: int = 32, max_prefix: int = 256) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.max_len, self.max_prefix = vocab_size, dim, max_len, max_prefix
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos_text = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.pos_prefix = nn.Parameter(torch.randn(1, max_prefix, dim) * 0.02)
        self.blocks = _encoder_stack(dim, depth, heads, 0.0)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)

    @staticmethod
    def attention_mask(prefix_len: int, text_len: int, device: torch.device) -> torch.Tensor:
        """Bool ``(P+T, P+T)``, True = blocked: the prefix sees itself, text is causal."""
        n = prefix_len + text_len
        blocked = torch.ones(n, n, dtype=torch.bool, device=device).triu(1)
        blocked[:prefix_len, :prefix_len] = False
        return blocked

    def forward(self, prefix: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, vocab)`` at the text positions of ``[prefix; ids]``."""
        b, p, d = prefix.shape
        if d != self.dim:
            raise ValueError(f"CaptionDecoder: prefix width {d} != hidden size {self.dim}")
        if p > self.max_prefix:
            raise ValueError(f"CaptionDecoder: prefix of {p} tokens exceeds max_prefix {self.max_prefix}")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"CaptionDecoder: {ids.shape[1]} ids exceed max_len {self.max_len}")
        t = ids.shape[1]
        x = torch.cat([prefix + self.pos_prefix[:, :p], self.tok(ids) + self.pos_text[:, :t]], dim=1)
        x = self.norm(self.blocks(x, mask=self.attention_mask(p, t, prefix.device)))
        return self.head(x[:, p:])

    def nll(self, prefix: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
        """Mean NLL of ``caption EOS`` given the prefix; ``caption_ids`` are ``(B, L)`` ids
        *without* BOS/EOS, ``PAD_ID`` padded."""
        b = caption_ids.shape[0]
        lengths = (caption_ids != PAD_ID).sum(1)
        bos = torch.full((b, 1), BOS_ID, dtype=torch.long, device=caption_ids.device)
        inp = torch.cat([bos, caption_ids], dim=1)  # BOS c1 .. cL
        target = torch.cat([caption_ids, torch.full_like(bos, PAD_ID)], dim=1)
        target[torch.arange(b), lengths] = EOS_ID  # c1 .. cL EOS
        logits = self(prefix, inp)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                               ignore_index=PAD_ID)

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, max_new_tokens: int = 24,
                 vocab_limit: int | None = None) -> list[list[int]]:
        """Greedy decoding (no KV cache: captions are a few tokens); ids without BOS/EOS.
        ``vocab_limit``: only ids below it are produced (the tokenizer's real vocabulary)."""
        b = prefix.shape[0]
        ids = torch.full((b, 1), BOS_ID, dtype=torch.long, device=prefix.device)
        done = torch.zeros(b, dtype=torch.bool, device=prefix.device)
        for _ in range(min(max_new_tokens, self.max_len - 1)):
            logits = self(prefix, ids)[:, -1]
            if vocab_limit is not None:
                logits[:, vocab_limit:] = float("-inf")
            logits[:, PAD_ID] = float("-inf")
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == EOS_ID
            if bool(done.all()):
                break
        return [[int(i) for i in row[1:] if int(i) not in (PAD_ID, EOS_ID, BOS_ID)]
                for row in ids.cpu()]

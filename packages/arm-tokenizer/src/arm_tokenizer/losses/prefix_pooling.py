"""Shortening the visual prefix L_cap feeds a caption LM: grid average pooling or a resampler.

ARM's tokenizer (arXiv 2606.11188) has a 32x32 = 1,024-token grid at 512 px, and L_cap
reads it as a prefix of a frozen Qwen2.5-0.5B. A full-length prefix works with
``hf_causal_lm`` but costs memory (about 1 GB of saved activations per image at bf16,
see :mod:`arm_tokenizer.teachers.hf_causal_lm`), and the small ShapesWorld teacher
(``teacher_caption_lm``) has learned positions for at most ``max_prefix`` (256) tokens. So
:class:`~arm_tokenizer.losses.caption.CaptionLoss` can shorten the prefix before its adapter:

- ``none``: every token (N = h*w).
- ``avg``: k x k average pooling on the token grid (``prefix_pool`` = k), order kept
  row-major; (h, w) -> (ceil(h/k), ceil(w/k)), a partial window at the border averages
  the tokens it covers. 32x32 with k=2 -> 16x16 = 256 tokens; k=4 -> 64.
- ``resampler``: ``prefix_queries`` learned queries read all N tokens through one
  cross-attention block (Perceiver / Flamingo resampler style) with a fixed 2-D sin-cos
  position code added to the keys, so the grid layout survives; any grid -> Q tokens.

Pooling happens in the token-feature width (before the adapter to the LM width), where
it is cheapest; gradients flow through both to every token.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PrefixPooling", "PREFIX_POOLINGS", "pooled_length", "sincos_2d"]

PREFIX_POOLINGS = ("none", "avg", "resampler")


def pooled_length(mode: str, n: int, grid: tuple[int, int], pool: int = 2, queries: int = 64) -> int:
    """Prefix length after pooling ``n`` tokens laid out on ``grid`` (the documented rule)."""
    if mode == "none":
        return n
    if mode == "avg":
        return math.ceil(grid[0] / pool) * math.ceil(grid[1] / pool)
    if mode == "resampler":
        return queries
    raise ValueError(f"prefix pooling must be one of {', '.join(PREFIX_POOLINGS)}, got {mode!r}")


def sincos_2d(h: int, w: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sin-cos position code ``(h*w, dim)`` (row-major); widths not divisible by 4
    are zero-padded at the end."""
    q = dim // 4
    out = torch.zeros(h * w, dim, device=device)
    if q == 0:
        return out
    freq = 1.0 / (10000 ** (torch.arange(q, device=device, dtype=torch.float32) / q))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    ay, ax = ys.reshape(-1, 1) * freq, xs.reshape(-1, 1) * freq
    out[:, : 4 * q] = torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)
    return out


def _grid_of(n: int, grid: tuple[int, int] | None, where: str) -> tuple[int, int]:
    if grid is None:
        r = math.isqrt(n)
        if r * r != n:
            raise ValueError(f"{where}: {n} tokens are not a square grid; pass the token grid (h, w)")
        return r, r
    h, w = int(grid[0]), int(grid[1])
    if h * w != n:
        raise ValueError(f"{where}: {n} tokens do not fill the token grid {h}x{w}")
    return h, w


class PrefixPooling(nn.Module):
    """Shorten ``(B, N, C)`` token features laid out on an ``(h, w)`` grid (module docstring).

    Args:
        dim: token width C.
        mode: ``none``, ``avg`` or ``resampler``.
        pool: window and stride k of ``avg``.
        queries: number of learned queries (= prefix length) of ``resampler``.
        heads: attention heads of ``resampler`` (must divide ``dim``).
    """

    def __init__(self, dim: int, mode: Literal["none", "avg", "resampler"] = "none", pool: int = 2,
                 queries: int = 64, heads: int = 8) -> None:
        super().__init__()
        if mode not in PREFIX_POOLINGS:
            raise ValueError(f"prefix_pooling must be one of {', '.join(PREFIX_POOLINGS)}, got {mode!r}")
        if mode == "avg" and int(pool) < 1:
            raise ValueError(f"prefix_pool must be >= 1 for avg pooling, got {pool}")
        if mode == "resampler":
            if int(queries) < 1:
                raise ValueError(f"prefix_queries must be >= 1 for the resampler, got {queries}")
            if int(heads) < 1 or dim % int(heads):
                raise ValueError(f"prefix_heads={heads} must divide the token width in_dim={dim} for the resampler")
        self.dim, self.mode, self.pool, self.queries, self.heads = int(dim), mode, int(pool), int(queries), int(heads)
        if mode == "resampler":
            self.latents = nn.Parameter(torch.randn(self.queries, self.dim) * 0.02)
            self.norm_q = nn.LayerNorm(self.dim)
            self.norm_kv = nn.LayerNorm(self.dim)
            self.attn = nn.MultiheadAttention(self.dim, self.heads, batch_first=True)
            self.mlp = nn.Sequential(nn.LayerNorm(self.dim), nn.Linear(self.dim, 4 * self.dim), nn.GELU(),
                                     nn.Linear(4 * self.dim, self.dim))

    def output_length(self, n: int, grid: tuple[int, int] | None = None) -> int:
        """Prefix length for ``n`` input tokens on ``grid``."""
        if self.mode == "none":
            return n
        return pooled_length(self.mode, n, _grid_of(n, grid, "PrefixPooling"), self.pool, self.queries)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """``(B, N, C)`` -> ``(B, N', C)``; ``grid`` is the token grid (None: square)."""
        if self.mode == "none":
            return tokens
        b, n, c = tokens.shape
        h, w = _grid_of(n, grid, f"prefix_pooling {self.mode!r}")
        if self.mode == "avg":
            fmap = tokens.transpose(1, 2).reshape(b, c, h, w)
            # ceil_mode without padding: a border window averages only the tokens it covers
            pooled = F.avg_pool2d(fmap, self.pool, self.pool, ceil_mode=True)
            return pooled.flatten(2).transpose(1, 2)
        kv = self.norm_kv(tokens) + sincos_2d(h, w, c, tokens.device).to(tokens.dtype)
        q = self.latents.unsqueeze(0).expand(b, -1, -1)
        x = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]
        return x + self.mlp(x)

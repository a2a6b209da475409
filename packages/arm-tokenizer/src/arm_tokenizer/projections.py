"""Projections between the encoder width and the quantizer's code width (``arm.projections``).

ARM puts a small transformer (reported as 6 blocks) between the frozen SigLIP2 encoder and
FSQ, and a symmetric one after it back to the SigLIP2 width (DESIGN.md, "What the paper
specifies"), so the encoder width (768/1152) and the code width (16 for FSQ 2^16) are
independent. Three registered choices, all mapping ``(B, N, in_dim) -> (B, N, out_dim)``:

- ``linear``: one ``nn.Linear``;
- ``mlp``: Linear -> GELU -> ... -> Linear (``depth`` linear layers);
- ``transformer``: in-linear to ``width``, ``depth`` pre-norm transformer blocks
  (self-attention over the N tokens + MLP, both residual), final LayerNorm, out-linear.
  Attention uses ``F.scaled_dot_product_attention`` (compile-friendly); learned position
  embeddings are optional (``max_tokens``) since encoder features already carry positions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arm_tokenizer.framework.configurable import Configurable

__all__ = ["Projection", "LinearProjection", "MLPProjection", "TransformerProjection"]


class Projection(Configurable, nn.Module):
    """Base class of ``arm.projections``: ``(B, N, in_dim) -> (B, N, out_dim)``.

    Subclasses set ``in_dim`` and ``out_dim`` and implement :meth:`forward`.
    """

    in_dim: int
    out_dim: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"{type(self).__name__} expects (B, N, {self.in_dim}) features, got {tuple(x.shape)}"
            )


class LinearProjection(Projection):
    """A single linear map.

    Args:
        in_dim: input width (the encoder's ``out_dim`` or the code width).
        out_dim: output width.
        bias: add a bias term.
    """

    def __init__(self, in_dim: int = 32, out_dim: int = 8, bias: bool = True) -> None:
        super().__init__()
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.linear = nn.Linear(self.in_dim, self.out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MLPProjection(Projection):
    """An MLP: ``depth`` linear layers with GELU in between.

    Args:
        in_dim: input width.
        out_dim: output width.
        hidden_dim: width of the hidden layers; None = ``max(in_dim, out_dim)``.
        depth: number of linear layers (>= 1; 1 is a linear projection).
        norm: LayerNorm the input first (useful on raw encoder features).
    """

    def __init__(self, in_dim: int = 32, out_dim: int = 8, hidden_dim: int | None = None,
                 depth: int = 2, norm: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"MLPProjection depth must be >= 1, got {depth}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        hidden = int(hidden_dim or max(in_dim, out_dim))
        dims = [self.in_dim] + [hidden] * (depth - 1) + [self.out_dim]
        layers: list[nn.Module] = [nn.LayerNorm(self.in_dim)] if norm else []
        for i in range(depth):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < depth - 1:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class TransformerProjection(Projection):
    """In-linear -> ``depth`` pre-norm transformer blocks -> LayerNorm -> out-linear (ARM's projection).

    Args:
        in_dim: input width (e.g. 768 for SigLIP2-base, 1152 for SO400M).
        out_dim: output width (e.g. 16 for FSQ with 16 dimensions).
        width: the blocks' hidden width.
        depth: number of transformer blocks (ARM reports 6).
        heads: attention heads (``width`` must be divisible by it).
        mlp_ratio: MLP hidden width as a multiple of ``width``.
        dropout: attention dropout during training.
        max_tokens: if > 0, add learned position embeddings for up to this many tokens
            (0 = none; encoder features usually already encode position).
    """

    def __init__(self, in_dim: int = 32, out_dim: int = 8, width: int = 64, depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0, max_tokens: int = 0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"TransformerProjection: width {width} is not divisible by heads {heads}")
        if depth < 0:
            raise ValueError(f"TransformerProjection depth must be >= 0, got {depth}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.proj_in = nn.Linear(self.in_dim, width)
        self.pos = nn.Parameter(torch.zeros(1, max_tokens, width)) if max_tokens > 0 else None
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, self.out_dim)
        self.apply(_init_weights)
        if self.pos is not None:
            nn.init.normal_(self.pos, std=0.02)

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"in_dim": 12, "out_dim": 6, "width": 16, "depth": 1, "heads": 2, "max_tokens": 16}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        if self.pos is not None:
            if x.shape[1] > self.pos.shape[1]:
                raise ValueError(
                    f"TransformerProjection got {x.shape[1]} tokens but max_tokens={self.pos.shape[1]}"
                )
            x = x + self.pos[:, : x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.proj_out(self.norm(x))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)

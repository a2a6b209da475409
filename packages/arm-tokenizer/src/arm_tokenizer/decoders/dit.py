"""Diffusion-transformer machinery shared by the Pixel DiT and the Latent DiT decoders.

- :class:`DiTBackbone`: a DiT (Peebles & Xie, "Scalable Diffusion Models with
  Transformers", https://arxiv.org/abs/2212.09748) over any ``(B, C, H, W)`` field
  (pixels or VAE latents) with adaLN-Zero blocks. The tokenizer's de-quantized tokens
  condition it twice: per position (each token is projected and added to the field patch
  it covers; the token map is resized to the DiT's patch grid when the two differ) and
  globally (their mean joins the timestep embedding that drives adaLN).
- :class:`FlowDecoder`: the rectified-flow decoder base. ``forward(x_t, t, features, grid)``
  predicts the velocity ``v = x1 - x0`` at ``x_t = t * x1 + (1 - t) * x0`` (``x1`` = data,
  ``x0`` = Gaussian noise, ``t in [0, 1]``), as ARM trains its Pixel DiT; ``decode``
  integrates ``dx/dt = v`` from noise at ``t = 0`` to data at ``t = 1`` with N Euler steps,
  optionally with classifier-free guidance (the condition is dropped to a learned null
  token with probability ``cond_dropout`` during training; ARM renders with CFG 1.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from arm_tokenizer.decoders.base import Decoder, grid_to_map, map_to_grid


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of ``t in [0, 1]`` (scaled by 1000 like DDPM steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def sincos_2d(h: int, w: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(h*w, dim)`` (MAE / DiT style)."""
    if dim % 4:
        raise ValueError(f"2-D sincos position embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    out_y = ys.reshape(-1, 1) * omega[None]
    out_x = xs.reshape(-1, 1) * omega[None]
    return torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: the conditioning vector regresses shift, scale
    and a zero-initialised gate for the attention and the MLP branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"DiT hidden_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=-1)
        b, n, d = x.shape
        qkv = self.qkv(_modulate(self.norm1(x), sh1, sc1)).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + g1[:, None] * self.proj(a)
        x = x + g2[:, None] * self.mlp(_modulate(self.norm2(x), sh2, sc2))
        return x


class DiTBackbone(nn.Module):
    """DiT over a ``(B, in_channels, H, W)`` field, conditioned on time and on tokens.

    Args:
        in_channels: channels of the field (3 for pixels, the VAE's latent channels).
        cond_dim: width of the conditioning tokens.
        patch_size: field pixels per DiT patch side.
        hidden_dim, depth, num_heads, mlp_ratio: transformer size.
    """

    def __init__(self, in_channels: int, cond_dim: int, patch_size: int, hidden_dim: int,
                 depth: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        patch_dim = in_channels * patch_size * patch_size
        self.patch_embed = nn.Linear(patch_dim, hidden_dim)
        self.cond_embed = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, hidden_dim))
        self.cond_pool = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, hidden_dim))
        self.time_embed = nn.Sequential(nn.Linear(256, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.blocks = nn.ModuleList([DiTBlock(hidden_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm_out = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 2 * hidden_dim))
        self.out = nn.Linear(hidden_dim, patch_dim)
        # adaLN-Zero: every block starts as the identity. The output layer starts small but not
        # zero (DiT zeroes it), so the tokens receive a gradient from the very first step.
        nn.init.zeros_(self.ada_out[1].weight)
        nn.init.zeros_(self.ada_out[1].bias)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                grid: tuple[int, int]) -> torch.Tensor:
        b, c, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"DiT field {H}x{W} is not a multiple of its patch size {p}")
        gh, gw = H // p, W // p
        patches = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * p * p)
        h = self.patch_embed(patches)
        h = h + sincos_2d(gh, gw, self.hidden_dim, x.device).to(h.dtype)[None]
        # Align the token grid with the DiT patch grid (equal in the default configs).
        cond_tokens = self.cond_embed(cond)
        if (int(grid[0]), int(grid[1])) != (gh, gw):
            cond_tokens = map_to_grid(F.interpolate(grid_to_map(cond_tokens, grid), size=(gh, gw),
                                                    mode="bilinear", align_corners=False))
        h = h + cond_tokens
        vec = self.time_embed(timestep_embedding(t, 256).to(h.dtype)) + self.cond_pool(cond.mean(dim=1))
        for block in self.blocks:
            h = block(h, vec)
        shift, scale = self.ada_out(vec).chunk(2, dim=-1)
        h = self.out(_modulate(self.norm_out(h), shift, scale))
        return h.reshape(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, H, W)


class FlowDecoder(Decoder):
    """Base of the rectified-flow decoders (see the module docstring).

    Subclasses build ``self.backbone`` (a :class:`DiTBackbone`), set ``self.null_cond``
    (a learned ``(in_dim,)`` token used for classifier-free guidance, or None when
    ``cond_dropout == 0``: it would never be trained) and implement
    :meth:`field_shape` and :meth:`from_field`.
    """

    generative = True
    backbone: DiTBackbone
    null_cond: nn.Parameter | None
    cond_dropout: float = 0.0
    sample_steps: int = 25
    cfg_scale: float = 1.0

    def field_shape(self, grid: tuple[int, int]) -> tuple[int, int, int]:
        """``(C, H, W)`` of the field the flow runs on for a token grid."""
        raise NotImplementedError

    def from_field(self, x: torch.Tensor) -> torch.Tensor:
        """The sampled field -> images in [-1, 1]."""
        raise NotImplementedError

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, features: torch.Tensor,
                grid: tuple[int, int]) -> torch.Tensor:
        """Velocity ``(B, C, H, W)`` predicted at ``x_t`` and times ``t`` ``(B,)``.

        In training mode each sample's condition is replaced by the null token with
        probability ``cond_dropout`` (what classifier-free guidance needs)."""
        self.check_features(features, grid)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        if self.training and self.null_cond is not None:
            drop = torch.rand(features.shape[0], 1, 1, device=features.device) < self.cond_dropout
            features = torch.where(drop, self.null_cond.to(features.dtype).expand_as(features), features)
        return self.backbone(x_t, t, features, grid)

    @torch.no_grad()
    def sample_field(self, features: torch.Tensor, grid: tuple[int, int], steps: int | None = None,
                     cfg_scale: float | None = None, generator: torch.Generator | None = None,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate the flow from noise (t=0) to data (t=1) with ``steps`` Euler steps."""
        steps = int(self.sample_steps if steps is None else steps)
        cfg = float(self.cfg_scale if cfg_scale is None else cfg_scale)
        if steps < 1:
            raise ValueError(f"{type(self).__name__}.decode: steps must be >= 1, got {steps}")
        self.check_features(features, grid)
        if cfg != 1.0 and self.null_cond is None:
            raise ValueError(f"{type(self).__name__}: cfg_scale={cfg} needs a null condition trained with "
                             "cond_dropout > 0; this decoder has cond_dropout=0, so use cfg_scale=1.0")
        b = features.shape[0]
        shape = (b, *self.field_shape(grid))
        if noise is None:
            gen_device = generator.device if generator is not None else features.device
            x = torch.randn(shape, generator=generator, device=gen_device, dtype=features.dtype).to(features.device)
        else:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
            x = noise.to(features)
        dt = 1.0 / steps
        for i in range(steps):
            t = torch.full((b,), i * dt, device=features.device, dtype=features.dtype)
            if cfg != 1.0:
                null = self.null_cond.to(features.dtype).expand_as(features)
                v_c, v_u = self.backbone(torch.cat([x, x]), torch.cat([t, t]),
                                         torch.cat([features, null]), grid).chunk(2)
                v = v_u + cfg * (v_c - v_u)
            else:
                v = self.backbone(x, t, features, grid)
            x = x + dt * v
        return x

    @torch.no_grad()
    def decode(self, features: torch.Tensor, grid: tuple[int, int], steps: int | None = None,
               cfg_scale: float | None = None, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Sample images ``(B, 3, H, W)`` in [-1, 1] given the tokens.

        Args:
            features: de-quantized tokens ``(B, h*w, in_dim)``.
            grid: the token grid ``(h, w)``.
            steps: Euler steps (default: the decoder's ``sample_steps``).
            cfg_scale: classifier-free guidance scale (1.0 = none; default: ``cfg_scale``).
            generator: RNG for the initial noise (reproducible decoding).
            noise: explicit initial noise of the field's shape (overrides ``generator``).
        """
        x = self.sample_field(features, grid, steps=steps, cfg_scale=cfg_scale,
                              generator=generator, noise=noise)
        return self.from_field(x).clamp(-1.0, 1.0)

    def last_layer(self) -> torch.Tensor:
        return self.backbone.out.weight


def check_cfg_args(owner: str, cond_dropout: float, cfg_scale: float) -> None:
    """Constructor checks shared by the flow decoders."""
    if not 0.0 <= cond_dropout < 1.0:
        raise ValueError(f"{owner}: cond_dropout must be in [0, 1), got {cond_dropout}")
    if cfg_scale != 1.0 and cond_dropout == 0.0:
        raise ValueError(f"{owner}: cfg_scale={cfg_scale} needs cond_dropout > 0 (the null condition "
                         "classifier-free guidance uses is only learned by dropping the tokens)")

"""Sampling from next-token logits without host syncs: guidance, temperature, top-k, top-p.

Everything here is tensor ops on ``(B, V)`` logits, so it can run inside a compiled decode
loop. Randomness enters only as uniform noise drawn *outside* (from a seeded
``torch.Generator``) and is turned into a sample with the Gumbel-max trick:
``argmax(l + g)``, ``g = -log(-log(u))``, draws exactly from ``softmax(l)`` (Gumbel 1954;
see e.g. Maddison et al. 2014), and ``-inf`` entries (top-k/top-p/constraint masks) are
never drawn.

Classifier-free guidance in logit space (Ho & Salimans 2022; LlamaGen does the same for AR
image models), with the conditional branches stacked in one batch:

- text-to-image, two branches ``[cond, uncond]``:
  ``l = l_u + s·(l_c − l_u)``  (``s = 1`` is no guidance);
- editing, three branches ``[full, image, uncond]`` (full = source image + instruction,
  image = source image without the instruction, uncond = neither), InstructPix2Pix-style
  (Brooks et al. 2023, arXiv 2211.09800):
  ``l = l_u + s_img·(l_img − l_u) + s_txt·(l_full − l_img)``; ARM's defaults are
  ``s_txt = 1.5``, ``s_img = 1.25``; ``s_txt = s_img = 1`` gives ``l_full``.

The log-probability reported for a sampled token is taken from the *same* distribution it
was drawn from: ``log_softmax`` of the guided, constrained, temperature-scaled and
top-k/top-p-truncated logits. For greedy decoding (temperature 0) it is taken from the
guided, constrained logits at temperature 1 (untruncated).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SamplingParams", "combine_guidance", "truncate_logits", "gumbel_noise",
           "sampling_logprobs", "sample_with_logprobs"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token.

    Args:
        temperature: Softmax temperature; ``0`` means greedy (argmax).
        top_k: Keep the ``k`` highest logits (``None``: all).
        top_p: Nucleus sampling: keep the smallest set of ids whose probability mass
            reaches ``top_p`` (``1.0``: all).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def combine_guidance(logits: Tensor, n_branches: int, scale: float = 1.0,
                     image_scale: float = 1.0) -> Tensor:
    """Guided logits ``(B, V)`` from branch-stacked logits ``(n_branches·B, V)``.

    ``n_branches`` 1: unchanged; 2 (``[cond; uncond]``): ``l_u + scale·(l_c − l_u)``;
    3 (``[full; image; uncond]``): ``l_u + image_scale·(l_img − l_u) + scale·(l_full − l_img)``.
    """
    if n_branches == 1:
        return logits
    if n_branches == 2:
        c, u = logits.chunk(2)
        return u + scale * (c - u)
    if n_branches == 3:
        full, img, u = logits.chunk(3)
        return u + image_scale * (img - u) + scale * (full - img)
    raise ValueError(f"guidance supports 1, 2 or 3 branches, got {n_branches}")


def truncate_logits(logits: Tensor, top_k: int | None, top_p: float) -> Tensor:
    """Set logits outside the top-k / nucleus to ``-inf`` (``(B, V)``, no host syncs)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop an id when the mass *before* it already reaches top_p (the top id is kept)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None,
                 device: torch.device | str) -> Tensor:
    """Uniform(0, 1) noise ``shape`` drawn from ``generator`` (on its device)."""
    gen_device = generator.device if generator is not None else torch.device(device)
    u = torch.rand(shape, generator=generator, device=gen_device)
    return u.to(device)


def sampling_logprobs(logits: Tensor, params: SamplingParams) -> Tensor:
    """Log-probabilities ``(..., V)`` of the distribution tokens are drawn from: logits
    divided by the temperature, truncated by top-k/top-p (greedy: the logits at
    temperature 1, untruncated)."""
    logits = logits.float()
    if params.greedy:
        return logits.log_softmax(-1)
    return truncate_logits(logits / params.temperature, params.top_k, params.top_p).log_softmax(-1)


def sample_with_logprobs(logits: Tensor, params: SamplingParams,
                         uniform: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Pick tokens ``(B,)`` from final (guided, constrained) logits ``(B, V)`` and return
    their log-probabilities ``(B,)`` under the distribution they were drawn from.

    ``uniform`` ``(B, V)`` in (0, 1) is the randomness (unused when greedy).
    """
    logp = sampling_logprobs(logits, params)
    if params.greedy:
        tokens = logp.argmax(-1)
    else:
        eps = torch.finfo(torch.float32).tiny
        g = -torch.log(-torch.log(uniform.clamp(eps, 1.0 - 1e-7)))
        tokens = (logp + g).argmax(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)

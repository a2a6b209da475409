"""Binary sign quantization: each of ``dim`` channels becomes one bit.

The same code space as lookup-free quantization (LFQ, Yu et al. 2023, "Language Model
Beats Diffusion", https://arxiv.org/abs/2310.05737) without its entropy loss: a token is
``sign(x) * scale`` per channel, its index the bits read as a binary number, so the
codebook has ``2 ** dim`` codes and no parameters. Gradients pass straight through.
"""

from __future__ import annotations

import torch

from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput


class SignQuantizer(Quantizer):
    """Quantize each channel to ``±scale``.

    Args:
        dim: channels per token; the codebook has ``2 ** dim`` codes (keep it ≤ 20).
        scale: the magnitude of a code's entries.
        commitment_weight: weight of ``mean((x - sg(q))^2)``, pulling inputs toward codes.
    """

    def __init__(self, dim: int = 10, scale: float = 1.0, commitment_weight: float = 0.1) -> None:
        super().__init__()
        if not 1 <= dim <= 20:
            raise ValueError(f"SignQuantizer: dim must be in [1, 20] (2**dim codes), got {dim}")
        self.dim = dim
        self.codebook_size = 2**dim
        self.scale = scale
        self.commitment_weight = commitment_weight
        self.register_buffer("bits", 2 ** torch.arange(dim - 1, -1, -1), persistent=False)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        if x.shape[-1] != self.dim:
            raise ValueError(f"SignQuantizer expects (B, N, {self.dim}) inputs, got {tuple(x.shape)}")
        hard = torch.where(x > 0, self.scale, -self.scale).to(x.dtype)
        quantized = x + (hard - x).detach()  # straight-through estimator
        indices = ((x > 0).long() * self.bits).sum(-1)
        aux = self.commitment_weight * (x - hard.detach()).pow(2).mean()
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size).float()
        probs = counts / counts.sum().clamp_min(1)
        perplexity = torch.exp(-(probs * probs.clamp_min(1e-10).log()).sum())
        return QuantizerOutput(quantized, indices, aux, {"perplexity": perplexity.detach()})

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        self.check_indices(indices)
        bits = (indices.unsqueeze(-1) // self.bits) % 2
        return (bits.float() * 2 - 1) * self.scale

    @classmethod
    def example_args(cls) -> dict:
        return {"dim": 6}

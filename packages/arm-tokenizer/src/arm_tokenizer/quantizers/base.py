"""The quantizer contract: one :class:`QuantizerOutput` for every quantizer.

vector-quantize-pytorch returns tuples of 2, 3 or 4 elements or namedtuples depending on
the class; our adapters translate each into this one type, so the tokenizer, the losses and
the contract tests never care which quantizer is plugged in.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from arm_tokenizer.framework.configurable import Configurable


@dataclass
class QuantizerOutput:
    """What every quantizer returns.

    quantized: ``(B, N, D)`` quantized features (straight-through gradients to the input).
    indices: ``(B, N)`` long codes, or ``(B, N, Q)`` for ``Q`` residual/grouped codebooks.
    aux_loss: scalar auxiliary loss (commitment, entropy...), ``0.`` where there is none;
        the tokenizer adds it to the total automatically.
    stats: extra scalars to log (e.g. ``perplexity``), detached.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Quantizer(Configurable, nn.Module):
    """Base class of ``arm.quantizers``.

    Subclasses set ``dim`` (D, the code width they take), ``codebook_size`` (codes per
    codebook) and ``num_codebooks`` (Q; 1 for a flat codebook) and implement
    :meth:`forward` and :meth:`indices_to_codes`.
    """

    dim: int
    codebook_size: int
    num_codebooks: int = 1

    def forward(self, x: torch.Tensor) -> QuantizerOutput:  # (B, N, D)
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, N, D)`` for indices as returned by :meth:`forward` (round trip)."""
        raise NotImplementedError

    def check_indices(self, indices: torch.Tensor) -> None:
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"token indices must be integers, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"token indices must be in [0, {self.codebook_size}) for {type(self).__name__}; "
                f"got min {int(indices.min())}, max {int(indices.max())}"
            )


def usage_stats(indices: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Detached batch statistics of code usage, averaged over codebooks.

    ``perplexity`` = exp(entropy of the empirical code distribution) (1 = collapse to one
    code, ``codebook_size`` = uniform use); ``usage`` = fraction of codes hit in the batch.
    Negative indices (dropped residual levels) are ignored. Static shapes (scatter into a
    ``codebook_size`` histogram, no ``bincount``) keep it ``torch.compile``-friendly.
    """
    with torch.no_grad():
        idx = indices.detach().long()
        idx = idx.reshape(-1, idx.shape[-1]) if idx.ndim == 3 else idx.reshape(-1, 1)
        valid = idx >= 0
        counts = torch.zeros(idx.shape[1], codebook_size, device=idx.device, dtype=torch.float32)
        counts.scatter_add_(1, idx.clamp(min=0).t(), valid.t().float())
        probs = counts / counts.sum(-1, keepdim=True).clamp(min=1.0)
        entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1)
        return {
            "perplexity": entropy.exp().mean(),
            "usage": (counts > 0).float().mean(),
        }


def check_levels(levels: Any, owner: str, example: str = "[8, 5, 5, 5]", minimum: int = 2) -> list[int]:
    """Validate a per-dimension ``levels`` list; returns it as a list of ints.

    Accepts a list, tuple or other sequence of integers (numpy/torch integer scalars too);
    refuses a string (``"2222"`` or ``"8,5,5"``), bytes, a single number, a dict or a set,
    and entries that are not integers (``8.0``, ``"8"``, ``True``) or are below ``minimum``.

    Raises:
        TypeError: ``levels`` is not a sequence of integers (message names ``owner``,
            the value given and an example).
        ValueError: ``levels`` is empty or an entry is below ``minimum``.
    """
    hint = f"give a list of ints >= {minimum}, one per code dimension, e.g. levels={example}"
    if hasattr(levels, "tolist") and not isinstance(levels, (str, bytes)):  # numpy array / tensor
        levels = levels.tolist()
    if isinstance(levels, (str, bytes, bytearray, Mapping)) or not isinstance(levels, Sequence):
        raise TypeError(f"{owner}: levels must be a list of ints, got {type(levels).__name__} {levels!r}; {hint}")
    out = []
    for i, v in enumerate(levels):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(
                f"{owner}: levels[{i}] is {type(v).__name__} {v!r} (levels={list(levels)!r}), not an int; {hint}"
            )
        if int(v) < minimum:
            raise ValueError(f"{owner}: levels[{i}] = {int(v)} is below {minimum} (levels={list(levels)!r}); {hint}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{owner}: levels is empty ({levels!r}); {hint}")
    return out


def check_int(value: Any, name: str, owner: str, minimum: int, example: int, optional: bool = False) -> int | None:
    """Validate an integer argument (``codebook_size``, ``num_quantizers``, ``dim`` ...).

    ``None`` passes when ``optional``. Strings, floats, bools and sequences are refused.

    Raises:
        TypeError: not an int (message names ``owner``, ``name``, the value and an example).
        ValueError: below ``minimum``.
    """
    if value is None and optional:
        return None
    hint = f"e.g. {name}={example}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int >= {minimum}, got {type(value).__name__} {value!r}; {hint}")
    if int(value) < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {int(value)}; {hint}")
    return int(value)

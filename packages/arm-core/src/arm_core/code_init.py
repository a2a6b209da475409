"""Image-code rows that start from the visual tokenizer's code geometry.

A fresh LM knows nothing about its image codes: each code's embedding row and visual-head
row start as independent noise, and which codes are alike (the same colour, the same edge)
is learned from co-occurrence alone, one code at a time. The tokenizer already knows it:
its quantizer maps each id to a code vector (FSQ: the grid point; VQ: the codebook entry),
and its decoder and semantic heads read everything off those vectors.

:func:`init_code_rows` gives every image row a shared part beside the random one: a fixed
random linear map of the code's standardized vector. Codes that are close in the tokenizer
start close in the LM, so what the LM learns about one code carries over to its neighbours
from the first step. The rows keep their random part (``share`` < 1), so every code stays
distinguishable, and the whole row keeps the init's scale. Only the starting point changes;
the rows train freely afterwards.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["code_vectors", "init_code_rows"]


def code_vectors(tokenizer: Any) -> Tensor:
    """``(K, D)`` float code vector of every id ``0..K-1`` of a single-codebook visual
    tokenizer (``arm_tokenizer.VisualTokenizer`` or anything with ``codebook_size``,
    ``num_codebooks`` and ``quantizer.indices_to_codes``)."""
    if int(getattr(tokenizer, "num_codebooks", 1)) != 1:
        raise ValueError(f"code_vectors: the visual tokenizer has {tokenizer.num_codebooks} "
                         "codebooks; the LM's image ids index one codebook")
    k = int(tokenizer.codebook_size)
    ids = torch.arange(k, device=next(tokenizer.parameters()).device).unsqueeze(0)
    with torch.no_grad():
        vec = tokenizer.quantizer.indices_to_codes(ids)
    return vec.reshape(k, -1).float().cpu()


def init_code_rows(model: Any, vectors: Tensor, share: float = 0.5,
                   generator: torch.Generator | None = None) -> None:
    """Mix a code-geometry part into ``model``'s image-code rows, in place.

    Each image row becomes ``sqrt(1 - share) * row + sqrt(share) * z @ R`` where ``z`` is the
    code's vector standardized per dimension and ``R`` is ``(D, n_embd)`` Gaussian with
    variance ``s**2 / D``, ``s`` the per-element std of the text embedding rows (the init's
    std for a new model; the pretrained scale after ``extend_vocab``). The input embedding
    rows and the visual-head rows (when the model has a separate one) get independent ``R``.

    Args:
        model: an ``arm_core.model.GPT`` with image codes.
        vectors: ``(image_codebook_size, D)`` code vectors (:func:`code_vectors`).
        share: fraction of each row's variance given to the shared part, in ``[0, 1)``.
        generator: RNG for ``R`` (CPU).
    """
    cfg = model.config
    k = int(cfg.image_codebook_size)
    if not k:
        raise ValueError("init_code_rows: the model has no image codes")
    if vectors.ndim != 2 or vectors.shape[0] != k:
        raise ValueError(f"init_code_rows: expected ({k}, D) code vectors for the model's {k} image "
                         f"codes, got shape {tuple(vectors.shape)}: is this the LM's visual tokenizer?")
    if not 0.0 <= share < 1.0:
        raise ValueError(f"init_code_rows: share must be in [0, 1), got {share}")
    z = vectors.float()
    z = (z - z.mean(0)) / z.std(0).clamp_min(1e-6)   # FSQ dims have different level counts
    d = z.shape[1]
    emb = model.embed_tokens.weight.detach()
    n_text = cfg.text_vocab_size          # ids [0, text_vocab_size): the text tokenizer's rows
    scale = float(emb[:n_text].float().std()) if n_text > 1 else cfg.init_std

    def shared() -> Tensor:
        # on the generator's device (CPU by default): under Lightning's init context the
        # default device is the GPU, and a CPU generator cannot draw there
        where = generator.device if generator is not None else torch.device("cpu")
        r = torch.randn(d, cfg.n_embd, generator=generator, device=where) * (scale / math.sqrt(d))
        return z.to(where) @ r

    rows = [emb[cfg.image_offset: cfg.image_offset + k]]   # views: written in place
    if model.visual_head is not None:
        rows.append(model.visual_head.weight.detach())
    with torch.no_grad():
        for w in rows:
            mixed = math.sqrt(1.0 - share) * w.float() + math.sqrt(share) * shared().to(w.device)
            w.copy_(mixed.to(w.dtype))

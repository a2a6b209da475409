"""The SigLIP sigmoid contrastive loss as a plain function, and its caption-match labels.

Zhai et al. 2023 (https://arxiv.org/abs/2303.15343); see :mod:`arm_tokenizer.losses.siglip`
for the formula. Shared by the tokenizer loss :class:`~arm_tokenizer.losses.siglip.SigLIPLoss`
and the teacher trainer (:mod:`arm_tokenizer.teachers.lightning_module`). It lives apart from the loss
class so that the trainer does not import ``losses.siglip``, whose ``example_args`` loads a
toy teacher built by that trainer (that was the package's one import cycle).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["caption_match_labels", "sigmoid_contrastive_loss"]


def caption_match_labels(texts: list[str], dedupe: bool = True) -> torch.Tensor:
    """``(B, B)`` float labels: 1 where pair ``(i, j)`` matches, else 0.

    With ``dedupe`` two images whose captions are the *same string* count as a match: in a
    procedural world ("a red circle") identical captions are common, and scoring them as
    negatives would push identical semantics apart. Without it only the diagonal matches.
    """
    n = len(texts)
    if not dedupe:
        return torch.eye(n)
    norm = [t.strip().lower() for t in texts]
    ids: dict[str, int] = {}
    keys = torch.tensor([ids.setdefault(t, len(ids)) for t in norm])
    return (keys[:, None] == keys[None, :]).float()


def sigmoid_contrastive_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    log_temperature: torch.Tensor,
    bias: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The SigLIP loss for one batch.

    Args:
        image_emb: ``(B, E)`` image embeddings, L2-normalized.
        text_emb: ``(B, E)`` text embeddings, L2-normalized.
        log_temperature: scalar ``t'``; the logit scale is ``exp(t')``.
        bias: scalar ``b``.
        labels: ``(B, B)`` with 1 for positive pairs, 0 for negatives; default identity.

    Returns:
        ``-1/B * sum_ij log sigmoid(z_ij * (exp(t') x_i.y_j + b))`` with ``z = 2 * labels - 1``.
    """
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"sigmoid_contrastive_loss expects image and text embeddings of one shape (B, E); got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    b = image_emb.shape[0]
    if labels is None:
        labels = torch.eye(b, device=image_emb.device, dtype=image_emb.dtype)
    labels = labels.to(device=image_emb.device, dtype=image_emb.dtype)
    logits = image_emb @ text_emb.t() * log_temperature.exp() + bias
    z = 2.0 * labels - 1.0
    return -F.logsigmoid(z * logits).sum() / b

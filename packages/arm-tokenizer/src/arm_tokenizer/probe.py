"""Semantic evaluation of visual tokens: a linear probe and zero-shot caption retrieval.

ARM's claim is that its tokens are *semantic*: the paper measures zero-shot ImageNet
accuracy of the quantized embedding in its loss ablation. On ShapesWorld we measure:

- **Linear probe** (:func:`linear_probe_accuracy`): multinomial logistic regression
  (standardized inputs, L2 penalty, full-batch L-BFGS in torch) on *mean-pooled token
  embeddings*, predicting the color and the shape of single-object scenes.
  The embedding (:func:`pooled_token_embeddings`) is the tokenizer's **de-quantized
  features**: indices -> ``quantizer.indices_to_codes`` -> ``proj_out``, i.e. what
  ``VisualTokenizer.forward(images).features`` returns. They are a deterministic function
  of the discrete indices alone (the encoder output never leaks past FSQ), so the probe
  measures what the *tokens* carry. ``source="codes"`` pools the raw codes instead.
- **Zero-shot retrieval** (:func:`retrieval_at_1`): image -> text R@1 among the N candidate
  captions of the evaluation set, through the frozen text encoder; a hit is a retrieved
  caption whose text equals the image's own caption (duplicates are common in a
  procedural world). The image side is the L_sig head of the tokenizer's ``SigLIPLoss``
  (tokenizers trained without L_sig have no aligned head: reported as ``None``, the
  paper's "0.2%" row), or :func:`ridge_retrieval_at_1`, which fits a ridge map from
  pooled features to text embeddings on the training split (how much text-aligned
  information is linearly present at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "pooled_token_embeddings",
    "fit_linear_probe",
    "linear_probe_accuracy",
    "retrieval_at_1",
    "ridge_retrieval_at_1",
    "labels_to_ids",
]


@torch.no_grad()
def pooled_token_embeddings(
    tokenizer: nn.Module,
    images: torch.Tensor,
    batch_size: int = 64,
    source: Literal["features", "codes"] = "features",
) -> torch.Tensor:
    """``(B, 3, H, W)`` images in [-1, 1] -> ``(B, C)`` mean-pooled token embeddings.

    ``features``: de-quantized token features (``tokenizer(images).features``, a function
    of the indices only); ``codes``: the quantizer's codes (``tokenizer(images).quant.quantized``).
    """
    if source not in ("features", "codes"):
        raise ValueError(f"pooled_token_embeddings: source must be 'features' or 'codes', got {source!r}")
    was_training = tokenizer.training
    tokenizer.eval()
    out = []
    try:
        for i in range(0, images.shape[0], batch_size):
            fwd = tokenizer(images[i : i + batch_size])
            tokens = fwd.features if source == "features" else fwd.quant.quantized
            out.append(tokens.float().mean(1).cpu())
    finally:
        tokenizer.train(was_training)
    return torch.cat(out)


def labels_to_ids(labels: Sequence[str], classes: Sequence[str] | None = None) -> tuple[torch.Tensor, list[str]]:
    """String labels -> ``(long ids, class list)``; classes default to the sorted label set."""
    classes = sorted(set(labels)) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    return torch.tensor([index[x] for x in labels], dtype=torch.long), classes


class _Standardize:
    def __init__(self, x: torch.Tensor) -> None:
        self.mean = x.mean(0, keepdim=True)
        self.std = x.std(0, keepdim=True).clamp_min(1e-6)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def fit_linear_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int | None = None,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Fit multinomial logistic regression; returns ``predict(x) -> logits``.

    Full-batch L-BFGS on standardized features with penalty ``l2 * ||W||^2``
    (deterministic: zero init, no sampling).
    """
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"fit_linear_probe: need x (N, C) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.detach().double()
    k = int(num_classes if num_classes is not None else int(y.max()) + 1)
    norm = _Standardize(x)
    xs = norm(x)
    w = torch.zeros(xs.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_final, b_final = w.detach(), b.detach()
    return lambda z: norm(z.detach().double()) @ w_final + b_final


def linear_probe_accuracy(
    train_x: torch.Tensor,
    train_labels: Sequence[str],
    test_x: torch.Tensor,
    test_labels: Sequence[str],
    l2: float = 1e-3,
    max_iter: int = 200,
) -> float:
    """Accuracy of a linear probe fit on ``(train_x, train_labels)``, evaluated on the test set."""
    classes = sorted(set(train_labels) | set(test_labels))
    ytr, _ = labels_to_ids(train_labels, classes)
    yte, _ = labels_to_ids(test_labels, classes)
    predict = fit_linear_probe(train_x, ytr, len(classes), l2=l2, max_iter=max_iter)
    return float((predict(test_x).argmax(1) == yte).double().mean())


def retrieval_at_1(image_emb: torch.Tensor, text_emb: torch.Tensor, texts: Sequence[str]) -> float:
    """Image -> text R@1: image ``i`` retrieves ``argmax_j sim(i, j)`` among the N captions;
    a hit when ``texts[j] == texts[i]`` (same caption string; ``j == i`` included)."""
    if image_emb.shape[0] != text_emb.shape[0] or text_emb.shape[0] != len(texts):
        raise ValueError(
            f"retrieval_at_1: {image_emb.shape[0]} images, {text_emb.shape[0]} text embeddings and "
            f"{len(texts)} texts must agree"
        )
    sims = F.normalize(image_emb.float(), dim=-1) @ F.normalize(text_emb.float(), dim=-1).t()
    best = sims.argmax(1).tolist()
    norm = [t.strip().lower() for t in texts]
    return sum(norm[j] == norm[i] for i, j in enumerate(best)) / len(best)


def ridge_retrieval_at_1(
    train_x: torch.Tensor,
    train_text_emb: torch.Tensor,
    test_x: torch.Tensor,
    test_text_emb: torch.Tensor,
    test_texts: Sequence[str],
    l2: float = 1e-2,
) -> float:
    """R@1 after a ridge regression from pooled features to text embeddings (fit on train)."""
    norm = _Standardize(train_x.double())
    a = norm(train_x.double())
    a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], 1)
    reg = l2 * a.shape[0] * torch.eye(a.shape[1], dtype=a.dtype)
    w = torch.linalg.solve(a.t() @ a + reg, a.t() @ train_text_emb.double())
    t = norm(test_x.double())
    pred = torch.cat([t, torch.ones(t.shape[0], 1, dtype=t.dtype)], 1) @ w
    return retrieval_at_1(pred, test_text_emb, test_texts)

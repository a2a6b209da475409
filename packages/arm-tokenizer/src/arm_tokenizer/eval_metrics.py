"""The figures of ``arm-tokenizer evaluate`` that are more than a torchmetrics call.

* :func:`codebook_stats`: usage, entropy (bits) and perplexity of the evaluated codes;
* :func:`topk_accuracy`, :func:`retrieval_recall`: zero-shot classification and
  image<->text retrieval from similarity matrices;
* :func:`lpips_metric`, :func:`fid_metric`: the perceptual metrics, built only from weights
  already on this machine. Each returns ``(metric, None)`` or ``(None, reason)``: a figure
  from a random backbone is never reported, and nothing is downloaded (an offline machine
  would otherwise wait for a network timeout).

LPIPS (Zhang et al. 2018, https://arxiv.org/abs/1801.03924) needs torchvision's ImageNet
weights of its backbone in the torch hub cache (:func:`arm_tokenizer.losses.pixel.lpips_backbone_path`).
rFID (Heusel et al. 2017, https://arxiv.org/abs/1706.08500; FID between the originals and
their reconstructions) uses torchmetrics' ``FrechetInceptionDistance``, whose Inception
network is torch-fidelity's: it needs ``torch-fidelity`` installed and its weights file
``weights-inception-2015-12-05-6726825d.pth`` in ``<torch hub dir>/checkpoints`` (where
torch-fidelity's own download would put it) or given by path.
"""

from __future__ import annotations

import importlib.util
import math
import os

import torch

from arm_tokenizer.losses.pixel import LPIPS_NETS, build_lpips, lpips_backbone_path

__all__ = ["FID_WEIGHTS_NAME", "codebook_stats", "topk_accuracy", "retrieval_recall", "lpips_metric",
           "fid_metric", "fid_weights_path"]

FID_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"


def codebook_stats(counts: torch.Tensor) -> dict[str, float | int | list[int]]:
    """Figures of a code histogram ``(Q, K)`` (Q codebooks of K codes; Q = 1 for FSQ).

    ``usage``: fraction of the K codes used at least once; ``entropy_bits``:
    ``-sum p log2 p`` of the code distribution; ``perplexity``: ``2 ** entropy_bits`` (the
    number of equally likely codes with that entropy); ``max_entropy_bits``: ``log2 K``.
    With Q > 1 each figure is the mean over the codebooks.
    """
    counts = counts.double()
    if counts.ndim != 2:
        raise ValueError(f"codebook_stats expects counts (Q, K), got {tuple(counts.shape)}")
    total = counts.sum(-1, keepdim=True)
    p = counts / total.clamp(min=1.0)
    bits = -(p * torch.where(p > 0, p.log2(), torch.zeros_like(p))).sum(-1)
    return {
        "tokens": int(total.sum().item() / counts.shape[0]),
        "codes_used": [int(c) for c in (counts > 0).sum(-1).tolist()],
        "usage": float((counts > 0).double().mean(-1).mean()),
        "entropy_bits": float(bits.mean()),
        "perplexity": float(torch.exp2(bits).mean()),
        "max_entropy_bits": math.log2(counts.shape[1]),
    }


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of rows whose target is among the ``k`` highest logits ``(N, C)``."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == targets[:, None]).any(dim=1).double().mean())


def retrieval_recall(sim: torch.Tensor, match: torch.Tensor, k: int) -> float:
    """Recall@k of queries = rows of ``sim`` ``(Q, G)``: a query counts when one of its ``k``
    most similar gallery items is a match (``match`` ``(Q, G)`` bool)."""
    top = sim.topk(min(k, sim.shape[1]), dim=1).indices
    return float(match.gather(1, top).any(dim=1).double().mean())


def lpips_metric(net: str, device: torch.device):
    """``(lpips module, None)`` when the backbone's weights are local, else ``(None, reason)``."""
    if net not in LPIPS_NETS:
        return None, f"unknown LPIPS network {net!r}; choose from {sorted(LPIPS_NETS)}"
    path = lpips_backbone_path(net)
    if not os.path.isfile(path):
        return None, (f"LPIPS ({net}) needs torchvision's ImageNet weights at {path}; copy {LPIPS_NETS[net]} "
                      "there (or set TORCH_HOME) to report it; nothing is downloaded")
    return build_lpips(net).to(device), None


def fid_weights_path() -> str:
    """Where torch-fidelity caches its Inception weights (torch hub's ``checkpoints``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", FID_WEIGHTS_NAME)


def fid_metric(weights: str | None, device: torch.device):
    """``(FrechetInceptionDistance, None)`` when torch-fidelity and the Inception weights are
    local, else ``(None, reason)``."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return None, ("torchmetrics' FrechetInceptionDistance needs torch-fidelity (pip install torch-fidelity) "
                      f"and its Inception weights {FID_WEIGHTS_NAME}")
    path = weights or fid_weights_path()
    if not os.path.isfile(path):
        return None, (f"Inception weights not found at {path}: copy {FID_WEIGHTS_NAME} there (or set TORCH_HOME), "
                      "or pass --fid-weights FILE; nothing is downloaded")
    # deferred: FID needs the optional torch-fidelity, only with --fid
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=path)
    return metric.to(device), None

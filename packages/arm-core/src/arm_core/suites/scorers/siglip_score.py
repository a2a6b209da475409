"""``siglip_score``: image–text alignment through any transformers dual encoder.

A dual encoder (SigLIP, SigLIP2, CLIP: anything ``AutoModel`` loads with
``get_image_features`` / ``get_text_features``) embeds each generated image and its prompt;
the score is read off the cosine similarity with the model's own head:

- ``sigmoid`` (SigLIP / SigLIP2, Zhai et al. 2023, arXiv 2303.15343):
  ``sigmoid(exp(logit_scale) * cos + logit_bias)``, the model's probability that image
  and text match, in (0, 1);
- ``clip`` (CLIPScore, Hessel et al. 2021, arXiv 2104.08718, as T2I papers report it):
  ``100 * max(cos, 0)``, in [0, 100].

``head: auto`` picks it by the checkpoint's ``model_type`` (:data:`HEADS`, never by a
name's substring). The text of an edit item is its ``record["target_caption"]`` when the
record has one (an instruction such as "make it red" does not describe the result), else
its prompt.

Batched: images in batches of ``batch_size``, each distinct text embedded once (a GenEval
prompt's 4 samples, an RL group's ``G`` rollouts share one text embedding).

Memory: the weights only, in ``dtype`` on ``device`` (``memory_bytes`` once loaded; the
scorer logs it). For orientation: SigLIP2-SO400M/14 at 384 px has about 1.14 B parameters,
2.3 GB in bfloat16 (4.6 GB float32); SigLIP-SO400M about 0.88 B (1.8 GB bf16); CLIP ViT-L/14
0.43 B (0.86 GB bf16). Activations at batch 32 add well under 1 GB at 384 px.

The model is loaded on first use (a config naming it parses without it) and honours
``HF_HUB_OFFLINE`` (:mod:`arm_core.suites.scorers.hf_models`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from arm_core.suites.scorers.base import Scorer, ScoreRecord, ScorerError, SuiteItem
from arm_core.suites.scorers.hf_models import format_bytes, load_model_and_processor, param_bytes

__all__ = ["HEADS", "SiglipScorer"]

log = logging.getLogger(__name__)

#: ``model_type`` -> scoring head (``sigmoid``: SigLIP's calibrated match probability,
#: ``clip``: CLIPScore). Others need ``head`` set explicitly.
HEADS: dict[str, str] = {"siglip": "sigmoid", "siglip2": "sigmoid", "clip": "clip"}


def _features(out: Any) -> Tensor:
    """transformers 5 returns a model output (embedding in ``pooler_output``), 4.x a tensor."""
    if isinstance(out, Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise ScorerError(f"siglip_score: the model's feature method returned {type(out).__name__} "
                          "without pooler_output; is it a dual encoder?")
    return pooled


class SiglipScorer(Scorer):
    """Image–text alignment of a transformers dual encoder (``siglip_score``; see the module docstring).

    Args:
        name_or_path: a local ``save_pretrained`` directory (or a cached Hub id) of a
            SigLIP / SigLIP2 / CLIP dual encoder.
        head: ``auto`` (by ``model_type``), ``sigmoid`` or ``clip``.
        batch_size: images (and texts) per forward.
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (the checkpoint's).
        device: where the model runs (``cpu``, ``cuda:1``, ...).
        text_padding: ``auto`` (``max_length`` for sigmoid heads, as SigLIP was trained;
            ``longest`` for CLIP), ``max_length`` or ``longest``.
        local_files_only: never download; None = only when ``HF_HUB_OFFLINE`` is set.
        name: label in tables and errors.
    """

    metric = "siglip_score"

    def __init__(self, name_or_path: str, head: str = "auto", batch_size: int = 32,
                 dtype: str = "float32", device: str = "cpu", text_padding: str = "auto",
                 local_files_only: bool | None = None, name: str = "siglip_score") -> None:
        super().__init__(name=name, device=device)
        if head not in ("auto", "sigmoid", "clip"):
            raise ScorerError(f"scorer {name!r}: head must be auto, sigmoid or clip, got {head!r}")
        if text_padding not in ("auto", "max_length", "longest"):
            raise ScorerError(f"scorer {name!r}: text_padding must be auto, max_length or longest, "
                              f"got {text_padding!r}")
        if batch_size < 1:
            raise ScorerError(f"scorer {name!r}: batch_size must be >= 1, got {batch_size}")
        self.name_or_path, self.head_option, self.batch_size = name_or_path, head, int(batch_size)
        self.dtype, self.text_padding, self.local_files_only = dtype, text_padding, local_files_only
        self._model: Any = None
        self._processor: Any = None
        self.head: str | None = None

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load the model and processor now (otherwise on the first call)."""
        if self._model is not None:
            return
        model, proc = load_model_and_processor(self.name_or_path, "AutoModel", self.name, dtype=self.dtype,
                                               device=self.device, local_files_only=self.local_files_only)
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise ScorerError(f"scorer {self.name!r}: {self.name_or_path} loads as {type(model).__name__}, "
                              "which is not a dual encoder (no get_image_features/get_text_features)")
        head = self.head_option
        if head == "auto":
            mt = getattr(model.config, "model_type", None)
            if mt not in HEADS:
                raise ScorerError(f"scorer {self.name!r}: no default head for model_type {mt!r} "
                                  f"(known: {sorted(HEADS)}); set head: sigmoid or head: clip")
            head = HEADS[mt]
        if head == "sigmoid" and not hasattr(model, "logit_bias"):
            raise ScorerError(f"scorer {self.name!r}: head 'sigmoid' needs a model with logit_bias "
                              f"(SigLIP); {type(model).__name__} has none, use head: clip")
        self._model, self._processor, self.head = model, proc, head
        log.info("%s: %s (%s head) on %s, weights %s", self.name, self.name_or_path, head, self.device,
                 format_bytes(self.memory_bytes))

    @property
    def memory_bytes(self) -> int:
        """Bytes of the loaded weights (0 before loading)."""
        return 0 if self._model is None else param_bytes(self._model)

    # ------------------------------------------------------------------ scoring
    def _text_inputs(self, texts: list[str]) -> dict[str, Tensor]:
        padding = self.text_padding
        if padding == "auto":
            padding = "max_length" if self.head == "sigmoid" else "longest"
        kw: dict[str, Any] = {"padding": padding, "truncation": True, "return_tensors": "pt"}
        if padding == "max_length":
            kw["max_length"] = int(self._model.config.text_config.max_position_embeddings)
        tok = getattr(self._processor, "tokenizer", self._processor)
        return dict(tok(texts, **kw))

    def _to_model(self, inputs: dict[str, Any]) -> dict[str, Any]:
        dtype = next(self._model.parameters()).dtype
        dev = torch.device(self.device)
        return {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev)) if isinstance(v, Tensor) else v
                for k, v in inputs.items()}

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> Tensor:
        """``(N, E)`` L2-normalised float32 text embeddings."""
        self.load()
        out = []
        for s in range(0, len(texts), self.batch_size):
            inputs = self._to_model(self._text_inputs(texts[s:s + self.batch_size]))
            out.append(F.normalize(_features(self._model.get_text_features(**inputs)).float(), dim=-1))
        return torch.cat(out)

    @torch.no_grad()
    def embed_images(self, images: list[Any]) -> Tensor:
        """``(N, E)`` L2-normalised float32 embeddings of PIL images."""
        self.load()
        proc = getattr(self._processor, "image_processor", self._processor)
        out = []
        for s in range(0, len(images), self.batch_size):
            inputs = self._to_model(dict(proc(images=images[s:s + self.batch_size], return_tensors="pt")))
            out.append(F.normalize(_features(self._model.get_image_features(**inputs)).float(), dim=-1))
        return torch.cat(out)

    def score_pairs(self, images: list[Any], texts: list[str]) -> Tensor:
        """``(N,)`` scores of ``N`` (PIL image, text) pairs, on the CPU."""
        if len(images) != len(texts):
            raise ScorerError(f"scorer {self.name!r}: {len(images)} images for {len(texts)} texts")
        if not images:
            return torch.zeros(0)
        unique = list(dict.fromkeys(texts))
        txt = self.embed_texts(unique)
        txt = txt[torch.tensor([unique.index(t) for t in texts])]
        img = self.embed_images(images)
        cos = (img * txt.to(img.device)).sum(-1)
        if self.head == "sigmoid":
            scale = self._model.logit_scale.float().exp().to(cos.device)
            bias = self._model.logit_bias.float().to(cos.device)
            return torch.sigmoid(scale * cos + bias).reshape(-1).cpu()
        return (100.0 * cos.clamp(min=0)).cpu()

    @staticmethod
    def text_of(item: SuiteItem) -> str:
        """The text an item's images are scored against (see the module docstring)."""
        if item.source_image is not None and item.record.get("target_caption"):
            return str(item.record["target_caption"])
        return item.prompt

    def score(self, items: Sequence[SuiteItem]) -> list[ScoreRecord]:
        images, texts, owner = [], [], []
        for k, it in enumerate(items):
            ims = it.load_images()
            images += ims
            texts += [self.text_of(it)] * len(ims)
            owner += [k] * len(ims)
        scores = self.score_pairs(images, texts).tolist()
        out = [ScoreRecord(it.item_id, it.tag, [], details=[]) for it in items]
        for k, s, t in zip(owner, scores, texts, strict=True):
            out[k].scores.append(float(s))
            out[k].details.append({"text": t, "head": self.head})
        return out

"""The teacher directory, and the frozen teachers the tokenizer losses load from it.

A teacher directory (written by :func:`~arm_tokenizer.teachers.directory.save_teacher`, e.g.
from ``TeacherTrainer``; re-exported here)::

    image_tower.safetensors   plain timm state dict of the image tower
    image_tower.json          {"model_name", "model_kwargs", "mean", "std", "feature_dim", ...}
    text_tower.safetensors    TextTower weights
    siglip_head.safetensors   image-side head (pooled patch tokens -> embedding), t', b
    caption_lm.safetensors    CaptionDecoder weights + the prefix adapter it was trained with
    spm.model                 the sentencepiece model both text models use
    teacher.json              architecture of every part, versions, the teacher's own metrics

``image_tower.safetensors`` loads into ``timm.create_model(model_name, **model_kwargs)``, so
the tokenizer's ``TimmEncoder(model_name=..., model_kwargs=..., checkpoint_path=...)`` uses
it as the frozen encoder, as ARM uses SigLIP2's vision tower. Every file is written
atomically (temp file in the same directory, then ``os.replace``); ``teacher.json`` last.

:class:`TeacherTextEncoder` (``teacher_text``) and :class:`TeacherCaptionLM`
(``teacher_caption_lm``) load the text tower and the captioner frozen: ``requires_grad``
off, always in eval mode, so they never reach an optimizer.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from arm_tokenizer.teachers.base import CaptionLM, TextEncoder, cached_text_embeddings
from arm_tokenizer.teachers.directory import (
    TEACHER_FILES,
    TEACHER_FORMAT,
    TEACHER_FORMAT_VERSION,
    read_teacher_config,
    save_teacher,
)
from arm_tokenizer.teachers.modules import (
    CaptionDecoder,
    TextTower,
    build_image_tower,
    patch_tokens,
)
from arm_tokenizer.teachers.spm import SpmText

__all__ = [
    "TEACHER_FORMAT",
    "TEACHER_FORMAT_VERSION",
    "TEACHER_FILES",
    "save_teacher",
    "read_teacher_config",
    "load_image_tower",
    "TeacherTextEncoder",
    "TeacherCaptionLM",
]

def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{where}: missing keys {sorted(missing)}; unexpected keys {sorted(unexpected)}")


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _freeze(module: nn.Module) -> None:
    module.requires_grad_(False)
    module.eval()


class ImageTower(nn.Module):
    """The teacher's frozen timm image tower: images ``[-1, 1]`` -> patch tokens ``(B, N, C)``."""

    def __init__(self, model: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.mean, self.std = list(config["mean"]), list(config["std"])
        self.out_dim = int(config["feature_dim"])
        self.patch_size = int(config["patch_size"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return patch_tokens(self.model, images, self.mean, self.std)

    def train(self, mode: bool = True) -> ImageTower:
        return super().train(False)


def load_image_tower(checkpoint: str | os.PathLike) -> ImageTower:
    """The teacher's image tower, frozen (for probing the teacher itself)."""
    cfg = read_teacher_config(checkpoint)
    d = Path(cfg["_dir"])
    tower_cfg = json.loads((d / "image_tower.json").read_text())
    model = build_image_tower(tower_cfg["model_name"], tower_cfg.get("model_kwargs"))
    _load_strict(model, load_file(str(d / "image_tower.safetensors")), str(d / "image_tower.safetensors"))
    tower = ImageTower(model, tower_cfg)
    _freeze(tower)
    return tower


class TeacherTextEncoder(TextEncoder):
    """The ShapesWorld teacher's frozen text tower (SigLIP text side): texts -> ``(B, E)``.

    Also carries, frozen, the image-side head the pair was trained with (``image_head``:
    pooled patch tokens -> joint space), ``log_temperature`` and ``bias``, so
    :class:`~arm_tokenizer.losses.siglip.SigLIPLoss` can start from them and the teacher's
    own zero-shot retrieval can be measured (:meth:`embed_image_tokens`).

    Args:
        checkpoint: a teacher directory written by ``TeacherTrainer`` (or its ``teacher.json``).
        cache_size: remember the embeddings of up to this many distinct texts (the tower is
            frozen, so a text's embedding never changes; a training set's captions repeat
            every epoch). 0 disables the cache.
    """

    def __init__(self, checkpoint: str = "runs/teacher", cache_size: int = 8192) -> None:
        super().__init__()
        cfg = read_teacher_config(checkpoint)
        d = Path(cfg["_dir"])
        self.checkpoint = str(d)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.spm = SpmText(str(d / "spm.model"))
        self.tower = TextTower(**cfg["text_tower"])
        _load_strict(self.tower, load_file(str(d / "text_tower.safetensors")), str(d / "text_tower.safetensors"))
        self.embed_dim = int(self.tower.embed_dim)
        head_state = load_file(str(d / "siglip_head.safetensors"))
        feat_dim = int(cfg["image_tower"]["feature_dim"])
        self.image_head = nn.Sequential(nn.LayerNorm(feat_dim), nn.Linear(feat_dim, self.embed_dim))
        _load_strict(self.image_head, _split(head_state, "image_head."), str(d / "siglip_head.safetensors"))
        self.register_buffer("log_temperature", head_state["log_temperature"].reshape(()).clone())
        self.register_buffer("bias", head_state["bias"].reshape(()).clone())
        _freeze(self)

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        # deferred: the toy teacher is built with TeacherTrainer (lightning), only for examples
        from arm_tokenizer.teachers.toy import toy_teacher_dir

        return {"checkpoint": toy_teacher_dir()}

    def train(self, mode: bool = True) -> TeacherTextEncoder:
        return super().train(False)  # frozen: dropout/norm statistics never change

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("TeacherTextEncoder.encode_text expects a list of texts, got a single str")
        device = self.tower.pos.device
        if self.cache_size <= 0:
            return self._encode(list(texts))
        return cached_text_embeddings(self._cache, list(texts), self._encode, self.cache_size, device)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        ids = self.spm.batch(texts, self.tower.max_len).to(self.tower.pos.device)
        return self.tower(ids)

    def embed_image_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` teacher patch tokens -> ``(B, E)`` normalized image embeddings."""
        return torch.nn.functional.normalize(self.image_head(tokens.mean(1)), dim=-1)


class TeacherCaptionLM(CaptionLM):
    """The ShapesWorld teacher's frozen captioning LM: visual prefix + caption -> NLL.

    Carries, frozen, the ``prefix_adapter`` (teacher patch tokens -> hidden size) it was
    trained with; :class:`~arm_tokenizer.losses.caption.CaptionLoss` may start from it.

    Args:
        checkpoint: a teacher directory written by ``TeacherTrainer`` (or its ``teacher.json``).
    """

    def __init__(self, checkpoint: str = "runs/teacher") -> None:
        super().__init__()
        cfg = read_teacher_config(checkpoint)
        d = Path(cfg["_dir"])
        self.checkpoint = str(d)
        self.spm = SpmText(str(d / "spm.model"))
        self.decoder = CaptionDecoder(**cfg["caption_lm"])
        state = load_file(str(d / "caption_lm.safetensors"))
        _load_strict(self.decoder, _split(state, "decoder."), str(d / "caption_lm.safetensors"))
        feat_dim = int(cfg["image_tower"]["feature_dim"])
        self.hidden_size = int(self.decoder.dim)
        self.max_prefix = int(self.decoder.max_prefix)  # learned prefix positions: pool longer grids
        self.prefix_adapter = nn.Sequential(nn.LayerNorm(feat_dim), nn.Linear(feat_dim, self.hidden_size))
        _load_strict(self.prefix_adapter, _split(state, "prefix_adapter."), str(d / "caption_lm.safetensors"))
        _freeze(self)

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        # deferred: the toy teacher is built with TeacherTrainer (lightning), only for examples
        from arm_tokenizer.teachers.toy import toy_teacher_dir

        return {"checkpoint": toy_teacher_dir()}

    def train(self, mode: bool = True) -> TeacherCaptionLM:
        return super().train(False)

    def caption_loss(self, prefix: torch.Tensor, texts: list[str]) -> torch.Tensor:
        if prefix.ndim != 3 or prefix.shape[-1] != self.hidden_size:
            raise ValueError(f"TeacherCaptionLM expects a prefix (B, N, {self.hidden_size}), got {tuple(prefix.shape)}")
        ids = self.spm.batch(texts, self.decoder.max_len - 1).to(prefix.device)
        return self.decoder.nll(prefix, ids)

    def generate(self, prefix: torch.Tensor, max_new_tokens: int = 24) -> list[str]:
        """Greedy captions for a ``(B, N, hidden_size)`` prefix."""
        return [self.spm.decode(ids) for ids in self.decoder.generate(prefix, max_new_tokens, self.spm.vocab_size)]

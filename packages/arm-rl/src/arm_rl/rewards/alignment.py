"""``dual_encoder_alignment``: image–text cosine similarity from a dual encoder.

For data without scene specs: the reward is ``cos(f_img(image), f_txt(text))`` of a
SigLIP/CLIP-style dual encoder (cf. the CLIP-score rewards of DDPO/T2I-R1). Any model
that implements :class:`ImageTextModel` plugs in; the shipped :class:`TeacherDualEncoder`
loads arm-tokenizer's ShapesWorld teacher (the SigLIP-style dual encoder the tokenizer's
``L_sig`` uses: its frozen image tower + image head and its text tower).

Which text: T2I prompts use the caption; edit prompts use the record's
``meta["target_caption"]`` (edit-triplet files), else a caption of the *target* scene when
the record has one (the instruction itself does not describe the result), else the
instruction.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from arm_data.shapes.captions import make_caption
from torch import Tensor

from arm_rl.rewards.base import Reward, as_tensor, task_schema

__all__ = ["ImageTextModel", "TeacherDualEncoder", "DualEncoderAlignmentReward"]


class ImageTextModel:
    """Interface of an image–text dual encoder for :class:`DualEncoderAlignmentReward`."""

    def embed_images(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [-1, 1] -> ``(B, E)`` embeddings."""
        raise NotImplementedError

    def embed_texts(self, texts: list[str]) -> Tensor:
        """``B`` texts -> ``(B, E)`` embeddings."""
        raise NotImplementedError

    def to(self, device: torch.device) -> ImageTextModel:
        return self


class TeacherDualEncoder(ImageTextModel):
    """arm-tokenizer's ShapesWorld teacher as a dual encoder.

    Args:
        checkpoint: the teacher directory (``arm-tokenizer fit --config configs/tokenizer/shapes-teacher.yaml``).
        image_size: images are resized to this before the image tower; None = the size the
            teacher was trained at (its ``teacher.json``). Another size shifts the tower's
            features: on the 32 px demo teacher, 64 px dropped the matched-vs-mismatched
            caption AUROC from 0.92 to 0.68 (benchmarks/results/suites_and_rewards.md).
    """

    def __init__(self, checkpoint: str = "runs/teacher", image_size: int | None = None) -> None:
        # deferred: the teacher imports timm (seconds); only when this reward is built
        from arm_tokenizer.teachers.directory import read_teacher_config
        from arm_tokenizer.teachers.frozen import TeacherTextEncoder, load_image_tower

        self.tower = load_image_tower(checkpoint)
        self.text = TeacherTextEncoder(checkpoint)
        if image_size is None:
            image_size = int(read_teacher_config(checkpoint)["image_tower"].get("image_size", 64))
        self.image_size = image_size

    def to(self, device: torch.device) -> TeacherDualEncoder:
        self.tower.to(device)
        self.text.to(device)
        return self

    @torch.no_grad()
    def embed_images(self, images: Tensor) -> Tensor:
        dev = next(self.tower.parameters()).device
        x = images.to(dev)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False)
        return self.text.embed_image_tokens(self.tower(x))

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> Tensor:
        return self.text.encode_text(list(texts))


def _text_for(record: Any) -> str:
    caption = (getattr(record, "meta", None) or {}).get("target_caption")
    edit = task_schema(record.task) == "edit"
    if edit and caption:                            # an edit-triplet file's target caption
        return str(caption)
    if edit and getattr(record, "target", None) is not None:
        # a fixed rng per record: the same target always gets the same caption
        return make_caption(record.target, random.Random(f"arm-rl-align:{record.index}")).text
    return record.text


class DualEncoderAlignmentReward(Reward):
    """Cosine similarity between image and text embeddings (``dual_encoder_alignment``).

    Args:
        teacher: teacher directory for :class:`TeacherDualEncoder` (used when ``model`` is None).
        model: any :class:`ImageTextModel`; overrides ``teacher``.
        scale: multiply the cosine by this (cosines of a trained dual encoder are small).
        device: where the dual encoder runs.
        name: label in logs and errors.
    """

    def __init__(self, teacher: str = "runs/teacher", model: ImageTextModel | None = None,
                 scale: float = 1.0, device: str = "cpu",
                 name: str = "dual_encoder_alignment") -> None:
        super().__init__(name=name, device=device)
        self.teacher, self.scale = teacher, float(scale)
        self._model = model

    @property
    def model(self) -> ImageTextModel:
        if self._model is None:        # loaded on first use: configs parse without the files
            self._model = TeacherDualEncoder(self.teacher)
        return self._model.to(self.device)

    def compute(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        m = self.model
        img = F.normalize(m.embed_images(as_tensor(images).to(self.device)).float(), dim=-1)
        txt = F.normalize(m.embed_texts([_text_for(r) for r in records]).float().to(img.device), dim=-1)
        return self.scale * (img * txt).sum(-1)

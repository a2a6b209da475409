"""torch Datasets over :class:`~arm_data.shapes.world.ShapesWorld` (pairs, VQA, edits).

Items hold images as float tensors (3, H, W) in [-1, 1] (the library's pixel
convention), text as ``str`` and specs as canonical JSON strings; :func:`collate_shapes`
stacks tensors and keeps strings as lists. Every item is a pure function of
``(seed, split, index)``, so data-loader workers need no shared state.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from arm_tokenizer import images
from arm_tokenizer.framework.deprecation import moved_names
from torch.utils.data import Dataset

from arm_data.shapes.edits import EDIT_KINDS
from arm_data.shapes.qa import QA_KINDS
from arm_data.shapes.world import DEFAULT_LENGTH, ShapesWorld

# pil_to_tensor moved to arm_tokenizer.images
__getattr__ = moved_names(__name__, {"pil_to_tensor": "arm_tokenizer.images"})


def collate_shapes(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep everything else as lists, under the same keys."""
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


class _ShapesBase(Dataset):
    def __init__(self, split: str, seed: int, width: int, height: int, length: int,
                 **world_kw: Any) -> None:
        self.world = ShapesWorld(split=split, seed=seed, width=width, height=height,
                                 length=length, **world_kw)

    def __len__(self) -> int:
        return len(self.world)

    def _check(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        return int(index)


class ShapesImageDataset(_ShapesBase):
    """Image-caption pairs: ``{"images", "captions", "specs", "indices"}`` per item.

    Args:
        split: ``train``, ``val`` or ``heldout``.
        seed: world seed.
        width: image width in pixels.
        height: image height in pixels.
        length: number of items (the stream is infinite; this sets an epoch).
        difficulty: the world's content (``full``, ``demo`` or Difficulty fields; see ShapesWorld).
    """

    def __init__(self, split: str = "train", seed: int = 0, width: int = 64, height: int = 64,
                 length: int = DEFAULT_LENGTH, difficulty: Any = "full") -> None:
        super().__init__(split, seed, width, height, length, num_questions=0, difficulty=difficulty)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.world[self._check(index)]
        return {"images": images.pil_to_tensor(s.image), "captions": s.caption,
                "specs": s.spec.to_json(), "indices": s.index}


class ShapesVQADataset(_ShapesBase):
    """Question-answer items: ``{"images", "questions", "answers", "kinds", "specs"}``.

    Item ``k`` is question ``k % questions_per_image`` of scene ``k // questions_per_image``.

    Args:
        split: ``train``, ``val`` or ``heldout``.
        seed: world seed.
        width: image width in pixels.
        height: image height in pixels.
        length: number of items.
        difficulty: the world's content (``full``, ``demo`` or Difficulty fields; see ShapesWorld).
        questions_per_image: questions drawn per scene.
        qa_kinds: allowed question kinds.
    """

    def __init__(self, split: str = "train", seed: int = 0, width: int = 64, height: int = 64,
                 length: int = DEFAULT_LENGTH, questions_per_image: int = 2,
                 qa_kinds: tuple[str, ...] = QA_KINDS, difficulty: Any = "full") -> None:
        if questions_per_image < 1:
            raise ValueError(f"questions_per_image must be >= 1, got {questions_per_image}")
        super().__init__(split, seed, width, height, length, num_questions=questions_per_image,
                         difficulty=difficulty,
                         qa_kinds=tuple(qa_kinds))
        self.q = questions_per_image

    def __getitem__(self, index: int) -> dict[str, Any]:
        k = self._check(index)
        s = self.world[k // self.q]
        qa = s.qa[(k % self.q) % len(s.qa)]
        return {"images": images.pil_to_tensor(s.image), "questions": qa.question, "answers": qa.answer,
                "kinds": qa.kind, "specs": s.spec.to_json()}


class ShapesEditDataset(_ShapesBase):
    """Edit triplets: ``{"sources", "targets", "instructions", "source_specs",
    "target_specs", "edits"}`` (edits as JSON strings).

    Args:
        split: ``train``, ``val`` or ``heldout``.
        seed: world seed.
        width: image width in pixels.
        height: image height in pixels.
        length: number of items.
        difficulty: the world's content (``full``, ``demo`` or Difficulty fields; see ShapesWorld).
        edit_kinds: allowed edit kinds.
    """

    def __init__(self, split: str = "train", seed: int = 0, width: int = 64, height: int = 64,
                 length: int = DEFAULT_LENGTH, edit_kinds: tuple[str, ...] = EDIT_KINDS,
                 difficulty: Any = "full") -> None:
        super().__init__(split, seed, width, height, length, num_questions=0, difficulty=difficulty,
                         edit_kinds=tuple(edit_kinds))

    def __getitem__(self, index: int) -> dict[str, Any]:
        e = self.world[self._check(index)].edit
        return {"sources": images.pil_to_tensor(e.source_image), "targets": images.pil_to_tensor(e.target_image),
                "instructions": e.instruction, "source_specs": e.source.to_json(),
                "target_specs": e.target.to_json(),
                "edits": json.dumps(e.edit.to_dict(), sort_keys=True)}

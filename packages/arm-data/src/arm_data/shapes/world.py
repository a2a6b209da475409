"""``ShapesWorld``: the map-style source of ShapesWorld samples.

``ShapesWorld(split, seed)[i]`` is a pure function of ``(seed, split, i)`` (plus the
render size): the scene, caption, questions and edit each come from their own
``random.Random`` stream seeded by a hash of ``(seed, split, i, purpose)``, so adding a
caption template never changes the scenes, nothing touches global RNG state, and two
machines produce identical pixels. Images are rendered lazily (on first access).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from PIL import Image

from arm_data.shapes.captions import Caption, make_caption
from arm_data.shapes.difficulty import FULL, Difficulty, get_difficulty
from arm_data.shapes.edits import EDIT_KINDS, EditSpec, make_edit
from arm_data.shapes.qa import QA_KINDS, QAPair, make_qa
from arm_data.shapes.rendering import render
from arm_data.shapes.spec import SceneSpec
from arm_data.shapes.splits import check_split, sample_rng, sample_scene

DEFAULT_LENGTH = 100_000


@dataclass
class EditTriplet:
    """(source, instruction, target) with lazily rendered images."""

    source: SceneSpec
    instruction: str
    target: SceneSpec
    edit: EditSpec
    width: int = 64
    height: int = 64

    @cached_property
    def source_image(self) -> Image.Image:
        return render(self.source, self.width, self.height)

    @cached_property
    def target_image(self) -> Image.Image:
        return render(self.target, self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "edit": self.edit.to_dict(),
                "source_spec": self.source.to_dict(), "target_spec": self.target.to_dict()}


@dataclass
class ShapesSample:
    """One ShapesWorld sample: spec, lazily rendered image, caption, QA and an edit."""

    index: int
    split: str
    seed: int
    spec: SceneSpec
    caption_info: Caption
    qa: list[QAPair]
    edit: EditTriplet
    width: int = 64
    height: int = 64
    difficulty: Difficulty = field(default=FULL, repr=False)
    _image: Image.Image | None = field(default=None, repr=False)

    @property
    def caption(self) -> str:
        return self.caption_info.text

    @property
    def caption_attributes(self) -> frozenset[str]:
        """Clauses the caption states (pass as ``check=`` to ``evaluate_t2i``)."""
        return self.caption_info.attributes

    @property
    def caption_relations(self) -> tuple[tuple[int, int, str], ...]:
        """Relations the caption states (pass as ``relations=`` to ``evaluate_t2i``)."""
        return self.caption_info.relations

    @property
    def image(self) -> Image.Image:
        if self._image is None:
            self._image = render(self.spec, self.width, self.height)
        return self._image

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "split": self.split, "seed": self.seed,
                "spec": self.spec.to_dict(), "caption": self.caption,
                "caption_attributes": sorted(self.caption_attributes),
                "caption_relations": [list(r) for r in self.caption_relations],
                "qa": [q.to_dict() for q in self.qa], "edit": self.edit.to_dict()}


def sample_index(index: int, length: int, owner: str) -> int:
    """``index`` as a sample number: an int, negative ones counted from ``length`` (samples are
    pure functions of their number, so only negatives past the start are out of range)."""
    if not isinstance(index, int):
        raise TypeError(f"{owner} indices are integers, got {type(index).__name__}")
    if index < 0:
        index += length
    if index < 0:
        raise IndexError("negative index out of range")
    return index


class ShapesWorld:
    """Map-style ShapesWorld source: ``world[i]`` -> :class:`ShapesSample`.

    Args:
        split: ``train``, ``val`` or ``heldout`` (see :mod:`arm_data.shapes.splits`).
        seed: world seed; different seeds give independent streams.
        width: rendered image width in pixels (32..512 recommended).
        height: rendered image height in pixels (32..512 recommended; may differ from
            ``width``: scenes are valid at every aspect ratio).
        length: ``len(world)``; the stream itself is infinite, any ``i >= 0`` works.
        num_questions: questions per sample.
        qa_kinds: allowed question kinds (subset of ``QA_KINDS``).
        edit_kinds: allowed edit kinds (subset of ``EDIT_KINDS``).
        allow_overlap: let objects overlap (default False: non-overlapping scenes, on
            which the evaluator's accuracy is measured).
        difficulty: which shapes, colors, sizes, backgrounds and object counts the world
            has: a preset name (``full``, the default, or ``demo``), a mapping of
            :class:`~arm_data.shapes.difficulty.Difficulty` fields, or a ``Difficulty``.
    """

    def __init__(self, split: str = "train", seed: int = 0, width: int = 64, height: int = 64,
                 length: int = DEFAULT_LENGTH, num_questions: int = 4,
                 qa_kinds: tuple[str, ...] = QA_KINDS,
                 edit_kinds: tuple[str, ...] = EDIT_KINDS, allow_overlap: bool = False,
                 difficulty: str | Difficulty | dict | None = "full") -> None:
        self.split = check_split(split)
        self.difficulty = get_difficulty(difficulty)
        self.seed = int(seed)
        for name, v in (("width", width), ("height", height)):
            if not isinstance(v, int) or not 8 <= v <= 2048:
                raise ValueError(f"ShapesWorld {name} must be an integer in [8, 2048], got {v!r}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"ShapesWorld length must be a positive integer, got {length!r}")
        self.width, self.height, self.length = width, height, length
        self.num_questions = num_questions
        self.qa_kinds = tuple(qa_kinds)
        self.edit_kinds = tuple(edit_kinds)
        self.allow_overlap = bool(allow_overlap)

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> SceneSpec:
        """Only the scene of sample ``index`` (cheap: no text, no pixels)."""
        return sample_scene(sample_rng(self.seed, self.split, index, "scene"), self.split,
                            allow_overlap=self.allow_overlap, difficulty=self.difficulty)

    def __getitem__(self, index: int) -> ShapesSample:
        index = sample_index(index, self.length, "ShapesWorld")
        spec = self.spec(index)
        rng = lambda purpose: sample_rng(self.seed, self.split, index, purpose)  # noqa: E731
        caption = make_caption(spec, rng("caption"))
        qa = make_qa(spec, rng("qa"), n=self.num_questions, kinds=self.qa_kinds, difficulty=self.difficulty)
        edit, target, instruction = make_edit(spec, rng("edit"), self.split, self.edit_kinds,
                                              difficulty=self.difficulty)
        triplet = EditTriplet(source=spec, instruction=instruction, target=target, edit=edit,
                              width=self.width, height=self.height)
        return ShapesSample(index=index, split=self.split, seed=self.seed, spec=spec,
                            caption_info=caption, qa=qa, edit=triplet,
                            width=self.width, height=self.height, difficulty=self.difficulty)

    def __iter__(self):
        for i in range(self.length):
            yield self[i]

    def __repr__(self) -> str:
        diff = "" if self.difficulty.name == "full" else f", difficulty={self.difficulty.name!r}"
        return (f"ShapesWorld(split={self.split!r}, seed={self.seed}, width={self.width}, "
                f"height={self.height}, length={self.length}{diff})")

"""ShapesWorld edit chains: image, instruction, image, instruction, image ... with a spec per step.

A chain applies 2-4 edits (:mod:`arm_data.shapes.edits`) one after another to a scene, so
it is an interleaved document (:mod:`arm_data.tasks.interleaved`)::

    IMG(scene_0)  "Make the red circle blue."  IMG(scene_1)  "Remove the star."  IMG(scene_2) ...

Every step keeps its :class:`~arm_data.shapes.edits.EditSpec` and the scene specs before and
after it, so each generated image of a continued chain is scored like a single edit
(:func:`~arm_data.shapes.evaluator.evaluate_edit`: adherence and consistency per step).

Held-out compositions are respected as the split's single edits respect them: the first
scene is drawn by the split's scene sampler, and every step is :func:`make_edit` on the
current scene with the same split, so in ``train``/``val`` no scene of the chain holds a
held-out (color, shape) pair or a held-out object count, and ``heldout`` chains start
from a scene with a held-out pair. Chain ``i`` of ``(seed, split)`` is a pure function of
them (its own ``random.Random`` streams, purposes ``chain-scene``, ``chain-steps``,
``chain-edit<k>``), independent of ShapesWorld's sample ``i``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from PIL import Image

from arm_data.shapes.difficulty import Difficulty, get_difficulty
from arm_data.shapes.edits import EDIT_KINDS, EditSpec, make_edit
from arm_data.shapes.rendering import render
from arm_data.shapes.spec import SceneSpec
from arm_data.shapes.splits import check_split, sample_rng, sample_scene
from arm_data.shapes.world import sample_index

__all__ = ["EditChain", "EditChains", "MIN_STEPS", "MAX_STEPS"]

MIN_STEPS = 2
MAX_STEPS = 4


@dataclass
class EditChain:
    """One chain: ``len(edits)`` steps from ``specs[0]`` to ``specs[-1]``.

    Attributes:
        index: the chain's index in its split.
        split: ``train``, ``val`` or ``heldout``.
        seed: the world seed.
        specs: the scenes, ``len(edits) + 1`` of them (``specs[k+1]`` is ``edits[k]`` applied to ``specs[k]``).
        edits: the edits as data.
        instructions: the instruction of each edit.
        width, height: the rendered size in pixels.
    """

    index: int
    split: str
    seed: int
    specs: list[SceneSpec]
    edits: list[EditSpec]
    instructions: list[str]
    width: int = 64
    height: int = 64
    _rendered: dict[int, Image.Image] = field(default_factory=dict, repr=False)

    @property
    def steps(self) -> int:
        return len(self.edits)

    @property
    def key(self) -> str:
        return f"{self.split}-chain-{self.index:08d}"

    def image(self, k: int) -> Image.Image:
        """Scene ``k`` rendered (cached)."""
        if k not in self._rendered:
            self._rendered[k] = render(self.specs[k], self.width, self.height)
        return self._rendered[k]

    @cached_property
    def images(self) -> list[Image.Image]:
        return [self.image(k) for k in range(len(self.specs))]

    def segments(self) -> list[str | Image.Image]:
        """The document: scene 0, then per step its instruction and the scene after it."""
        out: list[str | Image.Image] = [self.image(0)]
        for k, text in enumerate(self.instructions):
            out += [text, self.image(k + 1)]
        return out

    def extra(self) -> dict[str, Any]:
        """The JSON fields a chain record keeps besides its segments (what scoring needs)."""
        return {"split": self.split, "index": self.index, "seed": self.seed,
                "specs": [s.to_dict() for s in self.specs], "edits": [e.to_dict() for e in self.edits]}

    def record(self, png: bool = True) -> Any:
        """The chain as an :class:`~arm_data.tasks.interleaved.InterleavedRecord` (images as
        in-memory PNG :class:`~arm_data.records.ImageRef`, or PIL images with ``png=False``)."""
        # deferred: records and the tasks import torch; ShapesWorld itself stays torch-free
        from arm_data.records import ImageRef
        from arm_data.tasks.interleaved import InterleavedRecord

        def img(im: Image.Image) -> Any:
            if not png:
                return im
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return ImageRef(buf.getvalue(), name=f"{self.key}.png")

        segs = [s if isinstance(s, str) else img(s) for s in self.segments()]
        return InterleavedRecord(segments=segs, key=self.key, extra=self.extra())

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra(), "instructions": list(self.instructions)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], width: int = 64, height: int = 64) -> EditChain:
        """A chain from :meth:`to_dict` (or a chain record's ``extra`` plus its instructions)."""
        return cls(index=int(d["index"]), split=d["split"], seed=int(d["seed"]),
                   specs=[SceneSpec.from_dict(s) for s in d["specs"]],
                   edits=[EditSpec.from_dict(e) for e in d["edits"]],
                   instructions=list(d["instructions"]), width=width, height=height)


class EditChains:
    """Map-style source of edit chains: ``chains[i]`` -> :class:`EditChain`.

    Args:
        split: ``train``, ``val`` or ``heldout``.
        seed: world seed.
        width: rendered width in pixels.
        height: rendered height in pixels.
        length: ``len(chains)`` (the stream itself is unbounded).
        min_steps: fewest edits in a chain (>= 1).
        max_steps: most edits in a chain (drawn uniformly in ``[min_steps, max_steps]``).
        edit_kinds: allowed edit kinds (subset of ``EDIT_KINDS``).
        difficulty: the world's content (``full``, ``demo`` or Difficulty fields).
    """

    def __init__(self, split: str = "train", seed: int = 0, width: int = 64, height: int = 64,
                 length: int = 100_000, min_steps: int = MIN_STEPS, max_steps: int = MAX_STEPS,
                 edit_kinds: tuple[str, ...] = EDIT_KINDS,
                 difficulty: str | Difficulty | dict | None = "full") -> None:
        self.split = check_split(split)
        if not (isinstance(min_steps, int) and isinstance(max_steps, int) and 1 <= min_steps <= max_steps):
            raise ValueError(f"EditChains: need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"EditChains length must be a positive integer, got {length!r}")
        self.seed, self.width, self.height, self.length = int(seed), int(width), int(height), length
        self.min_steps, self.max_steps = min_steps, max_steps
        self.edit_kinds = tuple(edit_kinds)
        self.difficulty = get_difficulty(difficulty)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> EditChain:
        index = sample_index(index, self.length, "EditChains")

        def rng(purpose: str):
            return sample_rng(self.seed, self.split, index, purpose)

        steps = rng("chain-steps").randint(self.min_steps, self.max_steps)
        scene_rng = rng("chain-scene")
        while True:  # a scene on which no edit is possible (rare) is redrawn from the same stream
            specs = [sample_scene(scene_rng, self.split, difficulty=self.difficulty)]
            edits: list[EditSpec] = []
            texts: list[str] = []
            try:
                for k in range(steps):
                    edit, target, text = make_edit(specs[-1], rng(f"chain-edit{k}"), self.split,
                                                   self.edit_kinds, difficulty=self.difficulty)
                    edits.append(edit)
                    texts.append(text)
                    specs.append(target)
            except ValueError:
                continue
            return EditChain(index=index, split=self.split, seed=self.seed, specs=specs, edits=edits,
                             instructions=texts, width=self.width, height=self.height)

    def __iter__(self):
        for i in range(self.length):
            yield self[i]

    def __repr__(self) -> str:
        return (f"EditChains(split={self.split!r}, seed={self.seed}, {self.width}x{self.height}, "
                f"length={self.length}, steps={self.min_steps}..{self.max_steps}, "
                f"difficulty={self.difficulty.name!r})")

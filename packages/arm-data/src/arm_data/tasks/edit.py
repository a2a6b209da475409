"""Instruction-guided editing: the source image and the instruction, then the edited image.

Layout (``*`` = loss, ``|`` = where the generation prompt ends)::

    <bos> <edit> IMG(src) <user> instruction... <assistant> <h> <w> <boi> | c*... <eoi>* <eos>*

Two-branch guidance (InstructPix2Pix-style; ARM: text 1.5, image 1.25) drops the
instruction (``image`` prompt), the source (``text``) or both (``uncond``) to ``<null>``::

    l = l_uncond + s_img (l_img - l_uncond) + s_txt (l_full - l_img)

With ``s_img = 1`` two branches suffice: ``l_img + s_txt (l_full - l_img)``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from arm_data import formats
from arm_data.errors import BadSampleError
from arm_data.formats import ConditionDropout, ImageTokens, TokenSequence
from arm_data.records import EditRecord, _check_str
from arm_data.shapes.rendering import render
from arm_data.tasks.base import Encode, GuidanceBranches, Task
from arm_data.vocab import VocabLayout


class EditTask(Task):
    """Image editing: loss on the target image's codes, ``<eoi>`` and ``<eos>``."""

    name = "edit"
    token = "<edit>"
    image_fields = ("source", "target")
    text_field = "instruction"
    sidecars = (("txt", "json"),)  # the instruction may live in <key>.json instead
    evaluator = "shapes_edit"

    # ------------------------------------------------------------------ records
    def read(self, fields: dict[str, Any], images: dict[str, Any], key: str, where: str) -> EditRecord:
        fields = dict(fields)
        fields.pop("task", None)
        if "instruction" not in fields:
            raise BadSampleError(where, "invalid_record", "edit record has no 'instruction' field")
        instr = _check_str(fields.pop("instruction"), "instruction", where)
        fields.pop("source", None)
        fields.pop("target", None)
        return EditRecord(source=images["source"], target=images["target"], instruction=instr, key=key, extra=fields)

    def record_texts(self, record: EditRecord) -> dict[str, Any]:
        return {"instruction": record.instruction}

    def record_images(self, record: EditRecord) -> list[Any]:
        return [record.load_source(), record.load_target()]

    def record_fields(self, record: EditRecord) -> dict[str, Any]:
        return {"instruction": record.instruction}

    # ------------------------------------------------------------------ documents
    def document(self, record: Any, encode: Encode) -> tuple[Any, ...]:
        """``(source, instruction_ids, target)``."""
        return (record.source, encode(record.texts["instruction"]), record.target)

    def length(self, doc: tuple[Any, ...]) -> int:
        source, instr, target = doc
        return 2 + source.h * source.w + 4 + 1 + len(instr) + 1 + 3 + target.h * target.w + 2

    def sequence(self, layout: VocabLayout, doc: tuple[Any, ...], loss_on_all: bool = False,
                 dropout: ConditionDropout | None = None, rng: random.Random | None = None) -> TokenSequence:
        source, instr, target = doc
        d_instr, d_src = dropout.drop_edit(rng) if rng is not None and dropout is not None else (False, False)
        return self.build(layout, None if d_src else source, None if d_instr else instr, target, loss_on_all)

    def build(self, layout: VocabLayout, source: ImageTokens | None, instruction_ids: Sequence[int] | None,
              target: ImageTokens, loss_on_all: bool = False) -> TokenSequence:
        """The sequence of one edit; ``source=None`` / ``instruction_ids=None`` drop that condition."""
        b = formats._Builder()
        b.add(self.prompt(layout, source, instruction_ids, target.h, target.w), False)
        b.add(layout.image_code_to_id(target.codes), True)
        b.add([layout.eoi_id, layout.eos_id], True)
        return b.build(self.name, loss_on_all, dropped_source=source is None,
                       dropped_instruction=instruction_ids is None)

    # ------------------------------------------------------------------ generation
    def prompt(self, layout: VocabLayout, source: ImageTokens | None, instruction_ids: Sequence[int] | None,
               h: int | None = None, w: int | None = None) -> list[int]:
        """``<bos> <edit> IMG(src) <user> instruction... <assistant> <h> <w> <boi>``.

        The output grid ``(h, w)`` defaults to the source grid. ``source=None`` or
        ``instruction_ids=None`` put ``<null>`` in that place (CFG branches).
        """
        if h is None or w is None:
            if source is None:
                raise ValueError("edit_prompt: give the output grid (h, w) when the source image is dropped")
            h, w = source.h, source.w
        src = [layout.null_id] if source is None else formats.image_span(layout, source)
        return [layout.bos_id, layout.special_id(self.token), *src, layout.special_id("<user>"),
                *formats._text_ids(layout, instruction_ids, "instruction"), layout.special_id("<assistant>"),
                *formats.image_header(layout, h, w)]

    def prompts(self, layout: VocabLayout, condition: Mapping[str, Any],
                grid: tuple[int, int] | None = None) -> dict[str, list[int]]:
        """``condition``: ``{"source": ImageTokens, "instruction": ids}``; ``grid`` defaults to the
        source's. Gives ``full``, ``image`` (instruction dropped), ``text`` (source dropped), ``uncond``."""
        source, instr = condition["source"], condition["instruction"]
        h, w = (source.h, source.w) if grid is None else grid
        return {
            "full": self.prompt(layout, source, instr, h, w),
            "image": self.prompt(layout, source, None, h, w),
            "text": self.prompt(layout, None, instr, h, w),
            "uncond": self.prompt(layout, None, None, h, w),
        }

    def branches(self, prompts: Mapping[str, list[int]], text_scale: float = 1.0,
                 image_scale: float = 1.0) -> GuidanceBranches | None:
        """Three branches (uncond, image, full); two (image, full) when ``image_scale == 1``."""
        if text_scale == 1.0 and image_scale == 1.0:
            return None
        if image_scale == 1.0:  # l_img + s_txt (l_full - l_img): the image-only prompt is the "uncond"
            return GuidanceBranches(uncond=list(prompts["image"]), guidance_scale=text_scale)
        return GuidanceBranches(uncond=list(prompts["uncond"]), guidance_scale=text_scale,
                                image=list(prompts["image"]), image_guidance_scale=image_scale)

    # ------------------------------------------------------------------ prompt records (RL)
    def check_prompt_record(self, record: Any) -> None:
        if getattr(record, "spec", None) is None and getattr(record, "source_image", None) is None:
            raise ValueError(f"edit prompt {getattr(record, 'index', -1)} ({record.text!r}) needs a source: "
                             "give spec (the source scene) or source_image")

    def prompt_images(self, record: Any, size: tuple[int, int]) -> list[Any]:
        """The source image: ``record.source_image``, else its ShapesWorld scene ``spec`` drawn at ``size``."""
        self.check_prompt_record(record)
        if record.source_image is not None:
            return [record.source_image]
        h, w = size
        return [render(record.spec, w, h)]

    def prompt_condition(self, record: Any, images: Sequence[Any]) -> dict[str, Any]:
        """``{"source": images[0], "instruction": record.text}``."""
        return {"source": images[0], "instruction": record.text}

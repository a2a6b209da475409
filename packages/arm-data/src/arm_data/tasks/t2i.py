"""Text-to-image: a caption, then the image's codes (ARM's T2I format).

Layout (``*`` = loss, ``|`` = where the generation prompt ends)::

    <bos> <t2i> caption... <h> <w> <boi> | c*... <eoi>* <eos>*

CFG drops the caption to ``<null>`` (``<bos> <t2i> <null> <h> <w> <boi>``), in training
with probability ``ConditionDropout.p_caption`` and as the unconditional prompt.
Reads ``pair`` records (an image and its caption).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from arm_data import formats
from arm_data.errors import BadSampleError
from arm_data.formats import ConditionDropout, ImageTokens, TokenSequence
from arm_data.records import PairRecord, _check_str
from arm_data.tasks.base import Encode, Task
from arm_data.vocab import VocabLayout


class T2ITask(Task):
    """Text-to-image generation: loss on the image codes, ``<eoi>`` and ``<eos>``."""

    name = "t2i"
    token = "<t2i>"
    image_fields = ("image",)
    text_field = "text"
    sidecars = (("txt",),)
    evaluator = "shapes_t2i"

    # ------------------------------------------------------------------ records
    def read(self, fields: dict[str, Any], images: dict[str, Any], key: str, where: str) -> PairRecord:
        fields = dict(fields)
        fields.pop("task", None)
        for alias in ("text", "caption"):  # "caption" accepted as a common synonym
            if alias in fields:
                text = _check_str(fields.pop(alias), alias, where)
                break
        else:
            raise BadSampleError(where, "invalid_record", "pair record has no 'text' field")
        fields.pop("image", None)
        return PairRecord(image=images["image"], text=text, key=key, extra=fields)

    def record_texts(self, record: PairRecord) -> dict[str, Any]:
        return {"text": record.text}

    def record_fields(self, record: PairRecord) -> dict[str, Any]:
        return {"text": record.text}

    def record_images(self, record: PairRecord) -> list[Any]:
        return [record.load_image()]

    # ------------------------------------------------------------------ documents
    def document(self, record: Any, encode: Encode) -> tuple[Any, ...]:
        """``(caption_ids, image)``."""
        return (encode(record.texts["text"]), record.image)

    def length(self, doc: tuple[Any, ...]) -> int:
        caption, image = doc
        return 2 + len(caption) + 3 + image.h * image.w + 2

    def sequence(self, layout: VocabLayout, doc: tuple[Any, ...], loss_on_all: bool = False,
                 dropout: ConditionDropout | None = None, rng: random.Random | None = None) -> TokenSequence:
        caption, image = doc
        drop = rng is not None and dropout is not None and dropout.drop_caption(rng)
        return self.build(layout, None if drop else caption, image, loss_on_all)

    def build(self, layout: VocabLayout, caption_ids: Sequence[int] | None, image: ImageTokens,
              loss_on_all: bool = False) -> TokenSequence:
        """The sequence of one caption and image; ``caption_ids=None`` drops the caption (``<null>``)."""
        b = formats._Builder()
        b.add([layout.bos_id, layout.special_id(self.token)], False)
        b.add(formats._text_ids(layout, caption_ids, "caption"), False)
        b.add(formats.image_header(layout, image.h, image.w), False)
        b.add(layout.image_code_to_id(image.codes), True)
        b.add([layout.eoi_id, layout.eos_id], True)
        return b.build(self.name, loss_on_all, dropped_caption=caption_ids is None)

    # ------------------------------------------------------------------ generation
    def prompt(self, layout: VocabLayout, caption_ids: Sequence[int] | None, h: int, w: int) -> list[int]:
        """``<bos> <t2i> caption... <h> <w> <boi>``; ``caption_ids=None`` gives the unconditional prompt."""
        return [layout.bos_id, layout.special_id(self.token), *formats._text_ids(layout, caption_ids, "caption"),
                *formats.image_header(layout, h, w)]

    def prompts(self, layout: VocabLayout, condition: Mapping[str, Any],
                grid: tuple[int, int] | None = None) -> dict[str, list[int]]:
        """``condition``: ``{"caption": ids}``; ``grid`` is required. Gives ``full`` and ``uncond``."""
        if grid is None:
            raise ValueError("t2i prompts need the token grid (h, w) of the image to generate")
        h, w = grid
        return {"full": self.prompt(layout, condition.get("caption"), h, w),
                "uncond": self.prompt(layout, None, h, w)}

    # ------------------------------------------------------------------ prompt records (RL)
    def prompt_condition(self, record: Any, images: Sequence[Any]) -> dict[str, Any]:
        """``{"caption": record.text}``."""
        return {"caption": record.text}

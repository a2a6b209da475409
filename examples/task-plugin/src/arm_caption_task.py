"""Captioning as an ARM task: an image, then its full scene caption.

Layout (``*`` = loss, ``|`` = where the generation prompt ends)::

    <bos> <caption> IMG <assistant> | caption*... <eos>*

It reads the records of the built-in ``t2i`` task (``pair`` records: an image and its
caption), so every dataset and shard set that serves text-to-image serves it too; its own
special token ``<caption>`` is appended to the vocabulary of any LM trained with it (the
built-in tokens keep their ids). Registered by this package's ``arm.tasks`` entry point.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from arm_data.formats import ConditionDropout, ImageTokens, TokenSequence, image_span
from arm_data.tasks import Task
from arm_data.vocab import VocabLayout


class CaptionTask(Task):
    """Image captioning: loss on the caption and its ``<eos>``."""

    name = "caption"
    token = "<caption>"
    reads = "t2i"  # pair records: read(), record_texts() and record_images() are t2i's
    image_fields = ("image",)

    def document(self, record: Any, encode: Any) -> tuple[Any, ...]:
        """``(image, caption_ids)`` of a shard record."""
        return (record.image, encode(record.texts["text"]))

    def length(self, doc: tuple[Any, ...]) -> int:
        image, caption = doc
        # <bos> <caption> + <h> <w> <boi> codes <eoi> + <assistant> + caption + <eos>
        return 2 + image.h * image.w + 4 + 1 + len(caption) + 1

    def sequence(self, layout: VocabLayout, doc: tuple[Any, ...], loss_on_all: bool = False,
                 dropout: ConditionDropout | None = None, rng: random.Random | None = None) -> TokenSequence:
        image, caption = doc
        prompt = self.prompt(layout, image)
        ids = [*prompt, *caption, layout.eos_id]  # caption: text-tokenizer ids, the layout's text block
        mask = [loss_on_all] * len(prompt) + [True] * (len(ids) - len(prompt))
        mask[0] = False  # <bos> is never predicted
        return TokenSequence(ids, mask, self.name)

    def prompt(self, layout: VocabLayout, image: ImageTokens) -> list[int]:
        """``<bos> <caption> IMG <assistant>``: the model continues with the caption."""
        return [layout.bos_id, layout.special_id(self.token), *image_span(layout, image),
                layout.special_id("<assistant>")]

    def prompts(self, layout: VocabLayout, condition: Mapping[str, Any],
                grid: tuple[int, int] | None = None) -> dict[str, list[int]]:
        """``condition``: ``{"image": ImageTokens}``; only ``full`` (no guidance)."""
        return {"full": self.prompt(layout, condition["image"])}

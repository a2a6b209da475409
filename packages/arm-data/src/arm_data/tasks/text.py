"""Text only: the captions of ``pair`` records as plain language-model documents.

Layout (``*`` = loss)::

    <bos> <text> | text*... <eos>*

Loss is always on the text (``loss_on_all`` changes nothing); there is no condition to drop.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from arm_data.formats import ConditionDropout, TokenSequence, _Builder, _text_ids
from arm_data.tasks.base import Encode, Task
from arm_data.vocab import VocabLayout


class TextTask(Task):
    """Language modelling on text; reads the captions of ``t2i``'s (``pair``) records."""

    name = "text"
    token = "<text>"
    reads = "t2i"
    image_fields = ("image",)

    def document(self, record: Any, encode: Encode) -> tuple[Any, ...]:
        """``(text_ids,)``."""
        return (encode(record.texts["text"]),)

    def length(self, doc: tuple[Any, ...]) -> int:
        return 2 + len(doc[0]) + 1

    def sequence(self, layout: VocabLayout, doc: tuple[Any, ...], loss_on_all: bool = False,
                 dropout: ConditionDropout | None = None, rng: random.Random | None = None) -> TokenSequence:
        return self.build(layout, doc[0])

    def build(self, layout: VocabLayout, text_ids: Sequence[int]) -> TokenSequence:
        """``<bos> <text> text... <eos>``, loss on the text and ``<eos>``."""
        b = _Builder()
        b.add([layout.bos_id, layout.special_id(self.token)], False)
        b.add(_text_ids(layout, text_ids, "text"), True)
        b.add([layout.eos_id], True)
        return b.build(self.name, False)

    def prompts(self, layout: VocabLayout, condition: Mapping[str, Any],
                grid: tuple[int, int] | None = None) -> dict[str, list[int]]:
        """``<bos> <text>`` followed by ``condition["text"]`` (ids; optional), to be continued."""
        prefix = condition.get("text")
        return {"full": [layout.bos_id, layout.special_id(self.token),
                         *([] if prefix is None else _text_ids(layout, prefix, "text"))]}

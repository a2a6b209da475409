"""Understanding: an image, then a question and its answer, or a whole conversation.

Layout (``*`` = loss, ``|`` = where the generation prompt ends)::

    <bos> <und> IMG(src) <user> question... <assistant> | answer*... <eos>*

A conversation repeats ``<user> q... <assistant> a*... <eos>*`` per turn pair. Reads
``vqa`` records (``question`` + ``answer``, or ``conversation``); no CFG.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from arm_data.errors import BadSampleError
from arm_data.formats import (
    ConditionDropout,
    ImageTokens,
    TokenSequence,
    _Builder,
    _text_ids,
    image_span,
)
from arm_data.records import VQARecord, _check_str, validate_conversation
from arm_data.tasks.base import Encode, Task
from arm_data.vocab import VocabLayout


class UndTask(Task):
    """Image understanding (VQA, captioning as a question, multi-turn chat): loss on the answers."""

    name = "und"
    token = "<und>"
    image_fields = ("image",)
    sidecars = (("json",),)
    evaluator = "shapes_vqa"

    # ------------------------------------------------------------------ records
    def read(self, fields: dict[str, Any], images: dict[str, Any], key: str, where: str) -> VQARecord:
        fields = dict(fields)
        fields.pop("task", None)
        fields.pop("image", None)
        if "conversation" in fields:
            conv = validate_conversation(fields.pop("conversation"), where)
            q, a = fields.pop("question", None), fields.pop("answer", None)
            q = None if q is None else _check_str(q, "question", where)
            a = None if a is None else _check_str(a, "answer", where)
            return VQARecord(image=images["image"], question=q, answer=a, conversation=conv, key=key, extra=fields)
        q, a = (self._take(fields, name, where) for name in ("question", "answer"))
        return VQARecord(image=images["image"], question=q, answer=a, key=key, extra=fields)

    @staticmethod
    def _take(fields: dict[str, Any], name: str, where: str) -> str:
        if name not in fields:
            raise BadSampleError(where, "invalid_record", f"vqa record has no {name!r} field")
        return _check_str(fields.pop(name), name, where)

    def record_texts(self, record: VQARecord) -> dict[str, Any]:
        if record.conversation is not None:
            return {"conversation": record.turns()}
        return {"question": record.question, "answer": record.answer}

    def record_images(self, record: VQARecord) -> list[Any]:
        return [record.load_image()]

    def record_fields(self, record: VQARecord) -> dict[str, Any]:
        named = {"question": record.question, "answer": record.answer, "conversation": record.conversation}
        return {k: v for k, v in named.items() if v is not None}

    def item_texts(self, record: VQARecord) -> dict[str, Any]:
        """``question``/``answer`` (a conversation's first user and assistant turns) and ``conversation``."""
        turns = record.turns()
        first = {role: next((t["text"] for t in turns if t["role"] == role), "") for role in ("user", "assistant")}
        return {"question": record.question if record.question is not None else first["user"],
                "answer": record.answer if record.answer is not None else first["assistant"],
                "conversation": turns}

    # ------------------------------------------------------------------ documents
    def document(self, record: Any, encode: Encode) -> tuple[Any, ...] | None:
        """``([(role, ids), ...], image)``; ``None`` when the turns are not user/assistant pairs
        (no answer to learn)."""
        turns = record.texts.get("conversation") or [{"role": "user", "text": record.texts["question"]},
                                                     {"role": "assistant", "text": record.texts["answer"]}]
        roles = [t["role"] for t in turns]
        if len(roles) % 2 or roles != ["user", "assistant"] * (len(roles) // 2):
            return None
        return ([(t["role"], encode(t["text"])) for t in turns], record.image)

    def length(self, doc: tuple[Any, ...]) -> int:
        turns, image = doc
        return 2 + image.h * image.w + 4 + sum(len(ids) + (2 if role == "user" else 1) for role, ids in turns)

    def sequence(self, layout: VocabLayout, doc: tuple[Any, ...], loss_on_all: bool = False,
                 dropout: ConditionDropout | None = None, rng: random.Random | None = None) -> TokenSequence:
        return self.build(layout, doc[1], doc[0], loss_on_all)

    def build(self, layout: VocabLayout, image: ImageTokens, turns: Sequence[tuple[str, Sequence[int]]],
              loss_on_all: bool = False) -> TokenSequence:
        """``IMG (<user> q... <assistant> a... <eos>)+``; loss on every answer and its ``<eos>``.

        ``turns`` alternate ``("user", ids)`` and ``("assistant", ids)``, starting with the
        user and ending with the assistant.
        """
        roles = [r for r, _ in turns]
        if not turns or len(turns) % 2 or any(r != ("user" if i % 2 == 0 else "assistant")
                                              for i, r in enumerate(roles)):
            raise ValueError(f"conversation turns must alternate user, assistant (starting with user, ending "
                             f"with assistant); got roles {roles}")
        b = _Builder()
        b.add([layout.bos_id, layout.special_id(self.token), *image_span(layout, image)], False)
        for j in range(0, len(turns), 2):
            b.add([layout.special_id("<user>"), *_text_ids(layout, turns[j][1], "question"),
                   layout.special_id("<assistant>")], False)
            b.add(_text_ids(layout, turns[j + 1][1], "answer"), True)
            b.add([layout.eos_id], True)
        return b.build(self.name, loss_on_all)

    # ------------------------------------------------------------------ generation
    def prompt(self, layout: VocabLayout, image: ImageTokens, question_ids: Sequence[int]) -> list[int]:
        """``<bos> <und> IMG <user> question... <assistant>``: the model continues with the answer."""
        return [layout.bos_id, layout.special_id(self.token), *image_span(layout, image),
                layout.special_id("<user>"), *_text_ids(layout, question_ids, "question"),
                layout.special_id("<assistant>")]

    def prompts(self, layout: VocabLayout, condition: Mapping[str, Any],
                grid: tuple[int, int] | None = None) -> dict[str, list[int]]:
        """``condition``: ``{"image": ImageTokens, "question": ids}``; only ``full`` (no guidance)."""
        return {"full": self.prompt(layout, condition["image"], condition["question"])}

"""Task formats: how ARM's tasks become one token sequence with a loss mask, and prompts.

ARM (arXiv 2606.11188) trains one next-token predictor on understanding (image -> text),
text-to-image (text -> image tokens) and editing (source image tokens + instruction ->
new image tokens). Each layout belongs to its task (:mod:`arm_data.tasks`, one registered
class per task); this module holds the pieces they share (image spans, the builder, condition
dropout, parsing) and the id-level functions below, which ask the tasks. The LM (arm-core)
and RL (arm-rl) build their generation prompts through the same tasks, so a prompt is
always an exact prefix of the training sequence it continues. Ids come from
:class:`arm_data.vocab.VocabLayout`.

An image is always written as one *image span*, shape tokens first (so the model, and
the constrained decoder, know the grid before the first code)::

    IMG(h, w) = <h=h> <w=w> <boi> c_1 c_2 ... c_{h*w} <eoi>        (c_k = image_offset + code)

The task layouts (``*`` marks tokens with loss; ``|`` marks where a generation
prompt ends, i.e. everything left of it is the prompt)::

    t2i  : <bos> <t2i> caption... <h> <w> <boi> | c*... <eoi>* <eos>*
    und  : <bos> <und> IMG(src) <user> question... <assistant> | answer*... <eos>*
           (a conversation repeats ``<user> q... <assistant> a*... <eos>*`` per turn pair)
    edit : <bos> <edit> IMG(src) <user> instruction... <assistant> <h> <w> <boi> | c*... <eoi>* <eos>*
    text : <bos> <text> | text*... <eos>*
    interleaved (arm_data.tasks.interleaved; its <doc> is appended to the built-in specials):
           <bos> <doc> (text*... | IMG*)... <eos>*     (loss on text, images or both)

With ``loss_on_all=True`` every token after ``<bos>`` carries loss (pre-training style).

Classifier-free guidance replaces a dropped condition by ``<null>``, for training
(condition dropout, so the unconditional branch is learned) and for the unconditional
prompts at generation time::

    t2i  uncond        : <bos> <t2i> <null> <h> <w> <boi>
    edit no-instruction: <bos> <edit> IMG(src) <user> <null> <assistant> <h> <w> <boi>
    edit no-source     : <bos> <edit> <null> <user> instruction... <assistant> <h> <w> <boi>
    edit uncond        : <bos> <edit> <null> <user> <null> <assistant> <h> <w> <boi>

Two-branch edit guidance (InstructPix2Pix-style, ARM: text 1.5 / image 1.25) combines
``uncond``, ``no-instruction`` (image-conditioned) and the full prompt:
``l = l_uncond + s_img (l_img - l_uncond) + s_txt (l_full - l_img)``.

Loss-mask convention: ``loss_mask[i]`` is True when token ``i`` is a prediction target
(predicted from tokens ``[0, i)``); packers shift it into ``targets``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from arm_data.vocab import VocabError, VocabLayout

#: Task names, in the order used for integer task ids (``task_ids`` in batches).
TASKS: tuple[str, ...] = ("t2i", "und", "edit", "text")
TASK_TOKENS: dict[str, str] = {"t2i": "<t2i>", "und": "<und>", "edit": "<edit>", "text": "<text>"}


def task_id(task: str) -> int:
    """Integer id of a task name (index in :func:`arm_data.tasks.task_names`; the built-ins keep
    their index in :data:`TASKS`)."""
    # deferred: arm_data.tasks imports this module
    from arm_data.tasks import registry

    return registry.task_id(task)


def _task(name: str) -> Any:
    """The registered task ``name`` (the layouts below are the tasks' own)."""
    # deferred: arm_data.tasks imports this module
    from arm_data.tasks import registry

    return registry.get_task(name, aliases=False)


class TextEncoder(Protocol):
    """What the formats need from a text tokenizer (e.g. :class:`arm_data.text_tokenizer.TextTokenizer`)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclass
class ImageTokens:
    """One image's codebook indices (row-major over its token grid) and the grid size.

    Args:
        codes: ``h*w`` codebook indices in ``[0, codebook_size)`` (list, array or tensor).
        h: token-grid height.
        w: token-grid width.
    """

    codes: Any
    h: int
    w: int

    def __post_init__(self) -> None:
        codes = self.codes
        if isinstance(codes, torch.Tensor):
            codes = codes.reshape(-1).tolist()
        elif not isinstance(codes, list):
            codes = [int(c) for c in (codes.reshape(-1) if hasattr(codes, "reshape") else codes)]
        self.codes = codes
        self.h, self.w = int(self.h), int(self.w)
        if len(codes) != self.h * self.w:
            raise ValueError(f"image has {len(codes)} codes but its grid is {self.h}x{self.w} "
                             f"= {self.h * self.w}")


@dataclass
class TokenSequence:
    """One document: vocabulary ids, which of them are loss targets, and its task."""

    input_ids: list[int]
    loss_mask: list[bool]
    task: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError(f"input_ids ({len(self.input_ids)}) and loss_mask "
                             f"({len(self.loss_mask)}) differ in length")
        if self.task not in TASKS:  # built-ins without a registry lookup
            # deferred: arm_data.tasks imports this module
            from arm_data.tasks import registry

            registry.canonical_task(self.task, aliases=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids LongTensor (L,), loss_mask BoolTensor (L,))``."""
        return (torch.tensor(self.input_ids, dtype=torch.long),
                torch.tensor(self.loss_mask, dtype=torch.bool))


class _Builder:
    """Accumulates ids and their loss flags segment by segment."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.mask: list[bool] = []

    def add(self, ids: Sequence[int], loss: bool) -> None:
        self.ids.extend(int(i) for i in ids)
        self.mask.extend([loss] * len(ids))

    def build(self, task: str, loss_on_all: bool, **meta: Any) -> TokenSequence:
        mask = [True] * len(self.ids) if loss_on_all else list(self.mask)
        mask[0] = False  # <bos> is never predicted
        return TokenSequence(self.ids, mask, task, dict(meta))


def _text_ids(layout: VocabLayout, ids: Sequence[int] | None, what: str) -> list[int]:
    """Text ids checked against the text block; ``None`` (dropped) becomes ``[<null>]``."""
    if ids is None:
        return [layout.null_id]
    out = [int(i) for i in ids]
    bad = [i for i in out if not 0 <= i < layout.text_vocab_size]
    if bad:
        raise VocabError(f"{what}: ids {bad[:5]} are not text ids [0, {layout.text_vocab_size}) "
                         f"(pass text-tokenizer ids, not vocabulary ids of other blocks)")
    return out


def image_span(layout: VocabLayout, image: ImageTokens) -> list[int]:
    """``<h> <w> <boi> codes... <eoi>`` for one image."""
    h_id, w_id = layout.shape_token_ids(image.h, image.w)
    return [h_id, w_id, layout.boi_id, *layout.image_code_to_id(image.codes), layout.eoi_id]


def image_header(layout: VocabLayout, h: int, w: int) -> list[int]:
    """``<h> <w> <boi>``: what a prompt ends with when the model must draw an ``h x w`` grid."""
    h_id, w_id = layout.shape_token_ids(h, w)
    return [h_id, w_id, layout.boi_id]


# ---------------------------------------------------------------------- training sequences
# The layouts live in their tasks (arm_data.tasks.t2i / und / edit / text); these are the
# id-level entry points every caller has used, kept as they were.
def t2i_sequence(layout: VocabLayout, caption_ids: Sequence[int] | None, image: ImageTokens,
                 loss_on_all: bool = False) -> TokenSequence:
    """Text-to-image: caption then image; loss on the image codes, ``<eoi>`` and ``<eos>``.

    ``caption_ids=None`` drops the caption (``<null>``), the CFG unconditional case.
    """
    return _task("t2i").build(layout, caption_ids, image, loss_on_all)


def und_sequence(layout: VocabLayout, image: ImageTokens, question_ids: Sequence[int],
                 answer_ids: Sequence[int], loss_on_all: bool = False) -> TokenSequence:
    """Understanding: image, question, answer; loss on the answer and ``<eos>``."""
    return conversation_sequence(layout, image, [("user", question_ids), ("assistant", answer_ids)], loss_on_all)


def conversation_sequence(layout: VocabLayout, image: ImageTokens, turns: Sequence[tuple[str, Sequence[int]]],
                          loss_on_all: bool = False) -> TokenSequence:
    """Multi-turn understanding: ``IMG (<user> q... <assistant> a... <eos>)+``; loss on every answer + ``<eos>``.

    ``turns`` alternate ``("user", ids)`` and ``("assistant", ids)``, starting with the user
    and ending with the assistant.
    """
    return _task("und").build(layout, image, turns, loss_on_all)


def edit_sequence(layout: VocabLayout, source: ImageTokens | None, instruction_ids: Sequence[int] | None,
                  target: ImageTokens, loss_on_all: bool = False) -> TokenSequence:
    """Editing: source image, instruction, target image; loss on the target codes, ``<eoi>``, ``<eos>``.

    ``source=None`` / ``instruction_ids=None`` drop that condition (``<null>``), for CFG.
    """
    return _task("edit").build(layout, source, instruction_ids, target, loss_on_all)


def text_sequence(layout: VocabLayout, text_ids: Sequence[int]) -> TokenSequence:
    """Text only: loss on every text token and ``<eos>``."""
    return _task("text").build(layout, text_ids)


# ---------------------------------------------------------------------- generation prompts
def t2i_prompt(layout: VocabLayout, caption_ids: Sequence[int] | None, h: int, w: int) -> list[int]:
    """``<bos> <t2i> caption... <h> <w> <boi>``; ``caption_ids=None`` gives the CFG unconditional prompt."""
    return _task("t2i").prompt(layout, caption_ids, h, w)


def t2i_uncond_prompt(layout: VocabLayout, h: int, w: int) -> list[int]:
    """``<bos> <t2i> <null> <h> <w> <boi>``: T2I's unconditional CFG branch."""
    return t2i_prompt(layout, None, h, w)


def und_prompt(layout: VocabLayout, image: ImageTokens, question_ids: Sequence[int]) -> list[int]:
    """``<bos> <und> IMG <user> question... <assistant>``: the model continues with the answer."""
    return _task("und").prompt(layout, image, question_ids)


def edit_prompt(layout: VocabLayout, source: ImageTokens | None, instruction_ids: Sequence[int] | None,
                h: int | None = None, w: int | None = None) -> list[int]:
    """``<bos> <edit> IMG(src) <user> instruction... <assistant> <h> <w> <boi>``.

    The output grid ``(h, w)`` defaults to the source grid. ``source=None`` or
    ``instruction_ids=None`` put ``<null>`` in that place (CFG branches).
    """
    return _task("edit").prompt(layout, source, instruction_ids, h, w)


def edit_cfg_prompts(layout: VocabLayout, source: ImageTokens, instruction_ids: Sequence[int],
                     h: int | None = None, w: int | None = None) -> dict[str, list[int]]:
    """The prompts of two-branch edit guidance: ``full``, ``image`` (instruction dropped),
    ``text`` (source dropped) and ``uncond`` (both dropped)."""
    grid = None if h is None and w is None else (source.h if h is None else h, source.w if w is None else w)
    return _task("edit").prompts(layout, {"source": source, "instruction": instruction_ids}, grid)


# ---------------------------------------------------------------------- condition dropout
@dataclass(frozen=True)
class ConditionDropout:
    """Drop conditions during training so the CFG unconditional branches are learned.

    Args:
        p_caption: probability of replacing a T2I caption by ``<null>``.
        p_instruction: probability of dropping only the edit instruction.
        p_source: probability of dropping only the edit source image.
        p_both: probability of dropping both edit conditions (InstructPix2Pix uses 5% each).
    """

    p_caption: float = 0.1
    p_instruction: float = 0.05
    p_source: float = 0.05
    p_both: float = 0.05

    def __post_init__(self) -> None:
        for name in ("p_caption", "p_instruction", "p_source", "p_both"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"ConditionDropout.{name} must be in [0, 1], got {p}")
        if self.p_instruction + self.p_source + self.p_both > 1.0:
            raise ValueError("ConditionDropout: p_instruction + p_source + p_both must be <= 1")

    def drop_caption(self, rng: random.Random) -> bool:
        return rng.random() < self.p_caption

    def drop_edit(self, rng: random.Random) -> tuple[bool, bool]:
        """``(drop_instruction, drop_source)``, one draw (the three cases are exclusive)."""
        u = rng.random()
        if u < self.p_both:
            return True, True
        if u < self.p_both + self.p_instruction:
            return True, False
        if u < self.p_both + self.p_instruction + self.p_source:
            return False, True
        return False, False


# ---------------------------------------------------------------------- parsing
def find_images(layout: VocabLayout, ids: Sequence[int] | torch.Tensor) -> list[ImageTokens]:
    """Every complete image span ``<h> <w> <boi> codes <eoi>`` in ``ids``, in order.

    A span whose code count does not match its shape tokens raises (the constrained
    decoder never produces one; a hand-built sequence might).
    """
    seq = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
    out: list[ImageTokens] = []
    i = 0
    while i < len(seq):
        if seq[i] == layout.boi_id:
            if i < 2 or not (layout.is_height_id(seq[i - 2]) and layout.is_width_id(seq[i - 1])):
                raise VocabError(f"<boi> at position {i} is not preceded by shape tokens <h> <w>")
            h, w = layout.grid_from_shape_ids(seq[i - 2], seq[i - 1])
            try:
                end = seq.index(layout.eoi_id, i + 1)
            except ValueError:
                break  # unfinished span (e.g. a prompt): nothing to return for it
            codes = seq[i + 1:end]
            if len(codes) != h * w:
                raise VocabError(f"image span at {i} has {len(codes)} codes, its shape tokens say {h}x{w}")
            out.append(ImageTokens(layout.id_to_image_code(codes), h, w))
            i = end
        i += 1
    return out


def describe(layout: VocabLayout, ids: Sequence[int] | torch.Tensor, text: TextEncoder | None = None) -> str:
    """Human-readable rendering of a sequence (text runs decoded when ``text`` is given)."""
    seq = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
    parts: list[str] = []
    run: list[int] = []
    n_img = 0

    def flush() -> None:
        nonlocal n_img
        if run:
            parts.append(repr(text.decode(run)) if text is not None else f"text[{len(run)}]")
            run.clear()
        if n_img:
            parts.append(f"img[{n_img}]")
            n_img = 0

    for t in seq:
        if layout.is_text_id(t):
            if n_img:
                flush()
            run.append(t)
        elif layout.is_image_id(t):
            if run:
                flush()
            n_img += 1
        else:
            flush()
            parts.append(layout.token_name(t))
    flush()
    return " ".join(parts)


# ---------------------------------------------------------------------- string-level helper
class TaskFormatter:
    """The formats above with strings in place of text ids.

    Args:
        layout: the unified vocabulary.
        text_tokenizer: anything with ``encode(str) -> list[int]`` whose ids are ``< layout.text_vocab_size``.
        loss_on_all: put loss on every token after ``<bos>`` instead of only the answer/image.
    """

    def __init__(self, layout: VocabLayout, text_tokenizer: TextEncoder, loss_on_all: bool = False) -> None:
        self.layout = layout
        self.text = text_tokenizer
        self.loss_on_all = loss_on_all

    def _enc(self, s: str | None) -> list[int] | None:
        return None if s is None else self.text.encode(s)

    def t2i(self, caption: str | None, image: ImageTokens) -> TokenSequence:
        return t2i_sequence(self.layout, self._enc(caption), image, self.loss_on_all)

    def und(self, image: ImageTokens, question: str, answer: str) -> TokenSequence:
        return und_sequence(self.layout, image, self.text.encode(question), self.text.encode(answer),
                            self.loss_on_all)

    def edit(self, source: ImageTokens | None, instruction: str | None, target: ImageTokens) -> TokenSequence:
        return edit_sequence(self.layout, source, self._enc(instruction), target, self.loss_on_all)

    def text_only(self, text: str) -> TokenSequence:
        return text_sequence(self.layout, self.text.encode(text))

    def t2i_prompt(self, caption: str | None, h: int, w: int) -> list[int]:
        return t2i_prompt(self.layout, self._enc(caption), h, w)

    def und_prompt(self, image: ImageTokens, question: str) -> list[int]:
        return und_prompt(self.layout, image, self.text.encode(question))

    def edit_prompt(self, source: ImageTokens | None, instruction: str | None,
                    h: int | None = None, w: int | None = None) -> list[int]:
        return edit_prompt(self.layout, source, self._enc(instruction), h, w)

    def edit_cfg_prompts(self, source: ImageTokens, instruction: str,
                         h: int | None = None, w: int | None = None) -> dict[str, list[int]]:
        return edit_cfg_prompts(self.layout, source, self.text.encode(instruction), h, w)

    def prompts(self, task: str, condition: dict[str, Any], grid: tuple[int, int] | None = None
                ) -> dict[str, list[int]]:
        """``task``'s generation prompts (:meth:`arm_data.tasks.Task.prompts`) with strings in
        ``condition`` encoded to text ids (``None`` and images pass as they are)."""
        cond = {k: self.text.encode(v) if isinstance(v, str) else v for k, v in condition.items()}
        return _task(task).prompts(self.layout, cond, grid)

    def answer_text(self, generated_ids: Sequence[int]) -> str:
        """Decode the text ids of a generated answer, stopping at ``<eos>``."""
        out = []
        for t in generated_ids:
            t = int(t)
            if t == self.layout.eos_id:
                break
            if self.layout.is_text_id(t):
                out.append(t)
        return self.text.decode(out)

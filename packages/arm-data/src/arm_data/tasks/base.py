"""The ``task`` kind's base class: what one ARM task owns, from record to guidance branches.

ARM (arXiv 2606.11188) trains one next-token predictor on several tasks that differ only
in how a sample becomes a token sequence. A :class:`Task` holds that difference, so the
code around it (readers, pre-tokenization, packing, pipelines, RL) asks the task instead
of branching on its name. The path of one sample::

    read(fields, images)             record schema   (dataset files -> a record object)
    record_texts / record_images     what pre-tokenization stores in a shard
    document(token_record, encode)   the record with its texts tokenized (packing's unit)
    length(doc)                      len(sequence(doc)) without building it (packing)
    sequence(layout, doc, ...)       ids + loss mask (+ condition dropout for CFG)
    prompts(layout, condition, grid) the generation prompt ("full") and its dropped variants
    branches(prompts, scales)        which of those CFG's extra branches use
    prompt_condition(record, images) an RL prompt record as the condition of prompts()

A subclass sets :attr:`name` (its registry name) and overrides what it needs; register
it under the ``arm.tasks`` entry-point group (or ``ARM_EXTRA_COMPONENTS=task:NAME=mod:Class``).
Layout symbols are those of :mod:`arm_data.formats`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from arm_tokenizer.framework.deprecation import renamed_argument, renamed_attribute

from arm_data.errors import BadSampleError
from arm_data.formats import ConditionDropout, TokenSequence
from arm_data.vocab import VocabLayout

Encode = Callable[[str], list[int]]


@dataclass(frozen=True, init=False)
class GuidanceBranches:
    """The extra branches of classifier-free guidance for one prompt row.

    Args:
        uncond: the prompt of the unconditional branch (conditions replaced by ``<null>``;
            for two-branch editing, the image-only prompt).
        guidance_scale: guidance scale over the text condition (``s`` / ``s_txt``).
        image: the image-conditioned prompt of three-branch (InstructPix2Pix-style)
            guidance, or ``None`` for two branches.
        image_guidance_scale: guidance scale over the image condition (``s_img``), used with
            ``image`` (default 1).
        scale, image_scale: deprecated names of ``guidance_scale`` / ``image_guidance_scale``
            (they warn; the attributes of those names too).
    """

    uncond: list[int]
    guidance_scale: float
    image: list[int] | None = None
    image_guidance_scale: float = 1.0

    def __init__(self, uncond: list[int], guidance_scale: float | None = None,
                 image: list[int] | None = None, image_guidance_scale: float | None = None, *,
                 scale: float | None = None, image_scale: float | None = None) -> None:
        set_ = object.__setattr__  # frozen
        set_(self, "uncond", uncond)
        set_(self, "guidance_scale", renamed_argument("GuidanceBranches", "scale", "guidance_scale",
                                                      scale, guidance_scale))
        set_(self, "image", image)
        set_(self, "image_guidance_scale", renamed_argument(
            "GuidanceBranches", "image_scale", "image_guidance_scale", image_scale, image_guidance_scale, 1.0))

    # the old attribute names, for one release
    scale = renamed_attribute("GuidanceBranches", "scale", "guidance_scale")
    image_scale = renamed_attribute("GuidanceBranches", "image_scale", "image_guidance_scale")


class Task:
    """One task of the multimodal LM (base class of the ``task`` kind).

    Stateless: one instance per class is shared (:func:`arm_data.tasks.get_task`).
    """

    #: Registry name, the same in shards' batches and checkpoints' ``task_names``.
    name: ClassVar[str] = ""
    #: The special token that follows ``<bos>`` in this task's sequences.
    token: ClassVar[str] = ""
    #: The task whose record schema this one reads (empty: its own). ``text`` reads ``t2i``'s records.
    reads: ClassVar[str] = ""
    #: The image fields of this task's records, in the order :meth:`record_images` returns them.
    image_fields: ClassVar[tuple[str, ...]] = ()
    #: The field a text sidecar fills (``<key>.txt`` in a folder, the ``.txt`` member in a tar
    #: shard); ``None``: this schema has no text sidecar.
    text_field: ClassVar[str | None] = None
    #: The sidecars a folder or tar sample needs besides its images, each a tuple of
    #: alternatives (``("txt", "json")``: either; a JSON that stands in for the ``.txt`` must
    #: hold :attr:`text_field`). A sample lacking one is ``missing_sidecar``.
    sidecars: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: Special tokens this task's sequences use besides :attr:`token` (e.g. a role marker).
    #: Those the built-in vocabulary lacks are appended to it (:func:`~arm_data.tasks.vocab_specials`).
    special_tokens: ClassVar[tuple[str, ...]] = ()
    #: The evaluation ``arm-lm evaluate --tasks`` runs for this task, by name (arm-core's
    #: :data:`arm_core.evaluate.EVALUATORS`); empty: the task has none.
    evaluator: ClassVar[str] = ""

    @property
    def schema(self) -> str:
        """The task name of the record schema this task reads (:attr:`reads` or :attr:`name`)."""
        return self.reads or self.name

    def _schema_owner(self) -> Task:
        if not self.reads or self.reads == self.name:
            raise NotImplementedError(f"task {self.name!r} ({type(self).__name__}) does not read records: "
                                      "override read(), record_texts() and record_images(), or set `reads`")
        # deferred: breaks a cycle (the registry imports this module for Task)
        from arm_data.tasks.registry import get_task

        return get_task(self.reads)

    # ------------------------------------------------------------------ records
    def read(self, fields: dict[str, Any], images: dict[str, Any], key: str, where: str) -> Any:
        """A record of this task's schema from its JSON fields and resolved images.

        Raises:
            arm_data.errors.BadSampleError: ``invalid_record`` naming ``where`` and the field.
        """
        return self._schema_owner().read(fields, images, key, where)

    def record_texts(self, record: Any) -> dict[str, Any]:
        """The texts a shard stores for ``record`` (``TokenRecord.texts``)."""
        return self._schema_owner().record_texts(record)

    def record_images(self, record: Any) -> list[Any]:
        """``record``'s decoded images, in :attr:`image_fields` order."""
        return self._schema_owner().record_images(record)

    def image_refs(self, fields: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The images a record's JSON fields name, ``{name: path or key}`` in record order;
        readers resolve each and hand them to :meth:`read` under the same names.

        The default reads one field per :attr:`image_fields`; a task whose records hold a
        variable number of images overrides it.

        Raises:
            arm_data.errors.BadSampleError: ``invalid_record`` naming ``where`` and the field.
        """
        # deferred: breaks a cycle (the registry imports this module for Task)
        from arm_data.tasks.registry import record_name

        missing = [f for f in self.image_fields if f not in fields]
        if missing:
            raise BadSampleError(where, "invalid_record", f"{record_name(self.schema)} line has no {missing[0]!r} field")
        return {f: fields[f] for f in self.image_fields}

    def record_fields(self, record: Any) -> dict[str, Any]:
        """``record``'s own JSON fields as the dataset formats store them (no images, no
        ``extra``); :meth:`read` of these fields and the images gives the record back."""
        return self._schema_owner().record_fields(record)

    def record_image_refs(self, record: Any) -> dict[str, Any]:
        """``record``'s images as it holds them (:class:`~arm_data.records.ImageRef` or PIL),
        by field name in :attr:`image_fields` order; nothing is decoded."""
        return {f: getattr(record, f) for f in self.image_fields}

    def item_texts(self, record: Any) -> dict[str, Any]:
        """The text entries of the torch datasets' item for ``record``
        (:func:`arm_data.datasets.decode_record`); default: :meth:`record_fields`."""
        return self.record_fields(record)

    def num_images(self, texts: Mapping[str, Any]) -> int:
        """How many images a shard record with these texts holds (default: one per
        :attr:`image_fields`; a task with a variable number counts them from ``texts``)."""
        return len(self.image_fields)

    def vocab_tokens(self) -> tuple[str, ...]:
        """Every special token this task's sequences use: :attr:`token` and :attr:`special_tokens`."""
        return tuple(t for t in (self.token, *self.special_tokens) if t)

    # ------------------------------------------------------------------ documents
    def document(self, record: Any, encode: Encode) -> tuple[Any, ...] | None:
        """A shard record (``arm_data.shards.TokenRecord``) as this task's document, texts
        tokenized by ``encode``; ``None`` when the record cannot make one (counted as malformed)."""
        raise NotImplementedError(f"task {self.name!r} ({type(self).__name__}) must implement document()")

    def length(self, doc: tuple[Any, ...]) -> int:
        """``len(self.sequence(layout, doc))`` computed without building it (packing plans with it)."""
        raise NotImplementedError(f"task {self.name!r} ({type(self).__name__}) must implement length()")

    def sequence(self, layout: VocabLayout, doc: tuple[Any, ...], loss_on_all: bool = False,
                 dropout: ConditionDropout | None = None, rng: random.Random | None = None) -> TokenSequence:
        """The training sequence of ``doc``; ``rng`` draws condition dropout from ``dropout``
        (``None``: none dropped)."""
        raise NotImplementedError(f"task {self.name!r} ({type(self).__name__}) must implement sequence()")

    # ------------------------------------------------------------------ generation
    def prompts(self, layout: VocabLayout, condition: Mapping[str, Any],
                grid: tuple[int, int] | None = None) -> dict[str, list[int]]:
        """The generation prompt ``"full"`` (an exact prefix of the training sequence) and the
        variants with conditions dropped that :meth:`branches` may use (e.g. ``"uncond"``).

        Args:
            layout: the vocabulary.
            condition: the task's named inputs (text as text-tokenizer ids, images as
                :class:`~arm_data.formats.ImageTokens`; ``None`` drops one).
            grid: the token grid ``(h, w)`` of the image to generate, where there is one.
        """
        raise NotImplementedError(f"task {self.name!r} ({type(self).__name__}) does not generate from prompts")

    def branches(self, prompts: Mapping[str, list[int]], text_scale: float = 1.0,
                 image_scale: float = 1.0) -> GuidanceBranches | None:
        """What classifier-free guidance adds to ``prompts["full"]``: ``None`` without guidance.

        The default is single-condition CFG: the ``"uncond"`` prompt at ``text_scale``
        (nothing when the task has no ``"uncond"`` prompt or the scale is 1).
        """
        if text_scale == 1.0 or "uncond" not in prompts:
            return None
        return GuidanceBranches(uncond=list(prompts["uncond"]), guidance_scale=text_scale)

    # ------------------------------------------------------------------ prompt records (RL)
    # A prompt record (``arm_rl.prompts.PromptRecord``: ``text``, ``spec``, ``source_image``,
    # ...) is what an RL rollout starts from. The task turns it into the condition of
    # :meth:`prompts`, so arm-rl never asks which task a record is for; a task that does
    # not override :meth:`prompt_condition` cannot be trained by RL.
    def check_prompt_record(self, record: Any) -> None:
        """Raise ``ValueError`` (naming ``record``) when it lacks what :meth:`prompt_images` or
        :meth:`prompt_condition` need; called as the record is made, before any rollout."""

    def prompt_images(self, record: Any, size: tuple[int, int]) -> list[Any]:
        """The images (PIL) ``record``'s prompt conditions on, in the order
        :meth:`prompt_condition` receives their tokens; ``size``: ``(height, width)`` in pixels
        of an image that must be drawn. Default: none."""
        return []

    def prompt_condition(self, record: Any, images: Sequence[Any]) -> dict[str, Any]:
        """The ``condition`` of :meth:`prompts` for a prompt record; strings stay text (the
        caller encodes them). ``images``: :meth:`prompt_images` as
        :class:`~arm_data.formats.ImageTokens` (encoded by the visual tokenizer)."""
        raise NotImplementedError(f"task {self.name!r} ({type(self).__name__}) does not build prompts from "
                                  "prompt records: override prompt_condition()")

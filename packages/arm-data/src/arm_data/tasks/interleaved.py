"""Interleaved documents: text and any number of images in one sequence, in their order.

ARM (arXiv 2606.11188) pre-trains on interleaved image-text data (a 0.15 share of its
pre-training mix) beside T2I, understanding and text; MMC4 and OBELICS are corpora of such
documents. A record is an ordered list of *segments*, each ``{"text": str}`` or
``{"image": PATH}``; ShapesWorld edit chains (:mod:`arm_data.shapes.chains`) are documents
``image, instruction, image, instruction, image, ...``.

Layout (``*`` = loss with the default ``loss="both"``; every image has its own grid, stated
by its shape tokens)::

    <bos> <doc> SEG_1 SEG_2 ... SEG_n <eos>*
      text segment : t*...
      image segment: <h>* <w>* <boi>* c*... <eoi>*

The shape tokens of an image carry loss with its codes: predicting ``<h>`` after a text is
the model deciding that an image comes next (and how large), as predicting ``<eos>``
decides that the document ends. ``sequence(..., loss=...)`` picks the targets: ``"both"``,
``"text"`` (text segments and ``<eos>``: the images are context, as in understanding) or
``"image"`` (image spans and ``<eos>``: the text is context, as in T2I and editing). The
token data module passes it from ``task_options: {interleaved: {loss: text}}``;
``loss_on_all`` overrides it (every token after ``<bos>``).

Classifier-free guidance for an image ``k`` that follows a text segment ``T_k`` mirrors
editing's two conditions (the text just before the image ~ the instruction, everything
before that text ~ the source image)::

    full  : <bos> <doc> ...history... T_k <h> <w> <boi>
    image : <bos> <doc> ...history... <null> <h> <w> <boi>     (T_k dropped)
    text  : <bos> <doc> <null> T_k <h> <w> <boi>               (the history dropped)
    uncond: <bos> <doc> <null> <h> <w> <boi>                   (both dropped)

Training learns these branches by condition dropout (:class:`~arm_data.formats.ConditionDropout`'s
edit probabilities, one draw per document: ``p_instruction`` drops ``T_k``, ``p_source``
the history before it, ``p_both`` both, for one image ``k`` chosen uniformly among those
that follow a text), so every prompt above is an exact prefix of a training sequence.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from PIL import Image

from arm_data import formats
from arm_data.errors import BadSampleError
from arm_data.formats import ConditionDropout, ImageTokens, TokenSequence
from arm_data.records import ImageLike, ImageRef, as_pil
from arm_data.tasks.base import Encode, GuidanceBranches, Task
from arm_data.vocab import VocabLayout

#: What ``sequence(..., loss=...)`` may put the loss on.
LOSS_MODES: tuple[str, ...] = ("both", "text", "image")
LossMode = Literal["both", "text", "image"]

#: A document segment: text ids or an image's tokens.
Segment = list[int] | ImageTokens


def image_ref_name(i: int) -> str:
    """How readers name the image of segment ``i`` (in :meth:`InterleavedTask.image_refs` and errors)."""
    return f"segments[{i}].image"


@dataclass
class InterleavedRecord:
    """An ordered document of texts and images.

    Attributes:
        segments: the document in order: ``str`` (a text segment) or an image
            (:class:`~arm_data.records.ImageRef` or a decoded PIL image).
        key: the sample's name in its dataset.
        extra: any further JSON fields (ShapesWorld chains store the ``specs`` and ``edits``).
    """

    task: ClassVar[str] = "interleaved"
    segments: list[str | ImageLike]
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> list[ImageLike]:
        """The image segments, in order."""
        return [s for s in self.segments if not isinstance(s, str)]

    def load_images(self) -> list[Image.Image]:
        """The decoded RGB images, in order (raises :class:`BadSampleError`)."""
        return [as_pil(s) for s in self.images]


def check_segments(segments: Any, where: str) -> list[dict[str, Any]]:
    """Check a JSON ``segments`` list: non-empty, each ``{"text": non-empty str}`` or
    ``{"image": non-empty path}``; returns it.

    Raises:
        BadSampleError: ``invalid_record`` naming ``where`` and the segment.
    """
    if not isinstance(segments, list) or not segments:
        got = "an empty list" if isinstance(segments, list) else type(segments).__name__
        raise BadSampleError(where, "invalid_record", f"'segments' must be a non-empty list of "
                             f"{{'text': ...}} / {{'image': PATH}} objects; got {got}")
    for i, seg in enumerate(segments):
        name = f"segments[{i}]"
        if not isinstance(seg, dict):
            raise BadSampleError(where, "invalid_record", f"{name} must be an object {{'text': ...}} or "
                                 f"{{'image': PATH}}; got {type(seg).__name__}")
        keys = {"text", "image"} & set(seg)
        if len(keys) != 1:
            what = "both 'text' and 'image'" if len(keys) == 2 else f"neither 'text' nor 'image' (keys {sorted(seg)})"
            raise BadSampleError(where, "invalid_record", f"{name} has {what}; a segment is "
                                 "{'text': ...} or {'image': PATH}")
        (kind,) = keys
        value = seg[kind]
        if not isinstance(value, str) or not value.strip():
            got = repr(value) if isinstance(value, str) else type(value).__name__
            raise BadSampleError(where, "invalid_record", f"{name}.{kind} must be a non-empty string; got {got}")
    return segments


class InterleavedTask(Task):
    """Interleaved text-and-image documents (ShapesWorld edit chains, MMC4/OBELICS-style corpora)."""

    name = "interleaved"
    token = "<doc>"
    image_fields = ()  # a variable number: see image_refs / num_images

    # ------------------------------------------------------------------ records
    def image_refs(self, fields: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``{"segments[i].image": PATH}`` for every image segment, in document order."""
        if "segments" not in fields:
            raise BadSampleError(where, "invalid_record", "interleaved record has no 'segments' field")
        segments = check_segments(fields["segments"], where)
        return {image_ref_name(i): s["image"] for i, s in enumerate(segments) if "image" in s}

    def read(self, fields: dict[str, Any], images: dict[str, Any], key: str, where: str) -> InterleavedRecord:
        fields = dict(fields)
        fields.pop("task", None)
        if "segments" not in fields:
            raise BadSampleError(where, "invalid_record", "interleaved record has no 'segments' field")
        segments = check_segments(fields.pop("segments"), where)
        out: list[str | ImageLike] = []
        for i, seg in enumerate(segments):
            if "text" in seg:
                out.append(seg["text"])
                continue
            name = image_ref_name(i)
            if name not in images:
                raise BadSampleError(where, "invalid_record", f"{name}: the reader resolved no image for it")
            img = images[name]
            # a missing file is named with its line and segment here, not later at decode time
            if isinstance(img, ImageRef) and isinstance(img.source, str) and not os.path.isfile(img.source):
                raise BadSampleError(where, "missing_file", f"{name}: no such file {img.source!r}")
            out.append(img)
        return InterleavedRecord(segments=out, key=key, extra=fields)

    def record_fields(self, record: InterleavedRecord) -> dict[str, Any]:
        """``{"segments": [{"text": ...} | {"image": "segments[i].image"}]}``: images by the
        names of :meth:`record_image_refs` (a writer replaces each by its stored path)."""
        return {"segments": [{"text": s} if isinstance(s, str) else {"image": image_ref_name(i)}
                             for i, s in enumerate(record.segments)]}

    def record_image_refs(self, record: InterleavedRecord) -> dict[str, Any]:
        return {image_ref_name(i): s for i, s in enumerate(record.segments) if not isinstance(s, str)}

    def record_texts(self, record: InterleavedRecord) -> dict[str, Any]:
        """``{"segments": [{"text": ...} | {"image": j}]}``, ``j`` indexing the shard record's images."""
        out, j = [], 0
        for s in record.segments:
            if isinstance(s, str):
                out.append({"text": s})
            else:
                out.append({"image": j})
                j += 1
        return {"segments": out}

    def record_images(self, record: InterleavedRecord) -> list[Any]:
        return record.load_images()

    def num_images(self, texts: Mapping[str, Any]) -> int:
        return sum(1 for s in texts.get("segments", ()) if "image" in s)

    # ------------------------------------------------------------------ documents
    def document(self, record: Any, encode: Encode) -> tuple[Segment, ...] | None:
        """The segments in order: text ids (``list[int]``) or :class:`ImageTokens`; ``None``
        when the shard record's image references do not match its images."""
        segs: list[Segment] = []
        for s in record.texts.get("segments", ()):
            if "text" in s:
                segs.append(encode(s["text"]))
            else:
                j = s.get("image")
                if not isinstance(j, int) or not 0 <= j < len(record.images):
                    return None
                segs.append(record.images[j])
        return tuple(segs) if segs else None

    def length(self, doc: tuple[Segment, ...]) -> int:
        return 2 + sum(s.h * s.w + 4 if isinstance(s, ImageTokens) else len(s) for s in doc) + 1

    def sequence(self, layout: VocabLayout, doc: tuple[Segment, ...], loss_on_all: bool = False,
                 dropout: ConditionDropout | None = None, rng: random.Random | None = None,
                 loss: LossMode = "both") -> TokenSequence:
        """The document's training sequence.

        Args:
            layout: the vocabulary.
            doc: from :meth:`document`.
            loss_on_all: loss on every token after ``<bos>`` (overrides ``loss``).
            dropout: condition dropout (one draw per document; see the module docstring).
            rng: draws the dropout (``None``: nothing dropped).
            loss: ``"both"``, ``"text"`` or ``"image"``: which segments are targets
                (``<eos>`` always is).
        """
        if loss not in LOSS_MODES:
            raise ValueError(f"interleaved: loss must be one of {LOSS_MODES}, got {loss!r}")
        segs: list[Segment | None] = list(doc)
        if rng is not None and dropout is not None:
            d_text, d_hist = dropout.drop_edit(rng)
            cands = [k for k in range(1, len(segs)) if isinstance(segs[k], ImageTokens)
                     and not isinstance(segs[k - 1], ImageTokens)]
            if (d_text or d_hist) and cands:
                segs = _dropped(segs, cands[rng.randrange(len(cands))], d_text, d_hist)
        return self.build(layout, segs, loss, loss_on_all)

    def build(self, layout: VocabLayout, segments: Sequence[Segment | None], loss: LossMode = "both",
              loss_on_all: bool = False) -> TokenSequence:
        """``<bos> <doc> segments... <eos>``; a ``None`` segment is a dropped condition (``<null>``)."""
        text_loss, image_loss = loss in ("both", "text"), loss in ("both", "image")
        b = formats._Builder()
        b.add([layout.bos_id, layout.special_id(self.token)], False)
        for i, s in enumerate(segments):
            if s is None:
                b.add([layout.null_id], False)
            elif isinstance(s, ImageTokens):
                b.add(formats.image_header(layout, s.h, s.w), image_loss)
                b.add(layout.image_code_to_id(s.codes), image_loss)
                b.add([layout.eoi_id], image_loss)
            else:
                b.add(formats._text_ids(layout, s, f"segments[{i}] text"), text_loss)
        b.add([layout.eos_id], True)
        return b.build(self.name, loss_on_all, dropped=sum(s is None for s in segments))

    # ------------------------------------------------------------------ generation
    def prefix(self, layout: VocabLayout, segments: Sequence[Segment | None]) -> list[int]:
        """``<bos> <doc> segments...``: a document so far, to be continued (``None`` = ``<null>``)."""
        seq = self.build(layout, segments).input_ids
        return seq[:-1]  # without <eos>

    def prompts(self, layout: VocabLayout, condition: Mapping[str, Any],
                grid: tuple[int, int] | None = None) -> dict[str, list[int]]:
        """``condition``: ``{"segments": [text ids | ImageTokens, ...]}``, the document so far.

        Without ``grid``: ``{"full": prefix}`` (the model continues: text, an image or ``<eos>``).
        With ``grid`` ``(h, w)`` an image comes next: each prompt ends with ``<h> <w> <boi>``
        and the CFG variants ``image`` / ``text`` / ``uncond`` of the module docstring are given
        (when the last segment is not a text there is no text to drop: ``image`` is ``full``
        and ``uncond`` is ``text``).
        """
        segs: list[Segment | None] = list(condition.get("segments") or [])
        if grid is None:
            return {"full": self.prefix(layout, segs)}
        header = formats.image_header(layout, int(grid[0]), int(grid[1]))
        k = len(segs)  # the image to generate is segment k
        if segs and not isinstance(segs[-1], ImageTokens):
            variants = {"full": segs, "image": _dropped(segs + [None], k, True, False)[:-1],
                        "text": _dropped(segs + [None], k, False, True)[:-1],
                        "uncond": _dropped(segs + [None], k, True, True)[:-1]}
        else:
            variants = {"full": segs, "image": segs, "text": [None], "uncond": [None]}
        return {name: self.prefix(layout, v) + header for name, v in variants.items()}

    def branches(self, prompts: Mapping[str, list[int]], text_scale: float = 1.0,
                 image_scale: float = 1.0, drop_images: bool = False) -> GuidanceBranches | None:
        """As editing's: ``image`` is the unconditional branch of ``text_scale`` when
        ``image_scale == 1`` (only the preceding text dropped; ``drop_images=True`` drops the
        history too: ``uncond``); otherwise three branches (uncond, image, full)."""
        if text_scale == 1.0 and image_scale == 1.0:
            return None
        if image_scale == 1.0:
            return GuidanceBranches(uncond=list(prompts["uncond" if drop_images else "image"]),
                                    guidance_scale=text_scale)
        return GuidanceBranches(uncond=list(prompts["uncond"]), guidance_scale=text_scale,
                                image=list(prompts["image"]), image_guidance_scale=image_scale)


def _dropped(segs: list[Segment | None], k: int, d_text: bool, d_hist: bool) -> list[Segment | None]:
    """``segs`` with, for image ``k`` (after text segment ``k-1``), the text and/or the history
    before it replaced by ``<null>`` (the history always by one ``<null>``, even when empty)."""
    text = None if d_text else segs[k - 1]
    hist = [None] if d_hist else segs[:k - 1]
    if d_text and d_hist:
        return [None, *segs[k:]]
    return [*hist, text, *segs[k:]]

"""Continuing interleaved documents: the model writes text, opens images, or ends the document.

ARM (arXiv 2606.11188) trains on interleaved text-and-image documents beside its three
tasks; arm-data's ``interleaved`` task (:mod:`arm_data.tasks.interleaved`) lays one out as
``<bos> <doc> SEG... <eos>`` with every image a span ``<h> <w> <boi> codes <eoi>``.
:class:`ContinueDocument` takes documents so far (text and images) and samples what comes
next, segment by segment::

    from arm_core.documents import ContinueDocument
    cont = ContinueDocument.from_pretrained("runs/chains/lm")
    out = cont([[source_image, "Make the red circle blue."]], max_segments=1)
    out[0].segments        # [PIL image]: the model opened an image and drew it
    out[0].stop            # "max_segments" (or "eos": the model ended the document)

Each step:

* **text** (``next="auto"``): decode (greedy by default) until the model emits a non-text
  token. ``<eos>`` ends the document; a shape token (``<h=..>`` / ``<w=..>``: how every
  image span starts) means the model opens an image; any other special ends the
  continuation (``stop`` names it). The text before it becomes a text segment.
* **image** (after the model opened one, or at once with ``next="image"``): the pipeline
  writes ``<h> <w> <boi>`` for ``grid`` (default: the last image's grid, else the visual
  tokenizer's), as text-to-image and editing do, and the engine decodes exactly ``h*w``
  codes and ``<eoi>`` under the image-span constraint, with classifier-free guidance.

Guidance is the task's (:meth:`InterleavedTask.branches`): the unconditional branch drops
the text segment just before the image to ``<null>`` (the history, earlier images
included, stays); ``drop_images=True`` drops the history too, and ``image_guidance_scale
!= 1`` runs editing-style three-branch guidance (history and text dropped / text dropped
/ full). A model trained with the data module's condition dropout on ``interleaved``
learned exactly these branches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from arm_data.formats import ImageTokens
from arm_data.tasks import get_task
from arm_tokenizer.framework.deprecation import renamed_argument
from PIL import Image

from arm_core.generation import Guidance
from arm_core.pipelines import PipelineError, _Pipeline

__all__ = ["ContinueDocument", "Continuation"]

TASK = "interleaved"


@dataclass
class Continuation:
    """What :class:`ContinueDocument` added to one document.

    Attributes:
        segments: the new segments in order: ``str`` (text) or ``PIL.Image.Image`` (an image;
            ``arm_data.formats.ImageTokens`` with ``decode=False``).
        codes: each new image's codes ``(h*w,)``, in order.
        stop: why it stopped: ``"eos"`` (the model ended the document), ``"max_segments"``,
            ``"context"`` (the model's context is full) or the name of another special token
            the model emitted where text or an image was expected.
        opened_image: per new image, whether the model itself opened it (``False``: forced
            by ``next="image"``).
    """

    segments: list[Any] = field(default_factory=list)
    codes: list[torch.Tensor] = field(default_factory=list)
    stop: str = ""
    opened_image: list[bool] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        """The model ended the document (``<eos>``)."""
        return self.stop == "eos"


class ContinueDocument(_Pipeline):
    """Documents so far (text + images) -> their next segments. ``ContinueDocument.from_pretrained(lm_dir)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task = get_task(TASK)
        missing = [t for t in self.task.vocab_tokens() if t not in self.layout.special_tokens]
        if missing:
            raise PipelineError(f"this LM's vocabulary has no {missing[0]} token: it was not trained on "
                                f"interleaved documents (train it with the data module's task_weights "
                                f"naming '{TASK}'); its specials are {list(self.layout.special_tokens)}")

    def _grid_source(self) -> str:
        return ("the grid=(h, w) argument (default: the document's last image's grid, else the visual "
                f"tokenizer's, {self._default_grid_text()})")

    # ------------------------------------------------------------------ inputs
    def _documents(self, documents: Any) -> list[list[Any]]:
        """Documents -> lists of segments as text ids / ``ImageTokens`` (images encoded in one batch)."""
        if isinstance(documents, (str, Image.Image)) or not isinstance(documents, Sequence) or not documents:
            raise PipelineError("documents must be a non-empty list of documents, each a list of segments "
                                "(str text, PIL images / pathlib paths, or ImageTokens)")
        docs: list[list[Any]] = []
        to_encode: list[tuple[int, int, Any]] = []
        for i, doc in enumerate(documents):
            if isinstance(doc, (str, Image.Image)) or not isinstance(doc, Sequence):
                raise PipelineError(f"document {i} must be a list of segments, got {type(doc).__name__}")
            segs: list[Any] = []
            for j, s in enumerate(doc):
                if isinstance(s, str):
                    segs.append(self.text_tokenizer.encode(self._check_text(s, j, f"document {i} segment")))
                elif isinstance(s, ImageTokens):
                    segs.append(self.image_tokens(s.codes, (s.h, s.w)))
                elif isinstance(s, (Image.Image, os.PathLike)):
                    segs.append(None)
                    to_encode.append((i, j, s))
                else:
                    raise PipelineError(f"document {i} segment {j}: expected text (str), an image (PIL or "
                                        f"pathlib path) or ImageTokens, got {type(s).__name__}")
            docs.append(segs)
        if to_encode:
            tokens = self.encode_images([s for _, _, s in to_encode])
            for (i, j, _), t in zip(to_encode, tokens, strict=True):
                docs[i][j] = t
        return docs

    def _grid_for(self, segs: list[Any], grid: Sequence[int] | None) -> tuple[int, int]:
        if grid is not None:
            return self._check_grid(grid)
        last = next((s for s in reversed(segs) if isinstance(s, ImageTokens)), None)
        return (last.h, last.w) if last is not None else self._check_grid(self.default_grid)

    # ------------------------------------------------------------------ generation
    def __call__(self, documents: Sequence[Sequence[Any]], *, max_segments: int = 1, next: str = "auto",
                 max_text_tokens: int = 64, grid: Sequence[int] | None = None,
                 guidance_scale: float | None = None, image_guidance_scale: float = 1.0,
                 drop_images: bool = False, temperature: float = 1.0, text_temperature: float = 0.0,
                 top_k: int | None = None, top_p: float = 1.0, seed: int | None = 0,
                 batch_size: int = 16, decode: bool = True,
                 text_guidance_scale: float | None = None) -> list[Continuation]:
        """Continue each document by up to ``max_segments`` segments.

        Args:
            documents: a list of documents, each a list of segments in order: ``str`` (text),
                ``PIL.Image.Image`` or ``pathlib.Path`` (an image, encoded with the visual
                tokenizer), or ``arm_data.formats.ImageTokens`` (pre-tokenized).
            max_segments: new segments per document at most (a text and an image are two).
            next: ``"auto"``: the model decides whether text or an image comes next (or ends the
                document); ``"image"``: the first new segment is an image (e.g. the edited image
                after an instruction), then the model decides.
            max_text_tokens: the longest text segment in tokens.
            grid: the token grid of new images; default the document's last image's grid,
                else the visual tokenizer's.
            guidance_scale: guidance over the text just before an image (1 = none; default 1.5).
            image_guidance_scale: guidance over the history before that text (1 = two branches).
            drop_images: with ``image_guidance_scale == 1``, the unconditional branch drops the
                history (earlier images) as well as the text.
            temperature, top_k, top_p: sampling of image codes (temperature 0 = greedy).
            text_temperature: sampling of text (0 = greedy).
            seed: base seed (each engine call adds its index); None = nondeterministic.
            batch_size: documents per engine call.
            decode: return new images as PIL images (else as ``ImageTokens``).
            text_guidance_scale: deprecated name of ``guidance_scale`` (warns).
        """
        guidance_scale = renamed_argument("ContinueDocument", "text_guidance_scale", "guidance_scale",
                                          text_guidance_scale, guidance_scale, 1.5)
        if next not in ("auto", "image"):
            raise PipelineError(f"next must be 'auto' or 'image', got {next!r}")
        if max_segments < 1 or max_text_tokens < 1:
            raise PipelineError(f"max_segments and max_text_tokens must be >= 1, got {max_segments}, "
                                f"{max_text_tokens}")
        docs = self._documents(documents)
        grids = [self._grid_for(d, grid) for d in docs]
        outs = [Continuation() for _ in docs]
        for i, d in enumerate(docs):  # the document as given must leave room for one image
            self._check_fit(len(self.task.prefix(self.layout, d)) + 3, grids[i][0] * grids[i][1] + 1, i,
                            "document")
        L = self.layout
        opens = {i: next == "image" for i in range(len(docs))}  # rows whose next segment is an image
        forced = dict(opens)
        calls = 0
        active = list(range(len(docs)))
        while active:
            # 1. text: the rows not about to draw an image decode until a non-text token
            texting = [i for i in active if not opens[i]]
            if texting:
                prompts = [self.task.prefix(L, docs[i]) for i in texting]
                room = self.engine.max_seq_len - max(len(p) for p in prompts)
                if room < 1:
                    for i in texting:
                        outs[i].stop = "context"
                    active = [i for i in active if i not in texting]
                    continue
                rows = self._run(prompts, min(max_text_tokens, room), text_temperature, None, 1.0,
                                 list(range(L.special_offset, L.image_offset)), None, seed, calls, batch_size)
                calls += 1
                for i, row in zip(texting, rows, strict=True):
                    text = [t for t in row if L.is_text_id(t)]
                    last = row[-1] if row else None
                    if text:
                        docs[i].append(text)
                        outs[i].segments.append(self.text_tokenizer.decode(text))
                    if last is None or L.is_text_id(last):
                        continue  # max_text_tokens: the text goes on in the next round
                    if last == L.eos_id:
                        outs[i].stop = "eos"
                    elif L.is_height_id(last) or L.is_width_id(last):
                        opens[i] = True
                    else:
                        outs[i].stop = L.token_name(last)
            active = [i for i in active if not outs[i].stop and len(outs[i].segments) < max_segments]
            # 2. images: the pipeline writes the header, the engine the codes (constrained, guided)
            drawing = [i for i in active if opens[i]]
            by_grid: dict[tuple[int, int], list[int]] = {}
            for i in drawing:
                by_grid.setdefault(grids[i], []).append(i)
            for (h, w), rows_i in by_grid.items():
                fit, full = [], []
                for i in rows_i:
                    p = self.task.prompts(L, {"segments": docs[i]}, (h, w))
                    if max(len(x) for x in p.values()) + h * w + 1 > self.engine.max_seq_len:
                        outs[i].stop = "context"
                    else:
                        fit.append(i)
                        full.append(p)
                if not fit:
                    continue
                branches = [self.task.branches(p, guidance_scale, image_guidance_scale,
                                               drop_images=drop_images) for p in full]
                rows = self._run([p["full"] for p in full], h * w + 1, temperature, top_k, top_p,
                                 [L.eoi_id], branches, seed, calls, batch_size)
                calls += 1
                for i, row in zip(fit, rows, strict=True):
                    codes = row[: h * w]
                    if len(codes) != h * w or not all(L.is_image_id(t) for t in codes) or row[h * w] != L.eoi_id:
                        raise RuntimeError("the constrained decoder produced an ill-formed image span; this is "
                                           "a bug in arm_core.constraints")
                    img = ImageTokens(L.id_to_image_code(codes), h, w)
                    docs[i].append(img)
                    outs[i].segments.append(img)
                    outs[i].codes.append(torch.tensor(img.codes))
                    outs[i].opened_image.append(not forced[i])
                    opens[i] = forced[i] = False
            active = [i for i in active if not outs[i].stop and len(outs[i].segments) < max_segments]
        for o in outs:
            o.stop = o.stop or "max_segments"
            if decode:
                o.segments = [self._decode_one(s) if isinstance(s, ImageTokens) else s for s in o.segments]
        return outs

    def _decode_one(self, img: Any) -> Image.Image:
        return self.decode_images(torch.tensor([img.codes]), (img.h, img.w))[0]

    def _run(self, prompts: list[list[int]], n_new: int, temperature: float, top_k: int | None,
             top_p: float, stop_ids: list[int], branches: list[Any] | None, seed: int | None, call: int,
             batch_size: int) -> list[list[int]]:
        """Engine calls over ``prompts`` in batches; each row's generated ids, its stop id included.
        The text rounds stop at any non-text id: ``<eos>``, a shape token or another special."""
        out: list[list[int]] = []
        for b, s in enumerate(range(0, len(prompts), batch_size)):
            sl = slice(s, s + batch_size)
            guidance = None
            if branches is not None and branches[sl][0] is not None:
                br = branches[sl]
                guidance = Guidance(uncond_prompts=[g.uncond for g in br], guidance_scale=br[0].guidance_scale,
                                    image_prompts=None if br[0].image is None else [g.image for g in br],
                                    image_guidance_scale=br[0].image_guidance_scale)
            res = self.engine.generate(
                prompts[sl], n_new, temperature=temperature, top_k=top_k, top_p=top_p,
                eos_ids=stop_ids, constraint=self._constraint(), guidance=guidance,
                seed=None if seed is None else seed + 1000 * call + b, pad_id=self.layout.pad_id)
            out.extend(res.to_lists())
        return out

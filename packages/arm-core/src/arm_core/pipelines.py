"""User-facing pipelines: text-to-image, instruction editing and image understanding.

Each pipeline joins an exported LM (:func:`arm_core.checkpoint.load_lm`), its text
tokenizer and vocabulary layout, and a visual tokenizer (``arm_tokenizer``), and runs the
generation engine (:mod:`arm_core.generation`) with ARM's defaults::

    from arm_core.pipelines import TextToImage, Edit, Understand
    t2i = TextToImage.from_pretrained("runs/lm")            # tokenizer: the one the LM references
    images = t2i(["a red circle left of a blue square"], guidance_scale=1.5, seed=0)
    edit = Edit.from_pretrained("runs/lm", tokenizer_dir="runs/tokenizer")
    out = edit(images, ["make the circle green"])            # text 1.5 / image 1.25 guidance
    answers = Understand.from_pretrained("runs/lm")(out, ["what color is the circle?"])

Strings and PIL images (or image paths) go in; PIL images and strings come out. Prompts
are built with :mod:`arm_data.formats`, the same functions that built the training
sequences, so a prompt is always a prefix of what the model was trained on. Image spans
are constrained (exactly ``h*w`` codes after ``<boi>``, then ``<eoi>``). Guidance
(ARM: T2I 1.5; editing text 1.5 / image 1.25) runs the branches as one stacked batch; a
scale of 1 disables it. Inputs are processed in batches of ``batch_size`` with a tqdm bar
when there is more than one batch.

Faster decoding (both off by default): ``speculative=N`` verifies ``N`` draft codes per
forward inside image spans (speculative Jacobi decoding, :mod:`arm_core.speculative`: the
same image distribution, fewer forwards, each wider), and ``quantize="int8"`` decodes with
int8 weights (:mod:`arm_core.quantize`, needs ``pip install 'arm-core[quant]'``; ``int4``
on CUDA), quantized at load; the checkpoint stays as saved::

    t2i = TextToImage.from_pretrained("runs/lm", speculative=8, quantize="int8")

Bad input gets errors that say what to change: prompts that do not fit the context,
special-token syntax inside prompts, grids outside the shape tokens, images whose token
count does not match the grid, checkpoints whose vocabulary differs from the tokenizers.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from arm_data.formats import ImageTokens, TaskFormatter
from arm_data.tasks import get_task
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.framework.deprecation import add_renamed_flag, renamed_argument
from arm_tokenizer.images import load_image
from PIL import Image
from tqdm.auto import tqdm

from arm_core.checkpoint import CheckpointError, LMCheckpoint, load_lm
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Engine, Guidance
from arm_core.quantize import quantize as quantize_model

__all__ = ["PipelineError", "TextToImage", "Edit", "Understand", "load_pipelines", "task_guidance"]


def task_guidance(task: str, rows: Sequence[dict[str, list[int]]], guidance_scale: float | None = None,
                  image_guidance_scale: float | None = None, *, text_scale: float | None = None,
                  image_scale: float | None = None) -> Guidance | None:
    """Classifier-free guidance for prompt ``rows`` of ``task`` (one dict of
    :meth:`arm_data.tasks.Task.prompts` per row) at ``guidance_scale`` (over the text) and
    ``image_guidance_scale`` (over the source image; default 1); ``None`` without guidance.
    ``text_scale`` / ``image_scale``: their deprecated names.

    What the unconditional and image-only branches drop is the task's to say
    (:meth:`arm_data.tasks.Task.branches`); the pipelines and arm-rl's rollouts both ask here.
    """
    guidance_scale = renamed_argument("task_guidance", "text_scale", "guidance_scale", text_scale,
                                      guidance_scale)
    image_guidance_scale = renamed_argument("task_guidance", "image_scale", "image_guidance_scale",
                                            image_scale, image_guidance_scale, 1.0)
    owner = get_task(task)
    branches = [owner.branches(p, guidance_scale, image_guidance_scale) for p in rows]
    if not branches or branches[0] is None:
        return None
    first = branches[0]
    if first.image is None:
        return Guidance(uncond_prompts=[b.uncond for b in branches], guidance_scale=first.guidance_scale)
    return Guidance(uncond_prompts=[b.uncond for b in branches], guidance_scale=first.guidance_scale,
                    image_prompts=[b.image for b in branches],
                    image_guidance_scale=first.image_guidance_scale)

# Image tokens per call from which a single batch shows a bar over its decode steps (a 16x16 grid).
LONG_GENERATION = 256

# Looks like special-token syntax: <boi>, <h=4>, <foo_bar>.
_SPECIAL_RE = re.compile(r"<[A-Za-z_][A-Za-z0-9_]*(=\d+)?>")
# A shape token: <h=4> (grid rows) or <w=8> (grid columns).
_SHAPE_RE = re.compile(r"<([hw])=(\d+)>")
# What each built-in special does, for the message when one appears in user text.
_SPECIAL_ROLES = {
    "<pad>": "padding",
    "<bos>": "the start of every sequence",
    "<eos>": "the end of an answer or sequence",
    "<boi>": "opens an image span, before the image's codes",
    "<eoi>": "closes an image span",
    "<t2i>": "the text-to-image task marker",
    "<und>": "the understanding task marker",
    "<edit>": "the editing task marker",
    "<text>": "the text task marker",
    "<user>": "the user turn marker",
    "<assistant>": "the assistant turn marker",
    "<null>": "the dropped condition of guidance's unconditional branch",
}


def _grid_example(axis: str, n: int) -> str:
    return f"({n}, w)" if axis == "h" else f"(h, {n})"


class PipelineError(ValueError):
    """Bad pipeline input; the message names the item and what to change."""


def _as_list(x: Any, what: str) -> list[Any]:
    if isinstance(x, (str, Image.Image, os.PathLike)):
        return [x]
    items = list(x)
    if not items:
        raise PipelineError(f"no {what} given")
    return items


class _Pipeline:
    """Shared loading, prompt checks, batching and image (de)tokenization."""

    def __init__(self, lm: LMCheckpoint, visual_tokenizer: Any | None,
                 device: str | torch.device = "cpu", compile: bool = False,
                 text_tokenizer: Any | None = None, speculative: int = 0,
                 quantize: str | None = None) -> None:
        """Use :meth:`from_pretrained` (exported dirs) or :meth:`from_model` (in memory)."""
        if lm.layout is None:
            raise CheckpointError(f"{lm.directory}: the LM has no vocabulary layout (a text-only "
                                  "export?); ARM pipelines need one saved with save_lm(layout=...)")
        self.lm = lm
        self.layout = lm.layout
        self.model = lm.model.to(device).eval()
        self.text_tokenizer = text_tokenizer if text_tokenizer is not None else lm.load_text_tokenizer()
        if self.text_tokenizer.vocab_size != self.layout.text_vocab_size:
            raise CheckpointError(
                f"text tokenizer in {lm.directory} has {self.text_tokenizer.vocab_size} ids but the "
                f"layout expects {self.layout.text_vocab_size}; re-export the LM with the tokenizer "
                "its data was built with")
        self.visual_tokenizer = visual_tokenizer
        if visual_tokenizer is not None:
            visual_tokenizer.to(device).eval()
        self.formatter = TaskFormatter(self.layout, self.text_tokenizer)
        self.device = torch.device(device)
        if quantize not in (None, "none"):
            # in place: the caller's checkpoint on disk stays bf16/fp32
            self.model = quantize_model(self.model, quantize)
        self.engine = Engine(self.model, compile=compile, speculative=speculative)

    @classmethod
    def from_pretrained(cls, lm_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None,
                        device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                        compile: bool = False, speculative: int = 0,
                        quantize: str | None = None) -> _Pipeline:
        """Load an exported LM and its visual tokenizer.

        Args:
            lm_dir: directory written by ``save_lm`` / ``LMTrainer`` at fit end.
            tokenizer_dir: visual tokenizer directory; None = the one the LM references.
            device: where to run.
            dtype: cast the LM weights (e.g. ``torch.bfloat16`` on GPU).
            compile: compile the decode step (worth it for long generations on GPU).
            speculative: draft codes verified per forward in image spans (0 = off; see
                ``Engine(speculative=...)``).
            quantize: ``"int8"`` (CPU/CUDA) or ``"int4"`` (CUDA) weight-only decode via
                torchao, applied at load; ``None`` = as saved.
        """
        lm = load_lm(lm_dir, device=device, dtype=dtype)
        vis = lm.load_visual_tokenizer(tokenizer_dir, device=device)
        return cls(lm, vis, device=device, compile=compile, speculative=speculative,
                   quantize=quantize)

    @classmethod
    def from_model(cls, model: torch.nn.Module, layout: Any, text_tokenizer: Any,
                   visual_tokenizer: Any | None, device: str | torch.device = "cpu",
                   compile: bool = False, speculative: int = 0,
                   quantize: str | None = None) -> _Pipeline:
        """Wrap an in-memory model (e.g. an RL policy) without exporting it first.

        Args:
            model: an ``arm_core.model.GPT`` whose vocabulary is ``layout``'s.
            layout: the ``VocabLayout``.
            text_tokenizer: the ``TextTokenizer`` (or a path to its ``.model``).
            visual_tokenizer: the visual tokenizer (or None for text-only use).
            speculative, quantize: as in :meth:`from_pretrained`; ``quantize`` changes
                ``model`` in place (never on a policy that still trains).
        """
        if isinstance(text_tokenizer, (str, os.PathLike)):
            text_tokenizer = TextTokenizer.load(text_tokenizer)
        cfg = model.config
        if cfg.vocab_size != layout.total_size or cfg.image_offset != layout.image_offset:
            raise CheckpointError(f"model vocabulary (vocab_size={cfg.vocab_size}, image_offset="
                                  f"{cfg.image_offset}) is not the layout's ({layout.total_size}, "
                                  f"{layout.image_offset}); use the layout the model was trained with")
        lm = LMCheckpoint(model=model, config=cfg, layout=layout, text_tokenizer_path=None,
                          visual_tokenizer_dir=None, directory=Path("<in-memory>"))
        return cls(lm, visual_tokenizer, device=device, compile=compile,
                   text_tokenizer=text_tokenizer, speculative=speculative, quantize=quantize)

    # ------------------------------------------------------------------ checks
    @property
    def default_grid(self) -> tuple[int, int]:
        if self.visual_tokenizer is None:
            raise PipelineError("no visual tokenizer loaded; pass grid=(h, w) explicitly")
        return tuple(self.visual_tokenizer.grid)  # type: ignore[return-value]

    def _check_grid(self, grid: Sequence[int]) -> tuple[int, int]:
        h, w = (int(grid[0]), int(grid[1]))
        L = self.layout
        if not (1 <= h <= L.max_grid_h and 1 <= w <= L.max_grid_w):
            raise PipelineError(f"grid {h}x{w} is outside what the shape tokens can state "
                                f"(1..{L.max_grid_h} x 1..{L.max_grid_w}); choose a smaller grid")
        return h, w

    def _check_text(self, text: str, i: int, what: str) -> str:
        if not isinstance(text, str):
            raise PipelineError(f"{what} {i} must be a string, got {type(text).__name__}")
        m = _SPECIAL_RE.search(text)
        if m:
            tok = m.group(0)
            L = self.layout
            shape = _SHAPE_RE.fullmatch(tok)
            if shape:
                axis, n = shape.group(1), int(shape.group(2))
                raise PipelineError(
                    f"{what} {i} contains {tok!r}, a shape token ({'rows' if axis == 'h' else 'columns'} "
                    f"of the image's token grid). The pipeline adds the shape tokens itself, from "
                    f"{self._grid_source()}; remove {tok!r} from the text"
                    + (f" and pass grid={_grid_example(axis, n)} to ask for that grid"
                       if self._takes_grid else "")
                    + f" (this LM's shape tokens cover 1..{L.max_grid_h} x 1..{L.max_grid_w})")
            known = list(L.special_tokens)
            if tok in _SPECIAL_ROLES and tok in known:
                raise PipelineError(
                    f"{what} {i} contains {tok!r}, which is a special token the pipeline adds "
                    f"itself ({_SPECIAL_ROLES[tok]}); remove it from the text")
            if tok in known:
                raise PipelineError(
                    f"{what} {i} contains {tok!r}, which is a special token of this vocabulary "
                    f"(known: {known}); pipeline inputs are plain text, the pipeline builds the "
                    "sequence around them: remove it from the text")
            raise PipelineError(
                f"{what} {i} contains {tok!r}, which looks like a special token but is not one of "
                f"this vocabulary's (known: {known}, plus <h=N>/<w=N> shape tokens, which the "
                "pipeline adds from the grid). Pipelines add special tokens themselves; remove it "
                "from the text")
        return text

    # Whether __call__ takes a ``grid`` argument (Understand reads the image's grid).
    _takes_grid = True

    def _grid_source(self) -> str:
        """Where the shape tokens of this pipeline's prompts come from (for error messages)."""
        return "the grid=(h, w) argument"

    def _default_grid_text(self) -> str:
        try:
            h, w = self.default_grid
        except PipelineError:
            return "none loaded"
        return f"{h}x{w}"

    def _check_fit(self, prompt_len: int, new_tokens: int, i: int, what: str) -> None:
        ctx = self.engine.max_seq_len
        if prompt_len + new_tokens > ctx:
            raise PipelineError(
                f"{what} {i} needs {prompt_len} prompt tokens + {new_tokens} generated tokens = "
                f"{prompt_len + new_tokens}, more than the model's context of {ctx}; shorten the "
                "text, use a smaller image grid, or lower max_new_tokens")

    def _constraint(self) -> ImageSpanConstraint:
        """Image-span grammar from the layout's ``<h=i>`` / ``<w=j>`` tokens (built once)."""
        if getattr(self, "_span_constraint", None) is None:
            self._span_constraint = ImageSpanConstraint.from_layout(self.layout)
        return self._span_constraint

    # ------------------------------------------------------------------ images
    def _load_images(self, images: Any) -> list[Image.Image]:
        out = []
        for i, im in enumerate(_as_list(images, "images")):
            if isinstance(im, Image.Image):
                out.append(im.convert("RGB"))
            elif isinstance(im, (str, os.PathLike)):
                out.append(load_image(im))
            else:
                raise PipelineError(f"image {i}: expected a PIL image or a path, got {type(im).__name__}")
        return out

    def encode_images(self, images: Any) -> list[Any]:
        """Images -> ``arm_data.formats.ImageTokens`` at the tokenizer's grid."""
        tok = self.visual_tokenizer
        if tok is None:
            raise PipelineError("no visual tokenizer loaded; use from_pretrained(..., tokenizer_dir=...)")
        pil = self._load_images(images)
        with torch.inference_mode():
            codes = tok.encode(pil).cpu()
        h, w = self.default_grid
        if codes.shape[1] != h * w:
            raise PipelineError(f"the visual tokenizer produced {codes.shape[1]} tokens per image, "
                                f"not its grid {h}x{w}; check the tokenizer checkpoint")
        return [ImageTokens(c, h, w) for c in codes]

    def image_tokens(self, codes: Any, grid: Sequence[int]) -> Any:
        """Pre-tokenized codes -> ``ImageTokens``, checked against the grid and codebook."""
        h, w = self._check_grid(grid)
        flat = torch.as_tensor(codes).reshape(-1)
        if flat.numel() != h * w:
            raise PipelineError(f"image has {flat.numel()} tokens but the grid {h}x{w} needs {h * w}; "
                                "encode it with the LM's visual tokenizer or pass the right grid")
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.layout.codebook_size):
            raise PipelineError(f"image codes span [{int(flat.min())}, {int(flat.max())}] but the "
                                f"LM knows codes [0, {self.layout.codebook_size}); wrong tokenizer?")
        return ImageTokens(flat.tolist(), h, w)

    def _images_per_text(self, images: Any, codes: Any, n: int, what: str, text: str) -> list[Any]:
        """``ImageTokens`` of one image per ``text`` (a single image serves all ``n``): from
        pre-tokenized ``codes`` at the tokenizer grid when given, else encoded from ``images``."""
        if codes is not None:
            toks = [self.image_tokens(c, self.default_grid) for c in codes]
        else:
            toks = self.encode_images(images)
        if len(toks) == 1 and n > 1:
            toks = toks * n
        if len(toks) != n:
            raise PipelineError(f"{len(toks)} {what} for {n} {text}s; "
                                f"give one image per {text} (or a single image for all)")
        return toks

    def decode_images(self, codes: torch.Tensor, grid: tuple[int, int]) -> list[Image.Image]:
        if self.visual_tokenizer is None:
            raise PipelineError("no visual tokenizer loaded: cannot decode images")
        with torch.inference_mode():
            return self.visual_tokenizer.decode_to_pil(codes.to(self.device), grid=grid)

    # ------------------------------------------------------------------ batching
    @staticmethod
    def _batches(n: int, batch_size: int, progress: bool | None, desc: str):
        if batch_size < 1:
            raise PipelineError(f"batch_size must be >= 1, got {batch_size}")
        starts = range(0, n, batch_size)
        show = (len(starts) > 1) if progress is None else progress
        if show:
            return tqdm(starts, desc=desc, unit="batch")
        return starts

    def _generate_images(self, prompts: list[list[int]], guidance: Callable[[slice], Guidance | None],
                         grid: tuple[int, int], temperature: float, top_k: int | None,
                         top_p: float, seed: int | None, batch_size: int,
                         progress: bool | None, desc: str) -> torch.Tensor:
        """Codes ``(N, h*w)`` for each prompt (prompts already end with ``<h> <w> <boi>``)."""
        h, w = grid
        n_new = h * w + 1  # the codes, then <eoi>
        constraint = self._constraint()
        out = []
        one_batch = len(prompts) <= batch_size
        # one batch of a large grid: show the decode steps instead of a one-step batch bar
        token_bar = one_batch and (bool(progress) or (progress is None and n_new >= LONG_GENERATION))
        for b, s in enumerate(self._batches(len(prompts), batch_size, False if token_bar else progress, desc)):
            sl = slice(s, s + batch_size)
            res = self.engine.generate(
                prompts[sl], n_new, temperature=temperature, top_k=top_k, top_p=top_p,
                eos_ids=[self.layout.eoi_id], constraint=constraint, guidance=guidance(sl),
                seed=None if seed is None else seed + b, pad_id=self.layout.pad_id,
                progress=desc if token_bar else False)
            codes = res.tokens[:, : h * w]
            if not bool(self.layout.is_image_id(codes).all()):
                raise RuntimeError("the constrained decoder produced non-image ids inside an image "
                                   "span; this is a bug in arm_core.constraints")
            out.append(self.layout.id_to_image_code(codes).cpu())
        return torch.cat(out)


class TextToImage(_Pipeline):
    """Text prompts -> images. ``TextToImage.from_pretrained(lm_dir, tokenizer_dir=None)``."""

    def _grid_source(self) -> str:
        return ("the grid=(h, w) argument (`arm-lm generate --grid H W`; default: the visual "
                f"tokenizer's grid, {self._default_grid_text()})")

    def __call__(self, prompts: str | Sequence[str], *, grid: Sequence[int] | None = None,
                 guidance_scale: float = 1.5, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float = 1.0, seed: int | None = 0, num_images_per_prompt: int = 1,
                 batch_size: int = 16, progress: bool | None = None,
                 return_codes: bool = False) -> list[Image.Image] | tuple[list[Image.Image], torch.Tensor]:
        """Generate images.

        Args:
            prompts: one string or a list.
            grid: token grid ``(h, w)`` (any aspect ratio the shape tokens cover); default
                the visual tokenizer's grid.
            guidance_scale: CFG scale over the text (ARM: 1.5; 1 = no guidance).
            temperature, top_k, top_p: sampling (temperature 0 = greedy).
            seed: base seed (batch ``b`` uses ``seed + b``); None = nondeterministic.
            num_images_per_prompt: samples per prompt (consecutive in the output).
            batch_size: prompts per engine call.
            progress: tqdm bar, over batches, or over decode steps when there is one batch
                (default: when there is more than one batch, or one batch of 256+ tokens).
            return_codes: also return the ``(N, h*w)`` code tensor.
        """
        texts = [self._check_text(p, i, "prompt") for i, p in enumerate(_as_list(prompts, "prompts"))]
        texts = [t for t in texts for _ in range(num_images_per_prompt)]
        grid = self._check_grid(grid or self.default_grid)
        rows = [self.formatter.prompts("t2i", {"caption": t}, tuple(grid)) for t in texts]
        cond = [r["full"] for r in rows]
        for i, p in enumerate(cond):
            self._check_fit(len(p), grid[0] * grid[1] + 1, i, "prompt")

        def guidance(sl: slice) -> Guidance | None:
            return task_guidance("t2i", rows[sl], guidance_scale)

        codes = self._generate_images(cond, guidance, grid, temperature, top_k, top_p, seed,
                                      batch_size, progress, "text-to-image")
        images = self.decode_images(codes, grid)
        return (images, codes) if return_codes else images


class Edit(_Pipeline):
    """Source images + instructions -> edited images (two-branch guidance)."""

    def _grid_source(self) -> str:
        return ("the grid=(h, w) argument for the edited image (`arm-lm generate --grid H W`; "
                "default: the source image's grid) and the source image's own grid")

    def __call__(self, images: Any, instructions: str | Sequence[str], *,
                 guidance_scale: float | None = None, image_guidance_scale: float = 1.25,
                 grid: Sequence[int] | None = None, source_codes: Any | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
                 seed: int | None = 0, batch_size: int = 16, progress: bool | None = None,
                 return_codes: bool = False, text_guidance_scale: float | None = None,
                 ) -> list[Image.Image] | tuple[list[Image.Image], torch.Tensor]:
        """Edit images.

        Args:
            images: PIL images or paths (one per instruction; a single image is reused);
                ignored when ``source_codes`` is given.
            instructions: one string or a list.
            guidance_scale: guidance over the instruction (ARM: 1.5; default 1.5).
            image_guidance_scale: guidance over the source image (ARM: 1.25).
            grid: output token grid; default the source grid.
            source_codes: pre-tokenized sources ``(N, h*w)`` at the tokenizer grid, instead
                of ``images``.
            temperature, top_k, top_p, seed, batch_size, progress, return_codes: as in
                :class:`TextToImage`.
            text_guidance_scale: deprecated name of ``guidance_scale`` (warns).
        """
        guidance_scale = renamed_argument("Edit", "text_guidance_scale", "guidance_scale",
                                          text_guidance_scale, guidance_scale, 1.5)
        instr = [self._check_text(t, i, "instruction")
                 for i, t in enumerate(_as_list(instructions, "instructions"))]
        sources = self._images_per_text(images, source_codes, len(instr), "source images", "instruction")
        grid = self._check_grid(grid or (sources[0].h, sources[0].w))
        prompts = [self.formatter.prompts("edit", {"source": s, "instruction": t}, tuple(grid))
                   for s, t in zip(sources, instr, strict=True)]
        full = [p["full"] for p in prompts]
        for i, p in enumerate(prompts):
            self._check_fit(max(len(x) for x in p.values()), grid[0] * grid[1] + 1, i, "edit")

        def guidance(sl: slice) -> Guidance | None:
            return task_guidance("edit", prompts[sl], guidance_scale, image_guidance_scale)

        codes = self._generate_images(full, guidance, grid, temperature, top_k, top_p, seed,
                                      batch_size, progress, "edit")
        out = self.decode_images(codes, grid)
        return (out, codes) if return_codes else out


class Understand(_Pipeline):
    """Images + questions -> text answers (greedy by default)."""

    _takes_grid = False

    def _grid_source(self) -> str:
        return (f"the image's token grid (the visual tokenizer's, {self._default_grid_text()}); "
                "a question needs no shape tokens")

    def __call__(self, images: Any, questions: str | Sequence[str], *, max_new_tokens: int = 32,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float = 1.0,
                 seed: int | None = 0, image_codes: Any | None = None, batch_size: int = 16,
                 progress: bool | None = None) -> list[str]:
        """Answer questions about images.

        Args:
            images: PIL images or paths (one per question; a single image is reused);
                ignored when ``image_codes`` is given.
            questions: one string or a list.
            max_new_tokens: longest answer in tokens (stops at ``<eos>``).
            temperature: 0 = greedy.
            image_codes: pre-tokenized images ``(N, h*w)`` at the tokenizer grid.
            top_k, top_p, seed, batch_size, progress: as in :class:`TextToImage`.
        """
        qs = [self._check_text(q, i, "question") for i, q in enumerate(_as_list(questions, "questions"))]
        imgs = self._images_per_text(images, image_codes, len(qs), "images", "question")
        prompts = [self.formatter.und_prompt(im, q) for im, q in zip(imgs, qs, strict=True)]
        for i, p in enumerate(prompts):
            self._check_fit(len(p), max_new_tokens, i, "question")
        constraint = self._constraint()  # image codes are masked outside image spans
        answers: list[str] = []
        for b, s in enumerate(self._batches(len(prompts), batch_size, progress, "understand")):
            res = self.engine.generate(
                prompts[s: s + batch_size], max_new_tokens, temperature=temperature, top_k=top_k,
                top_p=top_p, eos_ids=[self.layout.eos_id], constraint=constraint,
                seed=None if seed is None else seed + b, pad_id=self.layout.pad_id)
            answers.extend(self.formatter.answer_text(row) for row in res.to_lists())
        return [a.strip() for a in answers]


def load_pipelines(lm_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu", speculative: int = 0,
                   quantize: str | None = None) -> tuple[TextToImage, Edit, Understand]:
    """All three pipelines sharing one loaded model and tokenizer (``speculative`` and
    ``quantize`` as in :meth:`TextToImage.from_pretrained`; the model is quantized once)."""
    lm = load_lm(lm_dir, device=device)
    vis = lm.load_visual_tokenizer(tokenizer_dir, device=device)
    kw = dict(speculative=speculative, quantize=quantize)
    return TextToImage(lm, vis, device, **kw), Edit(lm, vis, device, **kw), Understand(lm, vis, device, **kw)



def add_sampling_flags(p: argparse.ArgumentParser, prompt: str = "prompt", temperature: float | None = 1.0,
                       temperature_help: str | None = None) -> None:
    """The sampling flags of ``arm-lm generate`` and ``arm-lm suite generate``: the two guidance
    scales (and their old names ``--cfg`` / ``--image-cfg``), ``--temperature``, ``--top-k``,
    ``--top-p`` and ``--seed``; ``prompt`` names what the text guidance is over."""
    p.add_argument("--guidance-scale", type=float, default=1.5,
                   help=f"guidance scale over the {prompt} (t2i) or instruction (edit)")
    p.add_argument("--image-guidance-scale", type=float, default=1.25,
                   help="edit: guidance scale over the source image")
    add_renamed_flag(p, "--cfg", "--guidance-scale")
    add_renamed_flag(p, "--image-cfg", "--image-guidance-scale")
    p.add_argument("--temperature", type=float, default=temperature, help=temperature_help)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)


def cli_generate(argv: list[str]) -> int:
    """Generate with an exported LM: text-to-image, edit or understand (PIL/strings out)."""
    p = argparse.ArgumentParser(prog="arm-lm generate", description=cli_generate.__doc__)
    p.add_argument("task", choices=["t2i", "edit", "understand"])
    p.add_argument("--lm", required=True, help="exported LM directory")
    p.add_argument("--tokenizer", default=None, help="visual tokenizer dir (default: the LM's)")
    p.add_argument("--prompt", nargs="+", required=True,
                   help="captions (t2i), instructions (edit) or questions (understand)")
    p.add_argument("--image", nargs="*", default=None, help="source image(s) for edit/understand")
    p.add_argument("--grid", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="token grid of generated images (default: the tokenizer's)")
    add_sampling_flags(p, prompt="caption", temperature=None,
                       temperature_help="default 1.0 for images, 0 (greedy) for answers")
    p.add_argument("--num", type=int, default=1, help="images per prompt (t2i)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--speculative", type=int, default=0, metavar="N",
                   help="speculative Jacobi decoding of image spans: N draft codes verified per "
                        "forward (0 = off; same image distribution, fewer forwards)")
    p.add_argument("--quantize", default=None, choices=["int8", "int4"],
                   help="weight-only quantized decode via torchao, applied at load (int4: CUDA "
                        "only); needs pip install 'arm-core[quant]'")
    p.add_argument("--out", default="generated", help="output directory for images")
    a = p.parse_args(argv)
    if a.task in ("edit", "understand") and not a.image:
        p.error(f"{a.task} needs --image PATH [PATH ...]")
    if a.speculative < 0:
        p.error(f"--speculative must be >= 0 (0 = off), got {a.speculative}")
    cls = {"t2i": TextToImage, "edit": Edit, "understand": Understand}[a.task]
    pipe = cls.from_pretrained(a.lm, a.tokenizer, device=a.device, speculative=a.speculative,
                               quantize=a.quantize)
    sampling = dict(top_k=a.top_k, top_p=a.top_p, seed=a.seed, batch_size=a.batch_size)
    if a.task == "understand":
        answers = pipe(a.image, a.prompt, temperature=a.temperature or 0.0, **sampling)
        for q, ans in zip(a.prompt, answers, strict=True):
            print(f"Q: {q}\nA: {ans}")
        return 0
    temp = 1.0 if a.temperature is None else a.temperature
    if a.task == "t2i":
        images = pipe(a.prompt, grid=a.grid, guidance_scale=a.guidance_scale, temperature=temp,
                      num_images_per_prompt=a.num, **sampling)
    else:
        images = pipe(a.image, a.prompt, grid=a.grid, guidance_scale=a.guidance_scale,
                      image_guidance_scale=a.image_guidance_scale, temperature=temp, **sampling)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        path = out / f"{a.task}-{i:04d}.png"
        im.save(path)
        print(path)
    return 0
